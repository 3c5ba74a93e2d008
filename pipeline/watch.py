"""Watched inboxes: every photo dropped into a job's inbox is stylized once, when it is complete.

Three kinds of threads, so that a slow photo never makes the watcher miss a file:

* the **observer** (watchdog's native one, or a polling one for network shares) only
  records the paths it hears about as *hints*, nothing else;
* the **tracker** turns hints, and a full scan of each inbox at start and every
  ``rescan`` seconds, into candidates; a candidate is queued once its size, mtime and
  inode have not changed for ``settle`` seconds.  Events are hints, not a queue: a lost
  event (inotify overflow, a share that went away and came back) only delays a file until
  the next scan.  The tracker also re-creates an observer whose inbox disappeared;
* one **worker** takes queued files one at a time, checks that each decodes fully (a
  truncated file is given more time, ``incomplete_grace`` in all, before it counts as
  broken), applies every style of the job through one :class:`~pipeline.scheduler.Runner`
  (the engines are built once, the style targets come from the same cache as
  ``stylize run``), and then moves the photo to ``<inbox>/done/`` or deletes it.  Outputs
  and their records are written durably *before* the photo leaves the inbox.  A photo
  that cannot be used goes to ``<inbox>/failed/`` with ``<name>.error.json`` beside it.

De-duplication: a path is in the queue at most once; a file that changes while queued or
being processed goes back to the tracker and is taken again once settled.  A file that is
done but could not be moved out of the inbox is remembered by (size, mtime, inode) and
content hash in ``<inbox>/.stylize-watch.json``, so a ``touch`` never reprocesses it and a
restart does not either; new content under the same name is processed again.  A photo
dropped again with content that was already done costs no stylizing: each style's output
record still matches (see :func:`pipeline.scheduler.make_task`), so it is only moved.

This module is a library: it reports through an ``on_event`` callback (called from the
watcher's threads, one call at a time), never prints, never exits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from pipeline.errors import (
    Cancelled,
    ConfigError,
    DiskFullError,
    InputError,
    OutputNotWritableError,
    StylizeError,
    UsageError,
)
from pipeline.fsutil import atomic_write_bytes, fsync_dir, sweep_temp_files
from pipeline.inbox import (
    DONE_DIR,
    ERROR_SUFFIX,
    FAILED_DIR,
    LOCK_NAME,
    REGISTRY_NAME,
    FileSig,
    Registry,
    classify_name,
    file_sig,
    move_aside,
    retry_failed,
    stat_or_none,
    unique_name,
)
from pipeline.locking import RunLock
from pipeline.manifest import Job, Manifest

logger = logging.getLogger(__name__)

#: Failure categories that are about the setup, not the photo: the watcher stops on them
#: (the photo stays in the inbox) instead of putting every photo aside.
_SETUP_CATEGORIES = frozenset({"config", "weights", "usage"})
#: How long a truncated-looking file may stay unchanged before it counts as broken.
DEFAULT_INCOMPLETE_GRACE_S = 60.0


def watched_jobs(manifest: Manifest, names: list[str] | None = None) -> list[Job]:
    """The jobs to watch: the named ones (each must have an inbox), or all that have one."""
    if names:
        jobs = [manifest.job(n) for n in dict.fromkeys(names)]
        for job in jobs:
            if job.inbox is None:
                raise UsageError(f"job {job.name!r} has no inbox in {manifest.path}; "
                                 "add `inbox: FOLDER` to it")
    else:
        jobs = [j for j in manifest.jobs if j.inbox is not None]
        if not jobs:
            raise UsageError(f"no job in {manifest.path} has an inbox; add `inbox: FOLDER` "
                             "to the jobs to watch")
    seen: dict[Path, str] = {}
    for job in jobs:
        assert job.inbox is not None
        if job.inbox in seen:
            raise UsageError(f"jobs {seen[job.inbox]!r} and {job.name!r} share the inbox "
                             f"{job.inbox}; give each its own")
        seen[job.inbox] = job.name
        if job.output == job.inbox:
            raise UsageError(f"job {job.name!r}: the output folder is the inbox, so every "
                             "result would be taken as a new photo; use another folder")
    return jobs


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchEvent:
    """What happened; ``kind`` is one of KINDS, ``data`` its details (JSON-ready)."""

    kind: str
    job: str = ""
    file: str = ""  # the name inside the inbox
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    KINDS = ("watching", "queued", "started", "step", "done", "failed", "ignored", "warning",
             "stopped")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event": self.kind,
            "time": datetime.fromtimestamp(self.time, UTC).isoformat(timespec="milliseconds")}
        if self.job:
            out["job"] = self.job
        if self.file:
            out["file"] = self.file
        out.update(self.data)
        return out


WatchEventFn = Callable[[WatchEvent], None]


def _text(path: str | os.PathLike[str]) -> str:
    """A path as valid UTF-8 text (undecodable bytes as \\xNN), for events and JSON."""
    return os.fsdecode(path).encode("utf-8", "surrogateescape").decode("utf-8",
                                                                       "backslashreplace")


# -- options, results, status ---------------------------------------------------------


@dataclass(frozen=True)
class WatchOptions:
    settle: float = 3.0  # seconds a file's size, mtime and inode must stay unchanged
    poll: float | None = None  # poll every N seconds instead of native events
    rescan: float = 30.0  # full scan of each inbox this often, whatever the events said
    retry_failed: bool = False  # move failed/ photos back into the inbox at start
    incomplete_grace: float = DEFAULT_INCOMPLETE_GRACE_S
    tick: float | None = None  # how often pending files are looked at [settle / 5]

    def __post_init__(self) -> None:
        if self.settle < 0:
            raise UsageError("--settle must be 0 or more seconds")
        if self.poll is not None and self.poll <= 0:
            raise UsageError("--poll must be more than 0 seconds")
        if self.rescan <= 0:
            raise UsageError("--rescan must be more than 0 seconds")

    @property
    def tick_s(self) -> float:
        return self.tick if self.tick is not None else min(0.5, max(0.05, self.settle / 5))


@dataclass
class Outcome:
    """What processing one photo gave: ``ok``, or the first failure's category and message."""

    ok: bool
    outputs: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # styles whose output was already current
    category: str = ""
    message: str = ""
    style: str = ""


