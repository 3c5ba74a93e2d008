"""Overlapping tiles for the scales that do not fit in memory in one pass.

A scale larger than the device can optimize at once is cut into a grid of
overlapping tiles, each optimized in turn against the photo's content in that
tile and the one shared set of style targets.  Tiles are done in raster order
on one canvas: a tile starts from the canvas as it is, so its overlap with the
tiles above and to its left already holds their result, and it is pasted back
through a mask that fades in linearly across that overlap.  Neighbouring
results therefore meet through a cross-fade between two pictures that started
from the same pixels, and no seam shows.

Gram matrices are averages over positions (see ``losses``), so a tile is held to
the same style statistics as the whole picture, whatever its size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: Smallest tile side: below this the overlap would be most of the tile.
MIN_TILE_SIDE = 64


@dataclass(frozen=True)
class Tile:
    x: int
    y: int
    width: int
    height: int
    fade_left: int  # width of the overlap with the tile to the left (0: none)
    fade_top: int  # height of the overlap with the tile above

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _starts(length: int, tile: int, count: int) -> list[int]:
    if count == 1:
        return [0]
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _tile_side(length: int, count: int, overlap: int) -> int:
    return math.ceil((length + (count - 1) * overlap) / count)


def grid(width: int, height: int, max_pixels: int, overlap: int) -> list[Tile]:
    """The fewest tiles of at most ``max_pixels`` (if possible) covering the picture.

    Neighbours overlap by at least ``overlap`` pixels.  Among grids with as few
    tiles, the one with the squarest tiles wins.  A picture that fits is one tile.
    """
    if width * height <= max_pixels:
        return [Tile(0, 0, width, height, 0, 0)]
    smallest = max(MIN_TILE_SIDE, 2 * overlap)
    best: tuple[bool, int, float, int, int] | None = None
    for nx in range(1, max(1, width // smallest) + 1):
        tw = _tile_side(width, nx, overlap)
        for ny in range(1, max(1, height // smallest) + 1):
            th = _tile_side(height, ny, overlap)
            fits = tw * th <= max_pixels
            # Fitting grids first, the fewest tiles, then the squarest tiles; where
            # none fits (a tiny limit), the finest grid allowed.
            cand = (not fits, nx * ny if fits else -nx * ny, max(tw, th) / min(tw, th), nx, ny)
            if best is None or cand[:3] < best[:3]:
                best = cand
    assert best is not None
    *_, nx, ny = best
    tw, th = _tile_side(width, nx, overlap), _tile_side(height, ny, overlap)
    xs, ys = _starts(width, tw, nx), _starts(height, th, ny)
    tiles = []
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            fade_left = xs[i - 1] + tw - x if i else 0
            fade_top = ys[j - 1] + th - y if j else 0
            tiles.append(Tile(x, y, tw, th, fade_left, fade_top))
    return tiles


def _ramp(length: int, fade: int, device: torch.device) -> torch.Tensor:
    """1 everywhere except a linear rise over the first ``fade`` entries (0 < r < 1)."""
    r = torch.ones(length, device=device)
    if fade > 0:
        r[:fade] = torch.arange(1, fade + 1, device=device, dtype=torch.float32) / (fade + 1)
    return r


def blend_mask(tile: Tile, device: torch.device) -> torch.Tensor:
    """``1×1×H×W`` weight of a tile's new result against the canvas beneath it."""
    return (_ramp(tile.height, tile.fade_top, device)[:, None]
            * _ramp(tile.width, tile.fade_left, device)[None, :])[None, None]


def crop(image: torch.Tensor, tile: Tile) -> torch.Tensor:
    return image[..., tile.y:tile.y + tile.height, tile.x:tile.x + tile.width]


def paste(canvas: torch.Tensor, result: torch.Tensor, tile: Tile) -> None:
    """Blend ``result`` into ``canvas`` (in place) at the tile's place."""
    region = crop(canvas, tile)
    mask = blend_mask(tile, canvas.device)
    region.mul_(1 - mask).add_(result * mask)
