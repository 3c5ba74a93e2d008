"""Training as a job (issue 21): ensure_network, `stylize train`, its view, `styles list/show`.

Tiny: photos at the area of a 32 px square, one or two a step, a network 4 channels wide, a
few steps.  The faults a real process shows (a second trainer, kill -9, SIGTERM) are in
tests/faults/test_training.py.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from rich.console import Console
from support.images import gradient_photo
from support.presets import FAST, write_preset
from typer.testing import CliRunner

from pipeline.cli import app, common
from pipeline.config.styles import Preset, Registry
from pipeline.engine.network_file import read_network
from pipeline.engine.training import TrainProgress
from pipeline.errors import UsageError
from pipeline.store.fsutil import TEMP_PREFIX
from pipeline.training import job as train_job
from pipeline.training import networks
from pipeline.training.job import (
    MIN_PHOTOS,
    TrainStart,
    checkpoint_step,
    ensure_network,
    gather_photos,
)
from pipeline.ui.train_view import TrainView, duration

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("one_thread")]

#: FAST, and a network small and quick to train.
TRAIN = {**FAST, "train_size": 32, "network_width": 4, "train_batch": 2, "train_steps": 3}


@pytest.fixture
def styles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user style folder with the preset ``fast`` (Starry Night, tiny, quick to train)."""
    folder = write_preset(tmp_path / "styles", "fast", TRAIN,
                          description="tiny training preset", painting_name="paint.png")
    monkeypatch.setenv("STYLIZE_STYLES_PATH", str(folder.parent))
    return folder.parent


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return Path(os.environ["STYLIZE_CACHE_DIR"])


