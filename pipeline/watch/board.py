"""The one owner of a watcher's :class:`WatchStatus`, and of the current photo's news.

The tracker tells it how many photos wait, the worker which photo it is on and how that
ended, the stylizer each optimizer step; the live view reads ``status``.  Every change
goes through here, under one lock, so no two classes write the same fields.

A photo is announced (``started``) at its first optimizer step, or when it is done,
not before: a photo that turns out not to decode (a file still arriving, a broken one)
was never started, and the live view shows no such photo as current.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.manifest import Job
from pipeline.config.naming import safe_text
from pipeline.watch.events import Emitter, WatchStatus

if TYPE_CHECKING:
    from pipeline.run.report import TaskStep
    from pipeline.watch.inbox import Item


class StatusBoard:
    """Keeps the status; announces the current photo and its steps (see the module doc)."""

    def __init__(self, status: WatchStatus, emit: Emitter) -> None:
        self.status = status
        self.emit = emit
        self._lock = threading.Lock()
        self._current: Item | None = None
        self._queued_then = 0  # the queue when the current photo was taken
        self._announced = False

    def waiting(self, *, queued: int | None = None, pending: int | None = None) -> None:
        """Photos queued (settled, waiting for the worker) and pending (still settling)."""
        with self._lock:
            if queued is not None:
                self.status.queued = queued
            if pending is not None:
                self.status.pending = pending

    def begin(self, item: Item, queued: int) -> None:
        """The worker takes ``item`` (not yet announced: see the module doc)."""
        with self._lock:
            self._current, self._queued_then, self._announced = item, queued, False

    def announce(self) -> None:
        """``started`` for the current photo, once."""
        with self._lock:
            item = self._current
            if item is None or self._announced:
                return
            self._announced = True
            self.status.current = f"{item.job.name}/{safe_text(item.path.name)}"
        self.emit("started", item.job, item.path, styles=[p.name for p in item.job.styles],
                  queue=self._queued_then)

    def on_step(self, job: Job, path: Path, event: TaskStep) -> None:
        """A step of the current photo (from the stylizer)."""
        self.announce()
        p = event.progress
        with self._lock:
            self.status.step = (f"{event.task.style} · scale {p.scale}/{p.scales} · step "
                                f"{p.step}/{p.steps}")
        self.emit("step", job, path, style=event.task.style, scale=p.scale, scales=p.scales,
                  step=p.step, steps=p.steps, loss=p.loss)

    def finished(self, ok: bool) -> None:
        """The current photo is done (``ok``) or failed."""
        with self._lock:
            if ok:
                self.status.done += 1
            else:
                self.status.failed += 1

    def end(self) -> None:
        """The worker has let go of the current photo, however it ended."""
        with self._lock:
            self._current = None
            self.status.current = self.status.step = ""
