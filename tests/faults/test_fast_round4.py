"""The fast path attacked (issue 27, items 5-12): each test fails on the code before its fix.

Real networks trained a few steps at a tiny size, real files, the real command line in
this process; faults are planted as files someone could have put there.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from PIL import Image
from support.presets import TINY_FAST, write_preset
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config.styles import Preset, Registry
from pipeline.engine.network import TransformNet
from pipeline.engine.network_file import FORMAT, network_digest, network_tensors
from pipeline.errors import MAX_MESSAGE, DivergedError, PictureError
from pipeline.images import tensor_to_pil
from pipeline.render.network_loader import network_config
from pipeline.store.hashing import digest_tensors
from pipeline.training.networks import (
    META_DIGEST,
    META_KEY,
    META_STYLE,
    PRESET_NETWORK_FILE,
    cache_paths,
    network_key,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("one_thread")]


@pytest.fixture
def styles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "styles"
    write_preset(folder, "quick", TINY_FAST)
    monkeypatch.setenv("STYLIZE_STYLES_PATH", str(folder))
    return folder


@pytest.fixture
def cache() -> Path:
    return Path(os.environ["STYLIZE_CACHE_DIR"])


def _preset() -> Preset:
    return Registry.discover().resolve("quick")


def _photos(folder: Path, count: int = 4) -> Path:
    from support.images import gradient_photo

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        gradient_photo(64 + 8 * i, 48, seed=i).save(folder / f"photo-{i}.png")
    return folder


def _cli(*args: str | os.PathLike[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [os.fspath(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _write_network(path: Path, preset: Preset, tensors: dict[str, torch.Tensor],
                   **extra: str) -> None:
    """A network file holding ``tensors`` for ``preset``, every digest and key right."""
    config = network_config(preset.settings)
    meta = {META_KEY: network_key(preset), META_STYLE: preset.name,
            META_DIGEST: network_digest(config, tensors), "format": FORMAT,
            "config": json.dumps(config.as_dict(), sort_keys=True),
            "sha256": digest_tensors(tensors), **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(safetensors.torch.save(tensors, metadata=meta))


def _tensors(preset: Preset, fill: float | None = None,
             dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    tensors = network_tensors(TransformNet(network_config(preset.settings)))
    if fill is not None:
        tensors = {n: torch.full_like(t, fill) for n, t in tensors.items()}
    return {n: t.to(dtype) for n, t in tensors.items()}


# -- 5: a network whose output is not finite ------------------------------------------------

def test_a_picture_that_is_not_finite_is_refused_not_made_black() -> None:
    bad = torch.rand(1, 3, 4, 5)
    bad[0, 1, 2, 3] = float("nan")
    with pytest.raises(PictureError, match="1 of 60 values not finite"):
        tensor_to_pil(bad)


def test_a_network_of_huge_weights_writes_no_black_picture(
        tmp_path: Path, styles: Path, cache: Path) -> None:
    preset = _preset()
    _write_network(cache_paths(cache, network_key(preset))[0], preset, _tensors(preset, 3e38))
    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 48), (120, 80, 40)).save(photo)
    out = tmp_path / "out" / "p.jpg"
    code, _, err = _cli("image", photo, "--style", "quick", "-o", out)
    assert code != 0
    assert "not finite" in _one_line(err)
    assert not out.exists()


# -- 6: a training that diverges ------------------------------------------------------------

def test_weights_that_could_overflow_are_refused() -> None:
    from pydantic import ValidationError

    from pipeline.config.settings import Settings

    for knob in ("style_weight", "content_weight", "tv_weight"):
        with pytest.raises(ValidationError):
            Settings(**{knob: 1e300})
    with pytest.raises(ValidationError):
        Settings(style_layers={"relu1_1": 1e300})


def test_a_diverging_training_writes_no_network_and_keeps_its_checkpoint(
        tmp_path: Path, styles: Path, cache: Path) -> None:
    """A checkpoint whose weights are finite but huge (3e38): resumed, the first step's
    objective is NaN.  One line, a non-zero status, the network of before and the
    checkpoint untouched."""
    photos = _photos(tmp_path / "photos")
    code, _, err = _cli("train", "quick", "--on", photos)
    assert code == 0, err
    net_path, ckpt_path, _ = cache_paths(cache, network_key(_preset()))
    network_before = net_path.read_bytes()
    data = ckpt_path.read_bytes()
    tensors = safetensors.torch.load(data)
    meta = safetensors.safe_open(str(ckpt_path), "pt").metadata()
    tensors = {n: (torch.full_like(t, 3e38) if n.startswith(("net.", "avg.")) else t)
               for n, t in tensors.items()}
    meta["sha256"] = digest_tensors(tensors)
    ckpt_path.write_bytes(safetensors.torch.save(tensors, metadata=meta))
    planted = ckpt_path.read_bytes()

    code, _, err = _cli("train", "quick", "--on", photos, "--steps", "6")
    assert code != 0
    line = _one_line(err)
    assert "diverged at step 4" in line and "last checkpoint is kept" in line
    assert net_path.read_bytes() == network_before
    assert ckpt_path.read_bytes() == planted


def test_the_trainer_raises_before_a_non_finite_step() -> None:
    from support.presets import STARRY_NIGHT

    from pipeline.engine.style_targets import StyleTargetMaker
    from pipeline.engine.training import Trainer, TrainOptions, training_sides

    s = _preset_settings()
    options = TrainOptions(side=32, batch=2, steps=3, config=network_config(s))
    painting = Image.open(STARRY_NIGHT).convert("RGB").resize((96, 60))
    targets = StyleTargetMaker(s).compute([(painting, 1.0)], training_sides(s, options))
    from support.images import gradient_photo

    trainer = Trainer(s, targets, [gradient_photo(64, 48, seed=i) for i in range(4)], options)
    with torch.no_grad():
        for p in trainer.learner.parameters():
            p.fill_(3e38)
    with pytest.raises(DivergedError, match="diverged at step 1"):
        trainer.train_step()
    assert trainer.step == 0


def _preset_settings():  # type: ignore[no-untyped-def]
    from pipeline.config.settings import Settings

    return Settings(**TINY_FAST)


# -- 7: training reads only the photos inside --on -----------------------------------------

def test_train_never_reads_through_links_out_of_its_folder(
        tmp_path: Path, styles: Path) -> None:
    photos = _photos(tmp_path / "photos")
    outside = tmp_path / "elsewhere.png"
    Image.new("RGB", (64, 48), (10, 200, 10)).save(outside)
    (photos / "linked.png").symlink_to(outside)
    (photos / "shadow.png").symlink_to("/etc/shadow")
    code, out, err = _cli("train", "quick", "--on", photos, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["photos"]["used"] == 4
    assert report["photos"]["skipped"] == {"outside_input": 2}


def test_a_fast_run_trains_on_what_it_would_stylize_only(tmp_path: Path, styles: Path) -> None:
    photos = _photos(tmp_path / "photos")
    outside = tmp_path / "elsewhere.png"
    Image.new("RGB", (64, 48), (10, 200, 10)).save(outside)
    (photos / "linked.png").symlink_to(outside)
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(f"jobs:\n  - name: j\n    input: {photos}\n    styles: [quick]\n"
                        f"    output: {tmp_path / 'out'}\n")
    code, _, err = _cli("run", manifest, "--json")
    assert code == 3, err  # the linked photo failed as outside_input, the rest were made
    assert "training the network of quick on 4 photos, 1 skipped (1 outside input)" in err


# -- 8: folders where files belong ----------------------------------------------------------

@pytest.mark.parametrize("which,force", [(0, False), (1, True), (1, False)])
def test_a_folder_where_the_network_or_checkpoint_goes_is_one_line_before_training(
        tmp_path: Path, styles: Path, cache: Path, which: int, force: bool) -> None:
    photos = _photos(tmp_path / "photos")
    place = cache_paths(cache, network_key(_preset()))[which]
    (place / "inside").mkdir(parents=True)
    start = time.monotonic()
    code, _, err = _cli("train", "quick", "--on", photos, *(["--force"] if force else []))
    assert code == 73
    line = _one_line(err)
    assert "a folder stands where the" in line and place.name in line
    assert "step 1" not in err  # refused before the first step
    assert time.monotonic() - start < 30


# -- 9: odd tensor types ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float16, torch.float64,
                                   torch.bfloat16])
def test_a_network_of_another_tensor_type_is_one_line(
        tmp_path: Path, styles: Path, dtype: torch.dtype) -> None:
    preset = _preset()
    _write_network(styles / "quick" / PRESET_NETWORK_FILE, preset, _tensors(preset, dtype=dtype))
    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 48), (120, 80, 40)).save(photo)
    code, _, err = _cli("image", photo, "--style", "quick", "-o", tmp_path / "o.jpg")
    assert code != 0
    line = _one_line(err)
    assert f"as {str(dtype).removeprefix('torch.')}" in line and "holds only float32" in line


# -- 10: planted metadata cannot break listing ---------------------------------------------

def test_deeply_nested_training_metadata_does_not_break_styles_list(
        styles: Path) -> None:
    preset = _preset()
    _write_network(styles / "quick" / PRESET_NETWORK_FILE, preset, _tensors(preset),
                   training="[" * 100_000)
    for args in (("styles", "list"), ("styles", "list", "--json"), ("styles", "show", "quick")):
        code, out, err = _cli(*args)
        assert code == 0, err
        assert "quick" in out


# -- 11: error lines stay short --------------------------------------------------------------

def test_a_huge_config_makes_a_short_error_line(tmp_path: Path, styles: Path) -> None:
    preset = _preset()
    path = styles / "quick" / PRESET_NETWORK_FILE
    _write_network(path, preset, _tensors(preset))
    config = {**network_config(preset.settings).as_dict(), "dilations": [1] * 150_000}
    tensors = safetensors.torch.load(path.read_bytes())
    meta = safetensors.safe_open(str(path), "pt").metadata()
    path.write_bytes(safetensors.torch.save(tensors, metadata={**meta,
                                                               "config": json.dumps(config)}))
    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 48), (120, 80, 40)).save(photo)
    code, _, err = _cli("image", photo, "--style", "quick", "-o", tmp_path / "o.jpg")
    assert code != 0
    assert len(_one_line(err)) <= MAX_MESSAGE + 20
    assert len(err) < 4 * MAX_MESSAGE


# -- 12: explain is bounded --------------------------------------------------------------------

def test_explain_does_not_hash_a_huge_file_a_record_names(
        tmp_path: Path, styles: Path, cache: Path) -> None:
    from support.engines import train_tiny_network

    from pipeline.store import records

    preset = _preset()
    train_tiny_network(preset, cache_paths(cache, network_key(preset))[0])
    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 48), (120, 80, 40)).save(photo)
    out = tmp_path / "o.png"
    code, _, err = _cli("image", photo, "--style", "quick", "-o", out)
    assert code == 0, err
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as fh:
        fh.truncate(8 << 30)  # sparse: 8 GiB that take no disk
    path = records.record_path(out)
    data = json.loads(path.read_text())
    data["input"] = str(huge)
    path.write_text(json.dumps(data))
    start = time.monotonic()
    code, _, err = _cli("explain", out)
    assert time.monotonic() - start < 5
    assert code == 0 and "larger than a photo may be; it was not read" in err
