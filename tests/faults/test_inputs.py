"""Odd and hostile inputs, end to end through ``stylize run`` and ``stylize image``.

One batch run holds every input at once (the odd-but-good ones must be stylized,
the bad ones refused with their category, exit status 3); ``stylize image`` then
takes each input on its own.  The loader's own unit tests are in tests/test_images.py.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from faults import inputs
from faults.helpers import cli, digests, temp_files, write_manifest
from pipeline.config.naming import OUTPUT_SUFFIXES as SUFFIXES
from pipeline.config.naming import output_format
from pipeline.images import display_name

pytestmark = pytest.mark.timeout(180)

GOOD_NAMES = [c.name for c in inputs.GOOD]


def _columns(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=float).mean(axis=(0, 2))


def _rgb_mean(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=float).mean(axis=(0, 1))


def _alpha(img: Image.Image) -> np.ndarray:
    assert img.mode in ("RGBA", "LA"), f"alpha was lost: {img.mode}"
    return np.asarray(img.getchannel("A"), dtype=float)


def _left_clear_right_opaque(img: Image.Image) -> None:
    alpha = _alpha(img)
    width = alpha.shape[1]
    assert alpha[:, : width // 2 - 3].max() == 0
    assert alpha[:, width // 2 + 3:].min() == 255


def _red_first_frame(img: Image.Image) -> None:
    r, _g, b = _rgb_mean(img)
    assert r > b + 60, f"not the first (red) frame: mean {r:.0f} red, {b:.0f} blue"


def _gradient_kept(img: Image.Image) -> None:
    cols = _columns(img)
    assert np.corrcoef(np.arange(cols.size), cols)[0, 1] > 0.95, cols.round()
    assert cols[-4:].mean() - cols[:4].mean() > 150, "the ramp's range was squashed"


def _red_ink_stays_red(img: Image.Image) -> None:
    r, g, b = _rgb_mean(img)
    assert r > g + 40 and r > b + 40, f"CMYK came out {r:.0f},{g:.0f},{b:.0f}"


def _alpha_ramp_kept(img: Image.Image) -> None:
    alpha = _alpha(img).mean(axis=1)  # the mask is a top-to-bottom ramp
    assert alpha[:4].mean() < 40 and alpha[-4:].mean() > 215, alpha.round()


def _opaque(img: Image.Image) -> None:
    assert img.mode == "RGB", f"unexpected mode {img.mode}"


#: Output size (w, h) and the check of what must survive, per good input.
EXPECT: dict[str, tuple[tuple[int, int], Callable[[Image.Image], None]]] = {
    "exif-portrait.jpg": ((32, 48), _opaque),  # stored 60x40 landscape, EXIF says portrait
    "icc-wide.jpg": ((48, 36), _opaque),
    "cmyk.jpg": ((48, 36), _red_ink_stays_red),
    "palette.png": ((48, 36), _opaque),
    "palette-transparent.png": ((48, 36), _left_clear_right_opaque),
    "grey.png": ((48, 36), _opaque),
    "grey-alpha.png": ((48, 36), _alpha_ramp_kept),
    "bilevel.png": ((48, 36), _opaque),
    "ramp16.png": ((48, 24), _gradient_kept),
    "rgba.png": ((48, 36), _left_clear_right_opaque),
    "rgba.webp": ((48, 36), _left_clear_right_opaque),
    "animated.gif": ((48, 36), _red_first_frame),
    "animated.webp": ((48, 36), _red_first_frame),
    "pages.tif": ((48, 36), _red_first_frame),
    "plain.webp": ((48, 36), _opaque),
    "plain.tiff": ((48, 36), _opaque),
    "plain.bmp": ((48, 36), _opaque),
    "large.jpg": ((48, 36), _opaque),
    "one-pixel.png": ((48, 48), _opaque),  # enlarged to the size setting
    "three-pixels.png": ((48, 48), _opaque),
}
assert set(EXPECT) == set(GOOD_NAMES)


def check_output(name: str, out: Path) -> None:
    size, check = EXPECT.get(name, ((48, 32), _opaque))  # NAMES are 36x24 photos
    with Image.open(out) as img:
        img.load()  # a truncated file fails here
        formats = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF"}
        expected_format = formats[out.suffix]
        assert img.format == expected_format
        assert img.size == size, f"{name}: {img.size}"
        check(img)


def _suffix(name: str) -> str:
    return SUFFIXES[output_format("same", Path(name))]


# --------------------------------------------------------------------------------------
# stylize run: everything in one batch


@pytest.fixture
def batch(tmp_path: Path, styles: Path) -> Path:
    """A manifest of three jobs over every input the suite knows; returns its path."""
    photos = tmp_path / "photos"
    inputs.build_all(photos, inputs.GOOD + inputs.BAD)
    inputs.build_names(photos)
    outside = tmp_path / "outside"
    outside.mkdir()
    inputs.plain_png(outside / "target.png")
    (photos / "escape.png").symlink_to(outside / "target.png")
    (tmp_path / "follow").mkdir()
    (tmp_path / "follow" / "escape.png").symlink_to(outside / "target.png")
    (tmp_path / "limited").mkdir()
    inputs.plain_png(tmp_path / "limited" / "medium.png")  # 48x32 = 1536 pixels
    return write_manifest(tmp_path / "jobs.yaml", [
        {"name": "all", "input": "photos", "styles": ["tiny"], "output": "out/all",
         "format": "same"},
        {"name": "follow", "input": "follow", "styles": ["tiny"], "output": "out/follow",
         "follow_symlinks": True},
        {"name": "limited", "input": "limited", "styles": ["tiny"], "output": "out/limited",
         "max_pixels": 1000},
    ])


def test_run_stylizes_the_odd_refuses_the_bad_and_reports_each(batch: Path,
                                                               tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    res = cli("run", batch, "--json", "--report", report_file)
    assert res.code == 3, res.err
    assert "Traceback" not in res.err
    report = res.report  # strict UTF-8 and strict JSON, undecodable names included
    assert json.loads(report_file.read_bytes().decode("utf-8")) == report
    rows = {(t["job"], os.fsencode(t["input"]).rsplit(b"/", 1)[-1]): t for t in report["tasks"]}

    # Every bad input: refused with its category and a one-line message naming it.
    for case in inputs.BAD:
        row = rows["all", os.fsencode(case.name)]
        assert (row["status"], row["category"]) == ("failed", case.category), row
        assert row["reason"].startswith(f"{case.name}: ") and "\n" not in row["reason"], row
    if not inputs.HEIF_DECODER:
        assert rows["all", b"iphone.heic"]["reason"].endswith('pip install "stylize-photos[heif]"')
    # Pillow could read it, but PCX is not a photo format the tool accepts.
    assert "supported format" in rows["all", b"pcx-named.jpg"]["reason"]
    for name in (b"huge-header.png", b"huge-header.jpg"):
        assert rows["all", name]["seconds"] < 1.0, "refused from the header alone"
    escape = rows["all", b"escape.png"]
    assert (escape["status"], escape["category"]) == ("failed", "outside_input")
    assert rows["follow", b"escape.png"]["status"] == "done"  # follow_symlinks: true
    limited = rows["limited", b"medium.png"]
    assert (limited["status"], limited["category"]) == ("failed", "too_large")
    assert "the limit is 1000 pixels" in limited["reason"]

    # Every odd but good input: stylized, with what matters kept.
    out = tmp_path / "out" / "all"
    for name in GOOD_NAMES:
        assert rows["all", name.encode()]["status"] == "done", rows["all", name.encode()]
        check_output(name, out / f"{name}.tiny{_suffix(name)}")
    for raw in inputs.NAMES:
        name = inputs.fs_name(raw)
        assert rows["all", os.fsencode(name)]["status"] == "done"
        check_output(name, out / f"{name}.tiny.png")
    # One output per input: NFC and NFD spellings of "café" stay two files.
    made = sorted(p.name for p in out.iterdir() if p.is_file())
    assert len(made) == len(inputs.GOOD) + len(inputs.NAMES) == len(set(made))
    summary = report["summary"]
    assert summary["done"] == len(inputs.GOOD) + len(inputs.NAMES) + 1
    assert summary["failed"] == len(inputs.BAD) + 2
    assert summary["exit_code"] == 3
    # Records are valid UTF-8 JSON that name the input exactly, odd bytes included.
    for record in (out / ".stylize").glob("*.json"):
        data = json.loads(record.read_bytes().decode("utf-8"))
        assert Path(data["input"]).exists()
    assert not temp_files(tmp_path / "out")

    # A rerun redoes nothing that worked and refuses the same inputs again.
    before = digests(tmp_path / "out")
    again = cli("run", batch, "--json")
    # The bad photos fail again, but the good ones are done: "some failed" (README).
    assert again.code == 3, again.err
    assert again.report["summary"]["done"] == 0
    assert again.report["summary"]["skipped"] == summary["done"]
    assert again.report["summary"]["failed"] == summary["failed"]
    assert digests(tmp_path / "out") == before


def test_run_log_lines_stay_valid_utf8(tmp_path: Path, styles: Path) -> None:
    photos = tmp_path / "photos"
    made = inputs.build_names(photos)
    (photos / os.fsdecode(b"broken-\xff.jpg")).write_bytes(b"not a picture")
    manifest = write_manifest(tmp_path / "jobs.yaml", [
        {"name": "names", "input": "photos", "styles": ["tiny"], "output": "out"}])
    res = cli("run", manifest)  # the plain log a cron mail gets
    assert res.code == 3
    text = res.stdout.decode("utf-8") + res.err  # strict: raises on invalid UTF-8
    assert "broken-\\xff.jpg: not an image" in text
    assert len([line for line in text.splitlines() if line.startswith("done ")]) == len(made)


# --------------------------------------------------------------------------------------
# stylize image: one input at a time


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_image_stylizes_each_odd_input(name: str, tmp_path: Path, styles: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    case = next(c for c in inputs.GOOD if c.name == name)
    photo = tmp_path / name
    case.build(photo)
    drafted: list[tuple[int, int]] = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, *args: object, **kwargs: object) -> object:
        result = original_draft(self, *args, **kwargs)  # type: ignore[arg-type]
        drafted.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    out = tmp_path / f"result{_suffix(name)}"
    res = cli("image", photo, "-s", "tiny", "-o", out, "-q",
              env={"STYLIZE_STYLES_PATH": str(styles)})
    assert res.code == 0, res.err
    assert res.err == ""
    check_output(name, out)
    if name == "large.jpg":  # 1600x1200: libjpeg decoded it at 1/8 scale straight away
        assert drafted and max(drafted[-1]) <= 200, drafted


@pytest.mark.parametrize("raw", inputs.NAMES, ids=[ascii(n) for n in inputs.NAMES])
def test_image_takes_awkward_names(raw: str | bytes, tmp_path: Path, styles: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    photos = tmp_path / "photos"
    photo = inputs.build_names(photos)[raw]
    # Relative to the current folder, so that a leading dash really leads the argument.
    monkeypatch.chdir(photos)
    res = cli("image", "-s", "tiny", "-o", "../result.png", "--", photo.name,
              env={"STYLIZE_STYLES_PATH": str(styles)})
    assert res.code == 0, res.err
    assert "wrote ../result.png" in res.err  # and the log line is valid UTF-8
    check_output(photo.name, tmp_path / "result.png")


def test_image_jpeg_output_drops_alpha_png_keeps_it(tmp_path: Path, styles: Path) -> None:
    photo = tmp_path / "rgba.png"
    inputs.rgba_png(photo)
    env = {"STYLIZE_STYLES_PATH": str(styles)}
    assert cli("image", photo, "-s", "tiny", "-o", tmp_path / "a.png", "-q", env=env).code == 0
    assert cli("image", photo, "-s", "tiny", "-o", tmp_path / "a.jpg", "-q", env=env).code == 0
    with Image.open(tmp_path / "a.png") as png, Image.open(tmp_path / "a.jpg") as jpeg:
        _left_clear_right_opaque(png)
        assert jpeg.mode == "RGB"  # JPEG has no alpha channel: the mask is dropped
        # The colours under the transparent half are the photo's stylized colours.
        assert _rgb_mean(jpeg).min() > 20


@pytest.mark.parametrize("case", inputs.BAD, ids=[c.name for c in inputs.BAD])
def test_image_refuses_each_bad_input_in_one_line(case: inputs.Case, tmp_path: Path,
                                                  styles: Path) -> None:
    photo = tmp_path / case.name
    case.build(photo)
    start = time.perf_counter()
    res = cli("image", photo, "-s", "tiny", "-o", tmp_path / "result.png",
              env={"STYLIZE_STYLES_PATH": str(styles)})
    assert res.code == 1, res.err
    assert res.err.startswith(f"error: {display_name(photo)}: "), res.err
    assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err, res.err
    assert not (tmp_path / "result.png").exists() and not temp_files(tmp_path)
    if case.name == "pcx-named.jpg":  # Pillow reads PCX; the tool's format list does not
        assert "not an image in a supported format" in res.err, res.err
    if case.category == "too_large":
        assert time.perf_counter() - start < 5.0  # nothing was decoded
