"""`stylize image`: the happy path and every error a person can make."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()


def _invoke(*args: str, styles: Path | None = None) -> tuple[int, str, str]:
    env = {"STYLIZE_STYLES_PATH": str(styles)} if styles else {}
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_image_writes_the_requested_size(photo: Path, fast_preset_dir: Path,
                                         tmp_path: Path) -> None:
    out = tmp_path / "result.png"
    code, _, err = _invoke("image", str(photo), "--style", "fast", "-o", str(out), "--size", "80",
                           styles=fast_preset_dir)
    assert code == 0, err
    with Image.open(out) as img:
        assert img.size == (80, 53) and img.format == "PNG"
    assert "wrote" in err and "Traceback" not in err


def test_image_with_a_painting_path_and_overrides(photo: Path, fast_preset_dir: Path,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "r.jpg"
    code, _, err = _invoke("image", str(photo), "--style", str(fast_preset_dir / "fast" /
                                                                "paint.png"),
                           "-o", str(out), "--size", "48", "--steps", "3,2", "--seed", "3",
                           "--device", "cpu", "--precision", "fp32", "-q")
    assert code == 0, err
    assert Image.open(out).size == (48, 32)
    assert err == ""  # quiet means quiet


def test_set_reaches_every_knob_and_named_options_win(photo: Path, fast_preset_dir: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "r.png"
    code, _, err = _invoke("image", str(photo), "--style", "fast", "-o", str(out), "-q",
                           "--set", "size=200", "--size", "40", "--set", "min_side=24",
                           "--set", "style_layers={relu1_1: 1, relu2_1: 2}",
                           "--set", "pooling=avg", styles=fast_preset_dir)
    assert code == 0, err
    assert Image.open(out).size == (40, 27)  # --size beat --set size=200


@pytest.mark.parametrize("args,message,code", [
    (["image", "{missing}", "--style", "fast"], "photo not found", 2),
    (["image", "{photo}", "--style", "stary-night"], "unknown style 'stary-night'; known:", 2),
    (["image", "{photo}", "--style", "nowhere/painting.jpg"], "style image not found", 2),
    (["image", "{photo}", "--style", "fast", "-o", "{tmp}/x.gif"], "cannot tell the format", 2),
    (["image", "{photo}", "--style", "fast", "--size", "3"], "size", 2),
    (["image", "{photo}", "--style", "fast", "--steps", "a,b"], "--steps takes", 2),
    (["image", "{photo}", "--style", "fast", "--device", "tpu"], "device", 2),
    (["image", "{photo}", "--style", "fast", "--device", "cuda"], "no CUDA device", 2),
    (["image", "{photo}", "--style", "fast", "-o", "{photo}"], "would overwrite the photo", 2),
    (["image", "{junk}", "--style", "fast", "-o", "{tmp}/o.jpg"], "junk.jpg", 1),
    (["image", "{photo}", "--style", "fast", "--set", "stlye_weight=3"],
     "unknown setting 'stlye_weight'", 2),
    (["image", "{photo}", "--style", "fast", "--set", "min_side"], "--set takes KEY=VALUE", 2),
    (["image", "{photo}", "--style", "fast", "--set", "min_side=4"], "min_side", 2),
    # A knob without an option of its own takes effect through --set: this photo is
    # larger than the limit it sets, so it is refused before any work.
    (["image", "{photo}", "--style", "fast", "--set", "max_pixels=100", "-o", "{tmp}/o.jpg"],
     "too large", 1),
])
def test_errors_are_one_line_without_traceback(args: list[str], message: str, code: int,
                                               photo: Path, fast_preset_dir: Path,
                                               tmp_path: Path) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_text("this is not a picture")
    values = {"missing": str(tmp_path / "nope.jpg"), "photo": str(photo), "tmp": str(tmp_path),
              "junk": str(junk)}
    status, _, err = _invoke(*[a.format(**values) for a in args], styles=fast_preset_dir)
    if "cuda" in args and status == 0:  # pragma: no cover - a machine with a GPU
        pytest.skip("CUDA is available here")
    assert status == code, err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.usefixtures("one_thread")
def test_strength_mixes_the_photo_back_and_is_in_the_key(photo: Path, fast_preset_dir: Path,
                                                         tmp_path: Path) -> None:
    """``--strength`` 0 gives the photo (at the output size), 1 the stylized picture, and
    anything between their mix; it is recorded, and part of the key (issue 28)."""
    import numpy as np

    from pipeline.images import resized
    from pipeline.store import records

    def made(strength: str) -> tuple[np.ndarray, records.Record]:
        out = tmp_path / f"s{strength}.png"
        code, _, err = _invoke("image", str(photo), "--style", "fast", "-o", str(out), "-q",
                               "--strength", strength, styles=fast_preset_dir)
        assert code == 0, err
        rec = records.read_record(out)
        assert rec is not None
        return np.asarray(Image.open(out).convert("RGB"), dtype=np.int16), rec

    full, full_rec = made("1")
    none, none_rec = made("0")
    half, half_rec = made("0.5")
    source = np.asarray(resized(Image.open(photo).convert("RGB"), full.shape[1],
                                full.shape[0]), dtype=np.int16)
    assert np.abs(none - source).max() <= 1
    assert np.abs(half - (full + source) / 2).max() <= 1
    assert np.abs(full - source).mean() > 10  # the style is there at 1
    assert len({full_rec.key, none_rec.key, half_rec.key}) == 3
    assert half_rec.made["settings"]["strength"] == 0.5  # type: ignore[index]
    code, _, err = _invoke("image", str(photo), "--style", "fast", "-o",
                           str(tmp_path / "x.png"), "--strength", "1.5",
                           styles=fast_preset_dir)
    assert code == 2 and "strength" in err
