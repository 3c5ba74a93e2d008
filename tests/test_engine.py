"""The optimizer: it moves a photo towards a painting's style and keeps its content."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.engines import batch_and_singles_in_float64, make_targets
from support.images import PHOTOS, REPO, SHARED_STYLE, gradient_photo
from support.presets import FAST

from pipeline.config.geometry import output_size, pyramid
from pipeline.config.settings import Settings
from pipeline.config.views import NEUTRAL_KNOBS
from pipeline.engine.losses import gram, relative_error, total_variation
from pipeline.engine.objective import layer_weights
from pipeline.engine.optimize import Engine, PassInfo, Progress
from pipeline.engine.style_targets import StyleTargetMaker
from pipeline.engine.vgg import FeatureExtractor
from pipeline.errors import Cancelled, InputError
from pipeline.images import pil_to_tensor
from pipeline.plan.methods import result_view

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def painting() -> Image.Image:
    return Image.open(SHARED_STYLE).convert("RGB").resize((128, 80), Image.Resampling.LANCZOS)


def _run(settings: Settings, content: Image.Image, painting: Image.Image,
         **kw: object) -> Image.Image:
    engine = Engine(settings)
    targets = make_targets(engine, [(painting, 1.0)],
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


def test_min_scales_adds_scales_where_the_ratio_alone_gives_fewer() -> None:
    """384×256 is exactly two 2× steps above min_side: three scales by default, not two."""
    sides = [min(s.width, s.height) for s in pyramid(384, 256, Settings())]
    assert sides == [128, 181, 256]
    assert [min(s.width, s.height) for s in pyramid(384, 256, Settings(min_scales=1))] == [128,
                                                                                            256]
    # More scales than min_scales where the ratio asks for them; one scale for a small photo.
    assert len(pyramid(2048, 1365, Settings())) == 5
    assert len(pyramid(120, 100, Settings())) == 1


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
    layers = list(layer_weights(engine.settings)[1])
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


def test_adam_in_bf16_lowers_the_loss_and_moves_the_picture(painting: Image.Image) -> None:
    s = Settings(**(FAST | {"optimizer": "adam", "precision": "bf16", "steps": [12, 4]}))
    seen: list[Progress] = []
    out = _run(s, gradient_photo(), painting, on_progress=seen.append)
    assert out.size == (64, 43)
    first_scale = [p.loss for p in seen if p.scale == 1]
    assert len(first_scale) == 12 and first_scale[-1] < 0.9 * first_scale[0]
    photo = np.asarray(gradient_photo().resize(out.size, Image.Resampling.LANCZOS), np.int16)
    assert np.abs(np.asarray(out, np.int16) - photo).mean() > 2  # it painted something


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


@pytest.mark.parametrize("optimizer,tolerance", [("adam", 1.5), ("lbfgs", 7.0)])
def test_a_batch_gives_each_photo_what_it_gets_alone(painting: Image.Image, optimizer: str,
                                                     tolerance: float) -> None:
    """Each photo of a batch has its own targets and optimizer state.

    Results are not bit-equal: a batched convolution rounds differently, and the
    optimizers amplify 1e-7 differences.  Measured on these photos (2026-12-02, the
    defaults of issue 14): L-BFGS 0-5 levels of 255 on average over 18 steps, Adam
    0-1.5 (its steps on the pyramid's coarse bands, whose gradients are near zero, are
    as large as any, whatever their sign's rounding), against 20 or more levels between
    the results of two different photos.  That a batch mixes nothing up exactly is
    checked in float64 (test_in_float64_a_batch_is_exactly_one_by_one).
    """
    photos = [gradient_photo(96, 64, seed=s) for s in range(3)]
    photos[2] = photos[2].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    engine = Engine(Settings(**FAST, optimizer=optimizer))
    targets = make_targets(engine, [(painting, 1.0)], engine.style_sides(96, 64))
    together = [np.asarray(r, np.int16) for r in engine.stylize_batch(photos, targets)]
    for i, photo in enumerate(photos):
        alone = np.asarray(engine.stylize(photo, targets), np.int16)
        assert np.abs(together[i] - alone).mean() < tolerance
        assert np.abs(together[i] - together[i - 1]).mean() > 15  # no mix-up
    # A batch that does not fit in one pass is split, with the same results.
    small = Engine(Settings(**FAST, optimizer=optimizer, tile_pixels=2 * 64 * 43))
    for a, b in zip(small.stylize_batch(photos, targets), together, strict=True):
        assert np.abs(np.asarray(a, np.int16) - b).mean() < tolerance


def test_a_batch_needs_one_output_size(painting: Image.Image) -> None:
    engine = Engine(Settings(**FAST))
    targets = make_targets(engine, [(painting, 1.0)], engine.style_sides(96, 64))
    with pytest.raises(ValueError, match="one output size"):
        engine.stylize_batch([gradient_photo(96, 64), gradient_photo(64, 96)], targets)


def test_in_float64_a_batch_is_exactly_one_by_one(painting: Image.Image,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The fp32 differences above are rounding only: in float64 they vanish entirely."""
    photos = [gradient_photo(96, 64, seed=s) for s in range(3)]
    engine = Engine(Settings(**FAST))
    targets = make_targets(engine, [(painting, 1.0)], engine.style_sides(96, 64))
    together, alone = batch_and_singles_in_float64(engine, photos, targets)
    assert len(together) == 3 and together[0].dtype == torch.float64
    for i in range(3):
        assert torch.equal(alone[i], together[i]), i


# -- options of issue 14: W2 loss, averaging, padding, early stopping ----------------------

def test_averaging_returns_the_moving_average(painting: Image.Image) -> None:
    """With ``average`` the result is the bias-corrected EMA of the iterates, carried up."""
    from pipeline.engine.loop import Average

    x0 = torch.zeros(1, 3, 2, 2)
    avg = Average(x0, 0.5)
    assert torch.equal(avg.value(), x0)
    avg.update(torch.ones(1, 3, 2, 2))
    # weights (1-d)·d for x0 and (1-d) for x1, normalised: 1/3 and 2/3
    assert torch.allclose(avg.value(), torch.full((1, 3, 2, 2), 2 / 3))

    passes: list[PassInfo] = []
    s = Settings(**(FAST | {"steps": [6, 3], "warm_start": False, "sharpen": 0.0}))
    plain = _run(s, gradient_photo(), painting, on_pass=passes.append)
    averaged = _run(s.merged({"average": 0.8}), gradient_photo(), painting,
                    on_pass=passes.append)
    assert plain.tobytes() != averaged.tobytes()
    starts, seen = [p.start for p in passes], [p.result for p in passes]
    # The second scale starts from the upsampled average of the first, not its last iterate.
    up = torch.nn.functional.interpolate(seen[2], size=starts[3].shape[-2:], mode="bicubic",
                                         align_corners=False).clamp(0, 1)
    assert torch.equal(up, starts[3])


def test_stopping_never_ends_a_scale_before_min_steps(painting: Image.Image) -> None:
    seen: list[Progress] = []
    # A tolerance of 0.9 stops as soon as it is allowed to.
    s = Settings(**(FAST | {"steps": [40, 30], "stop_tolerance": 0.9, "min_steps": 14}))
    _run(s, gradient_photo(), painting, on_progress=seen.append)
    per_scale = [[p for p in seen if p.scale == k] for k in (1, 2)]
    assert [len(ps) for ps in per_scale] == [14, 14]
    assert all(ps[-1].step == ps[-1].steps == 14 for ps in per_scale)  # the scale's end
    # Fewer steps than min_steps: all of them run.
    seen.clear()
    _run(s.merged({"steps": [5, 3]}), gradient_photo(), painting, on_progress=seen.append)
    assert len(seen) == 8
    # A tolerance never met runs every step.
    seen.clear()
    _run(s.merged({"stop_tolerance": 1e-12, "steps": [16, 12], "min_steps": 11}),
         gradient_photo(), painting, on_progress=seen.append)
    assert len(seen) == 28
    # Fewer than the rule's window is refused, not quietly raised (it would be a new key
    # for the same picture).
    with pytest.raises(ValueError, match="min_steps"):
        Settings(min_steps=10)


def test_stopping_rule_decides_per_photo_on_the_best_loss() -> None:
    from pipeline.engine.loop import STOP_WINDOW, Stopping

    rule = Stopping(2, tolerance=0.01, min_steps=STOP_WINDOW + 1)
    pictures = torch.arange(2.0).reshape(2, 1, 1, 1)
    for step in range(1, 40):
        # photo 0 stalls at once (with an uphill spike); photo 1 keeps improving 5% a step
        losses = torch.tensor([5.0 if step == 12 else 1.0, 0.95**step])
        done = rule.update(step, losses, pictures + step)
        assert not done
        assert (rule.done[0] is not None) == (step >= STOP_WINDOW + 1)
        assert rule.done[1] is None
    out = rule.pictures(pictures + 100)
    assert out[0].item() == STOP_WINDOW + 1 and out[1].item() == 101


def test_w2_style_loss_moves_towards_the_paintings_statistics(painting: Image.Image) -> None:
    from pipeline.engine.losses import W2Target, w2_relative

    s = Settings(**(FAST | {"size": 96, "steps": [30, 15], "style_loss": "w2"}))
    content = Image.open(PHOTOS / "chelsea.png").convert("RGB").resize(
        (96, 64), Image.Resampling.LANCZOS)
    out = _run(s, content, painting)
    engine = Engine(s)
    with torch.no_grad():
        net = StyleTargetMaker(s).net
        fs = net(pil_to_tensor(painting.resize(content.size)))
        fc, fo = net(pil_to_tensor(content)), net(pil_to_tensor(out))
    for name in layer_weights(engine.settings)[1]:
        target = W2Target(fs[name].mean((0, 2, 3)), gram(fs[name])[0])
        assert w2_relative(fo[name], target).item() < 0.6 * w2_relative(fc[name], target).item()


def test_w2_needs_targets_with_means(painting: Image.Image) -> None:
    engine = Engine(Settings(**(FAST | {"style_loss": "w2"})))
    targets = make_targets(engine, [(painting, 1.0)], engine.style_sides(64, 43))
    old = {side: {k: v for k, v in t.items() if not k.endswith(".mean")}
           for side, t in targets.items()}
    with pytest.raises(ValueError, match="feature means"):
        engine.stylize(gradient_photo(), old)


def test_cached_targets_without_means_are_computed_again(tmp_path: Path) -> None:
    """Entries written before the means were stored are replaced, under the same key."""
    from pipeline.config.styles import Registry
    from pipeline.render.targets import CACHE_KIND, StyleTargetStore, side_key
    from pipeline.store.cache import ArtifactCache

    preset = Registry.discover().resolve("starry-night")
    engine = Engine(Settings(**FAST))
    cache = ArtifactCache(tmp_path / "cache")
    side = engine.style_sides(64, 43)[0]
    key = side_key(StyleTargetMaker(engine.settings), preset, side)
    full = StyleTargetStore(cache).get(engine.settings, preset, [side])[side]
    grams_only = {k: v for k, v in full.items() if not k.endswith(".mean")}
    cache.put(CACHE_KIND, key, grams_only)
    store = StyleTargetStore(cache)
    again = store.get(engine.settings, preset, [side])[side]
    assert store.counts.computed == 1 and set(again) == set(full)
    assert set(cache.get(CACHE_KIND, key) or {}) == set(full)
    for name, value in grams_only.items():
        assert torch.equal(again[name], value)  # the Gram matrices are the same numbers


def test_replicate_padding_is_the_first_convolution_only() -> None:
    zeros, replicate = Engine(Settings(**FAST)), Engine(Settings(**FAST, pad="replicate"))
    conv = zeros.net.body[0]
    assert isinstance(conv, torch.nn.Conv2d)
    reference = torch.nn.Conv2d(3, 64, 3, padding=1, padding_mode="replicate")
    reference.load_state_dict(conv.state_dict())
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        assert torch.allclose(replicate.net.body[0](x), reference(x), atol=1e-4)
        assert not torch.allclose(replicate.net.body[0](x), conv(x), atol=1e-2)
    assert all(a is b for a, b in zip(zeros.net.body[1:], replicate.net.body[1:], strict=True))
    # The painting is seen through the same padding, so its targets are other numbers.
    assert "pad" not in StyleTargetMaker(zeros.settings).identity()
    assert StyleTargetMaker(replicate.settings).identity()["pad"] == "replicate"


def test_neutral_options_leave_the_task_key_as_it_was() -> None:
    neutral = Settings().merged(NEUTRAL_KNOBS)
    base = result_view(neutral)
    assert not ({"min_steps"} | set(NEUTRAL_KNOBS)) & set(base)
    assert result_view(neutral.merged({"min_steps": 50})) == base  # no effect without a tolerance
    for change in ({"style_loss": "w2"}, {"pad": "replicate"}, {"average": 0.9},
                   {"stop_tolerance": 0.01}, {"warm_start": True}, {"sharpen": 1.0},
                   {"pyramid_scales": 1}, {"min_scales": 3}):
        assert result_view(neutral.merged(change)) != base, change
    assert "min_steps" in result_view(neutral.merged({"stop_tolerance": 0.01}))


#: The settings that pin the schedule of the last commit with the earlier default schedule
#: (3cc26fa: steps [250, 120, 50], no warm start; docs/upgrading.md).
EARLIER_SCHEDULE = {"steps": [250, 120, 50], "warm_start": False, "sharpen": 0.0,
                    "pyramid_scales": 0, "min_scales": 1}


def test_pinning_the_earlier_schedule_gives_the_keys_of_the_version_before() -> None:
    """Recorded from commit 3cc26fa in tests/data/engine_reference.json (no git needed)."""
    import json

    reference = json.loads((REPO / "tests" / "data" / "engine_reference.json").read_text())
    pinned = Settings(**EARLIER_SCHEDULE)
    new = [result_view(pinned), result_view(pinned.merged({"style_weight": 10}))]
    assert reference["earlier_schedule_keys"]["views"] == json.loads(json.dumps(new))
    assert result_view(Settings()) != new[0]  # the new defaults are another schedule


def test_warm_start_puts_back_the_photos_detail_and_the_step_size(
        painting: Image.Image) -> None:
    import torch.nn.functional as F

    photo = gradient_photo()
    passes: list[PassInfo] = []
    _run(Settings(**(FAST | {"steps": [6, 3], "warm_start": True, "sharpen": 0.0})), photo,
         painting, on_pass=passes.append)
    starts, outs = [p.start for p in passes], [p.result for p in passes]
    (w0, h0), (w1, h1) = [(s.width, s.height) for s in pyramid(64, 43, Settings(**FAST))]
    coarse = pil_to_tensor(photo.resize((w0, h0), Image.Resampling.LANCZOS))
    fine = pil_to_tensor(photo.resize((w1, h1), Image.Resampling.LANCZOS))

    def up(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=(h1, w1), mode="bicubic", align_corners=False)

    assert torch.allclose(starts[1], (up(outs[0]) + fine - up(coarse)).clamp(0, 1), atol=1e-6)
    assert passes[0].carried is None
    assert passes[1].carried is not None and float(passes[1].carried[0]) > 0


def test_lbfgs_first_step_with_an_initial_scale() -> None:
    from pipeline.engine.lbfgs import BatchLBFGS

    x = torch.zeros(2, 3, requires_grad=True)
    opt = BatchLBFGS(x, initial_scale=torch.tensor([0.5, 2.0]))

    def closure() -> torch.Tensor:
        x.grad = None
        loss = ((x - 1) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)  # gradient −2 everywhere: steps of 0.5·2 and 2·2
    assert torch.allclose(x.detach(), torch.tensor([[1.0] * 3, [4.0] * 3]))


def test_lbfgs_hands_on_only_a_measured_scale() -> None:
    """A scale that never accepted a curvature pair (or just restarted) hands on none."""
    from pipeline.engine.lbfgs import BatchLBFGS

    def quadratic(x: torch.Tensor) -> Callable[[], torch.Tensor]:
        def closure() -> torch.Tensor:
            x.grad = None
            loss = ((x - 1) ** 2 * torch.tensor([1.0, 4.0, 9.0])).sum()
            loss.backward()
            return loss
        return closure

    x = torch.zeros(2, 3, requires_grad=True)
    opt = BatchLBFGS(x)
    opt.step(quadratic(x))
    assert torch.isnan(opt.scale).all()  # one step: a placeholder, not a curvature
    opt.step(quadratic(x))
    assert torch.isfinite(opt.scale).all() and (opt.scale > 0).all()
    # A warm start from an unmeasured item takes torch's cautious first step for it.
    y = torch.zeros(2, 3, requires_grad=True)
    warm = BatchLBFGS(y, initial_scale=torch.tensor([float("nan"), 0.25]))
    warm.step(quadratic(y))
    g = torch.tensor([2.0, 8.0, 18.0])  # the gradient at 0, negated
    assert torch.allclose(y.detach()[0], g / g.sum())  # min(1, 1/‖g‖₁)·g
    assert torch.allclose(y.detach()[1], 0.25 * g)
