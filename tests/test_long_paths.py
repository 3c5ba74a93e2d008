"""Paths the system refuses (a name over 255 bytes, a path over 4 KiB): that photo fails
alone, with a reason, and the run and the gallery go on (issue 22, item 10)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.images import gradient_photo
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config.naming import PATH_MAX, output_too_long
from pipeline.store.fsutil import sweep_temp_files

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("one_thread")]
runner = CliRunner()

DEFAULTS = "{size: 48, min_side: 24, steps: [4, 2], precision: fp32, device: cpu}"
SEGMENT = "d" * 50
#: A 254-byte UTF-8 photo name: it fits, but its output's name (plus the style) does not.
LONG_NAME = "é" * 125 + ".png"


def _deep_photo(photos: Path) -> Path:
    """A photo so deep that its input path fits in 4 KiB but its mirrored output does not.

    Made through descriptors, one level at a time: a path this long cannot be given to
    ``mkdir`` whole.
    """
    levels = (3900 - len(os.fsencode(photos))) // (len(SEGMENT) + 1)
    fd = os.open(photos, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir(SEGMENT, dir_fd=fd)
            child = os.open(SEGMENT, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        gradient_photo(64, 48).save(f"/proc/self/fd/{fd}/deep.png")
    finally:
        os.close(fd)
    return photos.joinpath(*[SEGMENT] * levels, "deep.png")


def _project(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    gradient_photo(64, 48, seed=1).save(photos / "ok.png")
    gradient_photo(64, 48, seed=2).save(photos / LONG_NAME)
    _deep_photo(photos)
    manifest = tmp_path / "jobs.yaml"
    # A long output folder name: the output paths pass 4 KiB where the inputs do not.
    manifest.write_text(f"defaults: {DEFAULTS}\njobs:\n  - {{name: main, input: photos, "
                        f"recursive: true, styles: [udnie], output: {'o' * 250}}}\n")
    return manifest


def test_sweeping_a_folder_whose_path_is_too_long_is_not_an_error(tmp_path: Path) -> None:
    too_long = tmp_path.joinpath(*["x" * 200] * 25)
    assert len(os.fsencode(too_long)) > PATH_MAX
    assert sweep_temp_files(too_long) == 0
    assert sweep_temp_files(tmp_path / ("y" * 300)) == 0  # one name over 255 bytes


def test_output_too_long_counts_the_record_beside_the_output(tmp_path: Path) -> None:
    # The output's name fits in 255 bytes; its record's (name + ".json") does not.
    assert output_too_long(tmp_path / ("a" * 252)) == "File name too long"
    assert output_too_long(tmp_path / ("a" * 250)) is None
    deep = tmp_path.joinpath(*["b" * 100] * 41, "c.jpg")
    assert "bytes long; the system takes at most 4095" in (output_too_long(deep) or "")


def test_a_photo_whose_output_path_is_too_long_fails_alone(tmp_path: Path) -> None:
    manifest = _project(tmp_path)
    result = runner.invoke(app, ["run", str(manifest), "--json"])
    assert result.exit_code == 3, result.output
    rows = {Path(t["input"]).name: t for t in json.loads(result.stdout)["tasks"]}
    assert rows["ok.png"]["status"] == "done"
    for name in ("deep.png", LONG_NAME):
        assert (rows[name]["status"], rows[name]["category"]) == ("failed", "unwritable")
        assert "cannot be written (" in rows[name]["reason"]
    assert "bytes long; the system takes at most 4095" in rows["deep.png"]["reason"]
    assert rows[LONG_NAME]["reason"].endswith("cannot be written (File name too long)")
    assert "Traceback" not in result.output

    # The gallery shows the two as not done, and the rest as it is.
    shown = runner.invoke(app, ["gallery", str(manifest)])
    assert shown.exit_code == 0, shown.output
    assert "3 photos in 1 jobs: 1 done, 2 not done" in shown.stderr
    assert (tmp_path / "gallery" / "index.html").is_file()
