"""The watcher: locks, threads and their wiring; the work itself is the tracker's and the worker's.

``start()`` takes a lock per inbox (``LockedError`` if another watcher has it),
checks the output folders, sweeps what killed writers left there, builds the
engines and starts two threads: the tracker (:mod:`pipeline.watch.tracker`) and
the worker (:mod:`pipeline.watch.worker`).  ``stop()`` ends them, abandoning the
current photo cleanly (nothing partial is kept, the photo stays in the inbox),
and releases the locks.

This package is a library: it reports through an ``on_event`` callback (called
from the watcher's threads, one call at a time), never prints, never exits.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.manifest import Job, Manifest
from pipeline.config.naming import INBOX_REGISTRY_NAME, RECORD_DIR, safe_text
from pipeline.errors import Cancelled, StylizeError, UsageError
from pipeline.plan.planning import INBOX_OUTPUT_DIR, select_jobs
from pipeline.store.fsutil import sweep_temp_files
from pipeline.store.locking import inbox_lock
from pipeline.watch.board import StatusBoard
from pipeline.watch.events import Emitter, ProcessFn, WatchEventFn, WatchOptions, WatchStatus
from pipeline.watch.inbox import Inbox, Registry, retry_failed
from pipeline.watch.tracker import Tracker
from pipeline.watch.worker import Stylizer, Worker

if TYPE_CHECKING:
    from pipeline.config.styles import Preset
    from pipeline.executors.base import Executor
    from pipeline.store.cache import ArtifactCache

logger = logging.getLogger(__name__)


def watched_jobs(manifest: Manifest, names: list[str] | None = None) -> list[Job]:
    """The jobs to watch: the named ones (each must have an inbox), or all that have one."""
    jobs = select_jobs(manifest, names)
    if names:
        for job in jobs:
            if job.inbox is None:
                raise UsageError(f"job {job.name!r} has no inbox in {manifest.path}; "
                                 "add `inbox: FOLDER` to it")
    else:
        jobs = [j for j in jobs if j.inbox is not None]
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


class InboxWatcher:
    """Watches the inboxes of ``jobs`` and stylizes what is dropped there (see module doc)."""

    def __init__(self, jobs: list[Job], *, executor: Executor | None = None,
                 cache: ArtifactCache | None = None,
                 options: WatchOptions | None = None, on_event: WatchEventFn | None = None,
                 process: ProcessFn | None = None) -> None:
        if not jobs or any(j.inbox is None for j in jobs):
            raise UsageError("every watched job needs an inbox")
        self.jobs = jobs
        self.options = options or WatchOptions()
        self.emit = Emitter(on_event)
        self.status = WatchStatus(inboxes=[safe_text(str(j.inbox)) for j in jobs])
        self._stop = threading.Event()
        self._executor = executor
        self._cache = cache
        self._process = process
        self._owns_executor = False
        self._inboxes: list[Inbox] = []
        self._threads: list[threading.Thread] = []
        self._started = False
        self.tracker: Tracker | None = None
        self.fatal: StylizeError | None = None
        self.abandoned = ""

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("this watcher was already started")
        self._started = True
        try:
            self._take_inboxes()
            retried = self._prepare_folders()
            # Wired one way: the board first, then what reports to it.
            board = StatusBoard(self.status, self.emit)
            self.tracker = Tracker(self._inboxes, self.options, self.emit, board, self._stop)
            process = self._process or self._stylizer(board)
            worker = Worker(self.tracker, process, self.options, self.emit, board)
            for box in self._inboxes:
                self.tracker.ensure_observer(box)
                self.emit("watching", box.job, inbox=box.path,
                          observer="polling" if box.polling else "native",
                          settle=self.options.settle, after=box.job.after,
                          output=box.job.output, retried=retried.get(box.job.name, 0))
        except BaseException:
            self._release()
            raise
        self._threads = [threading.Thread(target=self.tracker.run, name="stylize-watch-tracker",
                                          daemon=True),
                         threading.Thread(target=self._work, args=(worker,),
                                          name="stylize-watch-worker", daemon=True)]
        for t in self._threads:
            t.start()

    def _take_inboxes(self) -> None:
        for job in self.jobs:
            assert job.inbox is not None
            if not job.inbox.is_dir():
                raise UsageError(f"job {job.name!r}: inbox folder not found: {job.inbox} "
                                 "(create it, or mount the share)")
            lock = inbox_lock(job.inbox)  # the folder itself: deleting the file frees nothing
            lock.acquire()
            self._inboxes.append(Inbox(job, job.inbox, lock,
                                       Registry(job.inbox / INBOX_REGISTRY_NAME)))

    def _prepare_folders(self) -> dict[str, int]:
        from pipeline.store.fsutil import check_writable

        retried: dict[str, int] = {}
        for box in self._inboxes:
            results = box.job.output / INBOX_OUTPUT_DIR
            check_writable(results)
            # What a killed writer left; a file that a live writer holds is never touched.
            sweep_temp_files(results)
            sweep_temp_files(results / RECORD_DIR)
            if self.options.retry_failed:
                retried[box.job.name] = len(retry_failed(box.path))
        return retried

    def _stylizer(self, board: StatusBoard) -> Stylizer:
        if self._executor is None:
            from pipeline.executors.local import LocalExecutor

            self._executor = LocalExecutor(self._cache)
            self._owns_executor = True
        stylizer = Stylizer(self._executor, board.on_step, self._stop.is_set,
                            rebind=self._rebind)
        # The model is loaded here, once; style targets are fetched (from the cache, or
        # computed once) for each photo size as photos arrive.
        stylizer.prepare(self.jobs)
        return stylizer

    def _rebind(self, preset: Preset) -> Preset:
        """``preset`` bound to the network its fast results are made with now: the one a
        ``stylize train`` or a run has written into the cache since the watcher started,
        too (a header read per photo and style)."""
        from pipeline.store.cache_dir import default_cache_dir
        from pipeline.training.networks import bind

        return bind(preset, self._cache.root if self._cache is not None
                    else default_cache_dir())

    def stop(self, reason: str = "stopped on request") -> None:
        """Stop watching; the current photo is finished or abandoned; locks are released."""
        self._stop.set()
        if self.tracker is not None:
            with self.tracker.lock:
                self.tracker.lock.notify_all()
        for t in self._threads:
            t.join()
        self._threads = []
        if self._started and self._inboxes:
            if self.fatal is not None:
                reason = self.fatal.message
            self.emit("stopped", reason=reason, done=self.status.done,
                      failed=self.status.failed,
                      queued=self.tracker.queued() if self.tracker else 0,
                      abandoned=self.abandoned or None)
        self._release()

    def _release(self) -> None:
        for box in self._inboxes:
            Tracker.drop_observer(box)
            box.lock.release()
        self._inboxes = []
        if self._owns_executor and self._executor is not None:
            self._executor.close()
            self._executor = None

    def run_until_stopped(self, should_stop: Callable[[], bool], *, interval: float = 0.1,
                          reason: Callable[[], str] | None = None) -> WatchStatus:
        """Watch until ``should_stop()`` is true (or a fatal error); raise that error if any.

        ``reason()`` says why it was stopped, for the ``stopped`` event.
        """
        self.start()
        try:
            while not should_stop() and not self._stop.is_set():
                time.sleep(interval)
        finally:
            self.stop((reason() if reason else "") or "stopped on request")
        if self.fatal is not None:
            raise self.fatal
        return self.status

    def __enter__(self) -> InboxWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the worker's thread ---------------------------------------------------------

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every change made to the inboxes before this call is handled: each
        inbox scanned since, and nothing found settling, queued or being made.  False if
        the watcher stopped or ``timeout`` seconds passed first."""
        assert self.tracker is not None, "start() first"
        before = self.tracker.ask_scan()
        deadline = time.monotonic() + timeout
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self.tracker.idle(before):
                return True
            time.sleep(self.options.tick_s)
        return False

    def _work(self, worker: Worker) -> None:
        assert self.tracker is not None
        while not self._stop.is_set():
            item = self.tracker.next_item(timeout=0.1)
            if item is None or self._stop.is_set():
                continue
            try:
                worker.handle(item)
            except StylizeError as exc:
                # A full disk, an unwritable output, the weights, a style image, a stop:
                # not this photo's fault, so it stays in the inbox and the watcher ends.
                if not isinstance(exc, Cancelled):
                    self.fatal = exc
                self.abandoned = safe_text(item.path.name)
                self._stop.set()
            except Exception as exc:  # a bug: this photo only, the watcher goes on
                logger.exception("unexpected error while processing %s", safe_text(item.path))
                with contextlib.suppress(Exception):
                    worker.failed_internal(item, exc)
            finally:
                self.tracker.release(item)
                worker.board.end()
