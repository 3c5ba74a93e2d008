"""The fast path's transformation network (Johnson, Alahi and Fei-Fei 2016): its architecture.

One forward pass turns a photo into a stylized picture.  The layout is Johnson's: a 9×9
convolution, two stride-2 convolutions down, residual blocks, two ×2 steps up, a 9×9
convolution out; with three changes the literature has since agreed on:

* instance normalization (Ulyanov, Vedaldi and Lempitsky 2016) instead of batch
  normalization: a picture's contrast no longer depends on the batch it was in, and the
  pictures are much better;
* reflection padding instead of zeros, so the borders are not painted as edges;
* nearest-neighbour upsampling then a 3×3 convolution instead of transposed convolutions,
  which leave a checkerboard (Odena, Dumoulin and Olah 2016);
* optionally, channels of noise beside the photo's (:attr:`NetworkConfig.noise`, as
  Ulyanov et al.'s texture networks take): a convolutional network maps a flat region
  (a clear sky, a blurred background) to a flat region, while the optimizer paints
  strokes there; noise gives it something to paint them from.  At inference the noise
  is fixed (:data:`NOISE_SEED`, drawn at the picture's size), so a picture is made
  again bit for bit, alone or in a batch.

Noise at full resolution before the output layer and dilated residual blocks were
measured too and lost (docs/lab-log.md, third round of the fast path), so they are gone.

Its file (safetensors, never a pickle) is :mod:`pipeline.engine.network_file`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config.geometry import NETWORK_MIN_SIDE
from pipeline.errors import InputError

# Named once, torch-free, where network keys are made: a file of another architecture
# is refused, and a change of it retrains.
from pipeline.training.networks import ARCHITECTURE, BLOCKS

__all__ = ["ARCHITECTURE", "FULL_WIDTH", "HALF_WIDTH", "NOISE_SEED", "NetworkConfig",
           "TransformNet", "inference_noise"]

#: Channels of the first convolution: Johnson's network, and one at half its width.
FULL_WIDTH, HALF_WIDTH = 32, 16
#: Bounds of the architecture settings (a 128-wide network is 27 M parameters, 100 MB).
MIN_WIDTH, MAX_WIDTH, MAX_BLOCKS = 4, 128, 16
#: Smallest picture side (see geometry).
MIN_SIDE = NETWORK_MIN_SIDE
#: Pictures are padded to a multiple of this (two stride-2 steps), then cropped back.
MULTIPLE = 4
#: Seeds the noise channels at inference (see the module doc).
NOISE_SEED = 20161
#: Bound of the noise channels.
MAX_NOISE = 8


@dataclass(frozen=True)
class NetworkConfig:
    """What decides the network's shape; recorded in its file and part of its key."""

    width: int = FULL_WIDTH  # channels of the first convolution (×2, ×4 further down)
    blocks: int = BLOCKS  # residual blocks at a quarter of the resolution
    noise: int = 0  # channels of Gaussian noise beside the photo's three

    def __post_init__(self) -> None:
        if not 0 <= self.noise <= MAX_NOISE:
            raise ValueError(f"noise must be 0 to {MAX_NOISE} channels, not {self.noise}")
        if not MIN_WIDTH <= self.width <= MAX_WIDTH:
            raise ValueError(f"width must be {MIN_WIDTH} to {MAX_WIDTH}, not {self.width}")
        if not 0 <= self.blocks <= MAX_BLOCKS:
            raise ValueError(f"blocks must be 0 to {MAX_BLOCKS}, not {self.blocks}")

    def as_dict(self) -> dict[str, Any]:
        out = {"architecture": ARCHITECTURE, "width": self.width, "blocks": self.blocks}
        if self.noise:  # absent when off: files written before it stay readable
            out["noise"] = self.noise
        return out

    @classmethod
    def from_dict(cls, data: object) -> NetworkConfig:
        """The config a file recorded; ``ValueError`` for anything else."""
        if not isinstance(data, dict) or not (
                {"architecture", "width", "blocks"} <= set(data)
                <= {"architecture", "width", "blocks", "noise"}):
            raise ValueError("its recorded architecture is not a network config")
        if data["architecture"] != ARCHITECTURE:
            raise ValueError(f"its architecture is {str(data['architecture'])[:60]!r}, "
                             f"not {ARCHITECTURE!r}")
        numbers = (data["width"], data["blocks"], data.get("noise", 0))
        if any(type(n) is not int for n in numbers):
            raise ValueError("its recorded width, blocks and noise are not whole numbers")
        return cls(*numbers)

    def describe(self) -> str:
        noise = f", {self.noise} noise channels" if self.noise else ""
        return f"width {self.width}, {self.blocks} residual blocks{noise}"