def _photos(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        path = folder / f"photo-{i}.{'png' if i % 2 else 'jpg'}"
        gradient_photo(64 + 8 * i, 48, seed=i).save(path)
        made.append(path)
    return made


def _preset(**settings: Any) -> Preset:
    preset = Registry.discover().resolve("fast")
    return preset.with_overrides(settings) if settings else preset


def _cli(*args: str | os.PathLike[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [os.fspath(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# -- ensure_network ------------------------------------------------------------------------


def test_trains_once_then_returns_the_same_network(tmp_path: Path, styles: Path,
                                                   cache: Path) -> None:
    preset = _preset()
    photos = _photos(tmp_path / "photos", 4)
    steps: list[TrainProgress] = []
    starts: list[TrainStart] = []
    first = ensure_network(preset, photos, cache, on_step=steps.append,
                           on_start=starts.append)
    assert first.trained and first.source == "cache" and first.steps == 3
    assert first.resumed_from == 0 and first.photos_used == 4 and first.photos_skipped == {}
    assert [p.step for p in steps] == [1, 2, 3]
    assert starts == [TrainStart("fast", first.key, 4, 4, {}, (), 3, 0,
                                 train_job.preview_path(first.path))]
    # The file: in the cache, checked when read, its metadata naming what decided it.
    net_path, ckpt, _ = networks.cache_paths(cache, networks.network_key(preset))
    assert first.path == net_path and checkpoint_step(ckpt) == 3
    loaded = read_network(net_path)
    assert loaded.digest == first.digest and loaded.config.width == 4
    assert loaded.metadata[networks.META_KEY] == first.key
    assert loaded.metadata[networks.META_STYLE] == "fast"
    training = json.loads(loaded.metadata["training"])
    assert {"steps": 3, "size": 32, "batch": 2, "seed": 0, "photos": 4}.items() <= training.items()
    ref = networks.find_network(preset, cache)
    assert ref is not None and ref.digest == first.digest

    steps.clear()
    again = ensure_network(preset, photos[:1], cache, on_step=steps.append)
    assert not again.trained and again.digest == first.digest and again.steps == 3
    assert steps == []  # nothing trained, not even the photos read (one would be too few)


def test_more_steps_go_on_from_the_checkpoint_and_force_trains_anew(
        tmp_path: Path, styles: Path, cache: Path) -> None:
    preset = _preset()
    photos = _photos(tmp_path / "photos", 4)
    first = ensure_network(preset, photos, cache)
    assert ensure_network(preset, photos, cache, steps=2).digest == first.digest
    more = ensure_network(preset, photos, cache, steps=5)
    assert more.trained and more.resumed_from == 3 and more.steps == 5
    assert more.digest != first.digest
    anew = ensure_network(preset, photos, cache, force=True)
    assert anew.trained and anew.resumed_from == 0 and anew.steps == 3
    # CPU, float32, the same seed and photos: training anew makes the very same network.
    assert anew.digest == first.digest


def test_too_few_photos_are_refused_in_one_line(tmp_path: Path, styles: Path,
                                               cache: Path) -> None:
    photos = _photos(tmp_path / "photos", MIN_PHOTOS - 1)
    (tmp_path / "photos" / "notes.jpg").write_text("not a photo")
    with pytest.raises(UsageError) as caught:
        ensure_network(_preset(), [*photos, tmp_path / "photos" / "notes.jpg"], cache)
    assert caught.value.message == (
        "cannot train 'fast': 3 usable photos (1 of 4 skipped: 1 not an image); training "
        "needs at least 4 (a few dozen are better)")
    assert not list((cache / "network").rglob("*.safetensors"))

    code, out, err = _cli("train", "fast", "--on", tmp_path / "photos")
    assert code == 2 and out == ""
    assert err.splitlines() == [f"error: {caught.value.message}"]


def test_unusable_files_are_skipped_and_counted(tmp_path: Path, styles: Path,
                                               cache: Path) -> None:
    photos = _photos(tmp_path / "photos", 4)
    bad = tmp_path / "photos"
    (bad / "notes.jpg").write_text("not a photo")
    (bad / "empty.png").write_bytes(b"")
    whole = photos[0].read_bytes()
    (bad / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (bad / "folder.png").mkdir()
    gradient_photo(20, 16).save(bad / "tiny.png")  # under MIN_PHOTO_SIDE
    listed = sorted(bad.iterdir())
    report = ensure_network(_preset(), listed, cache)
    assert report.trained and report.photos_used == 4 and report.photos_found == 9
    assert report.photos_skipped == {"not_a_file": 1, "not_an_image": 2, "too_small": 1,
                                     "truncated": 1}
    assert len(report.problems) == 5 and any("notes.jpg" in p for p in report.problems)


def test_a_full_disk_stops_with_the_last_checkpoint_intact(
        tmp_path: Path, styles: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints after every step; the third one meets a full disk half written."""
    _photos(tmp_path / "photos", 4)
    real_write = Path.write_bytes
    checkpoints: list[Path] = []

    def write_bytes(self: Path, data: bytes) -> int:  # type: ignore[override]
        # Checkpoints only (the preview sheet beside them is a JPEG).
        if (self.name.startswith(TEMP_PREFIX) and "network" in self.parts
                and not data.startswith(b"\xff\xd8")):
            checkpoints.append(self)
            if len(checkpoints) >= 3:
                real_write(self, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(self))
        return real_write(self, data)

    with monkeypatch.context() as patched:
        patched.setattr(Path, "write_bytes", write_bytes)
        code, out, err = _cli("train", "fast", "--on", tmp_path / "photos", "--steps", "6",
                              "--checkpoint-every", "0", "--json")
    assert code == 74 and out == ""
    assert err.splitlines()[-1].startswith("error: disk full while writing ")
    assert "Traceback" not in err
    preset = _preset()
    net, ckpt, _ = networks.cache_paths(cache, networks.network_key(preset))
    assert checkpoint_step(ckpt) == 2 and not net.exists()
    assert not list(ckpt.parent.glob(f"{TEMP_PREFIX}*"))

    # Space is freed: the same command goes on from step 2.
    code, out, err = _cli("train", "fast", "--on", tmp_path / "photos", "--steps", "6",
                          "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["resumed_from"] == 2 and report["steps"] == 6 and report["trained"]


def test_a_large_collection_is_sampled_within_the_memory_bound(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", 6)  # 64x48 to 104x48 px
    bound = 3 * 64 * 48
    first = gather_photos(photos, 32, seed=0, max_held_pixels=bound)
    assert len(first.images) == 3 and first.unused == 3 and first.found == 6
    # The seed decides which, handed back in the paths' order.
    again = gather_photos(photos, 32, seed=0, max_held_pixels=bound)
    assert [i.size for i in again.images] == [i.size for i in first.images]
    assert [i.width for i in first.images] == sorted(i.width for i in first.images)
    other = gather_photos(photos, 32, seed=1, max_held_pixels=bound)
    assert [i.size for i in other.images] != [i.size for i in first.images]


# -- stylize train --------------------------------------------------------------------------


def test_train_json_summary(tmp_path: Path, styles: Path, cache: Path) -> None:
    _photos(tmp_path / "photos", 4)
    (tmp_path / "photos" / "readme.txt").write_text("not a photo name: never looked at")
    (tmp_path / "photos" / "notes.png").write_text("a photo name, not a photo")
    code, out, err = _cli("train", "fast", "--on", tmp_path / "photos", "--json")
    assert code == 0, err
    report = json.loads(out)  # stdout holds the JSON alone; progress went to stderr
    assert {"style": "fast", "steps": 3, "resumed_from": 0, "trained": True,
            "source": "cache"}.items() <= report.items()
    assert report["photos"] == {"used": 4, "found": 5, "skipped": {"not_an_image": 1}}
    assert report["seconds"] > 0 and len(report["digest"]) == 64
    lines = err.splitlines()
    assert lines[0] == ("training the network of fast on 4 photos, 1 skipped (1 not an image): "
                        "3 steps")
    assert lines[1].startswith("skipped notes.png: ")
    # The preview sheet, beside the network, rewritten at each checkpoint (issue 28).
    preview = Path(report["path"]).with_name(Path(report["path"]).stem + ".preview.jpg")
    assert lines[2] == ("preview (a few photos through the network, at each checkpoint): "
                        f"{preview}")
    with Image.open(preview) as sheet:
        assert sheet.format == "JPEG" and sheet.width > sheet.height  # 4 photos, 2 rows
    assert lines[3].startswith("step 1/3 loss ") and lines[4].startswith("step 3/3 loss ")
    assert lines[-1].startswith("fast: trained 3 steps on 4 photos in 0:0")
    assert report["digest"][:12] in lines[-1]

    code, out, err = _cli("train", "fast", "--on", tmp_path / "photos", "--json")
    assert code == 0 and json.loads(out)["digest"] == report["digest"]
    assert not json.loads(out)["trained"] and "already trained (3 steps, in the cache)" in err


def test_train_usage_errors_are_one_line(tmp_path: Path, styles: Path) -> None:
    code, _, err = _cli("train", "fast", "--on", tmp_path / "nowhere")
    assert code == 2 and err.splitlines() == [f"error: --on {tmp_path / 'nowhere'}: not a "
                                              "folder of photos"]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    code, _, err = _cli("train", "fast", "--on", tmp_path / "empty")
    assert code == 2 and err.splitlines() == [
        f"error: no photos in {tmp_path / 'empty'} (--recursive looks in its subfolders too)"]
    code, _, err = _cli("train", "no-such-style", "--on", tmp_path / "empty")
    assert code == 2 and err.startswith("error: unknown style 'no-such-style'")


def test_size_makes_another_network_and_says_so(tmp_path: Path, styles: Path,
                                                cache: Path) -> None:
    _photos(tmp_path / "photos", 4)
    code, out, err = _cli("train", "fast", "--on", tmp_path / "photos", "--size", "40",
                          "--steps", "1", "--json", "-q")
    assert code == 0, err
    assert err.splitlines()[0] == ("note: fast jobs use this network only where train_size "
                                   "is 40 (the preset's is 32)")
    report = json.loads(out)
    assert report["key"] == networks.network_key(_preset(train_size=40))
    assert networks.find_network(_preset(), cache) is None


# -- the view --------------------------------------------------------------------------------


def _progress(step: int, steps: int = 100, elapsed: float = 10.0) -> TrainProgress:
    return TrainProgress(step, steps, 1.5, 4.0, elapsed, resumed_from=0)


def test_plain_lines_at_the_first_step_then_periodically_and_at_the_last() -> None:
    now = [0.0]
    console = Console(record=True, width=200, force_terminal=False)
    view = TrainView(console, every_s=30, clock=lambda: now[0])
    with view.live():
        for step in range(1, 101):
            now[0] = step * 1.0  # a step a second
            view.on_step(_progress(step, elapsed=step * 1.0))
    lines = console.export_text().splitlines()
    assert [line.split()[1] for line in lines] == ["1/100", "31/100", "61/100", "91/100",
                                                   "100/100"]
    assert lines[1] == "step 31/100 loss 1.5 · 4.0 photos/s · 0:31 · ETA 1:09"

    quiet = Console(record=True, force_terminal=False)
    view = TrainView(quiet, quiet=True)
    view.on_step(_progress(1))
    assert quiet.export_text() == ""


def test_live_bar_on_a_terminal() -> None:
    console = Console(record=True, width=120, force_terminal=True)
    view = TrainView(console)
    with view.live():
        view.on_start(TrainStart("fast", "k", 4, 5, {"not_an_image": 1}, ("x.jpg: no",), 10, 4))
        view.on_step(TrainProgress(5, 10, 2.0, 3.0, 1.0, resumed_from=4))
    text = console.export_text()
    assert "training the network of fast on 4 photos, 1 skipped (1 not an image): 10 " \
           "steps, resuming from step 4" in text
    assert "5/10" in text and "loss 2 · 3.0 photos/s" in text


def test_a_live_view_on_the_commands_stdout_does_not_feed_itself() -> None:
    """Before: Rich's live view swaps sys.stdout for a proxy that prints through its
    console; the command's stdout console wrote to sys.stdout, so its first line
    recursed into itself and deadlocked with the refresh thread (`stylize run` and
    `stylize train` hung on a terminal at their first line)."""
    console = Console(file=common.stdout, force_terminal=True, width=100)  # type: ignore[arg-type]
    view = TrainView(console)
    done = threading.Event()

    def show() -> None:
        with view.live():
            view.on_start(TrainStart("fast", "k", 4, 4, {}, (), 10, 0))
            view.on_step(TrainProgress(1, 10, 2.0, 3.0, 1.0))
        done.set()

    thread = threading.Thread(target=show, daemon=True)
    thread.start()
    thread.join(20)
    assert done.is_set()


def test_duration() -> None:
    assert [duration(s) for s in (0, 59.6, 61, 3600 * 3 + 62)] == ["0:00", "1:00", "1:01",
                                                                   "3:01:02"]


# -- styles list / show ------------------------------------------------------------------------


def test_styles_list_and_show_tell_whether_a_preset_has_a_network(
        tmp_path: Path, styles: Path, cache: Path) -> None:
    code, out, _ = _cli("styles", "show", "fast")
    assert code == 0 and "network: 'none: train it with stylize train fast --on DIR'" in out
    rows = json.loads(_cli("styles", "list", "--json")[1])["styles"]
    assert next(r for r in rows if r["name"] == "fast")["network"] == {"trained": False}

    report = ensure_network(_preset(), _photos(tmp_path / "photos", 4), cache)
    code, out, _ = _cli("styles", "list")
    assert code == 0
    row = next(line for line in out.splitlines() if line.split()[0] == "fast")
    assert "cache, 3 steps" in row
    # udnie ships its network with its preset (issue 28).
    assert next(line for line in out.splitlines()
                if line.split()[0] == "udnie").split()[3] == "preset,"
    rows = json.loads(_cli("styles", "list", "--json")[1])["styles"]
    network = next(r for r in rows if r["name"] == "fast")["network"]
    assert network["trained"] and network["digest"] == report.digest
    assert network["source"] == "cache" and network["training"]["steps"] == 3

    code, out, _ = _cli("styles", "show", "fast")
    assert code == 0 and f"digest: {report.digest}" in out
    assert f"path: {report.path}" in out and "  training:\n" in out and "    steps: 3" in out
