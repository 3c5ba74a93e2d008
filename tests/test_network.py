"""The fast path's transformation network: its shape, and its file (checked, never a pickle)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from pipeline.engine.network import (
    FULL_WIDTH,
    HALF_WIDTH,
    NetworkConfig,
    TransformNet,
    inference_noise,
)
from pipeline.engine.network_file import (
    decode_network,
    encode_network,
    network_tensors,
    read_network,
    write_network,
)
from pipeline.errors import InputError, WeightsError
from pipeline.store.hashing import digest_tensors

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("one_thread")]

SMALL = NetworkConfig(width=8, blocks=2)


def _net(config: NetworkConfig = SMALL, seed: int = 0) -> TransformNet:
    torch.manual_seed(seed)
    return TransformNet(config).eval()


def _refusal(path: Path, expected: NetworkConfig | None = None) -> str:
    with pytest.raises(WeightsError) as info:
        read_network(path, expected)
    message = info.value.message
    assert "\n" not in message and message.startswith(path.name)
    assert info.value.category == "network"
    return message


@pytest.mark.parametrize("size", [(33, 47), (64, 65), (9, 8), (48, 48)])
def test_output_has_the_input_size_and_range(size: tuple[int, int]) -> None:
    h, w = size
    photos = torch.rand(2, 3, h, w)
    with torch.no_grad():
        pictures = _net()(photos)
    assert pictures.shape == photos.shape
    assert pictures.dtype == torch.float32
    assert float(pictures.min()) >= 0 and float(pictures.max()) <= 1


@pytest.mark.parametrize("config", [NetworkConfig(width=8, blocks=2, noise=1),
                                    NetworkConfig(width=8, blocks=2, noise=3)])
@torch.no_grad()
def test_noise_channels_paint_flat_regions_the_same_way_every_time(
        tmp_path: Path, config: NetworkConfig) -> None:
    grey = torch.full((2, 3, 40, 52), 0.5)
    flat = _net()(grey)
    # Without noise a flat photo can only come out flat (each channel one value).
    assert float(flat.std(dim=(-2, -1)).max()) < 1e-5
    noisy = _net(config)
    picture = noisy(grey)
    assert float(picture.std(dim=(-2, -1)).min()) > 1e-3
    # Fixed at inference: the same picture again, and for every photo of a batch.
    assert torch.equal(picture, noisy(grey)) and torch.equal(picture[0], picture[1])
    # Training draws it from the trainer's generator: another draw, another picture.
    drawn = noisy(grey, torch.Generator().manual_seed(1))
    assert not torch.equal(drawn, picture)
    assert torch.equal(drawn, noisy(grey, torch.Generator().manual_seed(1)))
    # The config is recorded in the file and read back.
    write_network(tmp_path / "n.safetensors", noisy)
    loaded = read_network(tmp_path / "n.safetensors")
    assert loaded.config == config and torch.equal(loaded.net.eval()(grey), picture)


@torch.no_grad()
def test_given_noise_replaces_the_drawn_one() -> None:
    """A video's frames give the network their noise (rolled with the scene): the fixed
    draw given back paints what the network draws itself, at a size padded to 4."""
    net = _net(NetworkConfig(width=8, blocks=2, noise=2))
    photos = torch.rand(2, 3, 41, 50)
    fixed = inference_noise(2, 44, 52).expand(2, -1, -1, -1)
    assert torch.equal(net.features(photos, noise=fixed), net.features(photos))
    assert torch.equal(net.features(photos, noise=fixed * 0),
                       net.features(photos, noise_scale=0.0))
    moved = torch.roll(fixed, (0, 4), dims=(-2, -1))
    assert not torch.equal(net.features(photos, noise=moved), net.features(photos))
    with pytest.raises(ValueError):
        NetworkConfig(noise=9)
    with pytest.raises(ValueError):
        NetworkConfig(noise=-1)


def test_too_small_a_picture_is_refused() -> None:
    with pytest.raises(InputError) as info:
        _net()(torch.rand(1, 3, 7, 20))
    assert info.value.category == "too_small"


def test_layout_instance_norm_reflection_no_transposed_convolutions() -> None:
    net = TransformNet()
    modules = list(net.modules())
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in modules)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in modules)
    norms = [m for m in modules if isinstance(m, nn.InstanceNorm2d)]
    assert norms and all(m.affine for m in norms)
    convs = [m for m in modules if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs[:3]] == [9, 3, 3] and convs[-1].kernel_size[0] == 9
    assert [c.stride[0] for c in convs[:3]] == [1, 2, 2]
    assert len(net.blocks) == 5
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in modules) == len(convs)


def test_width_changes_the_parameter_count() -> None:
    def count(width: int) -> int:
        return sum(p.numel() for p in TransformNet(NetworkConfig(width=width)).parameters())

    full, half = count(FULL_WIDTH), count(HALF_WIDTH)
    # Convolutions hold width² weights: half the width, about a quarter the parameters.
    assert 3.5 < full / half < 4.1
    assert 1_600_000 < full < 1_700_000  # Johnson's network, less the biases norms cancel


def test_config_bounds() -> None:
    with pytest.raises(ValueError):
        NetworkConfig(width=2)
    with pytest.raises(ValueError):
        NetworkConfig(blocks=-1)


def test_save_and_load_give_the_same_pictures(tmp_path: Path) -> None:
    net = _net(seed=3)
    path = tmp_path / "net.safetensors"
    digest = write_network(path, net, {"style": "starry-night"})
    loaded = read_network(path, SMALL)
    assert loaded.config == SMALL and loaded.digest == digest
    assert loaded.metadata["style"] == "starry-night"
    photos = torch.rand(1, 3, 33, 47)
    with torch.no_grad():
        assert torch.equal(net(photos), loaded.net(photos))
    assert not loaded.net.training
    # Another network has another digest; the same one, written again, the same.
    assert write_network(tmp_path / "again.safetensors", net) == digest
    assert write_network(tmp_path / "other.safetensors", _net(seed=4)) != digest


def test_corrupt_files_are_refused_with_one_line(tmp_path: Path) -> None:
    data = bytearray(encode_network(_net()))
    flipped = tmp_path / "flipped.safetensors"
    data[-10] ^= 0xFF  # a weight's byte
    flipped.write_bytes(bytes(data))
    assert "corrupt" in _refusal(flipped)

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    assert "not a readable network file" in _refusal(truncated)

    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    _refusal(empty)

    with pytest.raises(WeightsError, match="not found"):
        read_network(tmp_path / "missing.safetensors")


def test_a_file_of_another_config_or_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "net.safetensors"
    write_network(path, _net())
    message = _refusal(path, NetworkConfig(width=16, blocks=2))
    assert "width 8" in message and "width 16" in message and "train it again" in message

    # A file whose recorded config does not describe its tensors (digest and all valid).
    tensors = network_tensors(_net(NetworkConfig(width=12, blocks=2)))
    meta = {"format": "stylize-network", "sha256": digest_tensors(tensors),
            "config": json.dumps(SMALL.as_dict())}
    lying = tmp_path / "lying.safetensors"
    lying.write_bytes(safetensors.torch.save(tensors, metadata=meta))
    assert "does not hold the network its config describes" in _refusal(lying)

    # Another architecture, and tensors of the right shapes that are not finite.
    other = dict(meta, config=json.dumps({**SMALL.as_dict(), "architecture": "unet-9"}))
    (tmp_path / "unet.safetensors").write_bytes(safetensors.torch.save(tensors, metadata=other))
    assert "unet-9" in _refusal(tmp_path / "unet.safetensors")
    tensors = network_tensors(_net())
    tensors["out.conv.bias"] = torch.full_like(tensors["out.conv.bias"], float("nan"))
    nan_meta = dict(meta, sha256=digest_tensors(tensors))
    (tmp_path / "nan.safetensors").write_bytes(safetensors.torch.save(tensors, nan_meta))
    assert "not finite" in _refusal(tmp_path / "nan.safetensors")


def test_a_safetensors_file_that_is_no_network_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "targets.safetensors"
    safetensors.torch.save_file({"relu1_1": torch.zeros(4, 4)}, str(path))
    assert "no metadata" in _refusal(path)
    safetensors.torch.save_file({"relu1_1": torch.zeros(4, 4)}, str(path), {"kind": "style"})
    assert "not a stylize network file" in _refusal(path)


class _Planted:
    """Unpickling this would create a file: the proof that a pickle was never opened."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_a_pickle_is_refused_unopened(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    saved = tmp_path / "net.safetensors"  # a torch.save file under a safetensors name
    torch.save({"state": _net().state_dict(), "planted": _Planted(marker)}, saved)
    assert "pickled" in _refusal(saved)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Planted(marker), protocol=4))
    assert "pickled" in _refusal(raw)
    assert not marker.exists()


