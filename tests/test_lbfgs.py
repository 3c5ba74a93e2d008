"""The batched L-BFGS: torch's algorithm, one history per batch item."""

from __future__ import annotations

import torch

from pipeline.engine.lbfgs import BatchLBFGS


def _loss(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """A smooth, non-quadratic loss per batch item (Rosenbrock-like in pairs of pixels)."""
    flat = x.reshape(x.shape[0], -1)
    even, odd = flat[:, ::2], flat[:, 1::2]
    return ((a - even) ** 2 + 5 * (odd - even**2) ** 2).sum(1)


def _problem(seed: int, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(batch, 3, 4, 6, generator=g) * 2 - 1
    a = torch.rand(batch, 36, generator=g) + 0.5
    return x0, a


def _run_ours(x0: torch.Tensor, a: torch.Tensor, steps: int) -> tuple[torch.Tensor, list[float]]:
    x = x0.clone().requires_grad_(True)
    opt = BatchLBFGS(x, lr=1.0, history_size=10)
    losses = []

    def closure() -> torch.Tensor:
        x.grad = None
        loss = _loss(x, a).sum()
        loss.backward()
        return loss

    for _ in range(steps):
        losses.append(float(opt.step(closure).detach()))
    return x.detach(), losses


def _run_torch(x0: torch.Tensor, a: torch.Tensor, steps: int) -> tuple[torch.Tensor, list[float]]:
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=10, tolerance_change=0.0,
                            tolerance_grad=0.0)
    losses = []

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _loss(x, a).sum()
        loss.backward()
        return loss

    for _ in range(steps):
        losses.append(float(opt.step(closure).detach()))
    return x.detach(), losses


def test_one_item_follows_torch_lbfgs() -> None:
    x0, a = _problem(1)
    ours, our_losses = _run_ours(x0.double(), a.double(), 40)
    theirs, their_losses = _run_torch(x0.double(), a.double(), 40)
    assert our_losses[-1] < our_losses[0] / 10  # it does optimize
    assert torch.allclose(torch.tensor(our_losses), torch.tensor(their_losses), rtol=1e-9)
    assert torch.allclose(ours, theirs, atol=1e-9)


def test_a_batch_gives_each_item_its_own_trajectory() -> None:
    x0, a = _problem(2, batch=3)
    together, _ = _run_ours(x0.double(), a.double(), 30)
    for i in range(3):
        alone, _ = _run_torch(x0[i:i + 1].double(), a[i:i + 1].double(), 30)
        assert torch.allclose(together[i:i + 1], alone, atol=1e-9), i
    # One parameter vector for the whole batch (what torch's LBFGS would do) differs.
    mixed, _ = _run_torch(x0.double(), a.double(), 30)
    assert not torch.allclose(together, mixed, atol=1e-3)


def test_an_uphill_direction_restarts_that_item_only() -> None:
    x0, a = _problem(3, batch=2)
    x = x0.clone().requires_grad_(True)
    uphill = False

    class Bent(BatchLBFGS):
        def direction(self, g: torch.Tensor) -> torch.Tensor:
            d = super().direction(g)
            if uphill:  # item 0's direction goes uphill (as bf16 noise can make it)
                d[0] = g[0]
            return d

    opt = Bent(x)

    def closure() -> torch.Tensor:
        x.grad = None
        loss = _loss(x, a).sum()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    uphill = True
    before = _loss(x, a).detach()
    opt.step(closure)
    after = _loss(x, a).detach()
    assert after[0] < before[0]  # a steepest-descent step instead of an uphill one
    assert opt.curvatures and all(float(rho[0]) == 0 for rho in opt.curvatures)  # dropped
    assert all(float(rho[1]) > 0 for rho in opt.curvatures)  # the other item keeps its own
