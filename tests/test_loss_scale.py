"""Float16 loss scaling: halved on overflow, and started afresh for every photo."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from support.engines import make_targets
from support.images import SHARED_STYLE, gradient_photo
from support.presets import FAST

from pipeline.config.settings import Settings
from pipeline.engine import loss_scale
from pipeline.engine.loss_scale import INITIAL_LOSS_SCALE, LossScaler
from pipeline.engine.optimize import Engine, PassInfo

pytestmark = pytest.mark.timeout(120)


def test_an_overflowing_backward_is_repeated_at_half_the_scale() -> None:
    x = torch.ones(4, requires_grad=True)
    scaler = LossScaler(True)
    # d/dx = 1e36: times 4096 it is beyond float32's 3.4e38, times 256 it is not.
    scaler.backward((x * 1e36).sum(), x)
    assert scaler.scale == 256.0 and scaler.overflows == 4
    assert x.grad is not None and torch.allclose(x.grad, torch.full((4,), 1e36))


def test_a_disabled_scaler_is_a_plain_backward() -> None:
    x = torch.ones(3, requires_grad=True)
    scaler = LossScaler.for_dtype(torch.bfloat16)
    scaler.backward((x * 2.0).sum(), x)
    assert not scaler.enabled and scaler.scale == 1.0
    assert x.grad is not None and torch.equal(x.grad, torch.full((3,), 2.0))
    assert LossScaler.for_dtype(torch.float16).scale == INITIAL_LOSS_SCALE


def test_each_photo_starts_from_the_initial_loss_scale(monkeypatch: pytest.MonkeyPatch,
                                                       one_thread: None) -> None:
    """An overflow while one photo is stylized does not lower the next photo's scale.

    float16 needs a GPU, so the CPU engine is told its network is float16 (which only
    turns the scaler on) and the fault is injected by a start scale so large that the
    first backward overflows float32, as an ordinary one overflows float16.
    """
    monkeypatch.setattr(loss_scale, "INITIAL_LOSS_SCALE", 2.0**127)
    engine = Engine(Settings(**FAST))
    engine.dtype = torch.float16
    painting = Image.open(SHARED_STYLE).convert("RGB").resize((96, 60))
    targets = make_targets(engine, [(painting, 1.0)], engine.style_sides(96, 64))
    first: list[PassInfo] = []
    second: list[PassInfo] = []
    engine.stylize(gradient_photo(seed=0), targets, on_pass=first.append)
    engine.stylize(gradient_photo(seed=1), targets, on_pass=second.append)
    assert first[0].loss_scale == 2.0**127
    assert first[1].loss_scale < 2.0**127  # the overflow lowered it within the photo
    assert second[0].loss_scale == 2.0**127  # and the next photo starts afresh


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_a_photo_alone_and_after_another_are_the_same_bytes() -> None:
    settings = Settings(size=128, min_side=64, steps=[30, 15], device="cuda", precision="fp16")
    painting = Image.open(SHARED_STYLE).convert("RGB").resize((256, 160))
    photo_a, photo_b = gradient_photo(128, 96, seed=0), gradient_photo(128, 96, seed=1)
    alone = Engine(settings)
    targets = make_targets(alone, [(painting, 1.0)], alone.style_sides(128, 96))
    b_alone = alone.stylize(photo_b, targets).tobytes()
    # One engine for both photos, as an executor keeps it; A is stylized with a style
    # weight so large that its float16 gradients overflow (checked, or the test proves
    # nothing), then B with the ordinary settings.
    after = Engine(settings.merged({"style_weight": 1e4}))
    passes: list[PassInfo] = []
    after.stylize(photo_a, targets, on_pass=passes.append)
    after.stylize(photo_a, targets, on_pass=passes.append)
    assert passes[-1].loss_scale < INITIAL_LOSS_SCALE, "photo A never overflowed"
    after.settings = settings
    assert after.stylize(photo_b, targets).tobytes() == b_alone
