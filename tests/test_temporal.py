"""A video frame started from the previous one (the optimizer's warm start) and held to it
by Ruder et al.'s temporal term where the carrying is trusted."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from support.engines import make_targets
from support.images import PHOTOS, SHARED_STYLE
from support.presets import FAST

from pipeline.config.settings import Settings
from pipeline.engine.objective import TemporalTerm
from pipeline.engine.optimize import Engine, PassInfo, Start
from pipeline.plan.methods import result_view
from pipeline.progress import Progress

pytestmark = pytest.mark.timeout(120)
SIZE = (96, 64)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(PHOTOS / "chelsea.png").convert("RGB").resize(SIZE,
                                                                   Image.Resampling.LANCZOS)


def _stylize(settings: Settings, photo: Image.Image, start: Start | None = None,
             progress: list[Progress] | None = None,
             on_pass: Callable[[PassInfo], None] | None = None) -> np.ndarray:
    engine = Engine(settings)
    painting = Image.open(SHARED_STYLE).convert("RGB").resize((128, 80))
    targets = make_targets(engine, [(painting, 1.0)], engine.style_sides(*photo.size))
    out = engine.stylize(photo, targets, start=start, on_pass=on_pass,
                         on_progress=None if progress is None else progress.append)
    return np.asarray(out, dtype=np.float32) / 255


def test_the_term_is_the_mean_squared_difference_where_trusted() -> None:
    target = torch.zeros(2, 3, 2, 2)
    trust = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).expand(2, 1, 2, 2)
    pictures = torch.stack([torch.full((3, 2, 2), 0.5), torch.zeros(3, 2, 2)])
    pictures[1, :, 1, :] = 1.0  # different only where nothing is trusted
    loss = TemporalTerm(10.0, target, trust)({}, pictures)
    assert loss.tolist() == pytest.approx([10 * 0.25 * 6 / 12, 0.0])


@pytest.mark.parametrize("tiles", [False, True])
def test_a_started_frame_is_held_to_its_start_where_trusted(tiles: bool) -> None:
    size = (160, 96) if tiles else SIZE
    photo = Image.open(PHOTOS / "chelsea.png").convert("RGB").resize(
        size, Image.Resampling.LANCZOS)
    base = FAST | {"size": size[0], "steps": [20, 20], "warm_steps": 20}
    if tiles:  # the finest scale (160×96) cut into overlapping tiles
        base |= {"tile_pixels": 6000, "tile_overlap": 16}
    start_picture = Image.fromarray(
        (_stylize(Settings(**base), photo) * 255).round().astype(np.uint8))
    trust = np.zeros(size[::-1], np.float32)
    half = size[0] // 2
    trust[:, :half] = 1.0  # the left half is trusted
    start = np.asarray(start_picture, np.float32) / 255
    passes: list[PassInfo] = []

    def moved(weight: float) -> tuple[float, float]:
        out = _stylize(Settings(**base, temporal_weight=weight), photo,
                       Start(start_picture, trust), on_pass=passes.append)
        away = np.abs(out - start).mean(axis=2)
        return float(away[:, :half].mean()), float(away[:, half:].mean())

    free_left, free_right = moved(0.0)
    held_left, held_right = moved(1000.0)
    assert len(passes) == (4 if tiles else 2)  # two runs, tiled or not
    assert held_left < 0.3 * free_left, (held_left, free_left)
    assert held_right > 2 * held_left, (held_right, held_left)  # not held where untrusted


def test_a_started_frame_takes_warm_steps_at_its_finest_scale_only(photo: Image.Image) -> None:
    progress: list[Progress] = []
    settings = Settings(**(FAST | {"size": 96, "steps": [12, 6], "warm_steps": 3}))
    _stylize(settings, photo, Start(photo), progress)
    assert {(p.scale, p.scales) for p in progress} == {(1, 1)}
    assert progress[-1].step == progress[-1].steps == 3


def test_the_optimizers_video_knobs_key_its_videos_only() -> None:
    def keys(**knobs: object) -> tuple[object, ...]:
        s = Settings(**knobs)
        return (result_view(s), result_view(s, video=True),
                result_view(s.model_copy(update={"method": "fast"}), video=True))

    plain, held = keys(), keys(temporal_weight=50.0, warm_steps=20)
    assert held[0] == plain[0]  # a photo's key
    assert held[1] != plain[1]  # an optimized video's
    assert held[2] == plain[2]  # a network's video: it paints each frame alone
    assert "temporal_weight" not in plain[1]["video"]  # neutral: the keys made before it
