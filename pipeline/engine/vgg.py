"""The VGG-19 feature stack, laid out exactly like torchvision's ``vgg19().features``.

Index ``i`` here is index ``i`` there, so a torchvision state dict
(``"0.weight"``, ``"0.bias"``, ``"2.weight"``, ...) loads unchanged.  Layers are
also addressed by the names the style-transfer literature uses (``relu4_2``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config.layers import CONV_LAYERS, LAYER_INDEX, LAYER_NAMES, VGG19_CFG

__all__ = ["CONV_LAYERS", "LAYER_INDEX", "LAYER_NAMES", "FeatureExtractor", "build_features"]

#: The float16 network computes every activation times this factor.  Caffe-scale
#: activations reach 2·10⁴ on ordinary photos, a third of float16's range.  ReLU and
#: pooling commute with a positive factor, so scaling the input and every bias scales
#: all activations exactly, and the losses (relative errors) do not change.
FP16_FEATURE_SCALE = 1 / 16

def build_features(pooling: str = "max") -> nn.Sequential:
    """An untrained VGG-19 feature stack; ``pooling="avg"`` swaps max for average pooling.

    Gatys et al. report that average pooling gives slightly smoother results;
    the swap changes no parameter, so any VGG-19 state dict still fits.
    """
    layers: list[nn.Module] = []
    in_ch = 3
    for item in VGG19_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
        else:
            out_ch = int(item)
            # Not in-place: a captured conv output must not be overwritten by its ReLU.
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=False)]
            in_ch = out_ch
    return nn.Sequential(*layers)


class ReplicatePadConv(nn.Module):
    """A 3×3 convolution that pads by repeating the border pixels instead of with zeros.

    Zero padding on the first layer makes every border look like an edge against the
    mean colour (Caffe inputs are mean-subtracted), which the style loss then paints over
    as a frame; repeating the border has no such edge.  Deeper layers keep zero padding:
    their inputs are ReLU features, for which zero is a natural value.  The wrapped
    convolution's parameters are used as they are (shared, not copied).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        return F.conv2d(x, self.conv.weight, self.conv.bias)


class FeatureExtractor(nn.Module):
    """Preprocessing plus VGG-19 cut after the deepest layer asked for.

    Takes RGB images in [0, 1] (``B×3×H×W``, float32) and returns the
    activations of the requested layers, in the precision of the network's
    weights (float32, bfloat16 or float16).  The network is frozen: no
    parameter ever needs a gradient, only the input does.  ``pad="replicate"``
    pads the first convolution by repeating border pixels (see ReplicatePadConv).
    """

    def __init__(self, features: nn.Sequential, preprocess: nn.Module,
                 layers: Iterable[str], dtype: torch.dtype | None = None,
                 pad: str = "zeros") -> None:
        super().__init__()
        wanted = sorted(set(layers), key=LAYER_INDEX.__getitem__)
        if not wanted:
            raise ValueError("at least one layer is needed")
        last = LAYER_INDEX[wanted[-1]]
        # Shares the modules (and so the weights) of ``features``; nothing is copied.
        modules = list(features.children())[: last + 1]
        if pad == "replicate":
            assert isinstance(modules[0], nn.Conv2d)
            modules[0] = ReplicatePadConv(modules[0])
        elif pad != "zeros":
            raise ValueError(f"unknown padding {pad!r}")
        self.body = nn.Sequential(*modules)
        self.preprocess = preprocess
        self.capture = {LAYER_INDEX[name]: name for name in wanted}
        self.dtype = dtype or next(self.body.parameters()).dtype
        # A float16 network's biases are scaled (see weights.FP16_FEATURE_SCALE), so its
        # input is too, and so are all its activations: Grams by the square.
        self.feature_scale = FP16_FEATURE_SCALE if self.dtype == torch.float16 else 1.0
        self.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        # Preprocessing in float32 (means and scales are not bf16-exact), then the
        # network's own precision; the cast is differentiable, so the gradient
        # reaches the float32 image.
        x = self.preprocess(image.float())
        if self.feature_scale != 1.0:
            x = x * self.feature_scale
        x = x.to(self.dtype)
        out: dict[str, torch.Tensor] = {}
        for i, module in enumerate(self.body):
            x = module(x)
            name = self.capture.get(i)
            if name is not None:
                out[name] = x
        return out
