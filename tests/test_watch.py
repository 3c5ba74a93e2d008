"""`stylize watch`: a real watcher (native and polling) on a temporary inbox.

Every test drops files the way people and tools do and checks that each photo gives exactly
one result, after it is complete.  The engine is the real one with a tiny preset (48 px,
steps [3, 2]), except where a test says it injects a cheap processing function.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.images import gradient_photo
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config.manifest import Job, load_manifest
from pipeline.errors import LockedError
from pipeline.plan.planning import INBOX_OUTPUT_DIR
from pipeline.store.locking import RunLock
from pipeline.watch import InboxWatcher, Outcome, WatchEvent, WatchOptions, classify_name
from pipeline.watch import inbox as inbox_mod
from pipeline.watch.tracker import Tracker

pytestmark = pytest.mark.timeout(90)

SETTLE = 0.5
TINY = {"size": 48, "steps": "[3, 2]"}


# -- helpers ----------------------------------------------------------------------------


def png_bytes(seed: int = 0, size: tuple[int, int] = (96, 64)) -> bytes:
    buf = io.BytesIO()
    gradient_photo(*size, seed=seed).save(buf, format="PNG")
    return buf.getvalue()


def write_manifest(root: Path, *, after: str = "move", settings: dict[str, object] = TINY,
                   polling: bool = False) -> Path:
    for name in ("photos", "inbox"):
        (root / name).mkdir(exist_ok=True)
    lines = ["jobs:", "  - name: box", "    input: photos", "    styles: [fast]",
             "    output: out", "    inbox: inbox", f"    after: {after}"]
    lines += [f"    {k}: {v}" for k, v in settings.items()]
    path = root / "jobs.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def styles(fast_preset_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STYLIZE_STYLES_PATH", str(fast_preset_dir))
    return fast_preset_dir


@pytest.fixture(params=["native", "polling"])
def observer(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_job(root: Path, **kw: object) -> Job:
    return load_manifest(write_manifest(root, **kw)).jobs[0]  # type: ignore[arg-type]


def options(observer: str, **kw: object) -> WatchOptions:
    base: dict[str, object] = {"settle": SETTLE, "poll": 0.2 if observer == "polling" else None,
                               "rescan": 30.0, "incomplete_grace": 1.5, "tick": 0.05}
    base.update(kw)
    return WatchOptions(**base)  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.events: list[WatchEvent] = []
        self._lock = threading.Lock()
        self.watcher: InboxWatcher | None = None

    def __call__(self, event: WatchEvent) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: str, file: str | None = None) -> list[WatchEvent]:
        with self._lock:
            return [e for e in self.events if e.kind == kind and (file is None or e.file == file)]

    def wait(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        pytest.fail("timed out; events:\n" + "\n".join(
            json.dumps(e.as_dict()) for e in self.events if e.kind != "step"))

    def wait_done(self, *names: str, timeout: float = 30.0) -> None:
        self.wait(lambda: all(self.of("done", n) for n in names), timeout)

    def idle(self, timeout: float = 30.0) -> None:
        """Until the watcher has handled every change made so far (a scan since, nothing
        settling or queued): what it would do twice, it has done by then."""
        assert self.watcher is not None and self.watcher.wait_idle(timeout), (
            "the watcher never went idle; events:\n" + "\n".join(
                json.dumps(e.as_dict()) for e in self.events if e.kind != "step"))


@contextlib.contextmanager
def watching(job: Job, opts: WatchOptions, process: Callable[[Job, Path], Outcome] | None = None,
             ) -> Iterator[Recorder]:
    rec = Recorder()
    watcher = InboxWatcher([job], options=opts, on_event=rec, process=process)
    rec.watcher = watcher
    watcher.start()
    try:
        yield rec
    finally:
        watcher.stop()


def outputs(job: Job) -> list[str]:
    return sorted(p.name for p in results(job).glob("*") if not p.name.startswith("."))


def results(job: Job) -> Path:
    """Where an inbox's results go: a folder of their own inside the job's output."""
    return job.output / INBOX_OUTPUT_DIR


def copy_stub(calls: Counter[str]) -> Callable[[Job, Path], Outcome]:
    """A stand-in for stylizing that just copies bytes: for tests of the watcher itself."""

    def process(job: Job, path: Path) -> Outcome:
        calls[path.name] += 1
        results(job).mkdir(parents=True, exist_ok=True)
        out = results(job) / f"{path.name}.copy"
        shutil.copyfile(path, out)
        return Outcome(True, [out])

    return process


# -- names --------------------------------------------------------------------------


@pytest.mark.parametrize("name,kind", [
    ("a.jpg", "candidate"), ("B.JPEG", "candidate"), ("c.png", "candidate"),
    (".a.jpg.x8Fk2Q", "litter"), ("a.jpg.part", "temporary"), ("a.jpg.crdownload", "temporary"),
    ("a.jpg.tmp", "temporary"), (".syncthing.a.jpg.tmp", "litter"),
    ("~syncthing~a.jpg.tmp", "temporary"), (".DS_Store", "litter"), ("Thumbs.db", "litter"),
    ("._a.jpg", "litter"), ("a.jpg~", "litter"), (".#a.jpg", "litter"), ("@eaDir", "litter"),
    ("done", "other"), ("notes.txt", "other"),
])
def test_names_are_classified(name: str, kind: str) -> None:
    assert classify_name(name) == kind


# -- the engine-backed tests ------------------------------------------------------------


def test_slow_writer_is_processed_once_after_its_last_byte(styles: Path, tmp_path: Path,
                                                           observer: str) -> None:
    job = make_job(tmp_path)
    data = png_bytes(1, (160, 120))
    chunks = [data[i:i + len(data) // 12 + 1] for i in range(0, len(data), len(data) // 12 + 1)]
    with watching(job, options(observer)) as rec:
        with open(job.inbox / "slow.png", "wb") as fh:  # type: ignore[operator]
            for chunk in chunks:  # about 3 s in all, each pause shorter than the settle delay
                fh.write(chunk)
                fh.flush()
                last_byte = time.time()
                time.sleep(3.0 / len(chunks))
        rec.wait_done("slow.png")
        rec.idle()
    started = rec.of("started", "slow.png")
    assert len(started) == 1 and started[0].time >= last_byte
    assert outputs(job) == ["slow.png.fast.jpg"]
    assert (job.inbox / "done" / "slow.png").read_bytes() == data  # type: ignore[operator]


def test_files_already_there_at_start_are_all_processed(styles: Path, tmp_path: Path,
                                                        observer: str) -> None:
    job = make_job(tmp_path)
    names = [f"p{i}.png" for i in range(10)]
    for i, name in enumerate(names):
        (job.inbox / name).write_bytes(png_bytes(i))  # type: ignore[operator]
    with watching(job, options(observer)) as rec:
        rec.wait_done(*names, timeout=60)
    assert outputs(job) == sorted(f"{n}.fast.jpg" for n in names)
    assert Counter(e.file for e in rec.of("started")) == dict.fromkeys(names, 1)
    assert sorted(p.name for p in (job.inbox / "done").iterdir()) == names  # type: ignore[operator]


def test_moved_renamed_and_copied_files_give_one_result_each(styles: Path, tmp_path: Path,
                                                             observer: str) -> None:
    job = make_job(tmp_path)
    inbox = job.inbox
    assert inbox is not None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Temporary names used by rsync, browsers, download managers and Syncthing.
    renames = {".renamed.png.Xy12Ab": "renamed.png", "part.png.part": "part.png",
               "browser.png.crdownload": "browser.png", "plain.png.tmp": "plain.png",
               ".syncthing.sync1.png.tmp": "sync1.png", "~syncthing~sync2.png.tmp": "sync2.png"}
    with watching(job, options(observer)) as rec:
        (elsewhere / "moved.png").write_bytes(png_bytes(1))
        os.rename(elsewhere / "moved.png", inbox / "moved.png")  # mv from another folder
        for i, (temp, final) in enumerate(renames.items()):
            with open(inbox / temp, "wb") as fh:
                data = png_bytes(10 + i)
                fh.write(data[:100])
                fh.flush()
                time.sleep(0.2)
                fh.write(data[100:])
            os.rename(inbox / temp, inbox / final)
        (elsewhere / "source.png").write_bytes(png_bytes(2))
        shutil.copy(elsewhere / "source.png", inbox / "copied.png")
        finals = ["moved.png", "copied.png", *renames.values()]
        rec.wait_done(*finals, timeout=60)
        rec.idle()
    assert outputs(job) == sorted(f"{n}.fast.jpg" for n in finals)
    assert Counter(e.file for e in rec.of("started")) == dict.fromkeys(finals, 1)
    assert not rec.of("ignored") and not rec.of("failed")


def test_touch_does_not_reprocess_but_new_content_does_once(styles: Path, tmp_path: Path,
                                                            observer: str) -> None:
    job = make_job(tmp_path)
    inbox = job.inbox
    assert inbox is not None
    with watching(job, options(observer)) as rec:
        (inbox / "a.png").write_bytes(png_bytes(1))
        rec.wait_done("a.png")
        first = (results(job) / "a.png.fast.jpg").read_bytes()
        os.utime(inbox / "done" / "a.png")  # a touch of the processed file
        (inbox / "done" / "a.png").chmod(0o600)  # and an attribute change
        rec.idle()
        assert len(rec.of("started", "a.png")) == 1
        (inbox / "a.png").write_bytes(png_bytes(2))  # new content under the same name
        rec.wait(lambda: len(rec.of("done", "a.png")) == 2)
        rec.idle()
    assert len(rec.of("started", "a.png")) == 2
    assert (results(job) / "a.png.fast.jpg").read_bytes() != first
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["a-1.png", "a.png"]


def test_a_done_photo_left_in_the_inbox_is_not_redone(styles: Path, tmp_path: Path,
                                                      observer: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """When the photo cannot be moved out, a touch (or a restart) must not redo it."""
    job = make_job(tmp_path)
    inbox = job.inbox
    assert inbox is not None
    real_move = inbox_mod.move_aside
    moves: list[Path] = []

    def move_once_fails(path: Path, folder: Path) -> Path:
        moves.append(path)
        if len(moves) == 1:
            raise PermissionError(13, "Permission denied")
        return real_move(path, folder)

    monkeypatch.setattr(inbox_mod, "move_aside", move_once_fails)
    (inbox / "a.png").write_bytes(png_bytes(1))
    with watching(job, options(observer)) as rec:
        rec.wait_done("a.png")
        assert rec.of("warning", "a.png") and (inbox / "a.png").exists()
        os.utime(inbox / "a.png")
        rec.idle()
    assert (inbox / ".stylize-watch.json").exists()
    with watching(job, options(observer)) as rec2:  # a restart does not redo it either
        rec2.idle()
        assert not rec2.of("queued") and not rec2.of("started")
        (inbox / "a.png").write_bytes(png_bytes(2))  # new content: done once more
        rec2.wait_done("a.png")
        rec2.idle()
    assert len(rec.of("started")) == 1 and len(rec2.of("started")) == 1
    assert (inbox / "done" / "a.png").exists() and not (inbox / "a.png").exists()
    assert not (inbox / ".stylize-watch.json").exists()  # nothing left to remember


def test_broken_files_go_to_failed_and_the_next_photo_is_done(styles: Path, tmp_path: Path,
                                                              observer: str) -> None:
    job = make_job(tmp_path)
    inbox = job.inbox
    assert inbox is not None
    data = bytearray(png_bytes(3))
    data[len(data) // 2: len(data) // 2 + 16] = b"\x00" * 16  # damage the pixel data
    with watching(job, options(observer)) as rec:
        (inbox / "corrupt.png").write_bytes(bytes(data))
        (inbox / "text.jpg").write_text("this is a shopping list, not a photo\n")
        time.sleep(0.1)
        (inbox / "good.png").write_bytes(png_bytes(4))
        rec.wait(lambda: len(rec.of("failed")) == 2 and bool(rec.of("done", "good.png")))
    assert outputs(job) == ["good.png.fast.jpg"]
    failed = inbox / "failed"
    assert sorted(p.name for p in failed.iterdir()) == [
        "corrupt.png", "corrupt.png.error.json", "text.jpg", "text.jpg.error.json"]
    corrupt = json.loads((failed / "corrupt.png.error.json").read_text())
    text = json.loads((failed / "text.jpg.error.json").read_text())
    assert corrupt["category"] == "truncated" and "corrupt.png" in corrupt["message"]
    assert text["category"] == "not_an_image" and "plain text" in text["message"]
    assert {"category", "message", "time"} <= set(text)
    assert not rec.of("started", "corrupt.png") and not rec.of("started", "text.jpg")


def test_a_link_out_of_the_inbox_is_refused_even_with_follow_symlinks(
        styles: Path, tmp_path: Path, observer: str) -> None:
    """follow_symlinks opts a job's input folder in, never its inbox (issue: bad input)."""
    job = make_job(tmp_path, settings={**TINY, "follow_symlinks": "true"})
    inbox = job.inbox
    assert inbox is not None and job.follow_symlinks
    secret = tmp_path / "elsewhere" / "private.png"
    secret.parent.mkdir()
    secret.write_bytes(png_bytes(5))
    with watching(job, options(observer)) as rec:
        (inbox / "link.png").symlink_to(secret)
        time.sleep(0.1)
        (inbox / "good.png").write_bytes(png_bytes(6))
        rec.wait(lambda: bool(rec.of("failed", "link.png")) and bool(rec.of("done", "good.png")))
    assert outputs(job) == ["good.png.fast.jpg"]
    error = json.loads((inbox / "failed" / "link.png.error.json").read_text())
    assert error["category"] == "outside_input"
    assert secret.read_bytes() == png_bytes(5)  # the target is untouched