class _ConvLayer(nn.Module):
    """Reflection padding, a convolution, then (unless last) instance norm and ReLU.

    The convolution has no bias where instance norm follows: the norm subtracts each
    channel's mean, so a bias would be a parameter without effect.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1,
                 upsample: bool = False, norm: bool = True, relu: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride, bias=not norm)
        self.norm = nn.InstanceNorm2d(cout, affine=True) if norm else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            # Nearest, then a convolution: every output pixel sees the same number of
            # inputs, so no checkerboard (a stride-2 transposed convolution's overlaps).
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.conv(self.pad(x))
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


class _Residual(nn.Module):
    """Two 3×3 layers and the identity: ``x + IN(conv(ReLU(IN(conv(x)))))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a = _ConvLayer(channels, channels, 3)
        self.b = _ConvLayer(channels, channels, 3, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


class TransformNet(nn.Module):
    """Photos in, pictures out: ``B×3×H×W`` in [0, 1] to the same shape in [0, 1].

    Any size of at least :data:`MIN_SIDE`: the photo is padded (by reflection) to a
    multiple of 4 and the picture cropped back, so odd sizes come out as they went in.
    """

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or NetworkConfig()
        w = config.width
        self.down = nn.Sequential(_ConvLayer(3 + config.noise, w, 9),
                                  _ConvLayer(w, 2 * w, 3, stride=2),
                                  _ConvLayer(2 * w, 4 * w, 3, stride=2))
        self.blocks = nn.Sequential(*(_Residual(4 * w) for _ in range(config.blocks)))
        self.up = nn.Sequential(_ConvLayer(4 * w, 2 * w, 3, upsample=True),
                                _ConvLayer(2 * w, w, 3, upsample=True))
        self.out = _ConvLayer(w, 3, 9, norm=False, relu=False)

    def forward(self, photos: torch.Tensor, generator: torch.Generator | None = None,
                noise_scale: float = 1.0) -> torch.Tensor:
        """``photos`` (B×3×H×W in [0, 1]) painted.  With noise channels, their noise is
        drawn from ``generator`` (a CPU one; training) or else the fixed one of
        :data:`NOISE_SEED`, the same for every photo of the batch, times ``noise_scale``
        (a video's steady frames have theirs moved with the scene: :meth:`features`)."""
        h, w = photos.shape[-2:]
        return self.paint(self.features(photos, generator, noise_scale), h, w)

    def features(self, photos: torch.Tensor, generator: torch.Generator | None = None,
                 noise_scale: float = 1.0, noise: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """The first half of :meth:`forward`: what the residual blocks make of ``photos``,
        at a quarter of their resolution (of their size padded to a multiple of 4), from
        which :meth:`paint` paints.  A video's frames are steadied there
        (:mod:`pipeline.engine.feature_carry`).  ``noise`` (B×noise×padded size), where
        given, replaces the drawn noise channels (a video's, moving with its scene)."""
        h, w = photos.shape[-2:]
        if min(h, w) < MIN_SIDE:
            raise InputError(f"a picture of {w}×{h} is too small for the network; both "
                             f"sides must be at least {MIN_SIDE} px", category="too_small")
        # Padded to a multiple of 4 by reflection (at most 3 px, less than MIN_SIDE).
        pad_h, pad_w = -h % MULTIPLE, -w % MULTIPLE
        x = F.pad(photos, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else photos
        # Inference noise: one draw for the whole batch from a generator seeded here.
        shared = generator is None
        draws = generator if generator is not None else torch.Generator().manual_seed(NOISE_SEED)
        if self.config.noise:
            if noise is None:
                noise = _noise(x, self.config.noise, draws, shared) * noise_scale
            x = torch.cat([x, noise.to(x.device, x.dtype)], dim=1)
        return self.blocks(self.down(x))

    def paint(self, features: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The second half of :meth:`forward`: the pictures (``height``×``width``, float32
        in [0, 1]) painted from :meth:`features`."""
        logits = self.out(self.up(features))[..., :height, :width]
        # A sigmoid keeps the output in [0, 1] with a gradient everywhere (a clamp has
        # none where it bites).  Not a residual around the photo, although that starts
        # as the identity: the style term dominates the objective, and a residual head
        # needs hundreds of steps to grow residuals large enough to repaint.  Measured
        # (half width, udnie, 96 px crops, batch 2, Adam 1e-3, fp32 CPU), the objective
        # on held-out crops went in 120 steps: sigmoid(r) 9.5 -> 5.3; sigmoid(logit(p) + r)
        # 16.5 -> 15.9 (last layer zero-initialized), 17.5 -> 15.2 (default init);
        # clamp(p + r) 17.5 -> 20.9; p + r with a straight-through clamp 17.5 -> 17.9.
        return torch.sigmoid(logits.float())


def inference_noise(channels: int, height: int, width: int) -> torch.Tensor:
    """The noise channels inference gives a picture padded to ``height``×``width`` (1×
    ``channels``×height×width): the draw of :data:`NOISE_SEED`, as :meth:`forward` makes."""
    return torch.randn(1, channels, height, width,
                       generator=torch.Generator().manual_seed(NOISE_SEED))


def _noise(x: torch.Tensor, channels: int, generator: torch.Generator,
           shared: bool) -> torch.Tensor:
    """``channels`` of noise the size of ``x``: one draw for the whole batch when
    ``shared``, else one a photo."""
    b, _, h, w = x.shape
    noise = torch.randn(1 if shared else b, channels, h, w, generator=generator)
    return noise.expand(b, -1, -1, -1).to(x.device, x.dtype)
