"""L-BFGS with one curvature history per batch item.

``torch.optim.LBFGS`` treats its parameter as one vector: given a batch of
pictures it would mix their curvature pairs and step sizes, so a batch of
photos would not give the pictures each photo gets alone.  This optimizer
runs the same algorithm as ``torch.optim.LBFGS(max_iter=1, line_search_fn=None,
tolerance_grad=0, tolerance_change=0)`` — the engine's setting — once per
batch item, with every dot product and step size taken per item, vectorized
over the batch.  With one item it follows torch's trajectory (a test checks
it).

Two deliberate departures, both for items that torch would mishandle:

* A curvature pair with ``yᵀs ≤ 1e-10`` is not used (as in torch), but it
  still takes its slot in the ring of ``history`` pairs, zeroed; for that item
  the history is one pair shorter until the slot is reused.  Keeping one ring
  for the whole batch is what lets every step be a handful of batched ops.
* When the direction is not a descent direction (``gᵀd ≥ 0``, possible with
  low-precision gradients), torch stops moving that picture for good: the same
  gradient and direction come back every step.  Here the item's history is
  dropped and it restarts from steepest descent, as on its first step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

_CURVATURE_EPS = 1e-10


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per item dot products of two ``B×N`` tensors (shape ``B``)."""
    return (a * b).sum(1)


class BatchLBFGS:
    """Minimizes a sum of independent per-item losses over ``x`` (``B×…``), in place.

    ``x`` must be a leaf tensor with ``requires_grad``; the closure zeroes and fills
    ``x.grad`` (by calling ``backward``) and returns the loss.  Each ``step`` makes one
    function evaluation, as ``torch.optim.LBFGS(max_iter=1)`` does.
    """

    def __init__(self, x: torch.Tensor, *, lr: float = 1.0, history_size: int = 10,
                 initial_scale: torch.Tensor | None = None) -> None:
        self.x = x
        self.lr = lr
        self.history_size = history_size
        # Per item inverse-Hessian scale for the first step (``d = −h·g`` with step 1), for
        # a warm start; None, or NaN for an item: torch's cautious first step.
        self.initial_scale = initial_scale
        b = x.shape[0]
        self._y: list[torch.Tensor] = []  # each B×N; oldest first
        self._s: list[torch.Tensor] = []
        self._rho: list[torch.Tensor] = []  # each B; 0 where the item's pair was rejected
        self._h_diag = torch.ones(b, device=x.device, dtype=x.dtype)
        # Whether ``_h_diag`` was measured from a pair accepted since the item's last
        # restart: before that it is a placeholder 1, not a curvature.
        self._measured = torch.zeros(b, device=x.device, dtype=torch.bool)
        self._prev_g: torch.Tensor | None = None
        self._d: torch.Tensor | None = None
        self._t: torch.Tensor | None = None  # per item step size of the last step

    @property
    def scale(self) -> torch.Tensor:
        """Per item inverse-Hessian scale ``yᵀs/yᵀy`` of the latest accepted pair (``B``).

        NaN for an item with no pair accepted since its last restart (steepest descent),
        whose scale would be a guess: a warm start from it takes the cautious first step.
        """
        return torch.where(self._measured, self._h_diag, torch.nan)

    def zero_grad(self) -> None:
        self.x.grad = None

    @property
    def curvatures(self) -> list[torch.Tensor]:
        """``1 / yᵀs`` of each kept pair, oldest first, per item (``B`` each); 0 where an
        item's pair was rejected or its history dropped by a restart."""
        return list(self._rho)

    @torch.no_grad()
    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """``-H g`` by the two-loop recursion, every item with its own history.

        Public so that a subclass can bend it: an uphill direction (bf16 rounding can make
        one) must restart that item alone, and a test makes one on purpose."""
        q = -g
        alphas = []
        for s, y, rho in zip(reversed(self._s), reversed(self._y), reversed(self._rho),
                             strict=True):
            a = _dot(s, q) * rho
            q -= y * a[:, None]
            alphas.append(a)
        r = q * self._h_diag[:, None]
        for s, y, rho, a in zip(self._s, self._y, self._rho, reversed(alphas), strict=True):
            beta = _dot(y, r) * rho
            r += s * (a - beta)[:, None]
        return r

    def _first_step_size(self, g: torch.Tensor) -> torch.Tensor:
        # torch's first step: min(1, 1/‖g‖₁)·lr, so a huge gradient cannot throw the
        # picture far before any curvature is known.
        return torch.clamp(1.0 / g.abs().sum(1), max=1.0) * self.lr

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        with torch.enable_grad():
            loss = closure()
        assert self.x.grad is not None, "the closure must call backward()"
        with torch.no_grad():
            b = self.x.shape[0]
            g = self.x.grad.reshape(b, -1)
            if self._d is None or self._prev_g is None or self._t is None:
                if self.initial_scale is None:
                    d = -g
                    t = self._first_step_size(g)
                else:
                    h = self.initial_scale.to(g.dtype)
                    known = torch.isfinite(h) & (h > 0)
                    d = torch.where(known[:, None], -g * h.nan_to_num(1.0)[:, None], -g)
                    t = torch.where(known, self.lr, self._first_step_size(g))
            else:
                y = g - self._prev_g
                s = self._d * self._t[:, None]
                ys = _dot(y, s)
                ok = ys > _CURVATURE_EPS
                if bool(ok.any()):
                    if len(self._y) == self.history_size:
                        del self._y[0], self._s[0], self._rho[0]
                    keep = ok.to(g.dtype)[:, None]
                    self._y.append(y * keep)
                    self._s.append(s * keep)
                    self._rho.append(torch.where(ok, 1.0 / ys.clamp_min(_CURVATURE_EPS), 0.0))
                    yy = _dot(y, y).clamp_min(_CURVATURE_EPS)
                    self._h_diag = torch.where(ok, ys / yy, self._h_diag)
                    self._measured = self._measured | ok
                d = self.direction(g)
                t = torch.full((b,), self.lr, device=g.device, dtype=g.dtype)
                uphill = _dot(g, d) >= 0
                if bool(uphill.any()):
                    d, t = self._restart(g, d, t, uphill)
            self._prev_g = g.clone()
            self._d, self._t = d, t
            self.x.add_((d * t[:, None]).reshape(self.x.shape))
        return loss

    def _restart(self, g: torch.Tensor, d: torch.Tensor, t: torch.Tensor,
                 uphill: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Steepest descent and an empty history for the items whose direction goes uphill."""
        self._rho = [torch.where(uphill, 0.0, rho) for rho in self._rho]
        self._h_diag = torch.where(uphill, 1.0, self._h_diag)
        self._measured = self._measured & ~uphill
        d = torch.where(uphill[:, None], -g, d)
        t = torch.where(uphill, self._first_step_size(g), t)
        return d, t
