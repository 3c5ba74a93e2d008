"""What an engine reports of its work, step by step: the one type both methods share.

Apart from either engine, so that the fast path, the optimizer, the executors and the
runner all read it without importing each other (and no import goes round in a circle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """One optimizer step of one photo, as reported to the progress callback."""

    scale: int  # 1-based index of the current scale
    scales: int
    step: int  # 1-based step within the current scale (its tiles one after the other)
    steps: int
    loss: float
    elapsed: float  # seconds since this photo started
    width: int
    height: int
    tile: int = 1  # 1-based tile of the current scale (scales too large for one pass)
    tiles: int = 1
    frames: bool = False  # a video segment's frames made so far, not an optimizer's steps

    def label(self) -> str:
        """What the views show: the scale and size, the tile, the loss; or the frames."""
        size = f"{self.width}×{self.height}"
        if self.frames:
            return f"frames {self.step}/{self.steps} {size}"
        tile = f" tile {self.tile}/{self.tiles}" if self.tiles > 1 else ""
        return f"scale {self.scale}/{self.scales} {size}{tile} loss {self.loss:.4g}"


ProgressFn = Callable[[Progress], None]
