"""The ways a picture is made (``settings.method``), and what each needs: decided here, once.

For a photo of a given size, a method says which style targets it needs (the sides of
the squares the painting is resized to), whether it needs the preset's trained network,
and which settings its result depends on (so belong in its key).  The driver asks once
per photo, from the file's header, and carries the answer (:class:`Needs`) with the
work; executors make or ship what it names; ``render`` asks again only when a photo
decodes to another size than its header said.  Without torch: a cluster's driver and
``stylize run --dry-run`` plan with it.  A new method is one more class here.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.config.geometry import (
    MIN_SCALE_SIDE,
    NETWORK_MIN_SIDE,
    output_size,
    style_sides,
)
from pipeline.config.settings import SETTING_NAMES, Settings
from pipeline.config.views import UNKEYED, VIEWS, knobs, without_neutral
from pipeline.errors import InputError

__all__ = ["METHODS", "OOM_RETRY_SCALE", "Method", "Needs", "method_of", "needs",
           "needs_network", "result_view", "retry_size"]

#: The video knobs that only a frame started from the previous one reads (the optimizer's,
#: with ``steady`` above 0).
CARRIED_KNOBS = frozenset({"temporal_weight", "warm_steps"})
#: After running out of memory, a photo is tried once more at this fraction of the size.
OOM_RETRY_SCALE = 0.5


class Method(Protocol):
    name: str

    def style_sides(self, width: int, height: int, settings: Settings) -> list[int]:
        """The style target sides a photo of this (file) size needs; ``InputError``
        (too_small) when the photo has no usable shape at this size."""

    def needs_network(self, settings: Settings) -> bool:
        """Whether a result needs the preset's trained network."""

    def result_view(self, settings: Settings) -> dict[str, Any]:
        """The settings that change a result's pixels (the rest stay out of its key)."""

    #: The video knobs that change a video's frames made this way.
    VIDEO_KEYED: frozenset[str]


class Optimize:
    """Gatys et al.: the picture optimized over a pyramid of scales against style targets
    of each scale's size; with ``init: fast`` started from the network's picture."""

    name = "optimize"

    def style_sides(self, width: int, height: int, settings: Settings) -> list[int]:
        return style_sides(width, height, settings)

    def needs_network(self, settings: Settings) -> bool:
        return settings.init == "fast"

    #: Every knob but the unkeyed ones, the network's and its training's (they do not
    #: touch an optimized picture; with ``init: fast`` its digest is keyed apart) and a
    #: video's (added for videos alone).
    KEYED = frozenset(SETTING_NAMES) - UNKEYED - knobs("network", "training", "video")

    VIDEO_KEYED = VIEWS["video"]

    def result_view(self, settings: Settings) -> dict[str, Any]:
        view = without_neutral(settings.model_dump(include=set(self.KEYED)))
        if not settings.stop_tolerance:
            del view["min_steps"]  # only read with a tolerance
        if settings.init == "fast":  # the network's picture it starts from
            view |= without_neutral(settings.model_dump(include={"network_paint_scale"}))
        return view


class Fast:
    """Johnson et al.: one pass of the preset's trained network; the style is in it."""

    name = "fast"

    def style_sides(self, width: int, height: int, settings: Settings) -> list[int]:
        out_w, out_h = output_size(width, height, settings.size)
        if min(out_w, out_h) < NETWORK_MIN_SIDE:
            raise InputError(f"image is {out_w}×{out_h} at the requested size; both sides "
                             f"must be at least {NETWORK_MIN_SIDE} px (use a larger --size)",
                             category="too_small")
        return []

    def needs_network(self, settings: Settings) -> bool:
        return True

    #: One pass of the network reads only its size, where it paints, its precision and
    #: colour mode of the settings; the network's digest, keyed beside them, stands for
    #: everything that decided it (loss, paintings, training).
    KEYED = (VIEWS["output"] - UNKEYED) | {"method", "size", "precision", "preserve_color",
                                           "network_paint_scale"}
    #: A network paints each frame alone: the optimizer's hold on the previous frame and
    #: its steps are not read.
    VIDEO_KEYED = VIEWS["video"] - CARRIED_KNOBS

    def result_view(self, settings: Settings) -> dict[str, Any]:
        return without_neutral(settings.model_dump(include=set(self.KEYED)))


METHODS: dict[str, Method] = {m.name: m for m in (Optimize(), Fast())}
#: How the fast path holds a video steady, in its videos' keys (steady above 0): a video
#: made the old way is made again once.  2: painted at the lattice phase of the scene
#: (pipeline.engine.phase_lock); 3: its noise channels moving with the scene; 4: locked
#: across segment joins (pipeline.video.camera); before 2, the key had no entry.
FAST_STEADYING = 4


def method_of(settings: Settings) -> Method:
    return METHODS[settings.method]


def needs_network(settings: Settings) -> bool:
    return method_of(settings).needs_network(settings)


def result_view(settings: Settings, *, video: bool = False) -> dict[str, Any]:
    """What a result's pixels depend on; a video's adds how its frames are held together
    and encoded."""
    method = method_of(settings)
    view = method.result_view(settings)
    if video:
        video_knobs = set(method.VIDEO_KEYED)
        if not settings.steady:  # nothing is carried, so nothing started or held
            video_knobs -= CARRIED_KNOBS
        view["video"] = without_neutral(settings.model_dump(include=video_knobs))
        if settings.steady and isinstance(method, Fast):
            view["video"]["steadying"] = FAST_STEADYING
    return view


def retry_size(size: int) -> int | None:
    """The size of the one retry after running out of memory (None: too small to try)."""
    smaller = int(size * OOM_RETRY_SCALE)
    return smaller if smaller >= MIN_SCALE_SIDE else None


@dataclass(frozen=True)
class Needs:
    """What one photo needs before it can be made, from its (header's) size."""

    output: tuple[int, int]  # the output's size
    sides: tuple[int, ...]  # style target sides at the settings' size
    retry_sides: tuple[int, ...]  # and after running out of memory (at the retry size)
    network: bool  # whether the preset's trained network is needed

    @property
    def every_side(self) -> set[int]:
        return {*self.sides, *self.retry_sides}


def needs(settings: Settings, width: int, height: int) -> Needs:
    """What a photo of this (file) size needs; ``InputError`` (too_small) if it cannot be
    made at this size at all (it then fails in its own task, with its name)."""
    method = method_of(settings)
    sides = method.style_sides(width, height, settings)
    retry: list[int] = []
    smaller = retry_size(settings.size)
    # Too thin at the retry size: that retry fails with its own reason.
    with contextlib.suppress(InputError):
        if smaller is not None:
            retry = method.style_sides(width, height, settings.merged({"size": smaller}))
    return Needs(output_size(width, height, settings.size), tuple(sides), tuple(retry),
                 method.needs_network(settings))
