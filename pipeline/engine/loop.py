"""One optimization pass: up to ``steps`` optimizer steps of pictures at one size.

The pass knows nothing of scales, tiles or photos: it gets the starting pictures and a
loss function (a loss per picture) and hands back the pictures it ends with.  What it
owns is the optimizer and its options: L-BFGS or Adam, the optional Laplacian-pyramid
parameterization, the moving average of the iterates, the early-stopping rule, and the
L-BFGS step size one pass hands the next (:class:`Carry`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from pipeline.config.settings import Settings
from pipeline.engine.lbfgs import BatchLBFGS
from pipeline.engine.loss_scale import LossScaler
from pipeline.engine.pyramid import LaplacianPyramid
from pipeline.errors import Cancelled

#: Steps over which a scale's loss must improve by ``stop_tolerance`` to go on.
STOP_WINDOW = 10

#: ``loss_fn(pictures)``: the loss of each picture of a ``B×3×H×W`` batch (shape ``B``).
LossFn = Callable[[torch.Tensor], torch.Tensor]
#: ``report(step, loss, picture, last)``: one optimizer step done; ``last`` on the pass's
#: final step (its step count, or where it stopped early).
StepFn = Callable[[int, torch.Tensor, torch.Tensor, bool], None]


@dataclass
class Carry:
    """What one pass hands the next, finer one (besides the picture)."""

    scale: torch.Tensor | None = None  # L-BFGS inverse-Hessian scale per photo
    pixels: int = 0  # pixels of the pass it was measured on


@dataclass
class PassOptions:
    """How one pass optimizes, beyond the settings: decided by the scale schedule."""

    steps: int
    bands: bool = False  # move the bands of a Laplacian pyramid instead of pixels
    should_stop: Callable[[], bool] | None = None


def optimize(x: torch.Tensor, loss_fn: LossFn, settings: Settings, options: PassOptions,
             carry: Carry, scaler: LossScaler, report: StepFn) -> torch.Tensor:
    """Up to ``options.steps`` optimizer steps of the pictures ``x`` (``B×3×H×W``).

    Returns the last iterate, or with ``average`` its moving average; with a
    ``stop_tolerance``, each photo's picture as it was when its loss stopped improving.
    """
    s = settings
    # ``z`` is what the optimizer moves: the pictures themselves, or their bands.
    bands = LaplacianPyramid(x.shape) if options.bands else None
    z = (x.detach() if bands is None else bands.pack(x.detach())).requires_grad_(True)
    optimizer = make_optimizer(z, settings, carry, x.shape[-1] * x.shape[-2])
    per_photo: list[torch.Tensor] = []  # the last closure's loss of each photo

    def closure() -> torch.Tensor:
        z.grad = None
        loss = loss_fn(z if bands is None else bands.unpack(z))
        per_photo[:] = [loss.detach()]
        total = loss.sum()
        scaler.backward(total, z)
        return total

    x = z if bands is None else bands.unpack(z).detach()
    average = Average(x, s.average) if s.average else None
    stopping = Stopping(x.shape[0], s.stop_tolerance, s.min_steps) if s.stop_tolerance else None
    for step in range(options.steps):
        if options.should_stop is not None and options.should_stop():
            raise Cancelled("stopped on request")
        loss = optimizer.step(closure)
        with torch.no_grad():
            if bands is not None:
                x = bands.unpack(z)
            elif s.optimizer == "adam":
                x.clamp_(0, 1)
        picture = x if average is None else average.update(x)
        last = step + 1 == options.steps
        if stopping is not None:
            last = stopping.update(step + 1, per_photo[0], picture) or last
        report(step + 1, loss, picture, last)
        if last:
            break
    if isinstance(optimizer, BatchLBFGS):
        # Measured on the bands when the pass moved them; the finest band enters the
        # picture at gain 1, so the scale is carried as it is (what was benchmarked).
        carry.scale, carry.pixels = optimizer.scale.clone(), x.shape[-1] * x.shape[-2]
    picture = x.detach() if average is None else average.value()
    return picture if stopping is None else stopping.pictures(picture)


def make_optimizer(z: torch.Tensor, settings: Settings, carry: Carry,
                   pixels: int) -> BatchLBFGS | torch.optim.Adam:
    """The optimizer of ``z`` (pixels or bands) for a pass of ``pixels`` pixels a photo."""
    s = settings
    if s.optimizer == "adam":
        return torch.optim.Adam([z], lr=s.learning_rate or 0.02)
    # One function evaluation per step, a short history (memory at large scales).
    warm = None
    if s.warm_start and carry.scale is not None:
        # Every term of the loss is an average over positions, so its curvature per
        # pixel falls, and the inverse-Hessian scale grows, with the pixel count.
        warm = carry.scale * (pixels / carry.pixels)
    return BatchLBFGS(z, lr=s.learning_rate or 1.0, history_size=10, initial_scale=warm)


class Average:
    """A bias-corrected exponential moving average of the pictures (as Adam's moments).

    Starts at the first picture, so that after ``k`` updates the weights of the pictures
    seen sum to one; ``decay`` 0.9 averages over about the last ten steps.  Averaging
    smooths the step-to-step jitter of the iterate (Polyak and Juditsky 1992, in the
    exponential form crowsonkb/style-transfer-pytorch uses), at the price of lagging it.
    """

    def __init__(self, x: torch.Tensor, decay: float) -> None:
        self.decay = decay
        self.total = x.detach() * (1 - decay)
        self.weight = 1 - decay  # sum of the weights in ``total``

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> torch.Tensor:
        self.total.mul_(self.decay).add_(x.detach(), alpha=1 - self.decay)
        self.weight = self.weight * self.decay + (1 - self.decay)
        return self.value()

    def value(self) -> torch.Tensor:
        return self.total / self.weight


class Stopping:
    """The per-pass stopping rule, one decision per photo of a batch.

    A photo is done once ``min_steps`` steps have run and its best loss so far improved
    by less than ``tolerance`` (relative) over the last :data:`STOP_WINDOW` steps.  The
    best loss, not the last one: L-BFGS without line search has occasional uphill steps,
    which must neither stop a photo nor keep it going.  A photo that is done keeps the
    picture it had then, while the others of its batch go on, so that a batch gives each
    photo what it would get alone.  The pass ends when every photo is done.  Settings
    refuse a ``min_steps`` below the window, so the rule always has its ten steps to see.
    """

    def __init__(self, photos: int, tolerance: float, min_steps: int) -> None:
        self.tolerance = tolerance
        self.min_steps = min_steps
        self.best: list[torch.Tensor] = []  # best loss so far of each photo, after each step
        self.done: list[torch.Tensor | None] = [None] * photos

    @torch.no_grad()
    def update(self, step: int, loss: torch.Tensor, picture: torch.Tensor) -> bool:
        """Record step ``step``'s losses; whether every photo is now done."""
        loss = loss.float()
        self.best.append(loss if not self.best else torch.minimum(self.best[-1], loss))
        if step < self.min_steps:
            return False
        before, now = self.best[-1 - STOP_WINDOW], self.best[-1]
        stalled = ((before - now) <= self.tolerance * before.abs()).tolist()
        for i, stop in enumerate(stalled):
            if stop and self.done[i] is None:
                self.done[i] = picture[i:i + 1].detach().clone()
        return all(d is not None for d in self.done)

    def pictures(self, last: torch.Tensor) -> torch.Tensor:
        """The pictures to keep: each done photo's from when it was done, else ``last``."""
        if all(d is None for d in self.done):
            return last
        return torch.cat([last[i:i + 1] if d is None else d for i, d in enumerate(self.done)])
