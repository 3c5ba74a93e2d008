"""Loss scaling for float16 backward passes, started afresh for every photo.

Float16 gradients of these losses are mostly below float16's smallest normal number,
so the loss is multiplied by a large factor for the backward pass and the gradient
divided by it afterwards; when the scaled gradient overflows, the factor is halved and
the pass repeated (as ``torch.amp.GradScaler`` does, without its growth: a photo's few
hundred steps are too short for growing the scale back to pay).

One scaler serves one photo (or one batch) from its first step to its last: a scaler
that outlived its photo would hand the next one a factor lowered by an overflow that
photo never had, and a result must depend only on its photo, its settings and its seed.
"""

from __future__ import annotations

import torch

#: The factor every photo starts with.
INITIAL_LOSS_SCALE = 2.0**12


class LossScaler:
    """Fills a leaf's ``grad`` with the gradient of a loss, scaled when ``enabled``."""

    def __init__(self, enabled: bool, initial: float = INITIAL_LOSS_SCALE) -> None:
        self.enabled = enabled
        self.scale = initial if enabled else 1.0
        self.overflows = 0  # backward passes repeated at a halved factor

    @classmethod
    def for_dtype(cls, dtype: torch.dtype) -> LossScaler:
        """The scaler a network of this precision needs: only float16's is enabled."""
        return cls(dtype == torch.float16, INITIAL_LOSS_SCALE)

    def backward(self, total: torch.Tensor, leaf: torch.Tensor) -> None:
        """``leaf.grad`` := the gradient of ``total`` (a scalar), unscaled."""
        if not self.enabled:
            total.backward()
            return
        while True:
            total.backward(torch.tensor(self.scale, device=leaf.device), retain_graph=True)
            assert leaf.grad is not None
            if bool(torch.isfinite(leaf.grad).all()) or self.scale <= 1.0:
                break
            leaf.grad = None
            self.scale /= 2
            self.overflows += 1
        leaf.grad.div_(self.scale)
