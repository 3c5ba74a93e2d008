"""The three terms of the objective, as small functions over batches.

Normalization (documented because every implementation differs):

* Gram matrix: ``G = F Fᵀ / (H·W)`` for features ``F`` of shape ``C×(H·W)``, so
  it is an average over positions and does not grow with the image size.  This
  is what lets style targets taken at one size serve an iterate at a similar one.
* Content and style terms are *relative* squared errors,
  ``‖X − T‖² / ‖T‖²``, per layer.  Each layer then contributes on the same
  scale whatever its depth or channel count, the layer weights mean what they
  say, and the loss is the same yardstick the race benchmark scores with.  Gatys
  et al. use absolute sums with ``1/(4N²M²)`` factors instead; the optimum is
  the same up to how the layers are weighted.
* Total variation: mean squared difference of neighbouring pixels (RGB in [0, 1]).

Precision: losses are float32 whatever precision the network ran in.  A Gram
matrix of bfloat16 features is one bfloat16 GEMM, which accumulates its
products in float32 inside oneDNN/cuBLAS and rounds the C×C result once
(relative error about 0.2%); converting the features themselves to float32
first would cost more than the product (at 512 px, relu1_1 is 64×262144).
Float16 features are converted to float32 first: Caffe-scale activations
squared and summed overflow float16's range.
"""

from __future__ import annotations

import torch

_EPS = 1e-8


def gram(features: torch.Tensor) -> torch.Tensor:
    """``B×C×H×W`` -> ``B×C×C`` Gram matrices in float32, averaged over positions."""
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    if f.dtype == torch.float16:
        f = f.float()
    if f.device.type == "cpu":
        # On the CPU a batched product of these shapes (C×HW by HW×C, HW up to 10⁶) is
        # 2.4× slower than plain 2-D products, forward and backward (bf16, 64×512²).
        g = torch.stack([torch.mm(item, item.t()) for item in f])
    else:
        g = torch.bmm(f, f.transpose(1, 2))
    return g.float() / (h * w)


def relative_error(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per batch item ``‖x − t‖² / ‖t‖²`` in float32 (shape ``B``)."""
    x, target = x.float(), target.float()
    dims = tuple(range(1, x.dim()))
    num = (x - target).pow(2).sum(dims)
    den = target.pow(2).sum(dims).clamp_min(_EPS)
    return num / den


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Per batch item mean squared difference between neighbouring pixels (shape ``B``)."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).float().pow(2).mean((1, 2, 3))
    dy = (image[..., 1:, :] - image[..., :-1, :]).float().pow(2).mean((1, 2, 3))
    return dx + dy