#: ``process(job, path)`` stylizes one complete photo in every style of the job; injectable so
#: the watcher's own logic can be tested without the engine.
ProcessFn = Callable[[Job, Path], Outcome]


@dataclass
class WatchStatus:
    """A snapshot for a live view."""

    queued: int = 0
    pending: int = 0  # seen, waiting to settle
    current: str = ""  # "job/name" being processed
    step: str = ""  # e.g. "starry-night · scale 2/3 · step 40/120"
    done: int = 0
    failed: int = 0
    inboxes: list[str] = field(default_factory=list)


# -- the default processing: every style of the job, through one Runner ------------------


class _Stylizer:
    """Engines built once per settings, targets via one StyleTargetStore (cache-backed)."""

    def __init__(self, jobs: list[Job], cache: Any, on_step: Callable[[Job, Path, Any], None],
                 should_stop: Callable[[], bool]) -> None:
        from pipeline.hashing import digest_json
        from pipeline.scheduler import Runner, TaskStep

        self._digest_json = digest_json
        self._on_step = on_step
        self._current: tuple[Job, Path] | None = None

        def on_event(event: Any) -> None:
            if isinstance(event, TaskStep) and self._current is not None:
                self._on_step(*self._current, event)

        self.runner = Runner(cache, on_event, should_stop)
        self.engines: dict[str, Any] = {}
        for job in jobs:
            for preset in job.styles:
                key = self._key(preset)
                if key not in self.engines:
                    # The model is loaded here, once; style targets are fetched (from the
                    # cache, or computed once) for each photo size as photos arrive.
                    self.engines[key] = self.runner.prepare(preset, [])

    def _key(self, preset: Any) -> str:
        return self._digest_json(preset.settings.model_dump())

    def __call__(self, job: Job, path: Path) -> Outcome:
        from pipeline.scheduler import make_task

        outcome = Outcome(ok=True)
        self._current = (job, path)
        try:
            for i, preset in enumerate(job.styles, 1):
                # Never through a link out of the inbox, whatever the job's follow_symlinks
                # says: anyone who can drop a file there could otherwise make the tool read
                # (and copy, stylized, into the output) any file it can read.
                task = replace(make_task(job, path, preset, root=job.inbox),
                               follow_symlinks=False)
                if task.status == "skipped":
                    outcome.skipped.append(preset.name)
                    outcome.outputs.append(task.output)
                    continue
                result = self.runner.run_task(self.engines[self._key(preset)], task, i,
                                              len(job.styles))
                if result.status != "done":
                    return Outcome(False, outcome.outputs, outcome.skipped, result.category,
                                   result.reason, preset.name)
                outcome.outputs.append(task.output)
        finally:
            self._current = None
        return outcome


