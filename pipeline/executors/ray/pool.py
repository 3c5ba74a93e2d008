"""The workers: how many fit the cluster and what each asks for, starting them, and
which are idle, (re)starting, or finishing a cancelled task.

Ray restarts a dead actor by itself (``max_restarts``) and retries the task it
died under (``max_task_retries``); the pool learns that a worker is usable again
when its ``ready()`` answers, and drops it for good when that call fails.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from pipeline.errors import UsageError
from pipeline.executors.ray.actor import RayWorker
from pipeline.executors.ray.connect import one_line, ray

__all__ = ["DEFAULT_CPU_THREADS", "START_TIMEOUT_S", "Shape", "WorkerPool", "alive_nodes",
           "shape_workers"]

logger = logging.getLogger(__name__)

#: How long the first worker may take to start (process, torch, the imports).
START_TIMEOUT_S = 120.0
#: Torch threads of a CPU worker when ``cpus_per_worker`` is not given: past about four,
#: one photo gains little from more threads, and several workers share a node better.
DEFAULT_CPU_THREADS = 4


@dataclass(frozen=True)
class Shape:
    """How many workers, and what each asks Ray for (its CPUs are its torch threads)."""

    workers: int
    cpus: int
    gpus: float


def alive_nodes() -> list[dict[str, float]]:
    """The resources of each live node of the cluster."""
    assert ray is not None
    return [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]


def shape_workers(nodes: list[dict[str, float]], workers: int | None, cpus: int | None,
                  gpus: float | None) -> Shape:
    """Fill in what was not given from the cluster; refuse a worker no node can hold."""
    total_gpus = sum(r.get("GPU", 0.0) for r in nodes)
    gpus = (1.0 if total_gpus else 0.0) if gpus is None else float(gpus)
    if cpus is None:
        cpus = 1 if gpus else max(1, min(DEFAULT_CPU_THREADS, int(
            max((r.get("CPU", 0.0) for r in nodes), default=1))))
    fits = [r for r in nodes if r.get("CPU", 0.0) >= cpus and r.get("GPU", 0.0) >= gpus]
    if not fits:
        have = ", ".join(f"{r.get('CPU', 0):g} CPUs/{r.get('GPU', 0):g} GPUs" for r in nodes)
        raise UsageError(f"no Ray node can run a worker with {cpus} CPUs and {gpus:g} "
                         f"GPUs (the cluster has: {have or 'no nodes'}); ask for less "
                         "with --workers or a smaller CPU share")
    if workers is None:
        # As many as the nodes that fit hold: one per GPU share, else one per CPU share.
        if gpus:
            workers = max(1, int(sum(r.get("GPU", 0.0) for r in fits) // gpus))
        else:
            workers = max(1, sum(int(r.get("CPU", 0.0) // cpus) for r in fits))
    return Shape(workers, cpus, gpus)


class WorkerPool:
    """The worker actors and their state; the executor takes and gives back idle ones."""

    def __init__(self) -> None:
        self.actors: list[Any] = []  # alive: starting, restarting, busy or idle
        self.idle: list[Any] = []
        self.pending: dict[Any, Any] = {}  # ready() ref -> actor starting or restarting
        self.draining: dict[Any, Any] = {}  # cancelled task ref -> its actor
        self.last_death = ""  # why the latest worker died, for messages

    def start(self, shape: Shape, progress: str, max_restarts: int,
              max_task_retries: int) -> None:
        """Ask Ray for the workers; they answer ``ready()`` once their engine can be built."""
        assert ray is not None
        # A second thread for ready() and batch_size(), which must answer while
        # the worker is busy with a photo.
        worker_class = ray.remote(  # type: ignore[call-overload]
            concurrency_groups={"control": 1})(RayWorker)
        for _ in range(shape.workers):
            actor = worker_class.options(  # type: ignore[attr-defined]
                num_cpus=shape.cpus, num_gpus=shape.gpus, max_restarts=max_restarts,
                max_task_retries=max_task_retries).remote(shape.cpus, progress)
            self.actors.append(actor)
            self.pending[actor.ready.remote()] = actor

    def wait_first(self, shape: Shape, timeout: float) -> None:
        """Return once one worker is ready; refuse the cluster if none can be."""
        assert ray is not None
        deadline = time.monotonic() + timeout
        while not self.idle:
            if not self.pending:
                raise UsageError("no Ray worker could start the engine: "
                                 f"{self.last_death or 'every worker died'}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise UsageError(f"no Ray worker started within {timeout:.0f} s: the "
                                 f"cluster has no free {shape.cpus} CPUs and {shape.gpus:g} "
                                 "GPUs for one, or its machines cannot start it")
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=min(left, 1.0))
            self.admit(ready)

    def admit(self, ready: list[Any]) -> None:
        """Workers whose ready() answered: idle again, or gone for good."""
        assert ray is not None
        for ref in ready:
            if ref not in self.pending:
                continue
            actor = self.pending.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayError as exc:
                self.last_death = one_line(exc)
                logger.warning("a Ray worker is gone: %s", self.last_death)
                if actor in self.actors:
                    self.actors.remove(actor)
                continue
            self.idle.append(actor)

    def restarting(self, actor: Any, exc: BaseException) -> None:
        """A worker died under its task: back when Ray has restarted it, or dropped."""
        self.last_death = one_line(exc)
        self.pending[actor.ready.remote()] = actor

    def cancelled(self, ref: Any, actor: Any) -> None:
        """A worker whose task was cancelled: free again once that task has ended."""
        self.draining[ref] = actor

    def reclaim(self) -> None:
        """Workers whose cancelled task has ended can work again."""
        assert ray is not None
        if not self.draining:
            return
        refs = list(self.draining)
        ended, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ended:
            actor = self.draining.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError:
                self.pending[actor.ready.remote()] = actor
                continue
            except ray.exceptions.RayError:
                pass  # cancelled, as asked
            self.idle.append(actor)

    def waiting(self) -> list[Any]:
        """The refs the pool waits on: workers (re)starting, cancelled tasks ending."""
        return [*self.pending, *self.draining]

    def close(self) -> None:
        assert ray is not None
        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self.actors.clear()
        self.idle.clear()
        self.pending.clear()
        self.draining.clear()
