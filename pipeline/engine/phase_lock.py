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
always at the same phase, and paints the same strokes on it.  The network's noise channels
are rolled by the rest of the translation (whole steps of the lattice), so that they move
with the scene too, and a video keeps the texture its photos get from them.  Each move is a bicubic
resampling at the working size, so it costs a little sharpness of the painting.  Zooms are
not helped: their motion is not one translation (lab log, "The lattice's phase").

Torch and NumPy only; the flow is the video's (:mod:`pipeline.video.steady`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.engine.feature_carry import Motion
from pipeline.engine.network import MULTIPLE

__all__ = ["Locked", "LockedMotion", "PhaseLock", "shifted"]


@dataclass(frozen=True)
class LockedMotion:
    """A frame's motion as the locked frames see it (a :class:`Motion`)."""

    offsets: np.ndarray
    trust: np.ndarray


@dataclass(frozen=True)
class Locked:
    """How one frame is painted locked."""

    shift: np.ndarray  # x, y (working pixels): the frame is moved by minus this, then back
    roll: tuple[int, int]  # x, y (working pixels, whole steps): the noise moves with the scene
    motion: Motion | None  # its motion as the shifted frames see it (for the feature carry)


class PhaseLock:
    """The sub-lattice part of a sequence's camera translation, frame after frame.

    One per sequence of frames (a video segment, its warm-up first), called in order."""

    def __init__(self, step: int = MULTIPLE) -> None:
        self.step = step
        self._moved = np.zeros(2)  # the scene's translation since the first frame (px)
        self._phase = np.zeros(2)  # the previous frame's shift (px of its frame)

    def __call__(self, motion: Motion | None, scale: float) -> Locked:
        """This frame's lock; ``motion``: how it moved from the previous frame (found on
        frames of the output size, None for a first frame); ``scale``: working pixels per
        frame pixel (the lattice is the working size's)."""
        if motion is not None:
            # Where each pixel was in the previous frame: the scene moved the other way.
            self._moved -= np.median(motion.offsets.reshape(-1, 2), axis=0)
        step = self.step / scale
        phase = (self._moved + step / 2) % step - step / 2
        moved = phase - self._phase
        self._phase = phase
        whole = np.rint((self._moved - phase) * scale).astype(int)  # steps of the lattice
        locked = None
        if motion is not None:
            # A shifted frame's pixel x shows the original's x + phase; in the previous
            # shifted frame that content is at x + offsets + (phase - previous phase).
            locked = LockedMotion(motion.offsets + moved.astype(np.float32), motion.trust)
        return Locked(phase * scale, (int(whole[0]), int(whole[1])), locked)


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
