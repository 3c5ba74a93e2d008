"""The tracker: from file-system hints and scans to a queue of settled photos.

The observer (watchdog's native one, or a polling one for network shares) only
records the paths it hears about as *hints*.  The tracker's thread turns hints,
and a full scan of each inbox at start and every ``rescan`` seconds, into
candidates; a candidate is queued once its size, mtime and inode have not changed
for ``settle`` seconds.  Events are hints, not a queue: a lost event (inotify
overflow, a share that went away and came back) only delays a file until the next
scan.  The tracker also re-creates an observer whose inbox disappeared.

A path is in the queue at most once; the worker hands a file that changed while
queued or being processed back, and it is taken again once settled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from pipeline.config.naming import DONE_DIR, FAILED_DIR, classify_name
from pipeline.watch.board import StatusBoard
from pipeline.watch.events import Emitter, WatchOptions
from pipeline.watch.inbox import FileSig, Inbox, Item, file_sig, stat_or_none

logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    box: Inbox
    sig: FileSig | None = None
    since: float = 0.0
    not_before: float = 0.0


class Tracker:
    """Hints and scans in, settled items out (see the module docstring)."""

    def __init__(self, boxes: list[Inbox], options: WatchOptions, emit: Emitter,
                 board: StatusBoard, stop: threading.Event) -> None:
        self.boxes = boxes
        self.by_dir = {box.path: box for box in boxes}
        self.options = options
        self.emit = emit
        self.board = board
        self.stop = stop
        self.lock = threading.Condition()  # guards hints, pending and queued
        self._hints: set[Path] = set()
        self._pending: dict[Path, _Pending] = {}
        self._queued: set[Path] = set()
        self._queue: queue.Queue[Item] = queue.Queue()
        self._announced: dict[Path, FileSig] = {}
        self._reported: set[tuple[str, str]] = set()
        self._scans = 0  # whole scans of every inbox so far
        self._scan_asked = False

    # -- for the observers (their threads: record and return) -------------------------

    def hint(self, box: Inbox, path: Path) -> None:
        with self.lock:
            self._hints.add(path)
            self.lock.notify_all()

    # -- for the worker ---------------------------------------------------------------

    def next_item(self, timeout: float) -> Item | None:
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        self.board.waiting(queued=self._queue.qsize())
        return item

    def queued(self) -> int:
        return self._queue.qsize()

    def release(self, item: Item) -> None:
        """The worker is done with ``item`` (unless it handed it back)."""
        with self.lock:
            if not item.handed_back:
                self._queued.discard(item.path)

    def hand_back(self, item: Item, delay: float = 0.0) -> None:
        """Track ``item`` again: it changed, or it may still be arriving."""
        now = time.monotonic()
        item.handed_back = True
        with self.lock:
            self._queued.discard(item.path)
            self._pending[item.path] = _Pending(item.box, None, now, now + delay)

    def forget(self, path: Path) -> None:
        self._announced.pop(path, None)

    # -- for whoever waits for the watcher to be idle -----------------------------------

    def ask_scan(self) -> int:
        """Have every inbox scanned now; the count of scans before this one."""
        with self.lock:
            self._scan_asked = True
            self.lock.notify_all()
            return self._scans

    def idle(self, after: int) -> bool:
        """Whether a scan begun after scan ``after`` is done, and nothing it or a hint found
        is still settling, queued or in the worker's hands."""
        with self.lock:
            return (self._scans > after and not self._hints and not self._pending
                    and not self._queued)

    # -- the tracker's thread ---------------------------------------------------------

    def run(self) -> None:
        next_scan = 0.0
        while not self.stop.is_set():
            try:
                now = time.monotonic()
                with self.lock:
                    asked, self._scan_asked = self._scan_asked, False
                if now >= next_scan or asked:
                    for box in list(self.boxes):
                        self.ensure_observer(box)
                        self._scan(box)
                    next_scan = now + self.options.rescan
                    with self.lock:
                        self._scans += 1
                self._take_hints()
                self._check_pending()
            except Exception as exc:  # keep tracking: the next round may succeed
                logger.exception("watch tracker")
                self.emit("warning", message=f"tracker: {type(exc).__name__}: {exc}")
            with self.lock:
                if not self._hints and not self._scan_asked and not self.stop.is_set():
                    self.lock.wait(self.options.tick_s)
            # Let a burst of events arrive before looking at them one by one.
            if not self.stop.is_set():
                time.sleep(min(0.02, self.options.tick_s))

    def _scan(self, box: Inbox) -> None:
        try:
            names = sorted(os.listdir(box.path))
        except OSError:
            return  # reported by ensure_observer
        box.registry.prune(names)
        for name in names:
            self._consider(box, box.path / name)

    def _take_hints(self) -> None:
        with self.lock:
            hints, self._hints = self._hints, set()
        for path in sorted(hints):
            box = self.by_dir.get(path.parent)
            if box is not None:
                self._consider(box, path)

    def _consider(self, box: Inbox, path: Path) -> None:
        """A path in an inbox that may be new or changed: track it if it is a photo."""
        if path.name in (DONE_DIR, FAILED_DIR):
            return  # the inbox's own folders
        kind = classify_name(path.name)
        if kind in ("litter", "temporary"):
            return
        if kind == "other":
            if os.path.lexists(path):
                self._report_ignored(box, path, "not a photo name (see the README for the "
                                     "suffixes taken)")
            return
        with self.lock:
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
        with self.lock:
            self._pending.setdefault(path, _Pending(box, file_sig(st), time.monotonic()))

    def _report_ignored(self, box: Inbox, path: Path, reason: str) -> None:
        key = (box.job.name, os.fsdecode(path.name))
        if key not in self._reported:
            self._reported.add(key)
            self.emit("ignored", box.job, path, reason=reason)

    def _settled(self) -> list[Item]:
        now = time.monotonic()
        with self.lock:
            items = list(self._pending.items())
        ready: list[Item] = []
        for path, p in items:
            if now < p.not_before:
                continue
            st = stat_or_none(path)
            if st is None or stat.S_ISDIR(st.st_mode):
                with self.lock:
                    self._pending.pop(path, None)
                continue
            sig = file_sig(st)
            if sig != p.sig:
                p.sig, p.since = sig, now
            elif now - p.since >= self.options.settle:
                ready.append(Item(p.box, path, sig))
        return ready

    def _check_pending(self) -> None:
        for item in self._settled():
            with self.lock:
                self._pending.pop(item.path, None)
                if item.box.registry.same_file(item.path.name, item.sig):
                    continue
                self._queued.add(item.path)
                self._queue.put(item)
                self.board.waiting(queued=self._queue.qsize())
            if self._announced.get(item.path) != item.sig:
                self._announced[item.path] = item.sig
                self.emit("queued", item.job, item.path, size=item.sig[0],
                          queue=self._queue.qsize())
        with self.lock:
            pending = len(self._pending)
        self.board.waiting(pending=pending)

    # -- observers --------------------------------------------------------------------

    def _make_observer(self, box: Inbox) -> Any:
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
                self.emit("warning", box.job, message=f"native file events are not "
                          f"available for {box.path} ({exc}); polling instead")
        box.polling = True
        observer = PollingObserver(timeout=self.options.poll or 2.0)
        observer.schedule(handler, str(box.path), recursive=False)
        observer.start()
        return observer

    @staticmethod
    def drop_observer(box: Inbox) -> None:
        observer, box.observer = box.observer, None
        if observer is not None:
            with contextlib.suppress(Exception):
                observer.stop()
                observer.join(timeout=5)

    def ensure_observer(self, box: Inbox) -> None:
        """(Re)start the inbox's observer when it was replaced, vanished or came back."""
        try:
            st = os.stat(box.path)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(f"{box.path} is not a folder")
        except OSError as exc:
            self.drop_observer(box)
            if not box.lost:
                box.lost = True
                self.emit("warning", box.job, message=f"inbox {box.path} is not "
                          f"reachable ({exc}); waiting for it to come back")
            return
        ident = (st.st_dev, st.st_ino)
        obs = box.observer
        healthy = (obs is not None and obs.is_alive() and len(obs.emitters) == 1
                   and all(e.is_alive() for e in obs.emitters))
        if healthy and ident == box.ident:
            return
        self.drop_observer(box)
        if box.lost:
            box.lost = False
            self.emit("warning", box.job, message=f"inbox {box.path} is back")
        box.observer = self._make_observer(box)
        box.ident = ident


class _Handler(FileSystemEventHandler):
    """The observer's handler: turns every event into a hint, does nothing else."""

    def __init__(self, tracker: Tracker, box: Inbox) -> None:
        super().__init__()
        self.tracker = tracker
        self.box = box

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            if event.event_type in ("opened", "closed_no_write"):
                return
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                if raw:
                    path = Path(os.fsdecode(raw))
                    if path.parent == self.box.path:
                        self.tracker.hint(self.box, path)
        except Exception:  # never let the observer thread die; the rescan covers the rest
            logger.exception("watch event handler")
