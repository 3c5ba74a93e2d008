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

Noise.  A network with noise channels paints texture from them where the photo is flat.
Noise fixed on the screen stays while the scene slides under it, so a locked frame's noise
is rolled with the scene by the whole steps the shift leaves (the lattice keeps it in
phase).  (Left out, The Great Wave's turn paid 17 % of style: lab log.)

Segments.  A video's segments are made apart (on other workers, resumed in any order).  The
driver adds up the camera's translation over the whole video before them
(:mod:`pipeline.video.camera`) and gives each segment its value at the segment's first
frame (``origin``): every segment then locks, and rolls its noise, exactly as the one
before it did at their join, and is locked throughout.  Without an origin (a lock used on
its own) the lock cannot know where the lattice stood, so it is off at the warm-up and at
the first and last frames, ramping in and out over :data:`RAMP` frames, and the noise over
:data:`NOISE_RAMP`; a join then cost its few frames half to three quarters of frame by
frame's flicker (lab log), and locked from each segment's start with no ramp, a join
jumped by up to half a step.

Torch and NumPy only; the flow is the video's (:mod:`pipeline.video.steady`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.engine.feature_carry import Motion
from pipeline.engine.network import MULTIPLE

__all__ = ["NOISE_RAMP", "RAMP", "Locked", "LockedMotion", "PhaseLock", "scene_step", "shifted"]

#: Frames over which the lock comes on after a segment's start and goes off before its end.
RAMP = 6
#: Frames over which the noise channels come on and go off: what the network paints from
#: them changes with their strength, and a slower ramp spreads that change thinner.
NOISE_RAMP = 12


@dataclass(frozen=True)
class LockedMotion:
    """A frame's motion as the locked frames see it (a :class:`Motion`)."""

    offsets: np.ndarray
    trust: np.ndarray


@dataclass(frozen=True)
class Locked:
    """How one frame is painted under the lock."""

    shift: np.ndarray  # x, y in working pixels: moved by minus this, painted, moved back
    roll: tuple[int, int]  # x, y in working pixels, whole steps: where the scene's noise is
    weight: float  # how far the lock holds (0-1)
    noise: float  # the noise channels' strength (0-1): faded at the ends without an origin
    motion: Motion | None  # how it moved from the previous frame, as the shifted frames see it


def scene_step(offsets: np.ndarray) -> np.ndarray:
    """The scene's translation from the previous frame to this one (x, y, float64), from
    the flow's offsets (H×W×2: where each pixel was before): the median, so that a
    subject moving on its own does not move it.  A flow with holes (not finite) counts as
    no motion there; a flow of nothing but holes, as no motion at all."""
    with warnings.catch_warnings():  # a frame all holes: NaN, taken as no motion
        warnings.simplefilter("ignore", RuntimeWarning)
        before = np.nanmedian(offsets.reshape(-1, 2), axis=0)
    # Where each pixel was in the previous frame: the scene moved the other way.
    return -np.where(np.isfinite(before), before, 0.0).astype(np.float64)


class PhaseLock:
    """The sub-lattice part of a segment's camera translation, frame after frame.

    One per segment (``frames`` in all, the first ``warmup`` of them its warm-up), called
    once a frame in their order.  ``origin``: the scene's translation at the segment's
    first frame since the video's first, added up by :func:`scene_step` over every frame
    before it (:func:`pipeline.video.camera.camera_track`): the segment is then locked
    throughout, at the same phase and with the same noise as the segments either side of
    it.  Without one (a segment that cannot know where the one before left the lattice),
    the lock and its noise ramp in and out at the segment's ends."""

    def __init__(self, frames: int, warmup: int = 0, *, ramp: int = RAMP,
                 noise_ramp: int = NOISE_RAMP, step: int = MULTIPLE,
                 origin: tuple[float, float] | None = None) -> None:
        self.step, self.frames, self.warmup, self.ramp = step, frames, warmup, max(1, ramp)
        if noise_ramp < 2 * self.ramp:
            raise ValueError(f"the noise's ramp ({noise_ramp}) must be at least twice the "
                             f"lock's ({self.ramp}): the noise is off the lattice on the "
                             "lock's ramps")
        self.noise_ramp = noise_ramp
        self.joined = origin is not None
        self._done = 0
        # The scene's translation since the first frame (px), of the video or the segment.
        self._moved = np.array(origin if origin is not None else (0.0, 0.0), np.float64)
        self._phase = np.zeros(2)  # the previous frame's shift (px of its frame)

    def weight(self, index: int, ramp: int | None = None) -> float:
        """How far frame ``index`` (0: the warm-up's first) is locked: 1 throughout with an
        origin; else 0 at the warm-up and at the first and last frames, 1 from ``ramp``
        frames in (default: the lock's)."""
        if self.joined:
            return 1.0
        shown, last = index - self.warmup, self.frames - 1 - index
        return float(np.clip(min(shown, last) / (ramp or self.ramp), 0.0, 1.0))

    def __call__(self, motion: Motion | None, scale: tuple[float, float]) -> Locked:
        """The next frame's lock; ``motion``: how it moved from the previous frame (found on
        frames of the output size, None for a first frame); ``scale``: working pixels per
        frame pixel along x and y (the lattice is the working size's)."""
        if motion is not None:
            self._moved += scene_step(motion.offsets)
        weight, noise = self.weight(self._done), self.weight(self._done, self.noise_ramp)
        step = self.step / np.asarray(scale)
        phase = ((self._moved + step / 2) % step - step / 2) * weight
        self._done += 1
        moved_by = phase - self._phase
        self._phase = phase
        locked = None
        if motion is not None:
            # A shifted frame's pixel x shows the original's x + phase; in the previous
            # shifted frame that content is at x + offsets + (phase - previous phase).
            locked = LockedMotion(motion.offsets + moved_by.astype(np.float32), motion.trust)
        # In the shifted frame the scene has moved by what the shift left: whole steps
        # when fully locked, rounded to them on the lock's ramps, where the noise is at
        # most half its strength (its ramp is at least twice the lock's: __init__).
        whole = np.rint((self._moved - phase) * np.asarray(scale) / self.step) * self.step
        return Locked(phase * np.asarray(scale), (int(whole[0]), int(whole[1])), weight,
                      noise, locked)


def shifted(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Each picture of ``x`` (B×C×H×W) resampled bicubically so that its pixel at p shows
    what was at p + shift (``shifts``: B×2, x and y in its pixels); edges reflected.

    A translation is separable: four taps along each axis, where a general bicubic
    resampling (``grid_sample``) takes sixteen and its coordinates: measured 5 against
    1 ms a 512×288 frame moved and moved back."""
    h, w = x.shape[-2:]
    out = []
    for picture, (dx, dy) in zip(x.split(1), shifts.tolist(), strict=True):
        if abs(dx) + 3 < w and abs(dy) + 3 < h:
            out.append(_along(_along(picture, float(dx), -1), float(dy), -2))
        else:  # a move near the picture's side: reflection padding cannot reach
            out.append(_resampled(picture, float(dx), float(dy)))
    return torch.cat(out)


def _resampled(x: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """:func:`shifted` of one picture by ``grid_sample``, which reflects as far as needed."""
    h, w = x.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=x.device),
                            torch.arange(w, dtype=torch.float32, device=x.device),
                            indexing="ij")
    grid = torch.stack([(xs + dx) / max(1, w - 1) * 2 - 1,
                        (ys + dy) / max(1, h - 1) * 2 - 1], -1)[None]
    return F.grid_sample(x, grid.to(x.dtype), mode="bicubic", padding_mode="reflection",
                         align_corners=True)


#: The bicubic kernel's parameter, as PyTorch's and OpenCV's bicubic resampling take it.
_A = -0.75


def _taps(f: float) -> list[float]:
    """Keys's cubic convolution weights of the samples at -1, 0, 1 and 2 from a point a
    fraction ``f`` (0-1) past the sample 0."""

    def near(t: float) -> float:  # |t| <= 1
        return ((_A + 2) * t - (_A + 3)) * t * t + 1

    def far(t: float) -> float:  # 1 < |t| < 2
        return ((_A * t - 5 * _A) * t + 8 * _A) * t - 4 * _A

    return [far(f + 1), near(f), near(1 - f), far(2 - f)]


def _along(x: torch.Tensor, shift: float, axis: int) -> torch.Tensor:
    """``x`` resampled along ``axis`` (-1: x, -2: y) so that index p shows p + ``shift``."""
    whole = math.floor(shift)
    fraction = shift - whole
    if fraction == 0 and whole == 0:
        return x
    pad = abs(whole) + 2  # below the side (shifted checks): reflection reaches
    padded = _reflected(x, pad, axis)
    taps = _taps(fraction) if fraction else [0.0, 1.0, 0.0, 0.0]
    n = x.shape[axis]
    out = torch.zeros_like(x)
    for k, w in zip(range(-1, 3), taps, strict=True):
        if w:
            out += w * padded.narrow(axis, pad + whole + k, n)
    return out


def _reflected(x: torch.Tensor, pad: int, axis: int) -> torch.Tensor:
    widths = (pad, pad, 0, 0) if axis == -1 else (0, 0, pad, pad)
    return F.pad(x, widths, mode="reflect")
