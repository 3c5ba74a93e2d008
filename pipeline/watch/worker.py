"""The worker: one settled photo at a time, stylized in every style, then out of the inbox.

For each queued photo the worker

1. skips it when it is a file already handled that was only touched (the registry);
2. stylizes it in every style of its job (:class:`Stylizer`: the plan, the executor
   and the writer of ``stylize run``; the engines are built once; a fast style is
   bound to its network as it is now, so a network retrained while the watcher runs
   is used, and recorded, from the next photo on);
3. leaves a photo in the inbox while a fast style of its job has no network, as during
   ``stylize train --force`` (which discards the network first): it is tried again every
   :data:`NETWORK_WAIT_S` seconds, and made with the new network once it is written;
4. gives a photo that does not decode completely more time (``incomplete_grace``):
   a truncated file may still be arriving.  The photo is decoded once, by the
   render itself: there is no separate completeness check;
5. moves it to ``done/`` (or deletes it) once every output and record is on disk, or
   to ``failed/`` with ``<name>.error.json`` when it cannot be used.

Errors about the setup (the weights, a style image) and the stopping ones (a full
disk, an unwritable output, a stop request) end the watcher, as the exception itself.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.manifest import Job
from pipeline.config.naming import safe_text
from pipeline.errors import NetworkMissingError, StylizeError
from pipeline.plan.methods import needs_network
from pipeline.store.hashing import file_digest
from pipeline.training.networks import no_network
from pipeline.watch.board import StatusBoard
from pipeline.watch.events import Emitter, Outcome, ProcessFn, WatchOptions
from pipeline.watch.inbox import Item, file_sig, put_aside_failed, stat_or_none, take_out
from pipeline.watch.tracker import Tracker

if TYPE_CHECKING:
    from pipeline.config.styles import Preset
    from pipeline.executors.base import Executor
    from pipeline.run.report import TaskStep

logger = logging.getLogger(__name__)

#: How often a photo waiting for a fast style's network is tried again.
NETWORK_WAIT_S = 2.0
#: The category of an outcome that waits for a network (the photo is not failed).
WAITING_FOR_NETWORK = "waiting_for_network"


class Stylizer:
    """Every style of a job for one photo, through the runner and one long-lived executor."""

    def __init__(self, executor: Executor, on_step: Callable[[Job, Path, TaskStep], None],
                 should_stop: Callable[[], bool],
                 rebind: Callable[[Preset], Preset] | None = None) -> None:
        self.executor = executor
        self.on_step = on_step
        self.should_stop = should_stop
        # Each photo's presets as they are now (pipeline.training.networks.bind: the network a
        # fast style's results are keyed by); None: as the jobs were given.
        self.rebind = rebind

    def prepare(self, jobs: list[Job]) -> None:
        """Load the network once, before the first photo (style targets come per size); a
        fast style with no network at all is refused now (``NetworkMissingError``)."""
        rebind = self.rebind or (lambda preset: preset)
        for job in jobs:
            for preset in map(rebind, job.styles):
                if needs_network(preset.settings) and not preset.network:
                    raise no_network(preset)
                self.executor.prepare(preset)

    def __call__(self, job: Job, path: Path) -> Outcome:
        from pipeline.plan.planning import Plan, job_task
        from pipeline.run.report import TaskStep  # noqa: F811 (at run time: no torch at import)
        from pipeline.run.runner import run  # noqa: F811 (at run time: no torch at import)

        rebind = self.rebind or (lambda preset: preset)
        presets = [rebind(preset) for preset in job.styles]
        for preset in presets:
            if needs_network(preset.settings) and not preset.network:
                return _waiting(no_network(preset), preset.name)
        tasks = [job_task(job, path, preset) for preset in presets]
        outcome = Outcome(ok=True)

        def on_event(event: object) -> None:
            if isinstance(event, TaskStep):
                self.on_step(job, path, event)

        # A photo dropped again with content that was already done costs no stylizing:
        # each style's output record still matches, so its task is planned as skipped.
        try:
            report = run(Plan(tasks), self.executor, on_event=on_event,
                         should_stop=self.should_stop)
        except NetworkMissingError as exc:  # discarded between the look and the load
            return _waiting(exc, "")
        if report.stopped is not None:
            raise report.stopped
        for result in report.results:
            if result.status == "failed":
                return Outcome(False, outcome.outputs, outcome.skipped, result.category,
                               result.reason, result.task.style)
            if result.status == "skipped":
                outcome.skipped.append(result.task.style)
            outcome.outputs.append(result.task.output)
        return outcome


def _waiting(exc: NetworkMissingError, style: str) -> Outcome:
    return Outcome(False, category=WAITING_FOR_NETWORK, message=exc.message, style=style)


def _maybe_incomplete(outcome: Outcome, item: Item) -> bool:
    """A failure that a file still being written would also give."""
    return outcome.category == "truncated" or (outcome.category == "not_an_image"
                                               and item.sig[0] == 0)


class Worker:
    """Handles queued items one at a time (see the module docstring)."""

    def __init__(self, tracker: Tracker, process: ProcessFn, options: WatchOptions,
                 emit: Emitter, board: StatusBoard) -> None:
        self.tracker = tracker
        self.process = process
        self.options = options
        self.emit = emit
        self.board = board
        self._incomplete: dict[Path, tuple[tuple[int, int, int], float]] = {}
        self._waiting_said = False  # "waiting for a network" is said once per wait

    def handle(self, item: Item) -> None:
        path, box = item.path, item.box
        st = stat_or_none(path)
        if st is None:
            return self._forget(path)  # gone before its turn
        if file_sig(st) != item.sig:
            return self.tracker.hand_back(item)  # changed while queued: let it settle again
        digest: str | None = None
        if path.name in box.registry:
            with contextlib.suppress(OSError):
                digest = file_digest(path)
            if digest is not None and box.registry.same_content(path.name, digest):
                box.registry.update_sig(path.name, item.sig)  # touched only: nothing new
                return self._forget(path)
        self.board.begin(item, self.tracker.queued())
        start = time.perf_counter()
        outcome = self.process(item.job, path)
        if outcome.category == WAITING_FOR_NETWORK:
            return self._wait_for_network(item, outcome)
        self._waiting_said = False
        if not outcome.ok:
            if not (path.exists() or path.is_symlink()):
                return self._forget(path)  # gone while it was being read
            if _maybe_incomplete(outcome, item) and self._give_more_time(item):
                return None
            return self._failed(item, digest, outcome)
        after = stat_or_none(path)
        if after is None:
            return self._forget(path)
        if file_sig(after) != item.sig:
            return self.tracker.hand_back(item)  # new content arrived meanwhile: again
        self.board.announce()
        self._done(item, digest, outcome, round(time.perf_counter() - start, 3))
        return None

    def _wait_for_network(self, item: Item, outcome: Outcome) -> None:
        """Leave the photo in the inbox and try it again soon: a network that is being
        (re)trained appears in the cache when its training ends."""
        if not self._waiting_said:
            self._waiting_said = True
            self.emit("warning", item.job, item.path,
                      message=f"{item.path.name} waits in the inbox: {outcome.message}; "
                      f"it is tried again every {NETWORK_WAIT_S:g} s")
        self.tracker.hand_back(item, delay=NETWORK_WAIT_S)

    def _give_more_time(self, item: Item) -> bool:
        """True while a truncated-looking file is within its grace (it goes back)."""
        first = self._incomplete.get(item.path)
        now = time.monotonic()
        if first is None or first[0] != item.sig:
            first = (item.sig, now)
            self._incomplete[item.path] = first
        if now - first[1] >= self.options.incomplete_grace:
            return False
        self.tracker.hand_back(item, delay=self.options.settle)
        return True

    def _forget(self, path: Path) -> None:
        self._incomplete.pop(path, None)
        self.tracker.forget(path)

    def _done(self, item: Item, digest: str | None, outcome: Outcome, seconds: float) -> None:
        job, path, box = item.job, item.path, item.box
        moved: Path | None = None
        try:
            moved = take_out(path, job.after)
            box.registry.discard(path.name)
        except OSError as exc:
            with contextlib.suppress(OSError):
                digest = digest or file_digest(path)
            box.registry.add(path.name, item.sig, digest, "done")
            verb = "deleted" if job.after == "delete" else "moved"
            self.emit("warning", job, path, message=f"{path.name} is done but could not be "
                      f"{verb}: {exc.strerror or exc}; it stays in the inbox and is not redone")
        self._forget(path)
        self.board.finished(ok=True)
        self.emit("done", job, path, outputs=[str(o) for o in outcome.outputs],
                  already_done=outcome.skipped, seconds=seconds,
                  moved_to=str(moved) if moved else None,
                  deleted=job.after == "delete" and not path.exists())

    def failed_internal(self, item: Item, exc: Exception) -> None:
        """A bug while handling this photo: it goes aside, the watcher goes on."""
        self._failed(item, None, Outcome(False, category="internal",
                                         message=f"{item.path.name}: {type(exc).__name__}: {exc}"))

    def _failed(self, item: Item, digest: str | None, outcome: Outcome) -> None:
        job, path, box = item.job, item.path, item.box
        info = {"file": path.name, "job": job.name, "category": outcome.category,
                "message": outcome.message, "style": outcome.style or None,
                "time": datetime.now(UTC).isoformat(timespec="seconds")}
        moved: Path | None = None
        error_file: Path | None = None
        try:
            moved, error_file = put_aside_failed(path, info)
            box.registry.discard(path.name)
        except (OSError, StylizeError) as exc:
            if path.exists() or path.is_symlink():
                with contextlib.suppress(OSError):
                    digest = digest or file_digest(path)
                box.registry.add(path.name, item.sig, digest, "failed")
            logger.warning("cannot move %s to failed/: %s", safe_text(path), exc)
        self._forget(path)
        self.board.finished(ok=False)
        self.emit("failed", job, path, category=outcome.category, message=outcome.message,
                  style=outcome.style or None, moved_to=str(moved) if moved else None,
                  error_file=str(error_file) if error_file else None)
