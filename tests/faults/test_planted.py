"""Planted files and links (issue 22, third round): nothing is written through a link, no
planted file hangs the tool, and no record ends in a traceback.

Each test here failed on the code before its fix (``docs/reliability.md``, "Third round").
The command line runs in this process (``faults.helpers.cli`` re-raises any exception that
would have reached the user as a traceback); the cheaper checks call the module itself.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from faults import inputs
from faults.helpers import cli, make_styles, write_manifest
from pipeline.config.manifest import load_manifest
from pipeline.errors import LockedError, OutputNotWritableError, UsageError
from pipeline.images import DEFAULT_MAX_BYTES
from pipeline.store.cache import ArtifactCache
from pipeline.store.hashing import digest_json
from pipeline.store.locking import RunLock, output_lock_path, output_locks
from pipeline.store.records import Record, read_record, record_path, write_record
from pipeline.watch import InboxWatcher, Outcome, WatchOptions
from pipeline.watch.inbox import Registry

pytestmark = pytest.mark.timeout(60)

KIND = "gram"
KEY = digest_json({"style": "planted", "side": 64})
OTHER_KEY = digest_json({"style": "planted", "side": 128})
TENSORS = {"relu1_1": torch.arange(16, dtype=torch.float32).reshape(4, 4)}


def _project(root: Path, styles: list[str] | None = None, **job: str) -> Path:
    photos = root / "photos"
    photos.mkdir(exist_ok=True)
    inputs.scene(40, 30, seed=1).save(photos / "p.png")
    return write_manifest(root / "jobs.yaml", [
        {"name": "a", "input": "photos", "styles": styles or ["tiny"], "output": "out", **job}])


def _one_line(text: str, *needles: str, lines: int = 1) -> None:
    assert "Traceback" not in text, text
    assert 1 <= len(text.splitlines()) <= lines, text
    for needle in needles:
        assert needle in text, text


# -- 1. the lock and the records are never written through a link -----------------------


def test_a_run_lock_replaced_by_a_link_is_refused_and_its_target_kept(tmp_path: Path,
                                                                      styles: Path) -> None:
    """Before: ``stylize run`` truncated the link's target to 0 bytes."""
    manifest = _project(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    lock = output_lock_path(tmp_path / "out")
    lock.parent.mkdir(parents=True)
    lock.symlink_to(victim)
    res = cli("run", manifest)
    assert res.code == OutputNotWritableError.exit_code, res.err
    _one_line(res.err, ".run.lock", "symbolic link")
    assert victim.read_text() == "precious"
    assert not list((tmp_path / "out").glob("*.jpg"))


def test_a_linked_stylize_folder_is_refused_in_one_line(tmp_path: Path, styles: Path) -> None:
    """Before: records and the lock landed wherever the link pointed."""
    manifest = _project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".stylize").symlink_to(elsewhere)
    res = cli("run", manifest)
    assert res.code == OutputNotWritableError.exit_code, res.err
    _one_line(res.err, ".stylize", "symbolic link")
    assert list(elsewhere.iterdir()) == []


def test_a_record_is_never_written_into_a_linked_stylize_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".stylize").symlink_to(elsewhere)
    rec = Record("k", "/p.png", "d", 1, 1, "tiny", 1, 1, 0.5, "2026-01-01T00:00:00+00:00")
    with pytest.raises(OutputNotWritableError, match="symbolic link"):
        write_record(tmp_path / "out" / "p.png.tiny.jpg", rec)
    assert list(elsewhere.iterdir()) == []


