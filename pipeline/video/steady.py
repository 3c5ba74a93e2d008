"""Holding a stylized video steady: each frame keeps the broad strokes of the previous one,
moved along the footage's optical flow, where that flow can be trusted.

A network (or an optimizer) stylizes each frame alone, so what it paints on a wall changes
a little from one frame to the next even when the wall does not: the video flickers.  Here
the flow between the *original* frames (OpenCV's DIS flow, on the grey frames) carries the
previous *output* to where its content is now; where it lands on the same picture (the
original, warped the same way, matches the original frame within a tolerance: not occluded,
not newly revealed, the flow not wrong) the new frame takes ``steady`` of the carried one's
colours and broad shapes (its band below :data:`LOW_SIGMA_AT_384`) and keeps its own fine
brushwork; elsewhere it is its own.  The recursion remembers: a colour that stays on a
still wall stays still.  (The fast path also paints each frame at the lattice phase of the
scene, its noise channels rolled with the scene (:mod:`pipeline.engine.phase_lock`), and
carries the previous frame's features along the same flow inside its network
(:mod:`pipeline.engine.feature_carry`).)

Deterministic (single-threaded OpenCV, fixed presets), so a segment made twice is the
same bytes, which the resumable segments rely on."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

__all__ = ["Carried", "Motion", "Steadier", "flow", "flow_engine", "flow_fits", "warp"]

#: The carried frame lends the new one its colours and broad shapes, not its fine texture:
#: below this scale (a Gaussian's sigma, in pixels of a frame 384 px wide) it is mixed in,
#: above it the new frame is its own.  Mixing the fine texture too averages two paintings
#: of the same place and washes out the brushwork (measured: docs/lab-log.md).
LOW_SIGMA_AT_384 = 2.0
#: A warped original within this (0-255, per pixel, mean over channels) of the frame is
#: the same content: the carried output may be used there.
MATCH_TOLERANCE = 12.0
cv2.setNumThreads(1)


def flow_engine() -> cv2.DISOpticalFlow:
    return cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_FAST)


def flow_fits(width: int, height: int) -> bool:
    """Whether the flow can be found between frames of this size (DIS's pyramid needs some
    height or width at its coarsest level, which depends on the shape, not a side alone)."""
    blank = np.zeros((height, width), np.uint8)
    try:
        flow(flow_engine(), blank, blank)
    except cv2.error:
        return False
    return True


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
class Motion:
    """How a frame moved from the previous one, found on the original frames."""

    offsets: np.ndarray  # float32 H×W×2: for each pixel, where it was in the previous frame
    trust: np.ndarray  # float32 H×W×1, 0-1: how far that is the same content


@dataclass(frozen=True)
class Carried:
    """The previous output moved to the current frame, and how far to trust each pixel."""

    picture: np.ndarray  # float32 H×W×3, 0-255
    trust: np.ndarray  # float32 H×W×1, 0-1

    def image(self) -> Image.Image:
        return Image.fromarray(np.clip(np.rint(self.picture), 0, 255).astype(np.uint8))


class Steadier:
    """Steadies a sequence of stylized frames (uint8 H×W×3), given their originals: for
    each frame in order, :meth:`motion` of its original (before it is stylized: the fast
    path carries its features along it too), then the steady frame (``__call__``)."""

    def __init__(self, steady: float) -> None:
        self.steady = steady
        self._engine = flow_engine() if steady > 0 else None
        self._before: tuple[np.ndarray, np.ndarray] | None = None  # grey and RGB original
        self._out: np.ndarray | None = None  # the previous steady frame

    def motion(self, original: np.ndarray) -> Motion | None:
        """How ``original`` moved from the original frame given before (None for a first
        frame, or when nothing is carried)."""
        if self._engine is None:
            return None
        gray = cv2.cvtColor(original, cv2.COLOR_RGB2GRAY)
        before, self._before = self._before, (gray, original)
        if before is None:
            return None
        offsets = flow(self._engine, gray, before[0])
        seen = warp(before[1], offsets)
        differs = np.abs(seen.astype(np.float32) - original.astype(np.float32)).mean(axis=2)
        # Soft edge, so that a region entering or leaving trust does not pop.
        trust = np.clip(2.0 - differs / (MATCH_TOLERANCE / 2), 0.0, 1.0)[..., None]
        return Motion(offsets, trust)

    def carry(self, motion: Motion | None) -> Carried | None:
        """The previous steady frame moved along ``motion`` (None if there is none)."""
        if motion is None or self._out is None:
            return None
        return Carried(warp(self._out, motion.offsets).astype(np.float32), motion.trust)

    def __call__(self, stylized: np.ndarray, motion: Motion | None,
                 carried: Carried | None = None) -> np.ndarray:
        """The steady frame: ``stylized`` with the band of the previous steady frame,
        carried along ``motion`` (its frame's :meth:`motion`), mixed in; ``carried``: that
        frame's :meth:`carry`, if already asked."""
        if self._engine is None:
            return stylized
        carried = carried or self.carry(motion)
        out = stylized
        if carried is not None:
            sigma = LOW_SIGMA_AT_384 * max(stylized.shape[:2]) / 384
            painted = stylized.astype(np.float32)
            low = cv2.GaussianBlur(carried.picture, (0, 0), sigma) - cv2.GaussianBlur(
                painted, (0, 0), sigma)
            mixed = painted + self.steady * carried.trust * low
            out = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        self._out = out
        return out
