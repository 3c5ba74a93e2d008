"""The progress relay: workers' ``Started`` and ``Step`` events to the driver's thread.

A small actor (:class:`ProgressBox`) on the driver's node holds the events; each
worker drops its events there without waiting (:class:`ProgressSender`), and the
driver drains them between two looks at its tasks (:class:`ProgressRelay`), so
progress callbacks run on the runner's thread, as they do in-process.  Progress
is best effort: when the box cannot be reached, photos are still made and only
the view stands still.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from pipeline.executors.base import ExecEvent, ExecEventFn, Started, Step, Work
from pipeline.executors.ray.connect import ray

__all__ = ["ProgressBox", "ProgressRelay", "ProgressSender", "STEP_INTERVAL_S"]

#: A worker sends a step at most this often per photo (the view redraws a few times a second).
STEP_INTERVAL_S = 0.2


class ProgressBox:
    """The actor where workers drop their progress events until the driver drains them."""

    def __init__(self) -> None:
        self._events: list[ExecEvent] = []

    def push(self, events: list[ExecEvent]) -> None:
        self._events.extend(events)

    def drain(self) -> list[ExecEvent]:
        events, self._events = self._events, []
        return events


class ProgressSender:
    """A worker's end: its events, sent in small bundles (one remote call per bundle)."""

    def __init__(self, box_name: str, worker: str) -> None:
        assert ray is not None
        self.worker = worker
        # Found by name, not passed as a handle: a restarted actor must find it again.
        # Without it (gone with a driver's node) photos are still made, silently.
        self._box: Any = None
        with contextlib.suppress(ValueError):
            self._box = ray.get_actor(box_name)
        self._outbox: list[ExecEvent] = []
        self._step: Step | None = None  # only the latest step is worth sending
        self._sent = 0.0

    def started(self, works: list[Work]) -> None:
        self._outbox += [Started(w.id, self.worker) for w in works]
        self.flush()

    def step(self, work_id: int, progress: object) -> None:
        """A ``WorkProgressFn`` for :func:`pipeline.render.workshop.render_batch`."""
        self._step = Step(work_id, progress, self.worker)  # type: ignore[arg-type]
        if time.monotonic() - self._sent >= STEP_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        events = self._outbox + ([self._step] if self._step is not None else [])
        self._outbox, self._step = [], None
        if events and self._box is not None:
            self._box.push.remote(events)  # fire and forget
            self._sent = time.monotonic()


class ProgressRelay:
    """The driver's end: the box, and its events passed on with each ``Started`` once."""

    def __init__(self) -> None:
        self.name = f"stylize-progress-{uuid.uuid4().hex}"
        self._box: Any = None
        self._on_event: ExecEventFn = lambda e: None
        self._started: set[int] = set()

    def open(self) -> None:
        """Start the box, on this node: the events are for this process."""
        assert ray is not None
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        self._box = ray.remote(ProgressBox).options(  # type: ignore[attr-defined]
            name=self.name, num_cpus=0, max_restarts=-1,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()

    def bind(self, on_event: ExecEventFn) -> None:
        self._on_event = on_event
        self._started.clear()  # work ids start again at 0 in each run

    def deliver(self) -> None:
        """Pass on what the workers sent since the last call."""
        assert ray is not None
        try:
            events: list[ExecEvent] = ray.get(self._box.drain.remote(), timeout=10)
        except ray.exceptions.RayError:
            return  # progress is lost for a moment; the work is not
        for event in events:
            if isinstance(event, Started):
                if event.id in self._started:
                    continue  # done again after its worker died: counted once
                self._started.add(event.id)
            self._on_event(event)

    def drop(self) -> None:
        """Throw away what is waiting (events of cancelled work)."""
        assert ray is not None
        with contextlib.suppress(Exception):
            ray.get(self._box.drain.remote(), timeout=5)

    def close(self) -> None:
        assert ray is not None
        if self._box is not None:
            with contextlib.suppress(Exception):
                ray.kill(self._box, no_restart=True)
            self._box = None