def test_an_exception_while_processing_one_photo_does_not_stop_the_watcher(
        styles: Path, tmp_path: Path, observer: str) -> None:
    from pipeline.executors.local import LocalExecutor

    class Faulty(LocalExecutor):
        """The real executor, but a bug strikes when it is handed boom.png."""

        def submit(self, batch: list) -> None:  # type: ignore[override]
            if any(work.name == "boom.png" for work in batch):
                raise RuntimeError("injected failure")
            super().submit(batch)

    job = make_job(tmp_path)
    inbox = job.inbox
    assert inbox is not None
    rec = Recorder()
    executor = Faulty(None)
    watcher = InboxWatcher([job], executor=executor, options=options(observer), on_event=rec)
    watcher.start()
    try:
        (inbox / "boom.png").write_bytes(png_bytes(1))
        rec.wait(lambda: bool(rec.of("failed", "boom.png")))
        (inbox / "fine.png").write_bytes(png_bytes(2))
        rec.wait_done("fine.png")
    finally:
        watcher.stop()
        executor.close()
    [failed] = rec.of("failed", "boom.png")
    assert failed.data["category"] == "internal" and "injected failure" in failed.data["message"]
    assert (inbox / "failed" / "boom.png").exists()
    assert outputs(job) == ["fine.png.fast.jpg"]


