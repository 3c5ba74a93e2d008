"""Tiles for scales too large for one pass: the grid, the blend, and a tiled stylization."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from support.engines import make_targets
from support.images import SHARED_STYLE, gradient_photo
from support.presets import FAST

from pipeline.config.settings import Settings
from pipeline.engine import tiles
from pipeline.engine.optimize import Engine, Progress


@pytest.mark.parametrize("w,h,limit,overlap", [(4096, 3072, 6_000_000, 64),
                                               (1000, 300, 100_000, 32),
                                               (300, 1000, 60_000, 48),
                                               (777, 555, 200_000, 64)])
def test_grid_covers_the_picture_with_overlapping_tiles_within_the_limit(
        w: int, h: int, limit: int, overlap: int) -> None:
    layout = tiles.grid(w, h, limit, overlap)
    assert len(layout) > 1
    covered = np.zeros((h, w), dtype=np.int32)
    for t in layout:
        assert t.pixels <= limit
        assert t.x >= 0 and t.y >= 0 and t.x + t.width <= w and t.y + t.height <= h
        covered[t.y:t.y + t.height, t.x:t.x + t.width] += 1
        assert t.fade_left == 0 or t.fade_left >= overlap
        assert t.fade_top == 0 or t.fade_top >= overlap
    assert covered.min() >= 1  # every pixel belongs to a tile
    # Not wasteful: one tile fewer could not hold the picture.
    assert (len(layout) - 1) * limit < w * h + len(layout) * overlap * max(w, h)


def test_a_picture_that_fits_is_one_tile() -> None:
    assert tiles.grid(640, 480, 640 * 480, 64) == [tiles.Tile(0, 0, 640, 480, 0, 0)]


def test_pasting_fades_in_across_the_overlap_only() -> None:
    layout = tiles.grid(400, 200, 200 * 240, 40)
    assert len(layout) == 2
    canvas = torch.zeros(1, 3, 200, 400)
    tiles.paste(canvas, torch.ones(1, 3, 200, layout[0].width), layout[0])
    assert torch.equal(canvas[..., :layout[0].width], torch.ones(1, 3, 200, layout[0].width))
    second = layout[1]
    tiles.paste(canvas, torch.full((1, 3, 200, second.width), 3.0), second)
    row = canvas[0, 0, 0]
    fade = slice(second.x, second.x + second.fade_left)
    assert torch.all(row[:second.x] == 1) and torch.all(row[second.x + second.fade_left:] == 3)
    ramp = row[fade]
    assert torch.all(ramp > 1) and torch.all(ramp < 3) and torch.all(ramp.diff() > 0)


def test_a_tiled_scale_is_stylized_without_seams() -> None:
    """Tiles at the last scale: the right size, styled, and no seam along tile borders."""
    photo = gradient_photo(160, 96, seed=3)
    painting = Image.open(SHARED_STYLE).convert("RGB").resize((128, 80))
    settings = Settings(**{**FAST, "size": 160, "steps": [12, 8], "tile_pixels": 100 * 96,
                           "tile_overlap": 24})
    engine = Engine(settings)
    targets = make_targets(engine, [(painting, 1.0)], engine.style_sides(160, 96))
    seen: list[Progress] = []
    result = engine.stylize(photo, targets, on_progress=seen.append)
    assert result.size == (160, 96)
    last = [p for p in seen if p.scale == p.scales]
    assert last[-1].tiles > 1 and last[-1].step == last[-1].steps
    assert {p.tile for p in last} == set(range(1, last[-1].tiles + 1))
    # The picture changed everywhere, tile by tile (not only in the first tile).
    moved = np.abs(np.asarray(result, np.float32) - np.asarray(photo, np.float32)).mean(2)
    layout = tiles.grid(160, 96, 100 * 96, 24)
    for t in layout:
        assert moved[t.y:t.y + t.height, t.x:t.x + t.width].mean() > 3, t
    # A seam is a step in the local mean colour across a tile's edge. Compare the step
    # at each edge with the step at the same place in an untiled result of the same photo.
    untiled = Engine(settings.merged({"tile_pixels": 160 * 96}))
    reference = np.asarray(untiled.stylize(photo, targets), np.float32)
    arr = np.asarray(result, np.float32)

    def step_at(image: np.ndarray, column: int) -> float:
        return float(np.abs(image[:, column - 3:column].mean(1)
                            - image[:, column:column + 3].mean(1)).mean())

    for t in layout[1:]:
        for column in (t.x, t.x + t.fade_left):
            assert step_at(arr, column) < 1.25 * step_at(reference, column), (t, column)
