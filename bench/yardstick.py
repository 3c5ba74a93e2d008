"""A neutral yardstick for stylized pictures, shared by the benchmarks.

Every picture is scored with the Caffe VGG-19 in float32, by two distances
that no tool optimizes verbatim:

* content distance = ‖F(out) − F(photo)‖² / ‖F(photo)‖² at relu4_2, the photo
  resized to the picture's size;
* style distance = the mean over relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1
  of ‖G(out) − G(painting)‖² / ‖G(painting)‖², with G = F Fᵀ / (H W), the
  painting resized to the picture's pixel count.

Lower is better on both.  A result *dominates* another when it is at least as
good on both.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pipeline.config.settings import Settings
from pipeline.engine.loss_network import loss_network
from pipeline.engine.losses import gram, relative_error
from pipeline.images import pil_to_tensor

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"


def dominates(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["content"] <= b["content"] and a["style"] <= b["style"]


class Yardstick:
    def __init__(self, photo: Path | Image.Image, painting: Path | Image.Image,
                 device: str = "cpu") -> None:
        self.device = torch.device(device)
        # Fixed, whatever the defaults become: Caffe weights, max pooling, zero padding.
        fixed = Settings(weights="caffe", pooling="max", pad="zeros")
        self.net, _ = loss_network(fixed, [*STYLE_LAYERS, CONTENT_LAYER], self.device)
        self.photo = (photo if isinstance(photo, Image.Image) else Image.open(photo)).convert("RGB")
        self.painting = (painting if isinstance(painting, Image.Image)
                         else Image.open(painting)).convert("RGB")
        self._targets: dict[tuple[int, int], tuple[Any, Any]] = {}

    def for_photo(self, photo: Image.Image) -> Yardstick:
        """The same yardstick (network and painting shared) for another photo."""
        other = copy.copy(self)
        other.photo = photo.convert("RGB")
        other._targets = {}
        return other

    @torch.no_grad()
    def features(self, image: Image.Image) -> dict[str, torch.Tensor]:
        """The picture's VGG-19 features at the yardstick's layers."""
        return self.net(pil_to_tensor(image).to(self.device))

    def targets(self, size: tuple[int, int]) -> tuple[Any, Any]:
        """The features of the photo resized to ``size`` and of the painting resized to its
        pixel count: what a picture of that size is measured against (kept)."""
        if size not in self._targets:
            photo = self.photo.resize(size, Image.Resampling.LANCZOS)
            scale = math.sqrt(size[0] * size[1] / (self.painting.width * self.painting.height))
            painting = self.painting.resize((round(self.painting.width * scale),
                                             round(self.painting.height * scale)),
                                            Image.Resampling.LANCZOS)
            self._targets[size] = (self.features(photo), self.features(painting))
        return self._targets[size]

    def score(self, picture: Image.Image | Path,
              at: tuple[int, int] | None = None) -> dict[str, float]:
        """Both distances of ``picture``, scored at its own size or resized to ``at``, and
        the style distance of each layer (``layers``).

        Scoring a low-resolution intermediate picture at the final size (``at``) is
        what makes pictures of a multiscale run comparable with full-size ones.
        """
        if isinstance(picture, Path):
            picture = Image.open(picture)
        picture = picture.convert("RGB")
        if at is not None and picture.size != at:
            picture = picture.resize(at, Image.Resampling.BICUBIC)
        fc, fs = self.targets(picture.size)
        fo = self.features(picture)
        layers = {n: relative_error(gram(fo[n]), gram(fs[n])).item() for n in STYLE_LAYERS}
        content = relative_error(fo[CONTENT_LAYER], fc[CONTENT_LAYER]).item()
        return {"content": content, "style": sum(layers.values()) / len(STYLE_LAYERS),
                "layers": layers}
