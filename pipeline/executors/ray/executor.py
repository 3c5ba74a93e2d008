"""``RayExecutor``: the executor protocol of :mod:`pipeline.executors.base` on Ray actors.

It owns the task loop on the driver: batches queued and handed to idle workers,
one ``ray.wait`` at a time, results gathered back into the batch the runner
submitted, and what to do when a worker dies under a task.  Ray restarts the
worker and retries the task by itself; if that attempt dies too, the photos are
given once more to any worker, one photo per task, and then recorded as
``worker_lost`` (or ``out_of_memory`` when Ray's memory monitor killed it).  A
photo that fails for its own reasons comes back as a result with its category
and is never retried; setup errors (the weights, the device) are raised from
:meth:`RayExecutor.wait` as their own type.  :meth:`RayExecutor.cancel` asks
every running task to stop between two optimizer steps (``ray.cancel``);
nothing partial can come back, since only the driver writes.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.config.geometry import output_size
from pipeline.config.styles import Preset
from pipeline.config.views import settings_digest
from pipeline.errors import Cancelled, StylizeError, UsageError
from pipeline.executors.base import ExecEventFn, Finished, TargetCounts, Work
from pipeline.executors.ray.connect import CONNECT_TIMEOUT_S, connect, ray, require_ray
from pipeline.executors.ray.networks import NetworkShipper, ShippedNetwork
from pipeline.executors.ray.pool import START_TIMEOUT_S, WorkerPool, alive_nodes, shape_workers
from pipeline.executors.ray.progress import ProgressRelay
from pipeline.executors.ray.targets import (
    MissingTargets,
    ShippedStyle,
    TargetShipper,
)
from pipeline.executors.ray.training import RemoteTraining
from pipeline.executors.ray.videos import VideoShipper
from pipeline.plan.methods import Needs, needs_network
from pipeline.store.cache import ArtifactCache

__all__ = ["RayExecutor"]

logger = logging.getLogger(__name__)

#: How often ``wait`` looks at progress and at ``should_stop``.
POLL_S = 0.1
#: After its task died twice (Ray's retry included), a photo is given once more to any
#: worker, alone; after that it fails.
DRIVER_RETRIES = 1


@dataclass
class _Batch:
    """What the runner submitted; its results go back together."""

    results: list[Finished] = field(default_factory=list)
    open: int = 1  # pieces not finished yet


@dataclass
class _Piece:
    """A batch, or after a worker died, one photo of it: one task on one worker."""

    batch: _Batch
    works: list[Work]
    style: ShippedStyle
    network: ShippedNetwork | None = None  # a fast preset's network
    attempts: int = 0  # times a worker died under it
    videos: dict[str, Any] = field(default_factory=dict)  # a segment's video, by digest


class RayExecutor:
    """Stylizes on Ray actors (see the package docstring).

    ``address``: None starts a local Ray instance for this executor's life;
    ``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"`` join a running cluster.  If
    this process is already connected to Ray, that connection is used.
    ``workers``: how many actors (default: as many as the cluster holds);
    ``cpus_per_worker`` (default 1 per GPU worker, else up to 4): the actor's CPU
    request and its torch threads; ``gpus_per_worker`` (default 1 where the cluster
    has GPUs, else 0).  ``cache``: the driver's style-target cache.
    """

    def __init__(self, address: str | None = None, workers: int | None = None,
                 cpus_per_worker: int | None = None, gpus_per_worker: float | None = None,
                 cache: ArtifactCache | None = None, *, max_restarts: int = 4,
                 max_task_retries: int = 1, runtime_env: dict[str, Any] | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT_S,
                 start_timeout: float = START_TIMEOUT_S) -> None:
        require_ray()
        if workers is not None and workers < 1:
            raise UsageError(f"--workers must be at least 1, not {workers}")
        self._owns_ray = connect(address, connect_timeout, runtime_env)
        self._targets = TargetShipper(cache)
        self._networks = NetworkShipper(cache.root if cache is not None else None)
        self._videos = VideoShipper()
        self.store = self._targets.store
        self._relay = ProgressRelay()
        self._pool = WorkerPool()
        self._should_stop: Callable[[], bool] | None = None
        self._batch_sizes: dict[tuple[str, int], int] = {}
        self._queue: deque[_Piece] = deque()
        self._running: dict[Any, tuple[Any, _Piece]] = {}  # task ref -> (actor, piece)
        self._done: deque[list[Finished]] = deque()
        try:
            shape = shape_workers(alive_nodes(), workers, cpus_per_worker, gpus_per_worker)
            self.cpus, self.gpus = shape.cpus, shape.gpus
            self._relay.open()
            self._pool.start(shape, self._relay.name, max_restarts, max_task_retries)
            self._pool.wait_first(shape, start_timeout)
        except BaseException:
            self.close()  # workers already asked for, and Ray if it was started here
            raise

    # -- the protocol -------------------------------------------------------------------

    @property
    def counts(self) -> TargetCounts:  # type: ignore[override]
        return replace(self._targets.counts, networks=self._networks.shipped,
                       videos=self._videos.shipped)

    @property
    def workers(self) -> int:
        """Workers alive (starting, restarting or ready)."""
        return len(self._pool.actors)

    def bind(self, on_event: ExecEventFn, should_stop: Callable[[], bool] | None) -> None:
        self._relay.bind(on_event)
        self._should_stop = should_stop

    def prepare(self, preset: Preset, needs: Needs | None = None) -> None:
        s = preset.settings
        if s.device.startswith("cuda") and not self.gpus:
            raise UsageError(f"style {preset.name!r} asks for device {s.device!r}, but the Ray "
                             "workers have no GPU (the cluster has none, or --gpus-per-worker "
                             "is 0)")
        if needs_network(s):
            self._networks.ship(preset)
        if needs is not None and needs.every_side:
            # A worker cannot make targets (it has no cache): the retry's go too.
            self._targets.ship(self._targets.style(preset), preset, needs.every_side)

    def batch_size(self, preset: Preset, width: int, height: int) -> int:
        assert ray is not None
        s = preset.settings
        if s.batch_size == 1 or (s.batch_size == 0 and not self.gpus):
            return 1  # memory.batch_size's answer for CPU workers, without asking one
        out_w, out_h = output_size(width, height, s.size)
        key = (settings_digest(s), out_w * out_h)
        if key not in self._batch_sizes:
            # A worker measures it: only it knows its device's free memory.
            actor = (self._pool.idle or self._pool.actors)[0]
            try:
                self._batch_sizes[key] = ray.get(
                    actor.batch_size.remote(s, out_w * out_h), timeout=60)
            except ray.exceptions.RayTaskError as exc:
                raise exc.cause from None
            except ray.exceptions.RayError:
                return 1  # that worker is busy restarting: no batching this time
        return self._batch_sizes[key]

    def remote_training(self, on_step: Callable[[Any], None] | None,
                        should_stop: Callable[[], bool] | None) -> RemoteTraining:
        """One worker to train a network on (the first idle one), driven from here."""
        self._pool.reclaim()
        actors = self._pool.idle or self._pool.actors
        if not actors:
            raise StylizeError("no Ray worker is left to train on", category="workers_lost")
        return RemoteTraining(actors[0], on_step, lambda data: None, should_stop)

    def capacity(self) -> int:
        # Each worker busy, and one batch read and waiting, so that a worker that finishes
        # starts again at once.  No more: each batch waiting is photos held in memory here.
        return max(1, len(self._pool.actors)) + 1

    def submit(self, batch: list[Work]) -> None:
        preset = batch[0].preset
        network = self._networks.ship(preset) if needs_network(preset.settings) else None
        works, videos = self._videos.pack(batch)
        self._queue.append(_Piece(_Batch(), works, self._targets.style(preset), network,
                                  videos=videos))
        self._dispatch()

    def wait(self) -> list[Finished]:
        while not self._done:
            if not (self._queue or self._running):
                raise RuntimeError("wait() with nothing submitted")
            if self._should_stop is not None and self._should_stop():
                self.cancel()
                raise Cancelled("stopped on request")
            self._pump()
        return self._done.popleft()

    def cancel(self) -> None:
        assert ray is not None
        for ref, (actor, _piece) in self._running.items():
            with contextlib.suppress(Exception):
                ray.cancel(ref)  # the task stops at the engine's next step
            self._pool.cancelled(ref, actor)
        self._running.clear()
        self._queue.clear()
        self._done.clear()
        self._relay.drop()  # events of cancelled work

    def close(self) -> None:
        if ray is None or not ray.is_initialized():
            return
        self._queue.clear()
        self._running.clear()
        self._pool.close()
        self._relay.close()
        self._targets.clear()
        self._networks.clear()
        self._videos.clear()
        if self._owns_ray:
            ray.shutdown()

    # -- the loop -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        while self._queue and self._pool.idle:
            piece = self._queue.popleft()
            actor = self._pool.idle.pop(0)
            ref = actor.render.remote(piece.works, dict(piece.style.refs),
                                      piece.style.identity, piece.network, piece.videos)
            self._running[ref] = (actor, piece)

    def _pump(self) -> None:
        """Wait a little for a task, a worker or progress; handle whatever came."""
        assert ray is not None
        self._pool.reclaim()
        self._dispatch()
        waiting = [*self._running, *self._pool.waiting()]
        if not waiting:
            raise StylizeError("every Ray worker is gone "
                               f"({self._pool.last_death or 'they died or were removed'}); "
                               "nothing more can be done this run", category="workers_lost")
        ready, _ = ray.wait(waiting, num_returns=1, timeout=POLL_S)
        if ready:  # take everything that is ready, not just the first
            ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
        self._relay.deliver()
        self._pool.admit(ready)
        self._pool.reclaim()
        for ref in ready:
            if ref in self._running:
                self._finished(ref)
        self._dispatch()

    def _finished(self, ref: Any) -> None:
        assert ray is not None
        actor, piece = self._running.pop(ref)
        try:
            results: list[Finished] = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            self._pool.idle.append(actor)  # the worker is fine; the task raised
            cause = exc.cause
            if isinstance(cause, MissingTargets):
                # A photo whose decoded size differs from its header's: ship its sides and
                # do the piece again.
                self._targets.ship(piece.style, piece.works[0].preset, set(cause.sides))
                self._queue.appendleft(piece)
                return
            if isinstance(cause, BaseException):
                raise cause from None  # the weights, the device, a bug: the run's problem
            raise
        except ray.exceptions.TaskCancelledError:
            self._pool.idle.append(actor)
            return
        except ray.exceptions.RayError as exc:  # the worker died under it
            self._pool.restarting(actor, exc)
            self._lost(piece, exc)
            return
        self._pool.idle.append(actor)
        self._complete(piece, results)

    def _lost(self, piece: _Piece, exc: Exception) -> None:
        assert ray is not None
        piece.attempts += 1
        if piece.attempts <= DRIVER_RETRIES:
            logger.warning("a Ray worker died under %d photo(s) (%s); trying them again",
                           len(piece.works), self._pool.last_death)
            # One photo per task: if one of them kills its worker, the others are spared.
            singles = [_Piece(piece.batch, [w], piece.style, piece.network, piece.attempts,
                              piece.videos)
                       for w in piece.works]
            piece.batch.open += len(singles) - 1
            self._queue.extendleft(reversed(singles))
            return
        oom = isinstance(exc, ray.exceptions.OutOfMemoryError)
        self._complete(piece, [Finished(
            w.id, category="out_of_memory" if oom else "worker_lost",
            message=(f"{w.name}: Ray stopped its worker for lack of memory on the node; "
                     "try a smaller size") if oom else
                    (f"{w.name}: the Ray worker stylizing it died, each time it was tried "
                     f"({self._pool.last_death})"))
            for w in piece.works])

    def _complete(self, piece: _Piece, results: list[Finished]) -> None:
        piece.batch.results += results
        piece.batch.open -= 1
        if piece.batch.open == 0:
            self._done.append(piece.batch.results)
