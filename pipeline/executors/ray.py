"""The Ray executor: photos are stylized by Ray actors, on this machine or a cluster.

Each actor (:class:`_Worker`) builds one :class:`~pipeline.render.Workshop` for
its life and calls :func:`~pipeline.render.render_batch` on the batches it is
given, so a photo is made, retried after running out of memory and failed
exactly as in-process.  Actors rather than Ray Data: the runner already
streams photos and writes each result as it comes, an actor keeps its engine
(the network, loaded once) across thousands of photos and a watcher's days,
and the fault-tolerance knobs we need (``max_restarts``, ``max_task_retries``,
``ray.cancel``) are the actors' own.

What travels, and what stays on the driver:

* to a worker: each photo's bytes, its resolved preset, and the style targets
  by object reference (one ``ray.put`` per style and side, fetched once per
  worker).  A worker never opens a file of the job, nor a painting: targets are
  computed or read from the cache here, on the driver, for every side a photo
  may need, including those of the half-size retry after running out of memory;
* back: the encoded picture (or a category and a reason), and progress events
  through a small actor that :meth:`RayExecutor.wait` drains on the driver's
  thread.

Faults: a worker that dies (killed, a node gone, the node's out-of-memory
killer) is restarted by Ray and its task retried by Ray; if that attempt dies
too, the driver gives the photos once more to any worker, one photo per task,
and then records them as ``worker_lost`` (or ``out_of_memory``).  A photo that
fails for its own reasons comes back as a result with its category and is never
retried.  Setup errors (the weights, the device) are raised from ``wait`` as
their own type.  ``cancel`` asks every running task to stop between two
optimizer steps (``ray.cancel``); nothing partial can come back, since only the
driver writes.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import re
import socket
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipeline.cache import ArtifactCache
from pipeline.engine.geometry import MIN_SCALE_SIDE, output_size, style_sides
from pipeline.errors import Cancelled, InputError, StylizeError, UsageError, WeightsError
from pipeline.executors.base import (
    ExecEvent,
    ExecEventFn,
    Finished,
    Started,
    Step,
    TargetCounts,
    Work,
)
from pipeline.hashing import digest_json, file_digest
from pipeline.settings import Settings
from pipeline.styles import Preset

try:
    import ray
    import ray.exceptions
except ImportError:  # the optional extra is not installed: RayExecutor says so
    ray = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import torch

    from pipeline.engine.optimize import Engine, StyleTargets

__all__ = ["RayExecutor", "ray_available"]

logger = logging.getLogger(__name__)

RAY_MIN_VERSION = (2, 40)
#: How long connecting to a cluster may take before it is called unreachable.
CONNECT_TIMEOUT_S = 30.0
#: How long the first worker may take to start (process, torch, the imports).
START_TIMEOUT_S = 120.0
#: How often ``wait`` looks at progress and at ``should_stop``.
POLL_S = 0.1
#: A worker sends a step at most this often per photo (the view redraws a few times a second).
STEP_INTERVAL_S = 0.2
#: Torch threads of a CPU worker when ``cpus_per_worker`` is not given: past about four,
#: one photo gains little from more threads, and several workers share a node better.
DEFAULT_CPU_THREADS = 4
#: After its task died twice (Ray's retry included), a photo is given once more to any
#: worker, alone; after that it fails.
DRIVER_RETRIES = 1
#: Style targets a worker keeps deserialized (a few MB each).
WORKER_TARGETS_KEPT = 64


def ray_available() -> bool:
    return ray is not None


def _distribution() -> str:
    """The name this package is installed under, for the install hint."""
    with contextlib.suppress(Exception):
        names = importlib.metadata.packages_distributions().get("pipeline")
        if names:
            return names[0]
    return "stylize"


def _require_ray() -> None:
    if ray is None:
        raise UsageError(f'--executor ray needs Ray, which is not installed: '
                         f'pip install "{_distribution()}[ray]" (the [ray] extra)')
    found = tuple(int(p) for p in re.findall(r"\d+", ray.__version__)[:2])
    if found < RAY_MIN_VERSION:
        raise UsageError(f"--executor ray needs ray>=2.40, found {ray.__version__}: "
                         f'pip install -U "{_distribution()}[ray]"')


def _one_line(exc: BaseException) -> str:
    """The innermost ``SomeError: message`` line of an exception's text (Ray's are long)."""
    text = str(exc)
    found = re.findall(r"^(\w+(?:Error|Exception): .+)$", text, flags=re.MULTILINE)
    line = found[-1] if found else " ".join(text.split())
    return line if len(line) <= 200 else line[:197] + "..."


def _connect(address: str | None, timeout: float, runtime_env: dict[str, Any] | None) -> bool:
    """Join (or start) Ray; True when this process started it and must shut it down."""
    assert ray is not None
    if ray.is_initialized():
        return False  # an embedding program (or the tests) already connected
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                               "logging_level": logging.ERROR}
    if runtime_env:
        options["runtime_env"] = runtime_env
    if address is None:
        ray.init(**options)
        return True
    _probe(address, timeout)
    try:
        ray.init(address=address, **options)
    except Exception as exc:  # ConnectionError, RuntimeError, a missing ray[client], ...
        raise UsageError(f"cannot connect to the Ray cluster at {address}: "
                         f"{_one_line(exc)}") from None
    return False


def _probe(address: str, timeout: float) -> None:
    """Fail within ``timeout`` if nothing listens at the cluster's address.

    ``ray.init`` itself may wait a minute, and then end the process, on an address
    where nothing answers; a plain TCP connection tells in seconds.
    """
    assert ray is not None
    target: str | None = address.removeprefix("ray://")
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address("auto")
        except Exception:  # a private helper: if it moved, let ray.init tell
            return
        if target is None:
            raise UsageError("no running Ray cluster found for --ray-address auto; start one "
                             "with `ray start --head`, or leave --ray-address out to start "
                             "one for this run")
    assert target is not None
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"Ray address {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UsageError(f"cannot reach the Ray cluster at {address} within {timeout:.0f} s "
                         f"({why}); is `ray start --head` running there?") from None


def _control(method: Callable[..., Any]) -> Callable[..., Any]:
    """Actor methods that answer while a photo is being made (their own thread)."""
    if ray is None:
        return method
    return ray.method(concurrency_group="control")(method)  # type: ignore[no-any-return]


class MissingTargets(StylizeError):
    """Raised on a worker whose photo needs style sides the driver did not ship."""

    def __init__(self, message: str, sides: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.sides = sides


# -- the actors --------------------------------------------------------------------------


class _ProgressBox:
    """Where workers drop their progress events until the driver drains them."""

    def __init__(self) -> None:
        self._events: list[ExecEvent] = []

    def push(self, events: list[ExecEvent]) -> None:
        self._events.extend(events)

    def drain(self) -> list[ExecEvent]:
        events, self._events = self._events, []
        return events


class _Worker:
    """A Ray actor: one Workshop for its life; photos in as bytes, pictures out as bytes."""

    def __init__(self, threads: int, progress: str) -> None:
        import torch

        from pipeline.render import Workshop

        assert ray is not None
        if threads > 0:
            torch.set_num_threads(threads)  # its CPU share, whatever OMP_NUM_THREADS says
        self.label = f"ray:{socket.gethostname()}:{os.getpid()}"
        # Found by name, not passed as a handle: a restarted actor must find it again.
        # Without it (gone with a driver's node) photos are still made, silently.
        self._progress: Any = None
        with contextlib.suppress(ValueError):
            self._progress = ray.get_actor(progress)
        self._shop = Workshop(self._targets, worker=self.label)
        self._sides: dict[int, Any] = {}  # side -> ObjectRef of its Gram targets
        self._identity: dict[str, Any] = {}
        self._grams: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        self._outbox: list[ExecEvent] = []
        self._step: Step | None = None
        self._sent = 0.0

    @_control
    def ready(self) -> dict[str, Any]:
        import torch

        return {"worker": self.label, "threads": torch.get_num_threads(),
                "gpus": torch.cuda.device_count()}

    @_control
    def auto_batch_size(self, settings: Settings, pixels: int) -> int:
        from pipeline.engine import memory
        from pipeline.engine.device import resolve_device, resolve_precision

        device = resolve_device(settings.device)
        return memory.auto_batch_size(device, resolve_precision(settings.precision, device),
                                      pixels)

    def render(self, works: list[Work], sides: dict[int, Any],
               identity: dict[str, Any]) -> list[Finished]:
        from pipeline.render import render_batch

        assert ray is not None
        self._sides, self._identity = sides, identity
        self._outbox += [Started(w.id, self.label) for w in works]
        self._flush()
        context = ray.get_runtime_context()
        try:
            # ray.cancel() sets the flag this reads; the engine checks it between steps.
            results = render_batch(self._shop, works, on_progress=self._on_step,
                                   should_stop=context.is_canceled)
        finally:
            self._flush()
        return [r if r.worker else replace(r, worker=self.label) for r in results]

    def _on_step(self, work_id: int, progress: object) -> None:
        self._step = Step(work_id, progress, self.label)  # type: ignore[arg-type]
        if time.monotonic() - self._sent >= STEP_INTERVAL_S:
            self._flush()

    def _flush(self) -> None:
        events = self._outbox + ([self._step] if self._step is not None else [])
        self._outbox, self._step = [], None
        if events and self._progress is not None:
            self._progress.push.remote(events)  # fire and forget
            self._sent = time.monotonic()

    def _targets(self, engine: Engine, preset: Preset, sides: list[int]) -> StyleTargets:
        """The ``TargetSource`` of this worker's Workshop: what the driver shipped, only."""
        assert ray is not None
        mine = engine.style_identity()
        if mine != self._identity:
            raise WeightsError(f"the Ray worker {self.label} has other VGG weights than the "
                               f"driver ({mine.get('weights', '?')!s:.12} here, "
                               f"{self._identity.get('weights', '?')!s:.12} there); install "
                               "the same weights on every machine")
        missing = tuple(s for s in sides if s not in self._sides)
        if missing:
            raise MissingTargets(f"style targets of sides {list(missing)} were not shipped",
                                 missing)
        refs = {s: self._sides[s] for s in sides}
        fetch = [ref for ref in refs.values() if ref.hex() not in self._grams]
        for ref, grams in zip(fetch, ray.get(fetch), strict=True):
            self._grams[ref.hex()] = grams
            while len(self._grams) > WORKER_TARGETS_KEPT:
                self._grams.popitem(last=False)
        return {s: self._grams[ref.hex()] for s, ref in refs.items()}


