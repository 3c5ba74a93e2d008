"""Training a network on one Ray worker, with its checkpoints kept on the driver.

The driver sends the decoded training photos (once, as arrays in the object store), the
style targets and the last checkpoint, if any, to one worker (a GPU worker when the
cluster has them: every worker of such a cluster is one).  The worker trains and drops
its progress and each checkpoint into a small box actor on the driver's node
(:class:`TrainBox`); the driver drains the box between two looks at the task, reports
the steps and writes each checkpoint atomically into its own cache, so a cluster needs
no shared disk, and a driver killed at any moment resumes from the last checkpoint it
received.  A stop request asks the worker to stop between two steps; it checkpoints
first, so nothing is lost.

The worker's side is :func:`train_on_worker`, called by the actor's ``train`` method.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import Cancelled, StylizeError
from pipeline.executors.ray.connect import ray

if TYPE_CHECKING:
    import numpy as np

    from pipeline.config.settings import Settings
    from pipeline.engine.style_targets import StyleTargets
    from pipeline.engine.training import TrainOptions, TrainProgress, TrainResult

__all__ = ["RemoteTraining", "TrainBox", "train_on_worker"]

#: How often the driver looks at the box and the task.
POLL_S = 0.5
#: How long the driver waits for the box's last news once the worker is done.
FINAL_DRAIN_S = 120.0


class TrainBox:
    """The actor a training worker reports to: its latest steps and its last checkpoint."""

    def __init__(self) -> None:
        self._steps: list[Any] = []
        self._checkpoint: bytes | None = None

    def push(self, steps: list[Any], checkpoint: bytes | None = None) -> None:
        self._steps.extend(steps)
        if checkpoint is not None:
            self._checkpoint = checkpoint

    def drain(self) -> tuple[list[Any], bytes | None]:
        steps, checkpoint = self._steps, self._checkpoint
        self._steps, self._checkpoint = [], None
        return steps, checkpoint


@dataclass(frozen=True)
class Trained:
    """What a training worker hands back: the network's file and how far it got."""

    network: bytes  # :func:`pipeline.engine.network_file.encode_network`
    steps: int
    resumed_from: int
    seconds: float
    loss: float | None
    stopped: bool  # by a stop request (its last checkpoint is in the box)


def train_on_worker(settings: Settings, targets: StyleTargets, photos: Sequence[np.ndarray],
                    options: TrainOptions, checkpoint: bytes | None, key: str,
                    box_name: str, every_s: float, should_stop: Callable[[], bool]) -> Trained:
    """Train on this worker; progress and checkpoints go to the box named ``box_name``."""
    from PIL import Image

    from pipeline.engine.network_file import encode_network
    from pipeline.engine.training import Trainer

    assert ray is not None
    box = ray.get_actor(box_name)
    trainer = Trainer(settings, targets, [Image.fromarray(p) for p in photos], options)
    if checkpoint is not None:
        trainer.restore(checkpoint, "the driver's checkpoint", key)
    pending: list[Any] = []
    sent = time.monotonic()

    def on_step(progress: TrainProgress) -> None:
        nonlocal sent
        pending.append(progress)
        if time.monotonic() - sent >= POLL_S:
            box.push.remote(pending[-1:])  # only the latest step is worth sending
            pending.clear()
            sent = time.monotonic()

    def on_checkpoint() -> None:
        ray.get(box.push.remote(pending[-1:], trainer.checkpoint_bytes(key)))
        pending.clear()

    stopped = False
    try:
        result = trainer.run(on_step, should_stop, on_checkpoint, every_s)
    except Cancelled:
        stopped = True
        result = None
    net = trainer.net.eval()
    return Trained(encode_network(net), trainer.step,
                   result.resumed_from if result else 0,
                   result.seconds if result else 0.0, result.loss if result else None, stopped)


class RemoteTraining:
    """The driver's end of one training on one worker (see the module docstring)."""

    def __init__(self, actor: Any, on_step: Callable[[TrainProgress], None] | None,
                 on_checkpoint: Callable[[bytes], None],
                 should_stop: Callable[[], bool] | None) -> None:
        self.actor = actor
        self.on_step = on_step
        self.on_checkpoint = on_checkpoint
        self.should_stop = should_stop

    def run(self, settings: Settings, targets: StyleTargets, photos: Sequence[np.ndarray],
            options: TrainOptions, checkpoint: bytes | None, key: str,
            every_s: float) -> Trained:
        assert ray is not None
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        token = uuid.uuid4().hex
        box_name = f"stylize-train-{token}"
        here = ray.get_runtime_context().get_node_id()
        box: Any = ray.remote(TrainBox).options(  # type: ignore[attr-defined]
            name=box_name, num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()
        self._pending: Any = None  # the drain asked for and not yet answered
        try:
            # Not retried by Ray: a retry would start again from this (older) checkpoint
            # and overwrite the newer ones the driver has since written.
            task = self.actor.train.options(max_task_retries=0).remote(
                settings, targets, ray.put(list(photos)), options, checkpoint, key,
                box_name, every_s, token)
            while not ray.wait([task], timeout=POLL_S)[0]:
                self._drain(box)
                if self.should_stop is not None and self.should_stop():
                    self.actor.stop_training.remote(token)  # again each time: never lost
            trained = self._result(task)
            # The worker is done: a drain asked for now holds its last checkpoint and steps
            # (one asked before may not, so that one is read first).
            for _ in range(2 if self._pending is not None else 1):
                self._drain(box, wait=FINAL_DRAIN_S)
            if trained.stopped:
                raise Cancelled("stopped on request")
            return trained
        finally:
            with contextlib.suppress(Exception):
                ray.kill(box)

    @staticmethod
    def _result(task: Any) -> Trained:
        """The worker's result, or its failure as one line (a dead worker included)."""
        assert ray is not None
        try:
            trained: Trained = ray.get(task)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, StylizeError):
                raise exc.cause from None
            raise StylizeError(f"training on the Ray worker failed: "
                               f"{type(exc.cause).__name__}: {exc.cause}") from None
        except ray.exceptions.RayError as exc:
            why = " ".join(str(exc).split())[:200]
            raise StylizeError(f"the Ray worker training the network was lost ({why}); the "
                               "same command resumes from the last checkpoint") from None
        return trained

    def _drain(self, box: Any, wait: float = 0.0) -> None:
        """Report the steps and write the checkpoint the box holds.

        One drain is asked for at a time and its answer always read, however late: an
        answer left unread would take a checkpoint with it.  The box may still be starting
        (a new process): then there is no news yet, unless ``wait`` is given.
        """
        assert ray is not None
        if self._pending is None:
            self._pending = box.drain.remote()
        ready, _ = ray.wait([self._pending], timeout=wait or 0)
        if not ready:
            if wait:
                raise StylizeError("the training worker's box did not answer; its last "
                                   "checkpoint may be lost") from None
            return
        try:
            steps, checkpoint = ray.get(self._pending)
        except ray.exceptions.RayError as exc:
            raise StylizeError(f"lost the training worker's progress ({exc})") from None
        finally:
            self._pending = None
        if checkpoint is not None:
            self.on_checkpoint(checkpoint)
        for progress in steps:
            if self.on_step is not None:
                self.on_step(progress)


def result_of(trained: Trained) -> TrainResult:
    """The driver's :class:`TrainResult` of a remote training (the network decoded)."""
    from pipeline.engine.network_file import decode_network
    from pipeline.engine.training import TrainResult

    loaded = decode_network(trained.network, "the network trained on a Ray worker")
    return TrainResult(loaded.net, trained.steps, trained.resumed_from, trained.seconds,
                       trained.loss)
