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
        # One photo (the CPU's batch) needs no stack: a copy of C×C at every step.
        g = (torch.mm(f[0], f[0].t()).unsqueeze(0) if b == 1
             else torch.stack([torch.mm(item, item.t()) for item in f]))
    else:
        g = torch.bmm(f, f.transpose(1, 2))
    return g.float() / (h * w)


def squared_norm(target: torch.Tensor) -> torch.Tensor:
    """Per batch item ``‖t‖²`` in float32, floored: the denominator of relative_error."""
    target = target.float()
    return target.pow(2).sum(tuple(range(1, target.dim()))).clamp_min(_EPS)


def relative_error(x: torch.Tensor, target: torch.Tensor,
                   den: torch.Tensor | None = None) -> torch.Tensor:
    """Per batch item ``‖x − t‖² / ‖t‖²`` in float32 (shape ``B``).

    ``den`` is ``squared_norm(target)`` when the caller has it: a target that serves every
    step of a scale need not be measured again at each.
    """
    x, target = x.float(), target.float()
    num = (x - target).pow(2).sum(tuple(range(1, x.dim())))
    return num / (squared_norm(target) if den is None else den)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Per batch item mean squared difference between neighbouring pixels (shape ``B``)."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).float().pow(2).mean((1, 2, 3))
    dy = (image[..., 1:, :] - image[..., :-1, :]).float().pow(2).mean((1, 2, 3))
    return dx + dy


# -- Wasserstein-2 between Gaussian fits (style_loss: w2) ------------------------------------

#: Newton–Schulz iterations per step for the W2 loss's matrix square root.  Eigenvalues
#: above about (4/9)^k of the Frobenius norm converge; smaller ones are underestimated, which
#: acts as a floor on the covariance in the painting's weakest feature directions.
W2_ITERATIONS = 16
_NS_RIDGE = 1e-7


def newton_schulz(a: torch.Tensor, iterations: int = W2_ITERATIONS
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A^½, A^-½)`` of symmetric positive semi-definite ``B×n×n`` matrices, in float32.

    The coupled Newton–Schulz iteration (Higham, *Functions of Matrices*, SIAM 2008,
    eq. 6.35; used for differentiable roots by Lin and Maji, *Improved Bilinear
    Pooling with CNNs*, BMVC 2017): with ``Y₀ = A/‖A‖_F`` and ``Z₀ = I``,
    ``T = (3I − Z Y)/2``, ``Y ← Y T``, ``Z ← T Z``; then ``Y → (A/‖A‖)^½`` and
    ``Z → (A/‖A‖)^-½``.  Only matrix products, so it runs fast on any device; it
    converges for every eigenvalue in (0, 1] after the scaling, quadratically once close.
    An eigenvalue ``λ`` far below ``‖A‖_F`` needs about ``log(‖A‖/λ)/log(9/4)``
    iterations; with fewer, its root is underestimated and its inverse root stays
    bounded (about ``1.5^k``), which keeps gradients finite on singular matrices.
    """
    a = a.float()
    norm = a.flatten(1).norm(dim=1).clamp_min(_EPS)[:, None, None]
    eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype).expand_as(a)
    # A ridge far below what the iterations resolve: on a singular matrix (fewer
    # positions than channels, dead channels) the iteration's rounding errors would
    # otherwise grow like 1.5^k and reach NaN after about 24 iterations in float32.
    y, z = a / norm + _NS_RIDGE * eye, eye
    for _ in range(iterations):
        t = 1.5 * eye - 0.5 * (z @ y)
        y, z = y @ t, t @ z
    return y * norm.sqrt(), z / norm.sqrt()


class _TraceSqrt(torch.autograd.Function):
    """``tr(A^½)`` per batch item, differentiated in closed form: ``d tr(A^½)/dA = ½ A^-½``.

    Back-propagating through the Newton–Schulz iterations would cost twice their forward
    products and keep every iterate; the coupled iteration already yields ``A^-½``.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, a: torch.Tensor,
                iterations: int) -> torch.Tensor:
        root, inv_root = newton_schulz(a.detach(), iterations)
        ctx.save_for_backward(inv_root)
        return root.diagonal(dim1=-2, dim2=-1).sum(-1)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,  # type: ignore[override]
                 grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (inv_root,) = ctx.saved_tensors  # type: ignore[attr-defined]
        # A matrix too large for float32 has no root here (inf or NaN); w2_relative then
        # uses its floor, and this term must pass on no gradient rather than NaN.
        inv_root = torch.nan_to_num(inv_root, nan=0.0, posinf=0.0, neginf=0.0)
        sym = 0.25 * (inv_root + inv_root.transpose(-2, -1))
        return grad[:, None, None] * sym, None


def trace_sqrt(a: torch.Tensor, iterations: int = W2_ITERATIONS) -> torch.Tensor:
    """``tr(A^½)`` of PSD ``B×n×n`` matrices (shape ``B``), by Newton–Schulz; differentiable."""
    out: torch.Tensor = _TraceSqrt.apply(a, iterations)
    return out


