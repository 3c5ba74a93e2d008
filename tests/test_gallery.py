"""`stylize gallery`: the HTML review page, checked as markup and in a real browser."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image
from support.images import SHARED_STYLE, gradient_photo
from support.presets import FAST, write_preset
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config.manifest import load_manifest
from pipeline.review.gallery import build_gallery

pytestmark = pytest.mark.timeout(300)
runner = CliRunner()

ODD = "<b>&\"'"  # a name that must be escaped in text, in attributes and in URLs
#: The batch below: job "night" ran (2 photos x 2 styles), then got two more photos;
#: job "later" never ran.
NIGHT_PHOTOS = [f"{ODD}.png", "a.png", "broken.jpg", "c.jpg"]


def _make_batch(root: Path) -> Path:
    """A manifest in ``root``: the 'fast' user preset (as conftest's fast_preset_dir builds
    it) plus a painting given by path; returns the folder holding the preset."""
    styles = root / "user-styles"
    write_preset(styles, "fast", FAST, description="tiny test preset", painting_name="paint.png")

    (root / "photos").mkdir()
    (root / "later").mkdir()
    (root / "paintings").mkdir()
    gradient_photo(seed=1).save(root / "photos" / "a.png")
    # A portrait RGBA photo whose left third is transparent.
    rgba = np.array(gradient_photo(60, 80, seed=2).convert("RGBA"))
    rgba[:, :20, 3] = 0
    Image.fromarray(rgba).save(root / "photos" / f"{ODD}.png")
    gradient_photo(seed=3).convert("L").save(root / "later" / "grey.jpg")
    Image.open(SHARED_STYLE).convert("RGB").resize((90, 60)).save(
        root / "paintings" / f"{ODD}.jpg")
    quoted_style = "'paintings/" + ODD.replace("'", "''") + ".jpg'"
    fast = {**FAST, "steps": [4, 2]}
    lines = ["defaults:", *[f"  {k}: {v}" for k, v in fast.items()], "jobs:",
             "  - name: night", "    input: photos", f"    styles: [fast, {quoted_style}]",
             "    output: out/night",
             "  - name: later", "    input: later", "    styles: [fast]", "    output: out/later"]
    (root / "jobs.yaml").write_text("\n".join(lines) + "\n")
    return styles


@pytest.fixture(scope="module")
def batch_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real `stylize run` for the whole module (a run costs tens of seconds on a CPU)."""
    root = tmp_path_factory.mktemp("batch")
    styles = _make_batch(root)
    env = {"STYLIZE_STYLES_PATH": str(styles),
           "STYLIZE_CACHE_DIR": str(tmp_path_factory.mktemp("batch-cache"))}
    result = runner.invoke(app, ["run", str(root / "jobs.yaml"), "--job", "night", "-q"],
                           env=env)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert len(list((root / "out" / "night").glob("*.jpg"))) == 4
    # New arrivals after the run: one usable, one that is not an image at all.
    gradient_photo(seed=5).convert("CMYK").save(root / "photos" / "c.jpg")
    (root / "photos" / "broken.jpg").write_text("this is not a picture")
    return root


@pytest.fixture
def batch(batch_master: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the batch (mtimes kept, so the records still vouch for the outputs)."""
    root = tmp_path / "batch"
    shutil.copytree(batch_master, root, symlinks=True)
    monkeypatch.setenv("STYLIZE_STYLES_PATH", str(root / "user-styles"))
    return root


class _Page(HTMLParser):
    """The parts of the page the tests look at."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.sections: list[str] = []
        self.h2: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "section" and "job" in a.get("class", "").split():
            self.sections.append(a.get("id", ""))
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_h2:
            self.h2.append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag]

    def with_class(self, cls: str) -> list[dict[str, str]]:
        return [a for _, a in self.tags if cls in a.get("class", "").split()]


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def _target(index: Path, url: str) -> Path:
    assert "://" not in url and not url.startswith(("/", "//")), url
    return index.parent / unquote(url)


def _check_page(index: Path, page: _Page) -> None:
    """Structure shared by the markup test and the browser's DOM."""
    assert page.sections == ["job-night", "job-later"]
    assert page.h2 == ["night", "later"]
    imgs = page.all("img")
    # night: 3 photos that load + 2x2 outputs; later: 1 photo, nothing done.
    assert len(imgs) == 3 + 4 + 1
    thumbs = sorted((index.parent / "thumbs").iterdir())
    assert len(thumbs) == 8 and len({i["src"] for i in imgs}) == 8
    for img in imgs:
        assert img["src"].startswith("thumbs/") and img["alt"]
        assert _target(index, img["src"]).is_file()
    links = [a["href"] for a in page.all("a") if not a["href"].startswith("#")]
    for href in links:
        assert _target(index, href).exists(), href
    outputs = {_target(index, h).resolve() for h in links}
    assert set((index.parent.parent / "out" / "night").glob("*.jpg")) <= outputs
    assert len(page.with_class("after")) == 2 * 4 + 1
    assert [f["class"] for f in page.with_class("after")].count("after not-done") == 2 * 2 + 1
    text = "".join(page.text)
    assert f"{ODD}.png" in text and f"{ODD}.png" in [i["alt"] for i in imgs]
    assert "cannot show: broken.jpg: not an image" in text
    assert "b" not in [t for t, _ in page.tags]  # the odd name never became a tag


