"""Steadying a video inside the fast path: each frame painted at the same phase of the
network's lattice as the scene it shows.

The network steps down twice by 2, so it paints on a lattice of 4 pixels: a scene moved by
4 pixels is painted the same, moved; a scene moved by 1 or 2 pixels is painted anew,
differently.  A camera that drifts or shakes by a pixel or less a frame therefore
flickers even with the previous frame's features carried along (measured: 0.62–0.67 of
frame by frame on The Great Wave's handheld clips, where a pan of several pixels a frame
gave 0.24).  The lock follows the camera's translation (the median of the optical flow,
accumulated over the frames) and moves each frame by the part of it below the lattice's
step before the network paints, then moves the painting back: the network sees the scene
always at the same phase, and paints the same strokes on it.  Each move is a bicubic
resampling at the working size, so it costs a little sharpness.  Zooms are not helped:
their motion is not one translation (lab log, "The lattice's phase").

Segments.  A video's segments are made apart (on other workers, resumed in any order), so
a segment cannot know where the lattice stood when the one before it ended.  Every segment
therefore paints its joins at the screen's own phase, as an unlocked video would: the lock
is off at a segment's warm-up and first frame, comes on over :data:`RAMP` frames, and goes
off again over the last :data:`RAMP` frames (the lattice slides back by at most half a step
over them, a third of a pixel a frame or less; longer ramps gave back more of the lock's
gain on turns: lab log).  Locked from the segment's start instead,
each join jumped by up to half a step: one frame as unsteady as frame by frame, every
segment.  The network's noise channels stay off for steady frames: noise moved with the
scene would jump the same way at a join.

Torch and NumPy only; the flow is the video's (:mod:`pipeline.video.steady`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.engine.feature_carry import Motion
from pipeline.engine.network import MULTIPLE

__all__ = ["RAMP", "LockedMotion", "PhaseLock", "shifted"]

#: Frames over which the lock comes on after a segment's start and goes off before its end.
RAMP = 6


@dataclass(frozen=True)
class LockedMotion:
    """A frame's motion as the locked frames see it (a :class:`Motion`)."""

    offsets: np.ndarray
    trust: np.ndarray


class PhaseLock:
    """The sub-lattice part of a segment's camera translation, frame after frame.

    One per segment (``frames`` in all, the first ``warmup`` of them its warm-up), called
    once a frame in their order."""

    def __init__(self, frames: int, warmup: int = 0, *, ramp: int = RAMP,
                 step: int = MULTIPLE) -> None:
        self.step, self.frames, self.warmup, self.ramp = step, frames, warmup, max(1, ramp)
        self._done = 0
        self._moved = np.zeros(2)  # the scene's translation since the first frame (px)
        self._phase = np.zeros(2)  # the previous frame's shift (px of its frame)

    def weight(self, index: int) -> float:
        """How far frame ``index`` (0: the warm-up's first) is locked: 0 at the warm-up and
        at the first and last frames, 1 from ``ramp`` frames in."""
        shown, last = index - self.warmup, self.frames - 1 - index
        return float(np.clip(min(shown, last) / self.ramp, 0.0, 1.0))

    def __call__(self, motion: Motion | None, scale: tuple[float, float]
                 ) -> tuple[np.ndarray, Motion | None]:
        """This frame's shift (x, y, in working pixels: it is moved by minus this, painted,
        and moved back) and its motion as the shifted frames see it (for the feature
        carry); ``motion``: how it moved from the previous frame (found on frames of the
        output size, None for a first frame); ``scale``: working pixels per frame pixel
        along x and y (the lattice is the working size's)."""
        if motion is not None:
            # Where each pixel was in the previous frame: the scene moved the other way.
            # A flow with holes (not finite) counts as no motion, not as a lost lock.
            with warnings.catch_warnings():  # a frame all holes: NaN, taken as no motion
                warnings.simplefilter("ignore", RuntimeWarning)
                moved = np.nanmedian(motion.offsets.reshape(-1, 2), axis=0)
            self._moved -= np.where(np.isfinite(moved), moved, 0.0)
        step = self.step / np.asarray(scale)
        phase = ((self._moved + step / 2) % step - step / 2) * self.weight(self._done)
        self._done += 1
        moved_by = phase - self._phase
        self._phase = phase
        locked = None
        if motion is not None:
            # A shifted frame's pixel x shows the original's x + phase; in the previous
            # shifted frame that content is at x + offsets + (phase - previous phase).
            locked = LockedMotion(motion.offsets + moved_by.astype(np.float32), motion.trust)
        return phase * np.asarray(scale), locked


def shifted(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Each picture of ``x`` (B×C×H×W) resampled bicubically so that its pixel at p shows
    what was at p + shift (``shifts``: B×2, x and y in its pixels); edges reflected."""
    b, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=x.device),
                            torch.arange(w, dtype=torch.float32, device=x.device),
                            indexing="ij")
    s = shifts.to(x.device, torch.float32)
    gx = (xs[None] + s[:, 0, None, None]) / max(1, w - 1) * 2 - 1
    gy = (ys[None] + s[:, 1, None, None]) / max(1, h - 1) * 2 - 1
    grid = torch.stack([gx, gy], -1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bicubic", padding_mode="reflection",
                         align_corners=True)
