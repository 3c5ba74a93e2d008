"""What the fast path's network is trained on: photos at the training size, whole or
through random windows.

The network learns at a *training size* (the area of a square ``side`` pixels a side,
:attr:`~pipeline.engine.training.TrainOptions.side`; it paints larger, see
:mod:`pipeline.engine.fast`), and a picture is judged, like the optimizer's, by the
objective of the whole picture against the painting resized to the picture's area.  A
training sample is therefore a picture resized to about that area, with the style
targets the optimizer uses for a picture of its size: a whole photo, or a window of one
(:attr:`TrainOptions.crop`), which is then judged as a photo of its own, never against a
larger picture's scale.

Why not square crops, as Johnson et al. train on: the objective is not the same on a
crop.  A Gram matrix is a mean over positions, and a painting's statistics are not the
same everywhere; the crops of an optimized picture score 4-16 times its own style
distance against the painting (docs/lab-log.md, "The fast path").  A network asked to
give every crop the whole painting's Grams learns a small texture that repeats, not the
large planes of the optimum.  A window resized to the working size is not such a crop:
it is a new picture with its own targets, and a small collection gives many of them.

Each sample's size is drawn around the working size (:attr:`TrainOptions.zoom`), in
steps of the style targets' quantum, so that its targets are exactly the optimizer's and
the network is not tied to one scale.  Every draw comes from one generator, whose state
a checkpoint carries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from pipeline.config.geometry import STYLE_SIDE_QUANTUM, style_side
from pipeline.images import pil_to_tensor

__all__ = ["MIN_SAMPLE_SIDE", "Sample", "random_samples", "sample_size", "training_sides"]

#: No side of a sample is smaller (a very wide photo is then a little larger than the
#: working area): VGG-19's deepest style layer needs a few positions.
MIN_SAMPLE_SIDE = 32


@dataclass(frozen=True)
class Sample:
    photo: torch.Tensor  # 1×3×H×W, float32 in [0, 1]
    style_side: int  # the side of the style targets it is judged against


def training_sides(side: int, zoom: tuple[float, float], style_scale: float) -> list[int]:
    """The style sides samples are drawn at: the quantized sides between ``side`` ×
    ``zoom`` (times ``style_scale``), and always the working size's own."""
    lo, hi = zoom
    q = STYLE_SIDE_QUANTUM
    first = max(q, math.ceil(side * lo * style_scale / q) * q)
    last = math.floor(side * hi * style_scale / q) * q
    return sorted({*range(first, last + 1, q), style_side(side, side, style_scale)})


def sample_size(width: int, height: int, style_side_: int, style_scale: float
                ) -> tuple[int, int]:
    """The size of a ``width``×``height`` photo seen at the area the optimizer paints
    against style targets of ``style_side_`` (its shape kept)."""
    f = style_side_ / style_scale / math.sqrt(width * height)
    return (max(MIN_SAMPLE_SIDE, round(width * f)), max(MIN_SAMPLE_SIDE, round(height * f)))


def random_samples(photos: Sequence[Image.Image], count: int, sides: Sequence[int],
                   style_scale: float, generator: torch.Generator,
                   crop: float = 1.0) -> list[Sample]:
    """``count`` samples: each a photo drawn uniformly, a style side drawn uniformly from
    ``sides``, the photo resized to :func:`sample_size` (bicubic, antialiased when it
    shrinks) and mirrored with probability ½.

    With ``crop`` below 1, each photo is first cut to a window of its own shape covering
    between ``crop`` and all of its area, placed at random: a window seen at the working
    size is a photo in its own right (judged like one, against the targets of its size),
    so a small collection shows the network more distinct pictures.  At 1 the draws are
    exactly those of whole photos."""
    out = []
    for _ in range(count):
        i = int(torch.randint(len(photos), (1,), generator=generator))
        u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        side = sides[min(int(u[0] * len(sides)), len(sides) - 1)]
        img = photos[i] if photos[i].mode == "RGB" else photos[i].convert("RGB")
        if crop < 1:
            img = _window(img, crop, generator)
        size = sample_size(img.width, img.height, side, style_scale)
        photo = pil_to_tensor(img.resize(size, Image.Resampling.BICUBIC))
        out.append(Sample(photo.flip(-1) if u[1] < 0.5 else photo, side))
    return out


def _window(img: Image.Image, crop: float, generator: torch.Generator) -> Image.Image:
    """A window of ``img``'s shape covering a fraction of its area drawn uniformly from
    [``crop``, 1], at a uniformly drawn place."""
    a, x, y = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
    f = math.sqrt(crop + (1 - crop) * a)
    w, h = max(1, round(img.width * f)), max(1, round(img.height * f))
    left, top = round(x * (img.width - w)), round(y * (img.height - h))
    return img.crop((left, top, left + w, top + h))

