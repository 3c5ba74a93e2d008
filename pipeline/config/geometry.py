"""The multiscale pyramid and output sizes: arithmetic on sizes, without torch.

The driver needs these to batch photos by output size and to know which style
targets a photo will need before any network is loaded (a cluster driver may
never load one), so they live apart from the optimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

from pipeline.errors import InputError

__all__ = ["MIN_SCALE_SIDE", "NETWORK_MIN_SIDE", "STYLE_SIDE_QUANTUM", "PyramidKnobs", "Scale",
           "output_size", "pyramid", "scale_count", "style_side", "style_sides"]

#: Smallest side any scale may have: conv5_1 sits behind four 2× poolings.
MIN_SCALE_SIDE = 16
#: Smallest side a trained network paints: after its two stride-2 steps, its 3×3
#: reflection pads need 2 px.
NETWORK_MIN_SIDE = 8
#: Style target sizes are rounded to this, so photos of nearly the same shape share them.
STYLE_SIDE_QUANTUM = 32

class PyramidKnobs(Protocol):
    """What the pyramid reads of the settings (:class:`~pipeline.config.settings.Settings`
    has them all; the settings' own bounds are checked with :func:`scale_count`, so this
    module cannot import them)."""

    @property
    def size(self) -> int: ...
    @property
    def min_side(self) -> int: ...
    @property
    def scale_ratio(self) -> float: ...
    @property
    def min_scales(self) -> int: ...
    @property
    def steps(self) -> list[int]: ...
    @property
    def style_scale(self) -> float: ...
    @property
    def init(self) -> Literal["content", "noise", "fast"]: ...


def scale_count(short: int, min_side: int, ratio: float, min_scales: int) -> int:
    """Scales of a photo whose short side is ``short``: the count :func:`pyramid` builds,
    and the settings check to bound a photo's work."""
    if short <= min_side:
        return 1
    n = 1 + math.ceil(math.log(short / min_side) / math.log(ratio) - 1e-9)
    return max(n, min_scales)


@dataclass(frozen=True)
class Scale:
    width: int
    height: int
    steps: int
    style_side: int


def output_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """The output's size: long side ``long_side``, aspect ratio kept (rounded)."""
    if width >= height:
        return long_side, max(1, round(height * long_side / width))
    return max(1, round(width * long_side / height)), long_side


def style_side(width: int, height: int, style_scale: float) -> int:
    """Side of the square whose area the style image is resized to, for one scale."""
    side = math.sqrt(width * height) * style_scale
    return max(STYLE_SIDE_QUANTUM, round(side / STYLE_SIDE_QUANTUM) * STYLE_SIDE_QUANTUM)


def pyramid(width: int, height: int, settings: PyramidKnobs) -> list[Scale]:
    """Scales from short side ``min_side`` up to exactly ``width``×``height``.

    Short sides grow geometrically, by at most ``scale_ratio`` per scale, over at least
    ``min_scales`` scales when the photo is larger than ``min_side``.  The
    step counts come from ``settings.steps`` (coarsest first, last one repeated).
    With ``init: fast`` only the finest scale is optimized: the trained network's picture
    already holds what the coarse scales would have painted.
    """
    short = min(width, height)
    if short < MIN_SCALE_SIDE:
        raise InputError(
            f"image is {width}×{height} at the requested size; both sides must be at least "
            f"{MIN_SCALE_SIDE} px (use a larger --size)",
            category="too_small",
        )
    n = scale_count(short, settings.min_side, settings.scale_ratio, settings.min_scales)
    scales: list[Scale] = []
    for k in range(n):
        if k == n - 1:
            w, h = width, height
        else:
            factor = (settings.min_side / short) ** (1 - k / (n - 1))
            w = max(MIN_SCALE_SIDE, round(width * factor))
            h = max(MIN_SCALE_SIDE, round(height * factor))
        steps = settings.steps[min(k, len(settings.steps) - 1)]
        scales.append(Scale(w, h, steps, style_side(w, h, settings.style_scale)))
    return scales[-1:] if settings.init == "fast" else scales


def style_sides(width: int, height: int, settings: PyramidKnobs) -> list[int]:
    """The style target sizes a photo of this size needs (after resizing to ``size``)."""
    out_w, out_h = output_size(width, height, settings.size)
    return sorted({s.style_side for s in pyramid(out_w, out_h, settings)})