def test_gallery_command_writes_a_self_contained_page(batch: Path) -> None:
    result = runner.invoke(app, ["gallery", str(batch / "jobs.yaml")])
    assert result.exit_code == 0, result.stderr
    index = batch / "gallery" / "index.html"
    assert result.stdout.strip().splitlines()[-1] == str(index)
    assert "broken.jpg" in result.stderr and "Traceback" not in result.stderr
    assert "4 done" in result.stderr and "5 not done" in result.stderr

    raw = index.read_text(encoding="utf-8")
    assert ODD not in raw  # escaped everywhere...
    assert "&lt;b&gt;&amp;&quot;&#x27;.png" in raw  # ...in text and attributes
    assert "%3Cb%3E%26%22%27.png.%3Cb%3E%26%22%27.jpg" in raw  # ...and in links
    assert "<script" not in raw and "http://" not in raw and "https://" not in raw
    assert "<style>" in raw
    _check_page(index, _parse(index))

    # Full-size links point at the outputs and the originals, relative to the page.
    page = _parse(index)
    hrefs = {unquote(a["href"]) for a in page.all("a")}
    assert f"../out/night/{ODD}.png.{ODD}.jpg" in hrefs
    assert f"../photos/{ODD}.png" in hrefs


def test_gallery_selected_jobs_output_folder_and_open(batch: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import webbrowser

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    out = tmp_path / "review"
    result = runner.invoke(app, ["gallery", str(batch / "jobs.yaml"), "--job", "later",
                                 "--output", str(out), "--open"])
    assert result.exit_code == 0, result.stderr
    assert opened == [(out / "index.html").as_uri()]
    page = _parse(out / "index.html")
    assert page.sections == ["job-later"]
    assert len(page.all("img")) == 1
    for a in page.all("a"):
        if not a["href"].startswith("#"):
            assert (out / unquote(a["href"])).exists()


def test_rerun_reuses_thumbnails_and_refreshes_changed_ones(batch: Path, tmp_path: Path) -> None:
    manifest = load_manifest(batch / "jobs.yaml")
    out = tmp_path / "g"
    first = build_gallery(manifest, out)
    assert (first.thumbs_written, first.thumbs_reused) == (8, 0)
    assert (first.done, first.outdated, first.not_done, first.photos) == (4, 0, 5, 5)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "thumbs").iterdir()}

    again = build_gallery(manifest, out)
    assert (again.thumbs_written, again.thumbs_reused, again.thumbs_removed) == (0, 8, 0)
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (out / "thumbs").iterdir()}

    # An output rewritten behind the records' back: new thumbnail, old one gone, "outdated".
    changed = batch / "out" / "night" / "a.png.fast.jpg"
    Image.open(changed).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(changed)
    third = build_gallery(manifest, out)
    assert (third.thumbs_written, third.thumbs_reused, third.thumbs_removed) == (1, 7, 1)
    assert (third.done, third.outdated) == (3, 1)
    assert len(list((out / "thumbs").iterdir())) == 8
    assert "outdated" in (out / "index.html").read_text(encoding="utf-8")


def test_thumbnails_of_any_mode_are_small_rgb_jpegs(batch: Path, tmp_path: Path) -> None:
    result = build_gallery(load_manifest(batch / "jobs.yaml"), tmp_path / "g", thumb_size=40)
    assert result.problems == ["broken.jpg: not an image (it holds plain text)"]
    page = _parse(result.index)
    for img in page.all("img"):
        with Image.open(tmp_path / "g" / img["src"]) as thumb:
            assert thumb.format == "JPEG" and thumb.mode == "RGB"
            assert max(thumb.size) == 40
            assert (thumb.width, thumb.height) == (int(img["width"]), int(img["height"]))
    # The transparent third of the RGBA photo is drawn as a grey checkerboard.
    odd = next(i for i in page.all("img") if i["alt"] == f"{ODD}.png")
    pixels = np.asarray(Image.open(tmp_path / "g" / odd["src"]), dtype=int)
    left = pixels[:, :5]  # the transparent part is 13 of 30 columns wide
    assert np.abs(left[..., 0] - left[..., 2]).max() < 12  # grey
    assert 55 < left.mean() < 105 and left.std() > 5  # two shades, not flat black


def test_gallery_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    gradient_photo().save(tmp_path / "photos" / "p.png")
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n  - {name: all, input: ., recursive: true, styles: [starry-night], "
        "output: out}\n")
    cases = [
        (["gallery", str(tmp_path / "nope.yaml")], "manifest not found"),
        (["gallery", str(tmp_path / "jobs.yaml"), "-o", str(tmp_path / "x"), "--job", "day"],
         "no job named 'day'"),
        # The default folder lies inside a recursive job's input: its thumbnails would
        # become photos of the next run.
        (["gallery", str(tmp_path / "jobs.yaml")], "choose another --output"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "gallery").exists()


# -- a real browser -------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")


def _chromium(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
           f"--user-data-dir={home}", *args]
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env,
                          check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                    "(apt-get install -y --no-install-recommends chromium)")
def test_the_page_renders_in_a_real_browser(batch: Path, tmp_path: Path) -> None:
    result = build_gallery(load_manifest(batch / "jobs.yaml"), batch / "gallery")
    url = result.index.as_uri()

    shot = tmp_path / "shot.png"
    run = _chromium(f"--screenshot={shot}", "--window-size=1200,900", url,
                    home=tmp_path / "chromium")
    assert shot.is_file(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (900, 1200)
    assert pixels.std() > 10  # not a blank page
    assert pixels.mean() < 100  # the dark theme was applied: the CSS is inline and works
    # Saturated pixels come only from the thumbnails (the page itself is neutral grey),
    # so the pictures were decoded and drawn, not shown as broken-image icons.
    chroma = pixels.max(axis=2) - pixels.min(axis=2)
    assert (chroma > 60).mean() > 0.02

    dom = _chromium("--dump-dom", url, home=tmp_path / "chromium")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _Page()
    page.feed(dom.stdout)
    _check_page(result.index, page)