def test_an_inbox_lock_replaced_by_a_link_never_empties_its_target(tmp_path: Path) -> None:
    """Before: the watcher's lock wrote its note into the target, and emptied it on exit."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / ".stylize-watch.lock").symlink_to(victim)
    with pytest.raises(OutputNotWritableError, match="symbolic link"):
        RunLock(tmp_path / "inbox" / ".stylize-watch.lock").acquire()
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("folder", ["done", "failed"])
def test_a_linked_done_or_failed_folder_in_an_inbox_is_never_moved_into(tmp_path: Path,
                                                                        folder: str) -> None:
    """Before: every finished photo was moved (and error files written) where it pointed."""
    from pipeline.watch.inbox import put_aside_failed, retry_failed, take_out

    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    elsewhere.mkdir()
    (elsewhere / "theirs.jpg").write_bytes(b"not a failed photo")
    (inbox / folder).symlink_to(elsewhere)
    photo = inbox / "p.jpg"
    photo.write_bytes(b"photo")
    with pytest.raises(OSError, match="symbolic link"):
        if folder == "done":
            take_out(photo, "move")
        else:
            put_aside_failed(photo, {"file": "p.jpg", "category": "not_an_image"})
    assert photo.read_bytes() == b"photo"
    assert retry_failed(inbox) == []  # nor is anything taken out of where it points
    assert sorted(p.name for p in elsewhere.iterdir()) == ["theirs.jpg"]


# -- 2. --report replaces only a regular file ---------------------------------------------


def test_report_into_a_fifo_reaches_its_reader_and_the_fifo_stays(tmp_path: Path,
                                                                   styles: Path) -> None:
    """Before: the FIFO was replaced by a regular file, and its reader got nothing."""
    manifest = _project(tmp_path)
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:  # waits for the writer, as `cat fifo` would
            got.append(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    res = cli("run", manifest, "--report", fifo)
    reader.join(10)
    assert res.code == 0, res.err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got and json.loads(got[0])["tasks"][0]["status"] == "done"


def test_report_through_a_link_to_a_device_writes_to_it_and_keeps_the_link(
        tmp_path: Path, styles: Path) -> None:
    """Before: the link (as root: ``/dev/null`` itself) was replaced by a 705-byte file."""
    manifest = _project(tmp_path)
    link = tmp_path / "r.json"
    link.symlink_to("/dev/null")
    res = cli("run", manifest, "--report", link)
    assert res.code == 0, res.err
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_report_to_a_folder_is_one_line_before_the_run(tmp_path: Path, styles: Path) -> None:
    """Before: the whole run, then an ``IsADirectoryError`` traceback."""
    manifest = _project(tmp_path)
    (tmp_path / "reports").mkdir()
    res = cli("run", manifest, "--report", tmp_path / "reports")
    assert res.code == 2, res.err
    _one_line(res.err, "reports", "is a folder")
    assert not (tmp_path / "out").exists()


def test_a_fifo_that_nobody_reads_is_refused_not_waited_on(tmp_path: Path) -> None:
    from pipeline.store.fsutil import write_named

    os.mkfifo(tmp_path / "report.fifo")
    started = time.monotonic()
    with pytest.raises(UsageError, match="nobody is reading"):
        write_named(tmp_path / "report.fifo", b"{}")
    assert time.monotonic() - started < 2


# -- 3. the inbox registry and a lock's holder note ---------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("plant", ["fifo", "deep", "link", "wrong-types"])
def test_a_planted_registry_is_an_empty_one(tmp_path: Path, plant: str) -> None:
    """Before: a FIFO hung the watcher's start (SIGTERM did nothing); 5,000 ``[`` gave a
    RecursionError; a link was followed; entries of the wrong types were kept."""
    path = tmp_path / ".stylize-watch.json"
    good = {"version": 1, "files": {"a.jpg": {"size": 1, "mtime_ns": 2, "ino": 3,
                                              "digest": None, "outcome": "done"}}}
    if plant == "fifo":
        os.mkfifo(path)
    elif plant == "deep":
        path.write_text("[" * 5000)
    elif plant == "link":
        (tmp_path / "elsewhere.json").write_text(json.dumps(good))
        path.symlink_to(tmp_path / "elsewhere.json")
    else:
        path.write_text(json.dumps({"files": {"a.jpg": {"size": "1", "mtime_ns": [2],
                                                        "ino": {}, "digest": 4}}}))
    assert Registry(path).entries == {}


def test_a_holder_note_nested_deep_still_says_locked(tmp_path: Path) -> None:
    """Before: a second watcher got a RecursionError traceback instead of exit 75."""
    path = tmp_path / "run.lock"
    with RunLock(path):
        fd = os.open(path, os.O_WRONLY)
        os.pwrite(fd, b"[" * 4000, 0)
        os.close(fd)
        with pytest.raises(LockedError):
            RunLock(path).acquire()


# -- 4. a poisoned cache entry is dropped and rebuilt ---------------------------------------


def _cache() -> tuple[ArtifactCache, Path]:
    cache = ArtifactCache(Path(os.environ["STYLIZE_CACHE_DIR"]))
    path = cache.path_for(KIND, KEY)
    path.parent.mkdir(parents=True, exist_ok=True)
    return cache, path


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLIZE_CACHE_DIR", str(tmp_path / "cache"))


# "thread": a regression blocks in safetensors' own open(), which no signal interrupts.
@pytest.mark.timeout(10, method="thread")
def test_a_fifo_cache_entry_is_dropped_and_rebuilt(caplog: pytest.LogCaptureFixture) -> None:
    """Before: ``stylize image`` blocked for good (SIGTERM twice and SIGINT ignored)."""
    cache, path = _cache()
    os.mkfifo(path)
    with caplog.at_level(logging.WARNING, logger="pipeline.store.cache"):
        assert cache.get(KIND, KEY) is None
    assert "not a regular file" in caplog.text
    assert not os.path.lexists(path)
    cache.put(KIND, KEY, TENSORS)
    assert cache.get(KIND, KEY) is not None


def test_a_folder_in_an_entrys_place_is_dropped_and_rebuilt() -> None:
    """Before: ``stylize run`` stopped with an ``IsADirectoryError`` traceback."""
    cache, path = _cache()
    path.mkdir()
    assert cache.get(KIND, KEY) is None
    cache.put(KIND, KEY, TENSORS)
    assert cache.get(KIND, KEY) is not None
    # One that is not empty is not ours to delete: caching that entry is off, as for a
    # read-only cache (the style-target store goes on without it).
    other = cache.path_for(KIND, OTHER_KEY)
    (other / "inside").mkdir(parents=True)
    assert cache.get(KIND, OTHER_KEY) is None
    with pytest.raises(OutputNotWritableError):
        cache.put(KIND, OTHER_KEY, TENSORS)


def test_an_oversized_entry_is_refused_by_its_size_without_being_read(
        caplog: pytest.LogCaptureFixture) -> None:
    """Before: a 2 GiB sparse entry with a valid header was read whole (2.6 GB peak)."""
    cache, path = _cache()
    header = json.dumps({"__metadata__": {"key": KEY, "kind": KIND, "sha256": "0" * 64},
                         "big": {"dtype": "F32", "shape": [(300 << 20) // 4],
                                 "data_offsets": [0, 300 << 20]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    os.truncate(path, 8 + len(header) + (300 << 20))  # sparse: no disk, no memory
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="pipeline.store.cache"):
        assert cache.get(KIND, KEY) is None
    assert time.monotonic() - started < 2
    assert "too large for a cache entry" in caplog.text
    assert not path.exists()


# -- 5. a record that does not validate is no record ----------------------------------------


@pytest.fixture(scope="module")
def done_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project whose one photo is done, made once for every record case."""
    root = tmp_path_factory.mktemp("done")
    make_styles(root / "styles")
    manifest = _project(root)
    res = cli("run", manifest)
    assert res.code == 0, res.err
    yield root


