"""Style targets, computed once per (style, weights, layers, size) and cached.

Each style side is its own cache entry, so photos whose pyramids share sizes
share entries, and a new photo size computes only the sides it adds.  The key
holds everything that decides the numbers: the style images' content hashes
and blend weights, the weights' hash, preprocessing, pooling, padding, layers,
the luminance flag and the side.  It does not hold the precision: targets are
always computed in float32.  Nor the style loss: an entry holds each layer's Gram
matrix (second moment) and feature means, which is what both losses need.

Entries written before the means were stored hold the Gram matrices only, under the
same key (the Gram matrices are the same numbers).  Such an entry is computed again
when it is read, means included, and replaces the old one.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image

from pipeline.config.settings import Settings
from pipeline.config.styles import Preset
from pipeline.config.views import settings_digest
from pipeline.engine.style_targets import SideTargets, StyleTargetMaker, StyleTargets
from pipeline.errors import ConfigError, InputError, OutputNotWritableError
from pipeline.images import load_image
from pipeline.store.cache import ArtifactCache
from pipeline.store.hashing import digest_json

CACHE_KIND = "gram"
logger = logging.getLogger(__name__)


@dataclass
class StoreCounts:
    """Style target sides computed here and read from the cache, over a store's life."""

    computed: int = 0
    cached: int = 0


def _identity(maker: StyleTargetMaker, preset: Preset) -> dict[str, object]:
    """What decides a style's targets at every side: the loss network's identity and the
    paintings."""
    return {"engine": maker.identity(), "images": preset.paintings_identity()}


def style_key(maker: StyleTargetMaker, preset: Preset) -> str:
    """The digest of what decides a style's targets at every side (not the side)."""
    return digest_json(_identity(maker, preset))


def side_key(maker: StyleTargetMaker, preset: Preset, side: int) -> str:
    """One side's cache key: the style's identity and the side."""
    return digest_json({**_identity(maker, preset), "side": side, "version": 1})


def _load_style_images(preset: Preset) -> list[tuple[Image.Image, float]]:
    loaded = []
    for img in preset.images:
        try:
            # Paintings are never needed above a few thousand pixels.
            loaded.append((load_image(img.path, max_long_side=4096).rgb, img.weight))
        except InputError as exc:
            raise ConfigError(f"style {preset.name!r}: {exc.message}") from exc
    return loaded


class StyleTargetStore:
    """Hands out style targets for an engine and a preset, through an optional disk cache."""

    #: Targets kept in memory (a few MB per style and side), so that one style's
    #: targets are read once for all its photos, not once per photo.
    MEMORY_ENTRIES = 64

    def __init__(self, cache: ArtifactCache | None) -> None:
        self.cache = cache
        self.counts = StoreCounts()
        self._makers: dict[str, StyleTargetMaker] = {}
        self._told_unwritable = False
        self._memory: OrderedDict[str, SideTargets] = OrderedDict()

    def _remember(self, key: str, grams: SideTargets) -> None:
        self._memory[key] = grams
        self._memory.move_to_end(key)
        while len(self._memory) > self.MEMORY_ENTRIES:
            self._memory.popitem(last=False)

    def maker(self, settings: Settings) -> StyleTargetMaker:
        """The target maker of these settings (on their device), built once."""
        # The loss network and the style layers it is run to; on which device.
        key = f"{settings_digest(settings, 'vgg')}:{settings.device}:" + digest_json(
            [settings.preserve_color, settings.style_layers])
        if key not in self._makers:
            self._makers[key] = StyleTargetMaker(settings)
        return self._makers[key]

    def get(self, settings: Settings, preset: Preset, sides: Iterable[int]) -> StyleTargets:
        """The targets of these sides for a photo stylized with ``settings`` in ``preset``'s
        style (``settings`` may differ from the preset's: a smaller size after running out
        of memory)."""
        maker = self.maker(settings)
        wanted = sorted(set(sides))
        found: StyleTargets = {}
        keys = {side: side_key(maker, preset, side) for side in wanted}
        for side in wanted:
            if keys[side] in self._memory:
                found[side] = self._memory[keys[side]]
                self._memory.move_to_end(keys[side])
            elif self.cache is not None:
                entry = self.cache.get(CACHE_KIND, keys[side])
                if entry is not None and maker.complete(entry):
                    found[side] = entry
                    self._remember(keys[side], entry)
                    self.counts.cached += 1
        missing = [side for side in wanted if side not in found]
        if missing:
            computed = maker.compute(_load_style_images(preset), missing)
            for side, grams in computed.items():
                found[side] = grams
                self._remember(keys[side], grams)
                self.counts.computed += 1
                if self.cache is not None:
                    try:
                        self.cache.put(CACHE_KIND, keys[side], grams,
                                       {"style": preset.name, "side": str(side)})
                    except OutputNotWritableError as exc:
                        # A read-only cache slows later runs down but must not fail this one;
                        # said once, not once per entry.
                        if not self._told_unwritable:
                            logger.warning("%s; style targets are not cached", exc.message)
                        self._told_unwritable = True
        return found
