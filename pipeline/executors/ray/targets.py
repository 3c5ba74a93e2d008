"""Style targets by object reference: made once on the driver, used as shipped on workers.

The driver computes each style's targets (Gram matrices and feature means), or reads
them from its cache, for every side a photo may need, the half-size retry after running
out of memory included, and puts each side in Ray's object store once per style and engine
identity (:class:`TargetShipper`); tasks carry the references.  A worker fetches
a reference once and keeps what it fetched (:class:`WorkerTargets`), so targets
are computed once per cluster and a worker never opens a painting.  A side that
was not shipped (a photo whose decoded size differs from its header's) is asked
for with :class:`MissingTargets`, and the driver ships it and sends the task again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.config.settings import Settings
from pipeline.config.styles import Preset
from pipeline.engine.style_targets import style_identity
from pipeline.errors import StylizeError, WeightsError
from pipeline.executors.base import TargetCounts
from pipeline.executors.ray.connect import ray
from pipeline.render.targets import StyleTargetStore, style_key
from pipeline.store.cache import ArtifactCache

if TYPE_CHECKING:
    import torch

    from pipeline.engine.style_targets import StyleTargetMaker, StyleTargets

__all__ = ["MissingTargets", "ShippedStyle", "TargetShipper", "WorkerTargets"]

#: Style targets a worker keeps deserialized (a few MB each).
WORKER_TARGETS_KEPT = 64


class MissingTargets(StylizeError):
    """Raised on a worker whose photo needs style sides the driver did not ship."""

    def __init__(self, message: str, sides: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.sides = sides


@dataclass
class ShippedStyle:
    """The style targets of one style and engine identity, as shipped to workers."""

    settings: Settings  # on the driver's CPU in float32, for computing targets only
    identity: dict[str, Any]
    refs: dict[int, Any] = field(default_factory=dict)  # side -> ObjectRef


class TargetShipper:
    """The driver's end: targets from the cache-backed store, each side put in Ray once."""

    def __init__(self, cache: ArtifactCache | None) -> None:
        self.store = StyleTargetStore(cache)
        self.shipped = 0
        self._styles: dict[str, ShippedStyle] = {}

    @property
    def counts(self) -> TargetCounts:
        return TargetCounts(self.store.counts.computed, self.store.counts.cached, self.shipped)

    def style(self, preset: Preset) -> ShippedStyle:
        """What has been shipped of this preset's style (its paintings, the targets' identity)."""
        # Targets are made on the driver's CPU, whatever the workers run on.
        here = preset.settings.merged({"device": "cpu", "precision": "fp32"})
        maker: StyleTargetMaker = self.store.maker(here)
        key = style_key(maker, preset)
        if key not in self._styles:
            self._styles[key] = ShippedStyle(here, maker.identity())
        return self._styles[key]

    def ship(self, style: ShippedStyle, preset: Preset, sides: set[int]) -> None:
        """Compute or read the targets of these sides, here, and put the new ones in Ray."""
        assert ray is not None
        new = sorted(s for s in sides if s not in style.refs)
        if not new:
            return
        targets = self.store.get(style.settings, preset, new)
        for side in new:
            style.refs[side] = ray.put(targets[side])
            self.shipped += 1

    def clear(self) -> None:
        self._styles.clear()


class WorkerTargets:
    """A worker's ``TargetSource``: what the driver shipped for the task at hand, only."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self._refs: dict[int, Any] = {}  # side -> ObjectRef of its style targets
        self._identity: dict[str, Any] = {}
        # Fetched targets by reference, oldest first: a watcher's worker lives for days.
        self._grams: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()

    def use(self, refs: dict[int, Any], identity: dict[str, Any]) -> None:
        """The references and the driver's engine identity that come with a task."""
        self._refs, self._identity = refs, identity

    def __call__(self, settings: Settings, preset: Preset, sides: list[int]) -> StyleTargets:
        assert ray is not None
        from pipeline.engine.weights import load_weights  # torch: on the worker only

        mine = style_identity(settings, load_weights(settings.weights))
        if mine != self._identity:
            # Targets made with other weights would silently make other pictures.
            raise WeightsError(f"the Ray worker {self.worker} has other VGG weights than the "
                               f"driver ({mine.get('weights', '?')!s:.12} here, "
                               f"{self._identity.get('weights', '?')!s:.12} there); install "
                               "the same weights on every machine")
        missing = tuple(s for s in sides if s not in self._refs)
        if missing:
            raise MissingTargets(f"style targets of sides {list(missing)} were not shipped",
                                 missing)
        refs = {s: self._refs[s] for s in sides}
        fetch = [ref for ref in refs.values() if ref.hex() not in self._grams]
        for ref, grams in zip(fetch, ray.get(fetch), strict=True):
            self._grams[ref.hex()] = grams
            while len(self._grams) > WORKER_TARGETS_KEPT:
                self._grams.popitem(last=False)
        return {s: self._grams[ref.hex()] for s, ref in refs.items()}
