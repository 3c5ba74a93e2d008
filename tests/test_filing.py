"""Outputs a photographer can file, end to end: `stylize image`, `run` and `watch` alike.

A camera-like JPEG (EXIF date, camera, GPS, orientation 6, a thumbnail, a wide-gamut
profile, 300 dpi) goes through the real commands; the outputs are read back with
Pillow alone.  (tests/test_metadata.py covers every format and policy at the encoder.)
"""

from __future__ import annotations

import io
import os
import stat
import textwrap
import time
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageCms
from test_metadata import DATE, camera_jpeg
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.watch import InboxWatcher, WatchOptions

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("one_thread")]

GPS, EXIF = ExifTags.IFD.GPSInfo, ExifTags.IFD.Exif


def _check(output: Path, *, gps: bool = True) -> None:
    with Image.open(output) as img:
        exif = img.getexif()
        assert exif.get_ifd(EXIF).get(0x9003) == DATE  # DateTimeOriginal
        assert (exif.get(0x010F), exif.get(0x0110)) == ("Canon", "EOS R5")
        assert exif.get(0x0112) == 1  # upright pixels: Orientation 1
        assert img.height > img.width  # the photo had orientation 6: portrait
        assert exif.get(0x0131, "").startswith("stylize ")
        assert bool(exif.get_ifd(GPS)) is gps
        profile = ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))
        assert "sRGB" in ImageCms.getProfileDescription(profile)
        # WebP has no dpi field of its own: the EXIF resolution says it there.
        dpi = img.info.get("dpi", (exif.get(0x011A, 0),))[0]
        assert round(float(dpi)) == 300
        assert img.getexif().get_ifd(ExifTags.IFD.IFD1) == {}  # no thumbnail of the photo
    assert stat.S_IMODE(output.stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _invoke(*args: str, styles: Path) -> None:
    result = CliRunner().invoke(app, list(args), env={"STYLIZE_STYLES_PATH": str(styles)})
    assert result.exit_code == 0, result.output


def test_image_keeps_the_photos_metadata(tmp_path: Path, fast_preset_dir: Path) -> None:
    photo = tmp_path / "camera.jpg"
    photo.write_bytes(camera_jpeg())
    _invoke("image", str(photo), "-s", "fast", "-o", str(tmp_path / "o.jpg"), "-q",
            styles=fast_preset_dir)
    _check(tmp_path / "o.jpg")
    _invoke("image", str(photo), "-s", "fast", "-o", str(tmp_path / "shared.png"), "-q",
            "--metadata", "no-location", styles=fast_preset_dir)
    _check(tmp_path / "shared.png", gps=False)


def test_run_and_watch_keep_the_photos_metadata(tmp_path: Path, fast_preset_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLIZE_STYLES_PATH", str(fast_preset_dir))
    for folder in ("photos", "inbox"):
        (tmp_path / folder).mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(camera_jpeg())
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent("""
        jobs:
          - {name: j, input: photos, styles: [fast], output: out, inbox: inbox, format: webp}
    """))
    _invoke("run", str(tmp_path / "jobs.yaml"), "-q", styles=fast_preset_dir)
    _check(tmp_path / "out" / "a.jpg.fast.webp")

    from pipeline.config.manifest import load_manifest

    job = load_manifest(tmp_path / "jobs.yaml").jobs[0]
    watcher = InboxWatcher([job], options=WatchOptions(settle=0.3, tick=0.05))
    watcher.start()
    try:
        (tmp_path / "inbox" / "b.jpg").write_bytes(camera_jpeg())
        deadline = time.monotonic() + 120
        while not (tmp_path / "inbox" / "done" / "b.jpg").exists():
            assert time.monotonic() < deadline, "the watcher never finished"
            time.sleep(0.1)
    finally:
        watcher.stop()
    _check(tmp_path / "out" / "inbox" / "b.jpg.fast.webp")
    error_modes = {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").rglob("*.json")}
    assert error_modes == {0o666 & ~_umask()}  # records too