# -- the watcher's own logic, with a stub instead of the engine ---------------------------


def test_a_burst_of_500_files_is_processed_exactly_once_each(styles: Path, tmp_path: Path,
                                                             observer: str) -> None:
    # The stub copies bytes instead of stylizing: this tests the watcher (events, stability,
    # queue, de-duplication, moving), not the engine, and keeps 500 files fast.
    job = make_job(tmp_path)
    inbox = job.inbox
    assert inbox is not None
    calls: Counter[str] = Counter()
    tiny = png_bytes(0, (8, 8))
    names = [f"burst{i:03d}.png" for i in range(500)]
    with watching(job, options(observer), process=copy_stub(calls)) as rec:
        for name in names:
            (inbox / name).write_bytes(tiny)
        rec.wait(lambda: len(rec.of("done")) >= 500, timeout=75)
        rec.idle()
    assert calls == dict.fromkeys(names, 1)
    assert Counter(e.file for e in rec.of("started")) == dict.fromkeys(names, 1)
    assert len(outputs(job)) == 500 and len(list((inbox / "done").iterdir())) == 500
    assert not any(inbox.glob("*.png"))


def test_lost_events_are_found_by_the_periodic_rescan(styles: Path, tmp_path: Path,
                                                      observer: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    job = make_job(tmp_path)
    inbox = job.inbox
    assert inbox is not None
    monkeypatch.setattr(Tracker, "hint", lambda self, box, path: None)  # every event lost
    calls: Counter[str] = Counter()
    with watching(job, options(observer, rescan=0.5), process=copy_stub(calls)) as rec:
        rec.idle()  # up, and its first scans done: only a later rescan can find the photo
        (inbox / "late.png").write_bytes(png_bytes(1))
        rec.wait_done("late.png", timeout=15)
    assert calls == {"late.png": 1}


def test_an_inbox_that_goes_away_and_comes_back_is_watched_again(
        styles: Path, tmp_path: Path, observer: str) -> None:
    job = make_job(tmp_path)
    inbox = job.inbox
    assert inbox is not None
    calls: Counter[str] = Counter()
    with watching(job, options(observer, rescan=0.3), process=copy_stub(calls)) as rec:
        (inbox / "before.png").write_bytes(png_bytes(1))
        rec.wait_done("before.png")
        os.rename(inbox, tmp_path / "unmounted")  # the share goes away ...
        rec.wait(lambda: any("not reachable" in e.data["message"] for e in rec.of("warning")))
        (tmp_path / "unmounted").rename(inbox)  # ... and comes back
        rec.wait(lambda: any("is back" in e.data["message"] for e in rec.of("warning")))
        (inbox / "after.png").write_bytes(png_bytes(2))
        rec.wait_done("after.png", timeout=15)
    assert calls == {"before.png": 1, "after.png": 1}


def test_after_delete_and_retry_failed(styles: Path, tmp_path: Path, observer: str) -> None:
    job = make_job(tmp_path, after="delete")
    inbox = job.inbox
    assert inbox is not None
    (inbox / "failed").mkdir()
    (inbox / "failed" / "again.png").write_bytes(png_bytes(1))
    (inbox / "failed" / "again.png.error.json").write_text("{}")
    calls: Counter[str] = Counter()
    with watching(job, options(observer, retry_failed=True), process=copy_stub(calls)) as rec:
        rec.wait_done("again.png")
    assert calls == {"again.png": 1}
    assert list((inbox / "failed").iterdir()) == [] and not (inbox / "again.png").exists()
    assert not (inbox / "done").exists() and rec.of("done")[0].data["deleted"] is True


def test_one_watcher_per_inbox(styles: Path, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    with watching(job, options("native"), process=copy_stub(Counter())):
        with pytest.raises(LockedError):
            InboxWatcher([job], options=options("native"), process=copy_stub(Counter())).start()
        result = CliRunner().invoke(app, ["watch", str(tmp_path / "jobs.yaml")])
        assert result.exit_code == 75, result.output
    with RunLock(job.inbox / ".stylize-watch.lock"):  # type: ignore[operator]
        pass  # released by stop()


def test_usage_errors(styles: Path, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    manifest.write_text(manifest.read_text().replace("    inbox: inbox\n", ""))
    result = CliRunner().invoke(app, ["watch", str(manifest)])
    assert result.exit_code == 2 and "no job" in result.stderr and "inbox" in result.stderr
    result = CliRunner().invoke(app, ["watch", str(manifest), "--job", "nope"])
    assert result.exit_code == 2 and "no job named 'nope'" in result.stderr


# -- the command, stopped by SIGTERM in the middle of a photo -----------------------------


class _Proc:
    """``python -m pipeline.cli watch ... --json-log -`` with its events read as they come."""

    def __init__(self, manifest: Path, observer: str, log: Path) -> None:
        args = [sys.executable, "-m", "pipeline", "watch", str(manifest), "--settle",
                str(SETTLE), "--json-log", "-"]
        if observer == "polling":
            args += ["--poll", "0.2"]
        self.stderr = open(log, "w")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True)
        self.events: list[dict[str, object]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def wait_for(self, predicate: Callable[[list[dict[str, object]]], bool],
                 timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if predicate(self.events):
                return
            time.sleep(0.05)
        pytest.fail(f"timed out; events: {self.events}; stderr: "
                    f"{Path(self.stderr.name).read_text()}")

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.reader.join(timeout=5)
        self.stderr.close()
        return code


def _count(kind: str) -> Callable[[list[dict[str, object]]], int]:
    return lambda events: sum(1 for e in events if e["event"] == kind)


@pytest.mark.timeout(120)
def test_sigterm_mid_photo_keeps_nothing_partial_and_a_restart_finishes(
        styles: Path, tmp_path: Path, observer: str) -> None:
    slow = {"size": 160, "steps": "[400]"}  # many seconds per photo: surely mid-photo
    manifest = write_manifest(tmp_path, settings=slow)
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    for name in ("a.png", "b.png"):
        (inbox / name).write_bytes(png_bytes(len(name)))

    first = _Proc(manifest, observer, tmp_path / "first.log")
    first.wait_for(lambda ev: any(e["event"] == "started" for e in ev))
    assert first.terminate() == 0, (tmp_path / "first.log").read_text()
    assert "stopped: 0 done" in (tmp_path / "first.log").read_text()  # plain lines on stderr
    assert first.events[-1]["event"] == "stopped" and first.events[-1]["abandoned"] == "a.png"
    assert not _count("done")(first.events)
    leftovers = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert leftovers == []  # no partial output, no temporary file, no record
    assert sorted(p.name for p in inbox.glob("*.png")) == ["a.png", "b.png"]
    with RunLock(inbox / ".stylize-watch.lock"):
        pass  # the lock was released

    write_manifest(tmp_path, settings=TINY)  # quicker now, so the restart finishes soon
    second = _Proc(manifest, observer, tmp_path / "second.log")
    second.wait_for(lambda ev: _count("done")(ev) == 2)
    assert second.terminate() == 0
    assert sorted(p.name for p in (out / INBOX_OUTPUT_DIR).glob("*.jpg")) == [
        "a.png.fast.jpg", "b.png.fast.jpg"]
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["a.png", "b.png"]
    assert [e["event"] for e in second.events].count("started") == 2


# -- names that attack a terminal, and decoding once ------------------------------------------

HOSTILE = "\x1b]0;owned\x07\x1b[2J\rforged\nline\x9b31m.png"


def test_a_hostile_file_name_reaches_no_output_raw(styles: Path, tmp_path: Path) -> None:
    """ESC sequences, CR, LF and a C1 CSI in a name: escaped in plain lines, live, and log."""
    from rich.console import Console

    from pipeline.ui.watch_view import JsonLog, WatchDisplay, fan_out

    job = make_job(tmp_path)
    assert job.inbox is not None
    plain, live, log = io.StringIO(), io.StringIO(), io.StringIO()
    plain_view = WatchDisplay(Console(file=plain, width=200), verbose=True)
    live_view = WatchDisplay(Console(file=live, width=200, force_terminal=True))
    rec = Recorder()
    watcher = InboxWatcher([job], options=options("native"), process=copy_stub(Counter()),
                           on_event=fan_out(rec, plain_view.on_event, live_view.on_event,
                                            JsonLog(log).on_event))
    (job.inbox / HOSTILE).write_bytes(png_bytes(3))
    (job.inbox / "broken\x1b[1A.png").write_bytes(b"not an image")
    watcher.start()
    try:
        with live_view.live(lambda: watcher.status):
            rec.wait(lambda: len(rec.of("done")) == 2)
            frame = live_view._render()  # what the live view would draw now
            live_view.console.print(frame)
    finally:
        watcher.stop()
    for text in (plain.getvalue(), log.getvalue(), str(rec.events)):
        assert "\x1b" not in text and "\r" not in text and "\x9b" not in text and "\x07" not in text
        assert "\\x1b" in text or "\\\\x1b" in text  # shown, as an escape
    # Rich's own cursor moves are fine on a terminal; the name's bytes are not among them.
    assert "owned\x07" not in live.getvalue() and "\x1b]0;" not in live.getvalue()
    assert "forged\nline" not in live.getvalue() and "\x9b31m" not in live.getvalue()
    lines = plain.getvalue().splitlines()
    assert not any(line.startswith("line") or line.startswith("forged") for line in lines)
    for line in log.getvalue().splitlines():
        json.loads(line)  # one event per line, never split by a name


def test_a_watched_photo_is_decoded_once(styles: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Two styles, one decode: there is no separate completeness check."""
    from pipeline.render import workshop as render

    (tmp_path / "user-styles" / "fast2").mkdir()
    for name in ("paint.png", "preset.yaml"):
        (styles / "fast2" / name).write_bytes((styles / "fast" / name).read_bytes())
    path = write_manifest(tmp_path)
    path.write_text(path.read_text().replace("styles: [fast]", "styles: [fast, fast2]"))
    job = load_manifest(path).jobs[0]
    assert job.inbox is not None
    decoded: list[str] = []
    real = render.decode_photo

    def counting(data: bytes, name: str, **kwargs: object) -> object:
        decoded.append(name)
        return real(data, name, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(render, "decode_photo", counting)
    with watching(job, options("native")) as rec:
        (job.inbox / "once.png").write_bytes(png_bytes(4))
        rec.wait_done("once.png", timeout=60)
    assert decoded == ["once.png"]
    assert outputs(job) == ["once.png.fast.jpg", "once.png.fast2.jpg"]


def test_a_restarted_watcher_sweeps_what_a_killed_one_left_but_not_a_live_write(
        styles: Path, tmp_path: Path) -> None:
    """Temporary files of a killed writer go; one that a live process writes stays."""
    import fcntl

    from pipeline.config.naming import TEMP_PREFIX

    job = make_job(tmp_path)
    records_dir = results(job) / ".stylize"
    records_dir.mkdir(parents=True)
    dead = [results(job) / f"{TEMP_PREFIX}dead.jpg", records_dir / f"{TEMP_PREFIX}dead.json"]
    for path in dead:
        path.write_bytes(b"half a file")
    live = results(job) / f"{TEMP_PREFIX}live.jpg"
    with open(live, "wb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # as a writer in another process holds it
        fh.write(b"being written")
        fh.flush()
        with watching(job, options("native"), process=copy_stub(Counter())):
            pass
        assert live.exists()
    assert not any(p.exists() for p in dead)


def test_wait_idle_waits_for_the_photo_in_hand_and_for_a_scan_after_the_call(
        styles: Path, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    inbox = job.inbox
    assert inbox is not None
    release = threading.Event()
    calls: Counter[str] = Counter()
    copy = copy_stub(calls)

    def slow(job: Job, path: Path) -> Outcome:
        release.wait(30)
        return copy(job, path)

    # Events lost and no periodic rescan in the test's time: only the scan wait_idle asks
    # for can find a photo written after the start.
    with watching(job, options("native", rescan=300.0), process=slow) as rec:
        assert rec.watcher is not None
        rec.idle()
        rec.watcher.tracker.hint = lambda box, path: None  # type: ignore[union-attr, method-assign]
        (inbox / "a.png").write_bytes(png_bytes(1))
        assert not rec.watcher.wait_idle(2.0)  # found by its scan, then held by the worker
        assert rec.of("queued", "a.png") and not calls
        release.set()
        assert rec.watcher.wait_idle(30.0)
        assert calls == {"a.png": 1} and rec.of("done", "a.png")
