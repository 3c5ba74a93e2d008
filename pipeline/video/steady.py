"""Holding a stylized video steady: each frame keeps some of the previous one, moved along
the footage's optical flow, where that flow can be trusted.

A network (or an optimizer) stylizes each frame alone, so the texture it paints on a
wall jumps a little from one frame to the next even when the wall does not move: the
video flickers.  Here the flow between the *original* frames (OpenCV's DIS flow, on the
grey frames) carries the previous *output* to where its content is now; where it lands
on the same picture (the original, warped the same way, matches the original frame
within a tolerance: not occluded, not newly revealed, the flow not wrong) the new frame
is ``steady`` of the carried one and the rest its own; elsewhere it is its own.  The
recursion remembers: a texture that stays still on a still wall stays still.

Deterministic (single-threaded OpenCV, fixed presets), so a segment made twice is the
same bytes, which the resumable segments rely on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

__all__ = ["Carried", "Steadier", "flow", "warp"]

#: A warped original within this (0-255, per pixel, mean over channels) of the frame is
#: the same content: the carried output may be used there.
MATCH_TOLERANCE = 12.0
cv2.setNumThreads(1)


def _flow_engine() -> cv2.DISOpticalFlow:
    return cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_FAST)


def flow(engine: cv2.DISOpticalFlow, to_gray: np.ndarray, from_gray: np.ndarray) -> np.ndarray:
    """For each pixel of ``to``, where it was in ``from`` (an offset, H×W×2)."""
    return np.asarray(engine.calc(to_gray, from_gray, None))  # type: ignore[call-overload]


def warp(picture: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``picture`` moved so that each pixel comes from where ``offsets`` say it was."""
    h, w = offsets.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(picture, grid_x + offsets[..., 0], grid_y + offsets[..., 1],
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class Carried:
    """The previous output moved to the current frame, and how far to trust each pixel."""

    picture: np.ndarray  # float32 H×W×3, 0-255
    trust: np.ndarray  # float32 H×W×1, 0-1

    def image(self) -> Image.Image:
        return Image.fromarray(np.clip(np.rint(self.picture), 0, 255).astype(np.uint8))


class Steadier:
    """Steadies a sequence of stylized frames (uint8 H×W×3), given their originals."""

    def __init__(self, steady: float) -> None:
        self.steady = steady
        self._engine = _flow_engine() if steady > 0 else None
        self._previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def carry(self, original: np.ndarray) -> Carried | None:
        """The previous output carried to this frame (None for a first frame, or when
        nothing is carried)."""
        if self._engine is None or self._previous is None:
            return None
        before_gray, before, before_out = self._previous
        offsets = flow(self._engine, cv2.cvtColor(original, cv2.COLOR_RGB2GRAY), before_gray)
        seen = warp(before, offsets)
        differs = np.abs(seen.astype(np.float32) - original.astype(np.float32)).mean(axis=2)
        # Soft edge, so that a region entering or leaving trust does not pop.
        trust = np.clip(2.0 - differs / (MATCH_TOLERANCE / 2), 0.0, 1.0)[..., None]
        return Carried(warp(before_out, offsets).astype(np.float32), trust)

    def __call__(self, original: np.ndarray, stylized: np.ndarray,
                 carried: Carried | None = None) -> np.ndarray:
        """The steady frame; ``carried``: this frame's :meth:`carry`, if already asked."""
        if self._engine is None:
            return stylized
        carried = carried or self.carry(original)
        out = stylized
        if carried is not None:
            weight = self.steady * carried.trust
            mixed = stylized.astype(np.float32) * (1 - weight) + carried.picture * weight
            out = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        self._previous = (cv2.cvtColor(original, cv2.COLOR_RGB2GRAY), original, out)
        return out
