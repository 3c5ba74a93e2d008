"""The optimizer: it moves a photo towards a painting's style and keeps its content."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAST, PHOTOS, SHARED_STYLE, batch_and_singles_in_float64, gradient_photo
from PIL import Image

from pipeline.engine.geometry import output_size, pyramid
from pipeline.engine.losses import gram, relative_error, total_variation
from pipeline.engine.optimize import Engine, Progress
from pipeline.engine.vgg import FeatureExtractor
from pipeline.errors import Cancelled, InputError
from pipeline.images import pil_to_tensor
from pipeline.settings import Settings

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def painting() -> Image.Image:
    return Image.open(SHARED_STYLE).convert("RGB").resize((128, 80), Image.Resampling.LANCZOS)


def _run(settings: Settings, content: Image.Image, painting: Image.Image,
         **kw: object) -> Image.Image:
    engine = Engine(settings)
    targets = engine.compute_style_targets([(painting, 1.0)],
                                           engine.style_sides(*content.size))
    return engine.stylize(content, targets, **kw)  # type: ignore[arg-type]


def test_gram_is_averaged_over_positions() -> None:
    f = torch.ones(1, 2, 4, 8)
    assert torch.allclose(gram(f), torch.ones(1, 2, 2))  # not 32
    big = torch.ones(1, 2, 8, 16)
    assert torch.allclose(gram(big), gram(f))
    assert gram(f.bfloat16()).dtype == torch.float32


def test_relative_error_and_tv() -> None:
    t = torch.full((2, 3, 4, 4), 2.0)
    assert torch.allclose(relative_error(t * 1.5, t), torch.tensor([0.25, 0.25]))
    flat = torch.zeros(1, 3, 8, 8)
    assert total_variation(flat).item() == 0
    stripes = flat.clone()
    stripes[..., ::2] = 1
    assert total_variation(stripes).item() == pytest.approx(1.0)


@pytest.mark.parametrize("size,wh", [((451, 300), 64), ((300, 451), 64), ((97, 13), 200),
                                     ((1000, 333), 101), ((512, 512), 77)])
def test_output_size_and_pyramid_end_exactly(size: tuple[int, int], wh: int) -> None:
    w, h = output_size(*size, wh)
    assert max(w, h) == wh
    assert abs(w / h - size[0] / size[1]) < 2 / min(w, h) + 0.01
    if min(w, h) >= 16:
        scales = pyramid(w, h, Settings(size=wh, min_side=32, steps=[5, 3]))
        assert (scales[-1].width, scales[-1].height) == (w, h)
        sides = [min(s.width, s.height) for s in scales]
        assert sides == sorted(sides)
        assert all(b / a <= 2.0 + 0.05 for a, b in zip(sides, sides[1:], strict=False))


def test_pyramid_starts_near_min_side_and_spends_most_steps_there() -> None:
    scales = pyramid(512, 384, Settings())
    assert min(scales[0].width, scales[0].height) == 128
    assert [s.steps for s in scales] == Settings().steps[: len(scales)]
    pixels = [s.width * s.height for s in scales]
    assert scales[0].steps > scales[-1].steps and pixels[0] < pixels[-1]


def test_too_small_is_refused_with_a_category() -> None:
    with pytest.raises(InputError) as info:
        pyramid(400, 10, Settings())
    assert info.value.category == "too_small"


@pytest.mark.parametrize("size", [(96, 64), (61, 89)])
def test_stylize_gives_exactly_the_requested_size(painting: Image.Image,
                                                  size: tuple[int, int]) -> None:
    s = Settings(**(FAST | {"size": 72, "steps": [2, 1]}))
    out = _run(s, gradient_photo(*size), painting)
    assert max(out.size) == 72
    assert out.size == output_size(*size, 72)


def test_style_moves_towards_painting_and_content_stays(painting: Image.Image) -> None:
    """The core claim of the algorithm, measured with the network itself."""
    s = Settings(**(FAST | {"size": 96, "steps": [40, 20]}))
    # A real photo: a synthetic gradient has too little content to hold on to.
    content = Image.open(PHOTOS / "chelsea.png").convert("RGB").resize(
        (96, 64), Image.Resampling.LANCZOS)
    out = _run(s, content, painting)

    engine = Engine(s)
    layers = list(engine.style_layers)
    net = FeatureExtractor(engine.net.body, engine.net.preprocess, layers + ["relu4_2"])
    with torch.no_grad():
        fc, fo = net(pil_to_tensor(content)), net(pil_to_tensor(out))
        fs = net(pil_to_tensor(painting.resize(content.size)))

    def style_dist(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
        return sum(relative_error(gram(a[n]), gram(b[n])).item() for n in layers) / len(layers)

    # Style statistics: the output is much closer to the painting than the photo was ...
    assert style_dist(fo, fs) < 0.5 * style_dist(fc, fs)
    # ... and farther from the photo's own.
    assert style_dist(fo, fc) > 0.1
    # Content: the output's deep features stay closer to the photo than to the painting.
    content_to_photo = (fo["relu4_2"] - fc["relu4_2"]).norm().item()
    content_to_painting = (fo["relu4_2"] - fs["relu4_2"]).norm().item()
    assert content_to_photo < content_to_painting


def test_fixed_seed_reproduces_exactly_on_cpu(painting: Image.Image) -> None:
    s = Settings(**(FAST | {"init": "noise", "seed": 7, "steps": [6, 3]}))
    a = _run(s, gradient_photo(), painting)
    b = _run(s, gradient_photo(), painting)
    c = _run(s.merged({"seed": 8}), gradient_photo(), painting)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_adam_and_bf16_run(painting: Image.Image) -> None:
    s = Settings(**(FAST | {"optimizer": "adam", "precision": "bf16", "steps": [4, 2]}))
    out = _run(s, gradient_photo(), painting)
    assert out.size == (64, 43)


def test_progress_reports_every_step(painting: Image.Image) -> None:
    seen: list[Progress] = []
    _run(Settings(**FAST), gradient_photo(), painting, on_progress=seen.append)
    assert [(p.scale, p.step) for p in seen][:2] == [(1, 1), (1, 2)]
    assert len(seen) == sum(FAST["steps"])  # type: ignore[arg-type]
    assert seen[-1].scale == seen[-1].scales == 2
    assert all(b.elapsed >= a.elapsed for a, b in zip(seen, seen[1:], strict=False))


def test_should_stop_cancels_between_steps(painting: Image.Image) -> None:
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        _run(Settings(**FAST), gradient_photo(), painting, should_stop=stop)
    assert len(calls) == 4


def test_luminance_keeps_the_photos_colours(painting: Image.Image) -> None:
    content = gradient_photo(96, 64)

    def chroma_shift(out: Image.Image) -> float:
        a = np.asarray(out.convert("YCbCr"), dtype=np.float32)[..., 1:]
        b = np.asarray(content.resize(out.size).convert("YCbCr"), dtype=np.float32)[..., 1:]
        return float(np.abs(a - b).mean())

    kept = chroma_shift(_run(Settings(**(FAST | {"preserve_color": "luminance"})), content,
                             painting))
    free = chroma_shift(_run(Settings(**FAST), content, painting))
    # Only RGB gamut clipping moves the colour when it is preserved.
    assert kept < 0.25 * free, (kept, free)


def test_network_is_cut_after_deepest_layer() -> None:
    shallow = Engine(Settings(**(FAST | {"content_layers": {"relu2_2": 1},
                                         "style_layers": {"relu1_1": 1, "relu3_1": 1}})))
    assert len(shallow.net.body) == 12  # up to relu3_1 (index 11)
    assert all(not p.requires_grad for p in shallow.net.parameters())


def test_snapshots_every_n_steps_and_at_each_scale_end(painting: Image.Image) -> None:
    shots: list[tuple[int, int, tuple[int, int]]] = []
    out = _run(Settings(**(FAST | {"steps": [5, 3]})), gradient_photo(), painting,
               on_snapshot=lambda p, img: shots.append((p.scale, p.step, img.size)),
               snapshot_every=2)
    assert [(s, k) for s, k, _ in shots] == [(1, 2), (1, 4), (1, 5), (2, 2), (2, 3)]
    assert shots[-1][2] == out.size


@pytest.mark.parametrize("optimizer,tolerance", [("adam", 0.5), ("lbfgs", 4.0)])
def test_a_batch_gives_each_photo_what_it_gets_alone(painting: Image.Image, optimizer: str,
                                                     tolerance: float) -> None:
    """Each photo of a batch has its own targets and optimizer state.

    Adam is per pixel, so a batch changes nothing but rounding.  L-BFGS results are
    not bit-equal: a batched convolution rounds differently, and 18 L-BFGS steps
    amplify 1e-7 differences to 0-3 levels of 255 on average (measured), against
    20-65 levels between the results of two different photos.
    """
    photos = [gradient_photo(96, 64, seed=s) for s in range(3)]
    photos[2] = photos[2].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    engine = Engine(Settings(**FAST, optimizer=optimizer))
    targets = engine.compute_style_targets([(painting, 1.0)], engine.style_sides(96, 64))
    together = [np.asarray(r, np.int16) for r in engine.stylize_batch(photos, targets)]
    for i, photo in enumerate(photos):
        alone = np.asarray(engine.stylize(photo, targets), np.int16)
        assert np.abs(together[i] - alone).mean() < tolerance
        assert np.abs(together[i] - together[i - 1]).mean() > 5 * tolerance  # no mix-up
    # A batch that does not fit in one pass is split, with the same results.
    small = Engine(Settings(**FAST, optimizer=optimizer, tile_pixels=2 * 64 * 43))
    for a, b in zip(small.stylize_batch(photos, targets), together, strict=True):
        assert np.abs(np.asarray(a, np.int16) - b).mean() < tolerance


def test_a_batch_needs_one_output_size(painting: Image.Image) -> None:
    engine = Engine(Settings(**FAST))
    targets = engine.compute_style_targets([(painting, 1.0)], engine.style_sides(96, 64))
    with pytest.raises(ValueError, match="one output size"):
        engine.stylize_batch([gradient_photo(96, 64), gradient_photo(64, 96)], targets)


def test_in_float64_a_batch_is_exactly_one_by_one(painting: Image.Image,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The fp32 differences above are rounding only: in float64 they vanish entirely."""
    photos = [gradient_photo(96, 64, seed=s) for s in range(3)]
    engine = Engine(Settings(**FAST))
    targets = engine.compute_style_targets([(painting, 1.0)], engine.style_sides(96, 64))
    together, alone = batch_and_singles_in_float64(engine, photos, targets, monkeypatch)
    assert len(together) == 3 and together[0].dtype == torch.float64
    for i in range(3):
        assert torch.equal(alone[i], together[i]), i