# -- the driver's side ----------------------------------------------------------------------


@dataclass
class _Group:
    """The style targets of one style and engine identity, as shipped to workers."""

    engine: Engine  # on the driver's CPU, for computing targets only
    identity: dict[str, Any]
    refs: dict[int, Any] = field(default_factory=dict)  # side -> ObjectRef


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
    group: _Group
    attempts: int = 0  # times a worker died under it


class RayExecutor:
    """Stylizes on Ray actors (see the module docstring).

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
        _require_ray()
        assert ray is not None
        from pipeline.targets import StyleTargetStore

        if workers is not None and workers < 1:
            raise UsageError(f"--workers must be at least 1, not {workers}")
        self._owns_ray = _connect(address, connect_timeout, runtime_env)
        self.store = StyleTargetStore(cache)
        self._shipped = 0
        self._on_event: ExecEventFn = lambda e: None
        self._should_stop: Callable[[], bool] | None = None
        self._engines: dict[str, Engine] = {}
        self._groups: dict[str, _Group] = {}
        self._batch_sizes: dict[tuple[str, int], int] = {}
        self._started: set[int] = set()
        self._queue: deque[_Piece] = deque()
        self._running: dict[Any, tuple[Any, _Piece]] = {}  # task ref -> (actor, piece)
        self._draining: dict[Any, Any] = {}  # cancelled task ref -> its actor
        self._pending: dict[Any, Any] = {}  # ready() ref -> actor starting or restarting
        self._idle: list[Any] = []
        self._actors: list[Any] = []
        self._done: deque[list[Finished]] = deque()
        self._last_death = ""
        try:
            self._start(workers, cpus_per_worker, gpus_per_worker, max_restarts,
                        max_task_retries, start_timeout)
        except BaseException:
            self.close()
            raise

    # -- starting -----------------------------------------------------------------------

    def _start(self, workers: int | None, cpus: int | None, gpus: float | None,
               max_restarts: int, max_task_retries: int, start_timeout: float) -> None:
        assert ray is not None
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        total_gpus = sum(r.get("GPU", 0.0) for r in nodes)
        self.gpus = (1.0 if total_gpus else 0.0) if gpus is None else float(gpus)
        if cpus is None:
            cpus = 1 if self.gpus else max(1, min(DEFAULT_CPU_THREADS, int(
                max((r.get("CPU", 0.0) for r in nodes), default=1))))
        self.cpus = cpus
        fits = [r for r in nodes if r.get("CPU", 0.0) >= cpus and r.get("GPU", 0.0) >= self.gpus]
        if not fits:
            have = ", ".join(f"{r.get('CPU', 0):g} CPUs/{r.get('GPU', 0):g} GPUs" for r in nodes)
            raise UsageError(f"no Ray node can run a worker with {cpus} CPUs and {self.gpus:g} "
                             f"GPUs (the cluster has: {have or 'no nodes'}); ask for less "
                             "with --workers or a smaller CPU share")
        if workers is None:
            if self.gpus:
                workers = max(1, int(sum(r.get("GPU", 0.0) for r in fits) // self.gpus))
            else:
                workers = max(1, sum(int(r.get("CPU", 0.0) // cpus) for r in fits))
        here = ray.get_runtime_context().get_node_id()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        box_name = f"stylize-progress-{uuid.uuid4().hex}"
        self._box: Any = ray.remote(_ProgressBox).options(  # type: ignore[attr-defined]
            name=box_name, num_cpus=0, max_restarts=-1,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()
        worker_class = ray.remote(  # type: ignore[call-overload]
            concurrency_groups={"control": 1})(_Worker)
        for _ in range(workers):
            actor = worker_class.options(  # type: ignore[attr-defined]
                num_cpus=cpus, num_gpus=self.gpus, max_restarts=max_restarts,
                max_task_retries=max_task_retries).remote(cpus, box_name)
            self._actors.append(actor)
            self._pending[actor.ready.remote()] = actor
        deadline = time.monotonic() + start_timeout
        while not self._idle:
            if not self._pending:
                raise UsageError("no Ray worker could start the engine: "
                                 f"{self._last_death or 'every worker died'}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise UsageError(f"no Ray worker started within {start_timeout:.0f} s: the "
                                 f"cluster has no free {cpus} CPUs and {self.gpus:g} GPUs for "
                                 "one, or its machines cannot start it")
            ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=min(left, 1.0))
            self._admit(ready)

    def _admit(self, ready: list[Any]) -> None:
        """Workers whose ready() answered: idle again, or gone for good."""
        assert ray is not None
        for ref in ready:
            actor = self._pending.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayError as exc:
                self._last_death = _one_line(exc)
                logger.warning("a Ray worker is gone: %s", self._last_death)
                if actor in self._actors:
                    self._actors.remove(actor)
                continue
            self._idle.append(actor)

    # -- the protocol -------------------------------------------------------------------

    @property
    def counts(self) -> TargetCounts:  # type: ignore[override]
        return TargetCounts(self.store.counts.computed, self.store.counts.cached, self._shipped)

    @property
    def workers(self) -> int:
        """Workers alive (starting, restarting or ready)."""
        return len(self._actors)

    def bind(self, on_event: ExecEventFn, should_stop: Callable[[], bool] | None) -> None:
        self._on_event = on_event
        self._should_stop = should_stop
        self._started.clear()  # work ids start again at 0 in each run

    def _engine(self, settings: Settings) -> Engine:
        """A driver-side engine for style targets: the CPU, float32 (targets always are)."""
        from pipeline.engine.optimize import Engine

        here = settings.merged({"device": "cpu", "precision": "fp32"})
        key = digest_json(here.model_dump())
        if key not in self._engines:
            self._engines[key] = Engine(here)
        return self._engines[key]

    def _group(self, preset: Preset) -> _Group:
        engine = self._engine(preset.settings)
        identity = engine.style_identity()
        key = digest_json({"engine": identity, "images": [[file_digest(i.path), i.weight]
                                                          for i in preset.images]})
        if key not in self._groups:
            self._groups[key] = _Group(engine, identity)
        return self._groups[key]

    def _ship(self, group: _Group, preset: Preset, sides: set[int]) -> None:
        """Compute or read the targets of these sides, here, and put the new ones in Ray."""
        assert ray is not None
        new = sorted(s for s in sides if s not in group.refs)
        if not new:
            return
        targets = self.store.get(group.engine, preset, new)
        for side in new:
            group.refs[side] = ray.put(targets[side])
            self._shipped += 1

    def prepare(self, preset: Preset, sizes: list[tuple[int, int]]) -> None:
        from pipeline.render import OOM_RETRY_SCALE

        s = preset.settings
        if s.device.startswith("cuda") and not self.gpus:
            raise UsageError(f"style {preset.name!r} asks for device {s.device!r}, but the Ray "
                             "workers have no GPU (the cluster has none, or --gpus-per-worker "
                             "is 0)")
        wanted: set[int] = set()
        smaller = s.merged({"size": int(s.size * OOM_RETRY_SCALE)}) \
            if int(s.size * OOM_RETRY_SCALE) >= MIN_SCALE_SIDE else None
        for w, h in sizes:
            for settings in (s, smaller):
                # A photo too thin for a size fails in its own task, with its name.
                if settings is not None:
                    with contextlib.suppress(InputError):
                        wanted.update(style_sides(w, h, settings))
        self._ship(self._group(preset), preset, wanted)

    def batch_size(self, preset: Preset, width: int, height: int) -> int:
        assert ray is not None
        s = preset.settings
        if s.batch_size == 1 or (s.batch_size == 0 and not self.gpus):
            return 1
        if s.batch_size:
            return s.batch_size
        out_w, out_h = output_size(width, height, s.size)
        key = (digest_json(s.model_dump()), out_w * out_h)
        if key not in self._batch_sizes:
            actor = (self._idle or self._actors)[0]
            try:
                self._batch_sizes[key] = ray.get(
                    actor.auto_batch_size.remote(s, out_w * out_h), timeout=60)
            except ray.exceptions.RayTaskError as exc:
                raise exc.cause from None
            except ray.exceptions.RayError:
                return 1  # that worker is busy restarting: no batching this time
        return self._batch_sizes[key]

    def capacity(self) -> int:
        # Each worker busy, and one batch read and waiting, so that a worker that finishes
        # starts again at once.  No more: each batch waiting is photos held in memory here.
        return max(1, len(self._actors)) + 1

    def submit(self, batch: list[Work]) -> None:
        self._queue.append(_Piece(_Batch(), batch, self._group(batch[0].preset)))
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
            self._draining[ref] = actor
        self._running.clear()
        self._queue.clear()
        self._done.clear()
        with contextlib.suppress(Exception):
            ray.get(self._box.drain.remote(), timeout=5)  # events of cancelled work: dropped

    def close(self) -> None:
        if ray is None or not ray.is_initialized():
            return
        self._queue.clear()
        self._running.clear()
        for actor in [*self._actors, *([self._box] if hasattr(self, "_box") else [])]:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self._actors.clear()
        self._idle.clear()
        self._pending.clear()
        self._draining.clear()
        self._groups.clear()
        self._engines.clear()
        if self._owns_ray:
            ray.shutdown()

    # -- the loop -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            piece = self._queue.popleft()
            actor = self._idle.pop(0)
            ref = actor.render.remote(piece.works, dict(piece.group.refs),
                                      piece.group.identity)
            self._running[ref] = (actor, piece)

    def _pump(self) -> None:
        """Wait a little for a task, a worker or progress; handle whatever came."""
        assert ray is not None
        self._reclaim()
        self._dispatch()
        waiting = [*self._running, *self._pending, *self._draining]
        if not waiting:
            raise StylizeError("every Ray worker is gone "
                               f"({self._last_death or 'they died or were removed'}); "
                               "nothing more can be done this run", category="workers_lost")
        ready, _ = ray.wait(waiting, num_returns=1, timeout=POLL_S)
        if ready:
            ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
        self._deliver_events()
        self._admit([r for r in ready if r in self._pending])
        self._reclaim()
        for ref in ready:
            if ref in self._running:
                self._finished(ref)
        self._dispatch()

    def _reclaim(self) -> None:
        """Workers whose cancelled task has ended can work again."""
        assert ray is not None
        if not self._draining:
            return
        refs = list(self._draining)
        ended, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ended:
            actor = self._draining.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError:
                self._pending[actor.ready.remote()] = actor
                continue
            except ray.exceptions.RayError:
                pass  # cancelled, as asked
            self._idle.append(actor)

    def _deliver_events(self) -> None:
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

    def _finished(self, ref: Any) -> None:
        assert ray is not None
        actor, piece = self._running.pop(ref)
        try:
            results: list[Finished] = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            self._idle.append(actor)  # the worker is fine; the task raised
            cause = exc.cause
            if isinstance(cause, MissingTargets):
                # A photo whose decoded size differs from its header's: ship its sides and
                # do the piece again.
                self._ship(piece.group, piece.works[0].preset, set(cause.sides))
                self._queue.appendleft(piece)
                return
            if isinstance(cause, BaseException):
                raise cause from None  # the weights, the device, a bug: the run's problem
            raise
        except ray.exceptions.TaskCancelledError:
            self._idle.append(actor)
            return
        except ray.exceptions.RayError as exc:  # the worker died under it
            self._last_death = _one_line(exc)
            self._pending[actor.ready.remote()] = actor  # back when restarted, or dropped
            self._lost(piece, exc)
            return
        self._idle.append(actor)
        self._complete(piece, results)

    def _lost(self, piece: _Piece, exc: Exception) -> None:
        assert ray is not None
        piece.attempts += 1
        if piece.attempts <= DRIVER_RETRIES:
            logger.warning("a Ray worker died under %d photo(s) (%s); trying them again",
                           len(piece.works), self._last_death)
            singles = [_Piece(piece.batch, [w], piece.group, piece.attempts)
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
                     f"({self._last_death})"))
            for w in piece.works])

    def _complete(self, piece: _Piece, results: list[Finished]) -> None:
        piece.batch.results += results
        piece.batch.open -= 1
        if piece.batch.open == 0:
            self._done.append(piece.batch.results)