def _damage(record: Path, how: str) -> None:
    data = json.loads(record.read_text())
    if how == "deep":
        record.write_text("[" * 1100 + "]" * 1100)
        return
    if how == "fifo":
        record.unlink()
        os.mkfifo(record)
        return
    if how == "link":
        # The very record, moved aside and linked back: a link is never read as a record.
        record.rename(record.with_name("moved.json"))
        record.symlink_to("moved.json")
        return
    if how == "no-settings":
        del data["made"]["settings"]
    else:
        field, value = how.split("=", 1)
        target = data["made"] if field == "made.style_images" else data
        target[field.removeprefix("made.")] = json.loads(value)
    record.write_text(json.dumps(data))


@pytest.mark.parametrize("how", [
    "deep", "fifo", "link", "no-settings", 'made=[1]', 'seconds="abc"', "input=12",
    "finished=5", "seconds=NaN", "input_size=true", 'made.style_images=[{"path": 1}]'])
def test_a_record_that_does_not_validate_is_no_record(done_project: Path, tmp_path: Path,
                                                      how: str) -> None:
    """Before: ``deep`` was a RecursionError in run, dry run, gallery and explain; the wrong
    types crashed ``explain`` (and ``finished: 5`` the gallery) with tracebacks."""
    root = tmp_path / "project"
    shutil.copytree(done_project, root, symlinks=True)
    output = next((root / "out").glob("p.png.*"))
    _damage(record_path(output), how)
    assert read_record(output) is None
    dry = cli("run", root / "jobs.yaml", "--dry-run")
    assert dry.code == 0 and "1 to do, 0 already done" in dry.stdout.decode(), dry.err
    explained = cli("explain", output)
    assert explained.code == 2, explained.err
    _one_line(explained.err, "has no record")
    gallery = cli("gallery", root / "jobs.yaml")
    assert gallery.code == 0, gallery.err


