"""The in-process executor: photos are stylized here, one batch at a time.

Engines are built once per settings and kept for the executor's life (a
watcher keeps one for days), and style targets come from the disk cache
through one :class:`~pipeline.render.targets.StyleTargetStore`.  Photos of one output
size are batched as
:func:`pipeline.engine.memory.batch_size` decides (on a GPU, up to what its free
memory holds; on the CPU, one at a time).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable

from pipeline.config.geometry import output_size
from pipeline.config.settings import Settings
from pipeline.config.styles import Preset
from pipeline.engine import memory
from pipeline.engine.style_targets import StyleTargets
from pipeline.executors.base import ExecEventFn, Finished, Started, Step, TargetCounts, Work
from pipeline.plan.methods import Needs
from pipeline.render.network_loader import NetworkLoader
from pipeline.render.targets import StyleTargetStore
from pipeline.render.workshop import Workshop, render_batch
from pipeline.store.cache import ArtifactCache
from pipeline.store.cache_dir import default_cache_dir


class LocalExecutor:
    """Runs work in this process, in the order submitted (see the module docstring)."""

    def __init__(self, cache: ArtifactCache | None) -> None:
        self.store = StyleTargetStore(cache)
        self.networks = NetworkLoader(cache.root if cache is not None else default_cache_dir())
        self.shop = Workshop(self._targets, worker=f"local:{os.getpid()}",
                             networks=self.networks)
        self._queue: deque[list[Work]] = deque()
        self._on_event: ExecEventFn = lambda e: None
        self._should_stop: Callable[[], bool] | None = None

    @property
    def counts(self) -> TargetCounts:
        return TargetCounts(self.store.counts.computed, self.store.counts.cached, 0)

    def _targets(self, settings: Settings, preset: Preset, sides: list[int]) -> StyleTargets:
        return self.store.get(settings, preset, sides)

    def bind(self, on_event: ExecEventFn, should_stop: Callable[[], bool] | None) -> None:
        self._on_event = on_event
        self._should_stop = should_stop

    def prepare(self, preset: Preset, needs: Needs | None = None) -> None:
        self.shop.engine(preset)  # the networks are loaded here, once
        if needs is not None and needs.sides:
            # The retry's targets are made if it happens: the store is here.
            self.store.get(preset.settings, preset, list(needs.sides))

    def batch_size(self, preset: Preset, width: int, height: int) -> int:
        s = preset.settings
        engine = self.shop.engine(preset)
        out_w, out_h = output_size(width, height, s.size)
        return memory.batch_size(s, engine.device, engine.dtype, out_w * out_h)

    def capacity(self) -> int:
        return 1  # one device, one batch at a time: more would only queue here

    def submit(self, batch: list[Work]) -> None:
        self._queue.append(batch)

    def wait(self) -> list[Finished]:
        batch = self._queue.popleft()
        for work in batch:
            self._on_event(Started(work.id, self.shop.worker))
        return render_batch(self.shop, batch, should_stop=self._should_stop,
                            on_progress=lambda i, p: self._on_event(
                                Step(i, p, self.shop.worker)))  # type: ignore[arg-type]

    def cancel(self) -> None:
        self._queue.clear()

    def close(self) -> None:
        self._queue.clear()
        self.shop.forget_engines()