def test_decode_network_from_bytes_names_its_source() -> None:
    with pytest.raises(WeightsError, match=r"^starry-night/network\.safetensors: "):
        decode_network(b"\x00" * 4, "starry-night/network.safetensors")


def test_bf16_autocast_forward_keeps_float32_output() -> None:
    photos = torch.rand(1, 3, 17, 23)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        pictures = _net()(photos)
    assert pictures.dtype == torch.float32 and pictures.shape == photos.shape


def test_every_header_length_is_read_as_safetensors() -> None:
    """The first bytes of a valid file are its header length: 0x1280 begins with ``\\x80``
    and 0x4B50 with ``PK``, which were taken for a pickle and a zip (issue 27).  Every
    residue of the length's first byte, aligned or not, and those two are read."""
    from support.safetensors_files import with_header_length

    data = encode_network(_net(), {"style": "x" * 40})
    base = int.from_bytes(data[:8], "little") + 1
    lengths = [*range(base, base + 256), 0x1280, 0x4B50, 0x5980]
    assert {n & 0xFF for n in lengths} == set(range(256))
    digests = set()
    for length in lengths:
        padded = with_header_length(data, length)
        assert padded[:8] == length.to_bytes(8, "little")
        digests.add(decode_network(padded, f"net-{length}").digest)
    assert len(digests) == 1