# -- 7. the lock holds whatever happens to its file's name ----------------------------------


def test_deleting_the_inbox_lock_file_lets_no_second_watcher_start(tmp_path: Path,
                                                                  styles: Path) -> None:
    """Before: a second watcher started on the same inbox and both processed every photo."""
    manifest = _project(tmp_path, inbox="inbox")
    (tmp_path / "inbox").mkdir()
    job = load_manifest(manifest).jobs[0]
    opts = WatchOptions(settle=0.2, tick=0.05)

    def nothing(job: object, path: Path) -> Outcome:
        return Outcome(True, [])

    first = InboxWatcher([job], options=opts, process=nothing)
    first.start()
    try:
        (tmp_path / "inbox" / ".stylize-watch.lock").unlink()
        with pytest.raises(LockedError):
            InboxWatcher([job], options=opts, process=nothing).start()
        res = cli("watch", manifest)
        assert res.code == LockedError.exit_code, res.err
    finally:
        first.stop()


def test_deleting_the_run_lock_file_lets_no_second_run_start(tmp_path: Path) -> None:
    with output_locks([tmp_path / "out"], "jobs.yaml"):
        output_lock_path(tmp_path / "out").unlink()
        with pytest.raises(LockedError), output_locks([tmp_path / "out"], "other.yaml"):
            pass
    with output_locks([tmp_path / "out"], "again"):
        pass  # released with its holder


# -- 9. a painting is refused by its size and pixel count before it is hashed ----------------


def test_a_painting_over_the_byte_limit_is_refused_before_it_is_hashed(
        tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: hashed in full (a 20 GiB one took 14-63 s), and the dry run said 1 to do."""
    from pipeline.store import hashing

    painting = tmp_path / "huge.png"
    inputs.plain_png(painting)
    os.truncate(painting, DEFAULT_MAX_BYTES + 1)  # sparse: costs no disk
    hashed: list[str] = []
    real = getattr(hashing, "open_regular", None)  # how file_digest opens what it hashes
    monkeypatch.setattr(hashing, "open_regular", raising=False,
                        value=lambda path, **kw: hashed.append(str(path)) or real(path, **kw))
    manifest = _project(tmp_path, styles=["huge.png"])
    res = cli("run", manifest, "--dry-run")
    assert res.code == 2, res.err
    _one_line(res.err, "huge.png", "too large", lines=2)
    assert not any(h.endswith("huge.png") for h in hashed)


def test_a_painting_whose_header_declares_too_many_pixels_is_refused_before_the_run(
        tmp_path: Path, styles: Path) -> None:
    inputs.png_huge_header(tmp_path / "bomb.png")
    manifest = _project(tmp_path, styles=["bomb.png"])
    res = cli("run", manifest, "--dry-run")
    assert res.code == 2, res.err
    _one_line(res.err, "bomb.png", "too large", "megapixels", lines=2)
