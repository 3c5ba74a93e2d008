"""The multiscale pyramid and output sizes: arithmetic on sizes, without torch.

The driver needs these to batch photos by output size and to know which style
targets a photo will need before any network is loaded (a cluster driver may
never load one), so they live apart from the optimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.config.settings import Settings, scale_count
from pipeline.errors import InputError

__all__ = ["MIN_SCALE_SIDE", "NETWORK_MIN_SIDE", "STYLE_SIDE_QUANTUM", "Scale", "output_size",
           "pyramid", "style_side", "style_sides"]

#: Smallest side any scale may have: conv5_1 sits behind four 2× poolings.
MIN_SCALE_SIDE = 16
#: Smallest side a trained network paints: after its two stride-2 steps, its 3×3
#: reflection pads need 2 px.
NETWORK_MIN_SIDE = 8
#: Style target sizes are rounded to this, so photos of nearly the same shape share them.
STYLE_SIDE_QUANTUM = 32

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


def pyramid(width: int, height: int, settings: Settings) -> list[Scale]:
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
    # The one count of scales, which the settings' own bound checks use too.
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


def style_sides(width: int, height: int, settings: Settings) -> list[int]:
    """The style target sizes a photo of this size needs (after resizing to ``size``)."""
    out_w, out_h = output_size(width, height, settings.size)
    return sorted({s.style_side for s in pyramid(out_w, out_h, settings)})
