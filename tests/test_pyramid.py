"""The picture's frequency bands: the pyramid parameterization and the sharpening between scales."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from support.engines import make_targets
from support.images import SHARED_STYLE, gradient_photo
from support.presets import FAST

from pipeline.config.geometry import Scale, pyramid
from pipeline.config.settings import Settings
from pipeline.engine.optimize import Engine, PassInfo, Progress
from pipeline.engine.pyramid import MIN_LEVEL_SIDE, LaplacianPyramid, gaussian_blur, unsharp
from pipeline.images import pil_to_tensor

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("shape", [(1, 3, 128, 128), (2, 3, 101, 77), (1, 3, 40, 17)])
def test_unpacking_the_bands_gives_back_the_picture(shape: tuple[int, int, int, int]) -> None:
    torch.manual_seed(0)
    x = torch.rand(shape)
    bands = LaplacianPyramid(torch.Size(shape))
    z = bands.pack(x)
    assert z.shape == (shape[0], sum(bands.numels))
    assert torch.allclose(bands.unpack(z), x, atol=1e-5)
    # Every level but the full-size one is at least MIN_LEVEL_SIDE on its short side.
    assert all(min(size) >= MIN_LEVEL_SIDE for size in bands.sizes[1:])
    assert bands.sizes[0] == shape[2:]


def test_a_coarse_band_moves_a_whole_region() -> None:
    """A unit change of one coarse coefficient spreads over many pixels; of a fine one, few."""
    bands = LaplacianPyramid(torch.Size((1, 3, 64, 64)))
    assert len(bands.sizes) == 3  # 64, 32, 16
    z = torch.zeros(1, sum(bands.numels))
    fine, coarse = z.clone(), z.clone()
    fine[0, 0] = 1  # the first pixel of the full-size band
    coarse[0, bands.numels[0] + bands.numels[1]] = 1  # the first pixel of the 16² level
    spread = [int((bands.unpack(v).abs() > 1e-6).sum()) for v in (fine, coarse)]
    assert spread[0] == 1 and spread[1] >= 16


def test_unsharp_adds_detail_and_leaves_flat_areas() -> None:
    flat = torch.full((1, 3, 20, 20), 0.4)
    assert torch.allclose(unsharp(flat, 2.0), flat)
    assert torch.allclose(gaussian_blur(flat, 1.0), flat)
    edge = torch.zeros(1, 1, 20, 20)
    edge[..., 10:] = 1.0
    sharp = unsharp(edge, 2.0)
    # Overshoot on both sides of the edge (what makes a blurred stroke crisp again) ...
    assert sharp[..., 9].max() < 0 and sharp[..., 10].min() > 1
    # ... and nothing changes far from it.
    assert torch.allclose(sharp[..., :5], edge[..., :5]) and torch.allclose(sharp[..., 15:],
                                                                            edge[..., 15:])
    assert torch.equal(unsharp(edge, 0.0), edge)


@pytest.fixture(scope="module")
def painting() -> Image.Image:
    return Image.open(SHARED_STYLE).convert("RGB").resize((128, 80), Image.Resampling.LANCZOS)


def _losses(settings: Settings, photo: Image.Image, painting: Image.Image) -> list[Progress]:
    engine = Engine(settings)
    targets = make_targets(engine, [(painting, 1.0)], engine.style_sides(*photo.size))
    seen: list[Progress] = []
    engine.stylize(photo, targets, on_progress=seen.append)
    return seen


def test_the_pyramid_changes_the_path_not_the_loss(painting: Image.Image) -> None:
    """Same loss at the first step (same picture); then another path, also downhill."""
    photo = gradient_photo()
    base = FAST | {"steps": [15], "size": 48, "min_side": 48, "warm_start": False,
                   "sharpen": 0.0}
    pixels = _losses(Settings(**(base | {"pyramid_scales": 0})), photo, painting)
    bands = _losses(Settings(**(base | {"pyramid_scales": 1})), photo, painting)
    assert bands[0].loss == pytest.approx(pixels[0].loss, rel=1e-5)
    assert bands[-1].loss != pytest.approx(pixels[-1].loss, rel=1e-4)
    assert bands[-1].loss < 0.5 * bands[0].loss


def test_pyramid_scales_counts_from_the_coarsest(painting: Image.Image) -> None:
    engine = Engine(Settings(**(FAST | {"steps": [2], "size": 128, "min_side": 32,
                                        "pyramid_scales": 2})))
    photo = gradient_photo()
    targets = make_targets(engine, [(painting, 1.0)], engine.style_sides(*photo.size))
    passes: list[PassInfo] = []
    engine.stylize(photo, targets, on_pass=passes.append)
    assert [p.bands for p in passes] == [True, True, False]  # short sides 32, 52 and 86


@pytest.mark.parametrize("warm", [False, True])
def test_sharpen_starts_the_finer_scale_from_the_sharpened_upsampling(
        painting: Image.Image, warm: bool) -> None:
    """Sharpened, then (with warm_start) the photo's detail added unsharpened: it is exact."""
    settings = Settings(**(FAST | {"steps": [6, 3], "warm_start": warm, "sharpen": 1.5,
                                   "pyramid_scales": 0}))
    engine = Engine(settings)
    photo = gradient_photo()
    targets = make_targets(engine, [(painting, 1.0)], engine.style_sides(*photo.size))
    passes: list[PassInfo] = []
    engine.stylize(photo, targets, on_pass=passes.append)
    starts, outs = [p.start for p in passes], [p.result for p in passes]
    coarse, fine = pyramid(64, 43, settings)

    def photo_at(scale: Scale) -> torch.Tensor:
        return pil_to_tensor(photo.resize((scale.width, scale.height), Image.Resampling.LANCZOS))

    def up(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=(fine.height, fine.width), mode="bicubic",
                             align_corners=False)

    expected = unsharp(up(outs[0]), 1.5)
    if warm:
        expected = expected + photo_at(fine) - up(photo_at(coarse))
    assert torch.allclose(starts[1], expected.clamp(0, 1), atol=1e-6)
    assert not torch.allclose(starts[1], up(outs[0]).clamp(0, 1), atol=1e-3)
