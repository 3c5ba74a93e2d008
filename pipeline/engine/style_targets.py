"""Style targets: a painting's feature statistics, computed once per size and cached.

Per style layer an entry holds the layer's ``C×C`` Gram matrix ``G = F Fᵀ/(H·W)``, which
is the second moment ``E[ffᵀ]`` of the features, and, under :func:`mean_key`, its ``C``
feature means.  The Gram loss uses the first, the W2 loss both (its covariance is
``E[ffᵀ] − μμᵀ``).  Both are averages over positions, so the targets of several
paintings blend linearly and one entry serves both losses.

This needs no ``Engine``: the cache-backed store, the Ray driver (which ships targets to
workers) and the network trainer all make targets with a :class:`StyleTargetMaker`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from PIL import Image

from pipeline.config.geometry import MIN_SCALE_SIDE
from pipeline.config.settings import Settings
from pipeline.config.views import view, without_neutral
from pipeline.engine.device import resolve_device
from pipeline.engine.loss_network import loss_network
from pipeline.engine.losses import gram
from pipeline.engine.weights import Weights
from pipeline.images import pil_to_tensor
from pipeline.images.colour import luminance
from pipeline.images.tensors import resized

#: One style side's targets: layer name (or :func:`mean_key` of it) -> float32 tensor.
SideTargets = dict[str, torch.Tensor]
#: Style targets of every side a photo needs: style side in pixels -> its targets.
StyleTargets = dict[int, SideTargets]


def mean_key(layer: str) -> str:
    """The name of a layer's feature means in :data:`SideTargets`."""
    return f"{layer}.mean"


def style_layer_names(settings: Settings) -> list[str]:
    """The style layers with a positive weight, sorted: what the targets hold."""
    return sorted(name for name, w in settings.style_layers.items() if w > 0)


def style_identity(settings: Settings, weights: Weights) -> dict[str, object]:
    """What, besides the paintings and sizes, decides the targets (part of their key).

    Not the style loss: the targets hold what both losses need.  Not the device or the
    precision: targets are always float32.
    """
    vgg = without_neutral(view(settings, "vgg"))  # pad absent at zeros: older keys hold
    identity: dict[str, object] = {
        "weights": weights.digest,
        "preprocessing": weights.preprocessing,
        "pooling": vgg["pooling"],
        "layers": style_layer_names(settings),
        "luminance": settings.preserve_color == "luminance",
    }
    if "pad" in vgg:
        identity["pad"] = vgg["pad"]
    return identity


class StyleTargetMaker:
    """VGG-19 in float32 up to the deepest style layer, for painting statistics.

    Targets are always computed in float32: it costs one forward pass per size and
    keeps them independent of the precision setting, so one cache entry serves every
    precision.  The network is shared with every engine of the process (see
    ``loss_network``), so a maker is cheap to build.
    """

    def __init__(self, settings: Settings, device: torch.device | None = None) -> None:
        self.settings = settings
        self.device = device or resolve_device(settings.device)
        self.layers = style_layer_names(settings)
        self.net, self.weights = loss_network(settings, self.layers, self.device)

    def identity(self) -> dict[str, object]:
        """What, besides the paintings and sizes, decides these targets (see style_identity)."""
        return style_identity(self.settings, self.weights)

    def complete(self, entry: SideTargets) -> bool:
        """Whether a (cached) entry holds everything these style layers need."""
        return all(name in entry and mean_key(name) in entry for name in self.layers)

    @torch.no_grad()
    def compute(self, styles: Sequence[tuple[Image.Image, float]],
                sides: Iterable[int]) -> StyleTargets:
        """Blended targets of the paintings at each side.

        Each painting is resized to the area of a ``side``×``side`` square (its aspect
        kept), and several are blended by averaging their Gram matrices (second moments)
        and feature means with the given weights.
        """
        total = sum(weight for _, weight in styles)
        if not styles or total <= 0:
            raise ValueError("at least one style image with a positive weight is needed")
        keep_luminance = self.settings.preserve_color == "luminance"
        targets: StyleTargets = {}
        for side in sorted(set(sides)):
            acc: SideTargets = {}
            for img, weight in styles:
                scale = side / math.sqrt(img.width * img.height)
                w = max(MIN_SCALE_SIDE, round(img.width * scale))
                h = max(MIN_SCALE_SIDE, round(img.height * scale))
                sized = resized(img.convert("RGB"), w, h)
                if keep_luminance:
                    sized = luminance(sized)
                feats = self.net(pil_to_tensor(sized).to(self.device))
                for name in self.layers:
                    f = feats[name]
                    for key, value in ((name, gram(f)[0]), (mean_key(name), f.mean((0, 2, 3)))):
                        value = value * (weight / total)
                        acc[key] = acc[key] + value if key in acc else value
            targets[side] = {name: g.cpu() for name, g in acc.items()}
        return targets

