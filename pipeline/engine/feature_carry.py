"""Steadying a video inside the fast path's network: each frame's features keep part of the
previous frame's, carried along the footage's optical flow where that flow is trusted.

The network paints a frame's brushwork from the features its residual blocks make, at a
quarter of the resolution (:meth:`TransformNet.features`).  A camera that zooms or turns
changes those features a little everywhere, and the strokes painted from them come and go
from frame to frame: the flicker a blend of the finished frames cannot remove without
averaging two paintings of the same place (which washes the strokes out).  Carried into
the features instead, the previous frame's strokes are painted again where they belong,
by the network itself (ReCoNet, Gao et al. 2018, asks the same of its features in
training; here the trained network is left as it is).  The carry is recursive: the mixed
features are carried on, so a stroke on a still wall stays.  Bicubic resampling, because
bilinear resampling, repeated along the recursion, blurs the carried features (and the
style with them) where the motion is a fraction of a pixel.  Measured, with the shares
that lost: docs/lab-log.md ("Features carried along the flow").

Torch only: the flow and its trust are the video's (:mod:`pipeline.video.steady`), given
here as arrays.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["FEATURE_SHARE", "FeatureCarry", "Motion"]

#: The features keep this share of ``steady`` of the carried ones (0.6 at the default 0.8):
#: more holds zooms and turns steadier at a cost in style (lab log).  A change of it (or of
#: the carry) changes a video's segments: bump pipeline.video.segments.SEGMENT_VERSION.
FEATURE_SHARE = 0.75


class Motion(Protocol):
    """How a frame moved from the previous one (:class:`pipeline.video.steady.Motion`)."""

    @property
    def offsets(self) -> np.ndarray:
        """For each pixel of the frame (H×W×2), where it was in the previous frame."""

    @property
    def trust(self) -> np.ndarray:
        """How far each offset is trusted (H×W×1, 0-1)."""


class FeatureCarry:
    """The previous frame's features, carried to each new frame and mixed in.

    One per sequence of frames (a video segment, its warm-up first), called in their order.
    """

    def __init__(self, weight: float) -> None:
        if not 0 <= weight < 1:
            raise ValueError(f"a carry's weight must be in [0, 1), not {weight}")
        self.weight = weight
        self._previous: torch.Tensor | None = None

    @classmethod
    def for_steady(cls, steady: float) -> FeatureCarry:
        return cls(FEATURE_SHARE * steady)

    def __call__(self, features: torch.Tensor, motion: Motion | None) -> torch.Tensor:
        """``features`` (1×C×h×w) with the previous frame's mixed in; ``motion``: how this
        frame (at its own size) moved from the previous one, or None for a first frame
        (nothing mixed in)."""
        here = features.float()
        if motion is not None and self._previous is not None and self.weight > 0:
            h, w = here.shape[-2:]
            carried = _carried(self._previous, motion.offsets, (h, w))
            trust = torch.from_numpy(np.ascontiguousarray(motion.trust[..., 0]))
            share = _resized(trust[None, None].to(here.device), (h, w)) * self.weight
            here = here + share * (carried - here)
        self._previous = here
        return here.to(features.dtype)


def _resized(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x`` (1×C×H×W) averaged down (or stretched) to ``size``."""
    return F.interpolate(x, size=size, mode="area" if x.shape[-1] >= size[1] else "bilinear")


def _carried(previous: torch.Tensor, offsets: np.ndarray,
             size: tuple[int, int]) -> torch.Tensor:
    """``previous`` (1×C×h×w) moved along ``offsets`` (in pixels of the H×W frame),
    resampled bicubically."""
    h, w = size
    big_h, big_w = offsets.shape[:2]
    field = _resized(torch.from_numpy(np.ascontiguousarray(offsets)).permute(2, 0, 1)[None]
                     .to(previous.device), (h, w))[0]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=previous.device),
                            torch.arange(w, dtype=torch.float32, device=previous.device),
                            indexing="ij")
    # Offsets in the frame's pixels to the features' pixels, then to grid_sample's [-1, 1]
    # (align_corners: -1 and 1 are the first and last pixels' centres).
    gx = (xs + field[0] * (w / big_w)) / max(1, w - 1) * 2 - 1
    gy = (ys + field[1] * (h / big_h)) / max(1, h - 1) * 2 - 1
    return F.grid_sample(previous, torch.stack([gx, gy], -1)[None], mode="bicubic",
                         padding_mode="border", align_corners=True)