class W2Target:
    """A painting's Gaussian fit at one layer, prepared once per scale for the W2 loss.

    Built from the cached mean ``μ`` (``C``) and second moment ``E[ffᵀ]`` (``C×C``, the
    Gram matrix): both are averages over positions, so blends of paintings stay linear,
    and the covariance ``Σ = E[ffᵀ] − μμᵀ`` is derived here.  ``Σ^½`` is taken once,
    exactly, by an eigendecomposition in float64 (negative round-off clipped).
    """

    def __init__(self, mean: torch.Tensor, second: torch.Tensor) -> None:
        m, g = mean.double().reshape(-1), second.double().reshape(second.shape[-2:])
        cov = g - torch.outer(m, m)
        cov = 0.5 * (cov + cov.T)
        evals, evecs = torch.linalg.eigh(cov)
        root = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
        self.mean = m.float()
        self.cov = cov.float()
        self.cov_sqrt = root.float()
        self.cov_trace = evals.clamp_min(0).sum().float()
        # W2² between the painting's fit and a point mass at zero, ‖μ‖² + tr Σ = tr E[ffᵀ]:
        # the loss is relative to it, as the Gram loss is relative to ‖G‖², so a picture
        # whose features are all zero scores 1 at every layer and layer weights mean what
        # they say.
        self.scale = (m @ m + evals.clamp_min(0).sum()).clamp_min(_EPS).float()

    def to(self, device: torch.device) -> W2Target:
        for name in ("mean", "cov", "cov_sqrt", "cov_trace", "scale"):
            setattr(self, name, getattr(self, name).to(device))
        return self


def w2_relative(features: torch.Tensor, target: W2Target,
                iterations: int = W2_ITERATIONS) -> torch.Tensor:
    """Per batch item W2² between Gaussian fits, relative to the target's ``tr E[ffᵀ]``.

    ``W2² = ‖μx − μs‖² + tr(Σx + Σs − 2 (Σs^½ Σx Σs^½)^½)`` (Dowson and Landau 1982;
    Givens and Shortt 1984), the transport cost between the two Gaussians.  Where a
    layer has fewer positions ``N`` than channels ``C`` (deep layers at coarse scales),
    the trace is taken of the ``N×N`` matrix ``Xᵀ Σs X / N`` (``X`` the centred
    features) instead: it has the same non-zero eigenvalues as ``Σs^½ Σx Σs^½``, and
    Newton–Schulz treats each eigenvalue alike, so the value is the same and cheaper.
    """
    b, c, h, w = features.shape
    n = h * w
    f = features.reshape(b, c, n)
    if f.dtype == torch.float16:
        f = f.float()
    # Centre before the product: E[ffᵀ] − μμᵀ from bfloat16-rounded Grams would lose the
    # covariance to cancellation (the mean carries most of the second moment).  Any
    # constant ``m`` will do, since μ = m + E[f − m] and Σ = E[(f−m)(f−m)ᵀ] − E[f−m]E[f−m]ᵀ
    # hold exactly: so ``m`` is a cheap matrix-vector mean (a bfloat16 reduction over
    # positions is several times slower on the CPU), held constant for autograd.
    with torch.no_grad():
        ones = torch.ones(n, 1, device=f.device, dtype=f.dtype)
        m = (f @ ones) / n  # B×C×1, in f's precision
    xc = f - m
    rest = ((xc @ ones.detach()) / n).float().squeeze(2)  # B×C, E[f − m], small
    mean = m.float().squeeze(2) + rest
    if n < c:
        xf = xc.float() - rest[:, :, None]  # exactly centred, C×N with N small
        inner = xf.transpose(1, 2) @ (target.cov @ xf) / n  # B×N×N
        cov_trace = xf.pow(2).sum((1, 2)) / n
    else:
        cov = gram(xc.reshape(b, c, h, w)) - rest[:, :, None] * rest[:, None, :]  # B×C×C
        inner = target.cov_sqrt @ cov @ target.cov_sqrt
        cov_trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1)
    cross = trace_sqrt(0.5 * (inner + inner.transpose(1, 2)), iterations)
    mean_term = (mean - target.mean).pow(2).sum(1)
    cov_term = cov_trace + target.cov_trace - 2 * cross
    # The covariance term is never below (√tr Σx − √tr Σs)², since by Cauchy–Schwarz the
    # cross term is at most √(tr Σx · tr Σs).  Rounding can dip under that floor, and a
    # picture blown up by an overshooting step overflows the product above in float32
    # (the root is then inf or NaN): the floor stands in, so the loss stays positive and
    # still pulls the features' spread towards the painting's.
    floor = (cov_trace.clamp_min(_EPS).sqrt() - target.cov_trace.sqrt()).pow(2)
    cov_term = torch.where(torch.isfinite(cov_term), torch.maximum(cov_term, floor), floor)
    return (mean_term + cov_term) / target.scale