# -- the watcher --------------------------------------------------------------------------


@dataclass
class _Pending:
    job: Job
    sig: FileSig | None = None
    since: float = 0.0
    not_before: float = 0.0


@dataclass
class _Item:
    job: Job
    path: Path
    sig: FileSig
    handed_back: bool = False  # returned to the tracker (so no longer "queued")


@dataclass
class _Inbox:
    job: Job
    path: Path
    lock: RunLock
    registry: Registry
    observer: Any = None
    ident: tuple[int, int] | None = None
    lost: bool = False
    polling: bool = False


class InboxWatcher:
    """Watches the inboxes of ``jobs`` and stylizes what is dropped there (see module doc).

    ``start()`` takes a lock per inbox (``LockedError`` if another watcher has it), builds
    the engines and starts the threads; ``stop()`` ends them, abandoning the current photo
    cleanly (nothing partial is kept, the photo stays in the inbox), and releases the locks.
    ``run_until_stopped(should_stop)`` does both around a wait.
    """

    def __init__(self, jobs: list[Job], *, cache: Any = None,
                 options: WatchOptions | None = None, on_event: WatchEventFn | None = None,
                 process: ProcessFn | None = None) -> None:
        if not jobs or any(j.inbox is None for j in jobs):
            raise UsageError("every watched job needs an inbox")
        self.jobs = jobs
        self.cache = cache
        self.options = options or WatchOptions()
        self._on_event = on_event or (lambda e: None)
        self._process = process
        self._emit_lock = threading.Lock()
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._hints: dict[Path, Job] = {}
        self._pending: dict[Path, _Pending] = {}
        self._queued: set[Path] = set()
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._announced: dict[Path, FileSig] = {}
        self._incomplete: dict[Path, tuple[FileSig, float]] = {}
        self._reported: set[tuple[str, str]] = set()
        self._inboxes: list[_Inbox] = []
        self._by_dir: dict[Path, _Inbox] = {}
        self._threads: list[threading.Thread] = []
        self._started = False
        self.fatal: StylizeError | None = None
        self.status = WatchStatus(inboxes=[str(j.inbox) for j in jobs])
        self.abandoned: str = ""

    # -- events --------------------------------------------------------------------

    def _emit(self, kind: str, job: Job | None = None, file: str | Path = "",
              **data: Any) -> None:
        name = _text(Path(file).name) if file else ""
        event = WatchEvent(kind, job.name if job else "", name, data)
        with self._emit_lock:
            try:
                self._on_event(event)
            except Exception:  # a display problem must not stop the watcher
                logger.exception("event callback failed")

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("this watcher was already started")
        self._started = True
        try:
            for job in self.jobs:
                assert job.inbox is not None
                if not job.inbox.is_dir():
                    raise UsageError(f"job {job.name!r}: inbox folder not found: {job.inbox} "
                                     "(create it, or mount the share)")
                lock = RunLock(job.inbox / LOCK_NAME, what=f"the inbox {job.inbox}")
                lock.acquire()
                box = _Inbox(job, job.inbox, lock, Registry(job.inbox / REGISTRY_NAME))
                self._inboxes.append(box)
                self._by_dir[job.inbox] = box
            from pipeline.scheduler import check_writable

            retried: dict[str, int] = {}
            for box in self._inboxes:
                check_writable(box.job.output)
                # Only temporary files old enough not to be a concurrent `stylize run`'s.
                sweep_temp_files(box.job.output, older_than_s=3600.0)
                if self.options.retry_failed:
                    retried[box.job.name] = len(retry_failed(box.path))
            if self._process is None:
                self._process = _Stylizer(self.jobs, self.cache, self._on_step,
                                          self._stop.is_set)
            for box in self._inboxes:
                self._ensure_observer(box)
                self._emit("watching", box.job, inbox=_text(box.path),
                           observer="polling" if box.polling else "native",
                           settle=self.options.settle, after=box.job.after,
                           output=_text(box.job.output),
                           retried=retried.get(box.job.name, 0))
        except BaseException:
            self._release()
            raise
        self._threads = [threading.Thread(target=self._track, name="stylize-watch-tracker",
                                          daemon=True),
                         threading.Thread(target=self._work, name="stylize-watch-worker",
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self, reason: str = "stopped on request") -> None:
        """Stop watching; the current photo is finished or abandoned; locks are released."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        for t in self._threads:
            t.join()
        self._threads = []
        for box in self._inboxes:
            self._drop_observer(box)
        if self._started and self._inboxes:
            if self.fatal is not None:
                reason = self.fatal.message
            self._emit("stopped", reason=reason, done=self.status.done,
                       failed=self.status.failed, queued=self._queue.qsize(),
                       abandoned=self.abandoned or None)
        self._release()

    def _release(self) -> None:
        for box in self._inboxes:
            self._drop_observer(box)
            box.lock.release()
        self._inboxes = []

    def run_until_stopped(self, should_stop: Callable[[], bool], *,
                          interval: float = 0.1) -> WatchStatus:
        """Watch until ``should_stop()`` is true (or a fatal error); raise that error if any."""
        self.start()
        try:
            while not should_stop() and not self._stop.is_set():
                time.sleep(interval)
        finally:
            self.stop()
        if self.fatal is not None:
            raise self.fatal
        return self.status

    def __enter__(self) -> InboxWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observers -------------------------------------------------------------------

    def _make_observer(self, box: _Inbox) -> Any:
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        handler = _Handler(self, box)
        if self.options.poll is None and not box.polling:
            try:
                observer = Observer()
                observer.schedule(handler, str(box.path), recursive=False)
                observer.start()
                return observer
            except OSError as exc:  # e.g. the inotify watch limit; polling still works
                self._emit("warning", box.job, message=f"native file events are not "
                           f"available for {_text(box.path)} ({exc}); polling instead")
                box.polling = True
        else:
            box.polling = True
        observer = PollingObserver(timeout=self.options.poll or 2.0)
        observer.schedule(handler, str(box.path), recursive=False)
        observer.start()
        return observer

    def _drop_observer(self, box: _Inbox) -> None:
        observer, box.observer = box.observer, None
        if observer is not None:
            with contextlib.suppress(Exception):
                observer.stop()
                observer.join(timeout=5)

    def _ensure_observer(self, box: _Inbox) -> None:
        """(Re)start the inbox's observer when the inbox was replaced, vanished or came back."""
        try:
            st = os.stat(box.path)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(f"{box.path} is not a folder")
        except OSError as exc:
            self._drop_observer(box)
            if not box.lost:
                box.lost = True
                self._emit("warning", box.job, message=f"inbox {_text(box.path)} is not "
                           f"reachable ({exc}); waiting for it to come back")
            return
        ident = (st.st_dev, st.st_ino)
        obs = box.observer
        healthy = (obs is not None and obs.is_alive() and len(obs.emitters) == 1
                   and all(e.is_alive() for e in obs.emitters))
        if healthy and ident == box.ident:
            return
        self._drop_observer(box)
        if box.lost:
            box.lost = False
            self._emit("warning", box.job, message=f"inbox {_text(box.path)} is back")
        box.observer = self._make_observer(box)
        box.ident = ident

    # -- hints (called from the observer's thread: record and return) ---------------------

    def hint(self, box: _Inbox, path: Path) -> None:
        with self._lock:
            self._hints[path] = box.job
            self._lock.notify_all()

    # -- the tracker thread ------------------------------------------------------------

    def _track(self) -> None:
        next_scan = 0.0
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_scan:
                    for box in list(self._inboxes):
                        self._ensure_observer(box)
                        self._scan(box)
                    next_scan = now + self.options.rescan
                self._take_hints()
                self._check_pending()
            except Exception as exc:  # keep tracking: the next round may succeed
                logger.exception("watch tracker")
                self._emit("warning", message=f"tracker: {type(exc).__name__}: {exc}")
            with self._lock:
                if not self._hints and not self._stop.is_set():
                    self._lock.wait(self.options.tick_s)
                # Let a burst of events arrive before looking at them one by one.
            if not self._stop.is_set():
                time.sleep(min(0.02, self.options.tick_s))

    def _scan(self, box: _Inbox) -> None:
        try:
            names = sorted(os.listdir(box.path))
        except OSError:
            return  # reported by _ensure_observer
        box.registry.prune(names)
        for name in names:
            self._consider(box, box.path / name)

    def _take_hints(self) -> None:
        with self._lock:
            hints, self._hints = self._hints, {}
        for path in hints:
            box = self._by_dir.get(path.parent)
            if box is not None:
                self._consider(box, path)

    def _consider(self, box: _Inbox, path: Path) -> None:
        """A path in an inbox that may be new or changed: start tracking it if it is a photo."""
        kind = classify_name(path.name)
        if kind in ("litter", "temporary"):
            return
        if kind == "other":
            if os.path.lexists(path):
                self._report_ignored(box, path, "not a photo name (see the README for the "
                                     "suffixes taken)")
            return
        with self._lock:
            if path in self._queued or path in self._pending:
                return
        st = stat_or_none(path)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            self._report_ignored(box, path, "a folder (subfolders of the inbox are not watched)")
            return
        if box.registry.same_file(path.name, file_sig(st)):
            return
        with self._lock:
            self._pending.setdefault(path, _Pending(box.job, file_sig(st), time.monotonic()))

    def _report_ignored(self, box: _Inbox, path: Path, reason: str) -> None:
        key = (box.job.name, os.fsdecode(path.name))
        if key not in self._reported:
            self._reported.add(key)
            self._emit("ignored", box.job, path, reason=reason)

    def _check_pending(self) -> None:
        now = time.monotonic()
        with self._lock:
            items = list(self._pending.items())
        ready: list[_Item] = []
        for path, p in items:
            if now < p.not_before:
                continue
            st = stat_or_none(path)
            if st is None or stat.S_ISDIR(st.st_mode):
                with self._lock:
                    self._pending.pop(path, None)
                continue
            sig = file_sig(st)
            if sig != p.sig:
                p.sig, p.since = sig, now
                continue
            if now - p.since >= self.options.settle:
                ready.append(_Item(p.job, path, sig))
        for item in ready:
            box = self._by_dir[item.job.inbox]  # type: ignore[index]
            if box.registry.same_file(item.path.name, item.sig):
                with self._lock:
                    self._pending.pop(item.path, None)
                continue
            with self._lock:
                self._pending.pop(item.path, None)
                self._queued.add(item.path)
                self._queue.put(item)
                self.status.queued = self._queue.qsize()
                self.status.pending = len(self._pending)
            if self._announced.get(item.path) != item.sig:
                self._announced[item.path] = item.sig
                self._emit("queued", item.job, item.path, size=item.sig[0],
                           queue=self._queue.qsize())
        with self._lock:
            self.status.pending = len(self._pending)

    def _back_to_tracker(self, item: _Item, delay: float = 0.0) -> None:
        now = time.monotonic()
        item.handed_back = True
        with self._lock:
            self._queued.discard(item.path)
            self._pending[item.path] = _Pending(item.job, None, now, now + delay)

    # -- the worker thread --------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            with self._lock:
                self.status.queued = self._queue.qsize()
            if self._stop.is_set():
                break
            try:
                self._handle(item)
            except (Cancelled, DiskFullError, OutputNotWritableError, ConfigError) as exc:
                if not isinstance(exc, Cancelled):
                    self.fatal = exc
                self.abandoned = _text(item.path.name)
                self._stop.set()
                break
            except Exception as exc:  # a bug: this photo only, the watcher goes on
                logger.exception("unexpected error while processing %s", item.path)
                with contextlib.suppress(Exception):
                    self._finish_failed(item, None, "internal",
                                        f"{_text(item.path.name)}: {type(exc).__name__}: {exc}")
            finally:
                with self._lock:
                    if not item.handed_back:
                        self._queued.discard(item.path)
                    self.status.current = self.status.step = ""

    def _handle(self, item: _Item) -> None:
        from pipeline.hashing import file_digest
        from pipeline.images import load_image

        job, path = item.job, item.path
        box = self._by_dir[job.inbox]  # type: ignore[index]
        st = stat_or_none(path)
        if st is None:
            self._forget(path)
            return  # gone before its turn
        if file_sig(st) != item.sig:
            self._back_to_tracker(item)  # changed while queued: let it settle again
            return
        digest: str | None = None
        if path.name in box.registry:
            with contextlib.suppress(OSError):
                digest = file_digest(path)
            if digest is not None and box.registry.same_content(path.name, digest):
                box.registry.update_sig(path.name, item.sig)  # touched only: nothing new
                self._forget(path)
                return

        # Complete means: it decodes fully.  A cut-off file may still be arriving.
        settings = job.styles[0].settings
        try:
            load_image(path, max_pixels=min(p.settings.max_pixels for p in job.styles),
                       max_long_side=settings.size, root=job.inbox,
                       follow_symlinks=False)  # see _Stylizer: never out of an inbox
        except InputError as exc:
            if not os.path.lexists(path):
                self._forget(path)
                return
            waiting = exc.category == "truncated" or (exc.category == "not_an_image"
                                                      and item.sig[0] == 0)
            if waiting:
                first = self._incomplete.get(path)
                now = time.monotonic()
                if first is None or first[0] != item.sig:
                    first = (item.sig, now)
                    self._incomplete[path] = first
                if now - first[1] < self.options.incomplete_grace:
                    self._back_to_tracker(item, delay=self.options.settle)
                    return
            self._finish_failed(item, digest, exc.category, exc.message)
            return

        with self._lock:
            self.status.current = f"{job.name}/{_text(path.name)}"
        self._emit("started", job, path, styles=[p.name for p in job.styles],
                   queue=self._queue.qsize())
        start = time.perf_counter()
        assert self._process is not None
        outcome = self._process(job, path)
        seconds = round(time.perf_counter() - start, 3)
        if not outcome.ok:
            if outcome.category in _SETUP_CATEGORIES:
                raise ConfigError(outcome.message)
            self._finish_failed(item, digest, outcome.category, outcome.message,
                                style=outcome.style)
            return
        after = stat_or_none(path)
        if after is None:
            self._forget(path)
            return
        if file_sig(after) != item.sig:
            self._back_to_tracker(item)  # new content arrived meanwhile: do it again
            return
        moved: Path | None = None
        try:
            if job.after == "delete":
                path.unlink()
                fsync_dir(path.parent)
            else:
                moved = move_aside(path, path.parent / DONE_DIR)
            box.registry.discard(path.name)
        except OSError as exc:
            with contextlib.suppress(OSError):
                digest = digest or file_digest(path)
            box.registry.add(path.name, item.sig, digest, "done")
            self._emit("warning", job, path, message=f"{_text(path.name)} is done but "
                       f"could not be {'deleted' if job.after == 'delete' else 'moved'}: "
                       f"{exc.strerror or exc}; it stays in the inbox and is not redone")
        self._forget(path)
        with self._lock:
            self.status.done += 1
        self._emit("done", job, path, outputs=[_text(o) for o in outcome.outputs],
                   already_done=outcome.skipped, seconds=seconds,
                   moved_to=_text(moved) if moved else None,
                   deleted=job.after == "delete" and not path.exists())

    def _forget(self, path: Path) -> None:
        self._incomplete.pop(path, None)
        self._announced.pop(path, None)

    def _finish_failed(self, item: _Item, digest: str | None, category: str, message: str,
                       style: str = "") -> None:
        job, path = item.job, item.path
        box = self._by_dir[job.inbox]  # type: ignore[index]
        failed_dir = path.parent / FAILED_DIR
        info = {"file": _text(path.name), "job": job.name, "category": category,
                "message": message, "style": style or None,
                "time": datetime.now(UTC).isoformat(timespec="seconds")}
        moved: Path | None = None
        error_file: Path | None = None
        try:
            failed_dir.mkdir(exist_ok=True)
            target = unique_name(failed_dir, path.name)
            error_file = Path(f"{target}{ERROR_SUFFIX}")
            atomic_write_bytes(error_file, json.dumps(info, indent=1, ensure_ascii=False)
                               .encode("utf-8", "backslashreplace"))
            os.rename(path, target)
            fsync_dir(failed_dir)
            fsync_dir(path.parent)
            moved = target
            box.registry.discard(path.name)
        except (OSError, StylizeError) as exc:
            if error_file is not None and moved is None:
                with contextlib.suppress(OSError):
                    error_file.unlink()
                error_file = None
            if os.path.lexists(path):
                from pipeline.hashing import file_digest

                with contextlib.suppress(OSError):
                    digest = digest or file_digest(path)
                box.registry.add(path.name, item.sig, digest, "failed")
            logger.warning("cannot move %s to %s: %s", path, failed_dir, exc)
        self._forget(path)
        with self._lock:
            self.status.failed += 1
        self._emit("failed", job, path, category=category, message=message,
                   style=style or None, moved_to=_text(moved) if moved else None,
                   error_file=_text(error_file) if error_file else None)

    def _on_step(self, job: Job, path: Path, event: Any) -> None:
        p = event.progress
        step = (f"{event.task.style} · scale {p.scale}/{p.scales} · step {p.step}/{p.steps}")
        with self._lock:
            self.status.step = step
        self._emit("step", job, path, style=event.task.style, scale=p.scale, scales=p.scales,
                   step=p.step, steps=p.steps, loss=p.loss)


class _Handler(FileSystemEventHandler):
    """The observer's handler: turns every event into a hint, does nothing else."""

    def __init__(self, watcher: InboxWatcher, box: _Inbox) -> None:
        super().__init__()
        self.watcher = watcher
        self.box = box

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            if event.event_type in ("opened", "closed_no_write"):
                return
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                if raw:
                    path = Path(os.fsdecode(raw))
                    if path.parent == self.box.path:
                        self.watcher.hint(self.box, path)
        except Exception:  # never let the observer thread die; the rescan covers the rest
            logger.exception("watch event handler")
