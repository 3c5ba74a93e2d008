"""The CUDA paths: batches, tiles and half precision on a real GPU (skipped without one).

CI has no GPU; these run wherever one is present (see docs/lab-log.md for the
machine they were last run on).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from support.engines import batch_and_singles_in_float64, make_targets
from support.images import SHARED_STYLE, gradient_photo

from pipeline.config.settings import Settings
from pipeline.engine.losses import gram, relative_error
from pipeline.engine.objective import layer_weights
from pipeline.engine.optimize import Engine
from pipeline.engine.vgg import FeatureExtractor
from pipeline.images import pil_to_tensor

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
              pytest.mark.timeout(300)]

GPU = {"size": 128, "min_side": 64, "steps": [30, 15], "device": "cuda"}


@pytest.fixture(scope="module")
def painting() -> Image.Image:
    return Image.open(SHARED_STYLE).convert("RGB").resize((256, 160), Image.Resampling.LANCZOS)


def _targets(engine: Engine, painting: Image.Image, w: int, h: int) -> dict:
    return make_targets(engine, [(painting, 1.0)], engine.style_sides(w, h))


def _distances(engine: Engine, picture: Image.Image, photo: Image.Image,
               painting: Image.Image) -> tuple[float, float]:
    """Content and style distances of a result (the race's yardstick, in float32)."""
    net = FeatureExtractor(engine.style_net.body, engine.style_net.preprocess,
                           ["relu4_2", *layer_weights(engine.settings)[1]])

    def feats(img: Image.Image) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return net(pil_to_tensor(img).cuda())

    out, ref, sty = feats(picture), feats(photo.resize(picture.size)), feats(painting)
    content = relative_error(out["relu4_2"], ref["relu4_2"]).item()
    layers = layer_weights(engine.settings)[1]
    style = sum(relative_error(gram(out[n]), gram(sty[n])).item() for n in layers)
    return content, style / len(layers)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_gpu_batch_is_as_good_as_one_by_one(painting: Image.Image, precision: str) -> None:
    """Rounding differs in a batch and L-BFGS amplifies it: pictures differ in detail, so
    what must match is what they achieve (and each must be its own photo's)."""
    # Four different photos: the gradient photo turned four ways.
    base = gradient_photo(192, 128, seed=1)
    photos = [base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
              base.transpose(Image.Transpose.FLIP_TOP_BOTTOM), base.rotate(180)]
    engine = Engine(Settings(**GPU, precision=precision))
    targets = _targets(engine, painting, 192, 128)
    together = engine.stylize_batch(photos, targets)
    for i, photo in enumerate(photos):
        alone = engine.stylize(photo, targets)
        assert np.isfinite(np.asarray(alone, np.float32)).all()
        c_alone, s_alone = _distances(engine, alone, photo, painting)
        c_batch, s_batch = _distances(engine, together[i], photo, painting)
        assert c_batch == pytest.approx(c_alone, rel=0.15), (precision, i)
        assert s_batch == pytest.approx(s_alone, rel=0.15), (precision, i)
        # Its own photo's: far closer to it than to the neighbour's photo.
        c_wrong, _ = _distances(engine, together[i], photos[i - 1], painting)
        assert c_batch < 0.8 * c_wrong


def test_in_float64_a_gpu_batch_is_one_by_one(painting: Image.Image,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    photos = [gradient_photo(96, 64, seed=s) for s in range(3)]
    engine = Engine(Settings(**{**GPU, "size": 96, "precision": "fp32"}))
    targets = _targets(engine, painting, 96, 64)
    together, alone = batch_and_singles_in_float64(engine, photos, targets)
    for i in range(3):
        assert torch.allclose(alone[i], together[i], atol=1e-6), i


def test_tiles_on_the_gpu(painting: Image.Image) -> None:
    photo = gradient_photo(256, 160, seed=5)
    engine = Engine(Settings(**{**GPU, "size": 256, "tile_pixels": 140 * 160,
                                "precision": "bf16"}))
    result = engine.stylize(photo, _targets(engine, painting, 256, 160))
    assert result.size == (256, 160)
    moved = np.abs(np.asarray(result, np.float32) - np.asarray(photo, np.float32)).mean()
    assert moved > 5


def test_auto_batch_size_uses_free_gpu_memory() -> None:
    from pipeline.engine import memory

    device = torch.device("cuda")
    n = memory.batch_size(Settings(device="cuda"), device, torch.bfloat16, 512 * 512)
    assert 1 < n <= memory.MAX_AUTO_BATCH
    assert memory.batch_size(Settings(device="cuda"), device, torch.bfloat16,
                             20_000 * 20_000) == 1
