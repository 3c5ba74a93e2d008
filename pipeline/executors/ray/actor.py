"""The worker actor: one :class:`~pipeline.render.workshop.Workshop` for its life, around
:func:`~pipeline.render.workshop.render_batch`; photos in as bytes, pictures out as bytes.

Because the photo is made by the same ``render_batch`` as in-process, it is
decoded, batched, retried after running out of memory and failed exactly as in
a local run.  The actor opens no file of the job: its style targets come by
reference (:mod:`.targets`), its progress goes out through the relay
(:mod:`.progress`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from pipeline.config.settings import Settings
from pipeline.executors.base import Finished, Work
from pipeline.executors.ray.connect import ray
from pipeline.executors.ray.networks import ShippedNetwork, WorkerNetworks
from pipeline.executors.ray.progress import ProgressSender
from pipeline.executors.ray.targets import WorkerTargets
from pipeline.executors.ray.videos import with_video

__all__ = ["RayWorker"]


def _control(method: Callable[..., Any]) -> Callable[..., Any]:
    """Actor methods that answer while a photo is being made (their own thread)."""
    if ray is None:
        return method
    return ray.method(concurrency_group="control")(method)  # type: ignore[no-any-return]


class RayWorker:
    """A Ray actor (made remote by :class:`~.pool.WorkerPool`): see the module docstring."""

    def __init__(self, threads: int, progress: str) -> None:
        import torch

        from pipeline.render.workshop import Workshop

        if threads > 0:
            torch.set_num_threads(threads)  # its CPU share, whatever OMP_NUM_THREADS says
        self.label = f"ray:{socket.gethostname()}:{os.getpid()}"
        self._progress = ProgressSender(progress, self.label)
        self._targets = WorkerTargets(self.label)
        self._networks = WorkerNetworks()
        self._shop = Workshop(self._targets, worker=self.label, networks=self._networks)
        self._stops: set[str] = set()  # tokens of trainings asked to stop

    @_control
    def ready(self) -> dict[str, Any]:
        import torch

        return {"worker": self.label, "threads": torch.get_num_threads(),
                "gpus": torch.cuda.device_count()}

    @_control
    def batch_size(self, settings: Settings, pixels: int) -> int:
        from pipeline.engine import memory
        from pipeline.engine.device import resolve_device, resolve_precision

        device = resolve_device(settings.device)
        return memory.batch_size(settings, device,
                                 resolve_precision(settings.precision, device), pixels)

    def train(self, settings: Settings, targets: Any, photos: Any, options: Any,
              checkpoint: bytes | None, key: str, box_name: str, every_s: float,
              token: str) -> Any:
        """Train a network here (see :mod:`.training`).  ``token`` names this training for
        :meth:`stop_training`, which may come before it starts (a stop is never lost)."""
        from pipeline.executors.ray.training import train_on_worker

        assert ray is not None
        arrays = ray.get(photos) if isinstance(photos, ray.ObjectRef) else photos
        try:
            return train_on_worker(settings, targets, arrays, options, checkpoint, key,
                                   box_name, every_s, lambda: token in self._stops)
        finally:
            self._stops.discard(token)

    @_control
    def stop_training(self, token: str) -> None:
        """Ask the training ``token`` to checkpoint and stop, between two steps."""
        self._stops.add(token)

    def render(self, works: list[Work], sides: dict[int, Any], identity: dict[str, Any],
               network: ShippedNetwork | None = None,
               videos: dict[str, Any] | None = None) -> list[Finished]:
        from pipeline.render.workshop import render_batch

        assert ray is not None
        works = with_video(works, videos or {})
        self._targets.use(sides, identity)
        self._networks.use(network)
        self._progress.started(works)
        context = ray.get_runtime_context()
        try:
            # ray.cancel() sets the flag this reads; the engine checks it between steps.
            return render_batch(self._shop, works, on_progress=self._progress.step,
                                should_stop=context.is_canceled)
        finally:
            self._progress.flush()
