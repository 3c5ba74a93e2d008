"""``stylize explain``: the record says how a picture was made, and its command remakes it.

Real renders with the real weights at a tiny size on the CPU, where a fixed seed makes
the arithmetic repeat bit for bit: the command must give a byte-identical file.
"""

from __future__ import annotations

import os
import shlex
import textwrap
from pathlib import Path

import pytest
from support.images import gradient_photo
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.store import records

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("one_thread")]


def _invoke(*args: str, styles: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"STYLIZE_STYLES_PATH": str(styles)})
    return result.exit_code, result.stdout, result.stderr


def _remake(output: Path, styles: Path) -> Path:
    code, command, err = _invoke("explain", str(output), "--command", styles=styles)
    assert code == 0, err
    argv = shlex.split(command.strip())
    assert argv[:2] == ["stylize", "image"]
    again = Path(argv[argv.index("-o") + 1])
    code, _, err = _invoke(*argv[1:], "-q", styles=styles)
    assert code == 0, err
    return again


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_the_printed_command_makes_a_byte_identical_picture(
        tmp_path: Path, fast_preset_dir: Path, suffix: str) -> None:
    photo = tmp_path / "photo.png"
    gradient_photo(72, 48, seed=3).save(photo)
    out = tmp_path / "made" / f"cat{suffix}"
    code, _, err = _invoke("image", str(photo), "--style", "fast", "-o", str(out), "-q",
                           "--style-weight", "7", "--set", "tv_weight=2", "--seed", "4",
                           styles=fast_preset_dir)
    assert code == 0, err
    again = _remake(out, fast_preset_dir)
    assert again == out.with_name(f"cat.again{suffix}")
    assert again.read_bytes() == out.read_bytes()

    code, text, _ = _invoke("explain", str(out), styles=fast_preset_dir)
    assert code == 0
    rec = records.read_record(out)
    assert rec is not None and rec.made is not None
    for needle in (rec.input_digest, "fast", rec.made["weights_digest"], "cpu", "float32",
                   "--set style_weight=7.0", "--set tv_weight=2.0", "--set seed=4"):
        assert needle in text


def test_a_run_output_with_job_settings_is_remade_the_same(tmp_path: Path,
                                                           fast_preset_dir: Path) -> None:
    (tmp_path / "photos").mkdir()
    gradient_photo(64, 40, seed=5).save(tmp_path / "photos" / "p.png")
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent("""
        defaults: {content_weight: 2}
        jobs:
          - {name: a, input: photos, styles: [fast], output: out, format: png, seed: 9}
    """))
    code, _, err = _invoke("run", str(tmp_path / "jobs.yaml"), "-q", styles=fast_preset_dir)
    assert code == 0, err
    out = tmp_path / "out" / "p.png.fast.png"
    assert _remake(out, fast_preset_dir).read_bytes() == out.read_bytes()


def test_explain_says_what_changed_since(tmp_path: Path, fast_preset_dir: Path) -> None:
    photo = tmp_path / "photo.png"
    gradient_photo(64, 40, seed=1).save(photo)
    out = tmp_path / "o.png"
    assert _invoke("image", str(photo), "-s", "fast", "-o", str(out), "-q",
                   styles=fast_preset_dir)[0] == 0
    gradient_photo(64, 40, seed=2).save(photo)
    code, _, err = _invoke("explain", str(out), styles=fast_preset_dir)
    assert code == 0 and "has changed since" in err


def test_explain_without_a_record_is_one_line(tmp_path: Path, fast_preset_dir: Path) -> None:
    stranger = tmp_path / "x.jpg"
    gradient_photo().save(stranger)
    code, _, err = _invoke("explain", str(stranger), styles=fast_preset_dir)
    assert code == 2
    assert err.startswith("error: ") and "has no record" in err and len(err.splitlines()) == 1


def test_keep_mtime_gives_the_output_the_photo_time_and_stays_done(
        tmp_path: Path, fast_preset_dir: Path) -> None:
    (tmp_path / "photos").mkdir()
    photo = tmp_path / "photos" / "p.png"
    gradient_photo(64, 40).save(photo)
    os.utime(photo, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n  - {name: a, input: photos, styles: [fast], output: out, keep_mtime: true}\n")
    assert _invoke("run", str(tmp_path / "jobs.yaml"), "-q", styles=fast_preset_dir)[0] == 0
    out = tmp_path / "out" / "p.png.fast.jpg"
    assert out.stat().st_mtime_ns == 1_500_000_000_000_000_000
    code, plan, _ = _invoke("run", str(tmp_path / "jobs.yaml"), "--dry-run",
                            styles=fast_preset_dir)
    assert code == 0 and plan.splitlines()[-1] == "0 to do, 1 already done"


def test_the_record_names_the_machine_and_explain_warns_on_another_kind(
        tmp_path: Path, fast_preset_dir: Path) -> None:
    """Byte for byte holds for the same kind of machine: the record says which it was, and
    explain says when it runs on another (here: a record edited to name another CPU)."""
    import json

    import torch

    from pipeline.engine.device import float_signature

    photo = tmp_path / "photo.png"
    gradient_photo(64, 48, seed=1).save(photo)
    out = tmp_path / "made" / "cat.png"
    code, _, err = _invoke("image", str(photo), "--style", "fast", "-o", str(out), "-q",
                           styles=fast_preset_dir)
    assert code == 0, err
    rec = records.read_record(out)
    assert rec is not None and rec.made is not None
    assert rec.made["machine"] == float_signature(torch.device("cpu"))
    code, text, err = _invoke("explain", str(out), styles=fast_preset_dir)
    assert code == 0 and rec.made["machine"] in text and "last bits" not in err

    path = records.record_path(out)
    data = json.loads(path.read_text())
    data["made"]["machine"] = "cpu GenuineIntel AVX512+amx, 8 threads, torch 2.13.0+cpu"
    path.write_text(json.dumps(data))
    code, _, err = _invoke("explain", str(out), styles=fast_preset_dir)
    assert code == 0
    assert "made on cpu GenuineIntel AVX512+amx, 8 threads" in err
    assert "differ in their last bits" in err


def test_a_record_older_than_a_knob_is_remade_at_the_knobs_neutral_value(
        tmp_path: Path, fast_preset_dir: Path) -> None:
    """A record written before a knob existed does not name it: the picture was made as
    the knob's neutral value makes it, so the command must pin that, not today's default."""
    import json

    photo = tmp_path / "photo.png"
    gradient_photo(64, 40, seed=1).save(photo)
    out = tmp_path / "o.png"
    assert _invoke("image", str(photo), "-s", "fast", "-o", str(out), "-q",
                   styles=fast_preset_dir)[0] == 0
    code, command, _ = _invoke("explain", str(out), "--command", styles=fast_preset_dir)
    assert code == 0 and "warm_start" not in command and "network_paint_scale" not in command
    path = records.record_path(out)
    data = json.loads(path.read_text())
    del data["made"]["settings"]["warm_start"]  # True by default now; False before it existed
    del data["made"]["settings"]["network_paint_scale"]
    path.write_text(json.dumps(data))
    code, command, err = _invoke("explain", str(out), "--command", styles=fast_preset_dir)
    assert code == 0, err
    assert "--set warm_start=false" in command
    assert "--set network_paint_scale=1.0" in command
