"""Training the fast path's network: it learns, it reports, it checkpoints and resumes exactly.

Tiny: photos at the area of a 32 px square, two a step, a network 8 channels wide with
two residual blocks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch
from PIL import Image
from support.images import SHARED_STYLE, gradient_photo
from support.presets import FAST

from pipeline.config.settings import Settings
from pipeline.engine.checkpoint import CHECKPOINT_FORMAT
from pipeline.engine.network import NetworkConfig
from pipeline.engine.style_targets import StyleTargetMaker, StyleTargets
from pipeline.engine.train_samples import Sample, random_samples, sample_size
from pipeline.engine.training import (
    Trainer,
    TrainOptions,
    TrainProgress,
    train,
    training_sides,
)
from pipeline.errors import Cancelled, UsageError, WeightsError
from pipeline.images import pil_to_tensor

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("one_thread")]

SETTINGS = Settings(**FAST)  # cpu, fp32: reproducible
SMALL = NetworkConfig(width=8, blocks=2)


@pytest.fixture(scope="module")
def targets() -> StyleTargets:
    painting = Image.open(SHARED_STYLE).convert("RGB").resize((96, 60))
    sides = training_sides(SETTINGS, _options())
    assert sides == [32]
    return StyleTargetMaker(SETTINGS).compute([(painting, 1.0)], sides)


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [gradient_photo(96, 64, seed=0), gradient_photo(64, 80, seed=1).convert("L"),
            gradient_photo(120, 90, seed=2)]


def _options(**kw: object) -> TrainOptions:
    base: dict[str, object] = {"side": 32, "batch": 2, "steps": 6, "config": SMALL, "seed": 7}
    return TrainOptions(**{**base, **kw})  # type: ignore[arg-type]


def test_samples_follow_their_generator(photos: list[Image.Image]) -> None:
    def draw(seed: int) -> list[torch.Tensor]:
        return [x.photo for x in random_samples(photos, 6, [32, 64], 1.0,
                                                torch.Generator().manual_seed(seed))]

    a = draw(1)
    assert all(x.dtype == torch.float32 and x.shape[:2] == (1, 3) for x in a)
    assert all(float(x.min()) >= 0 and float(x.max()) <= 1 for x in a)
    same = draw(1)
    assert all(torch.equal(x, y) for x, y in zip(a, same, strict=True))
    assert any(x.shape != y.shape or not torch.equal(x, y)
               for x, y in zip(a, draw(2), strict=True))


def test_a_sample_is_the_whole_photo_at_the_area_of_its_style_side() -> None:
    # A horizontal ramp: a sample's left-to-right rise tells how much of the photo it shows.
    ramp = torch.linspace(0, 1, 400).expand(3, 300, 400)
    photo = Image.fromarray((ramp.permute(1, 2, 0) * 255).round().byte().numpy())
    seen: set[int] = set()
    for sample in random_samples([photo], 12, [96, 128, 160], 1.0,
                                 torch.Generator().manual_seed(1)):
        h, w = sample.photo.shape[-2:]
        seen.add(sample.style_side)
        assert (w, h) == sample_size(400, 300, sample.style_side, 1.0)
        assert abs(w * h - sample.style_side ** 2) < 0.02 * sample.style_side ** 2
        assert abs(w / h - 4 / 3) < 0.03  # its shape kept
        rise = float((sample.photo[..., -1] - sample.photo[..., 0]).abs().mean())
        assert rise > 0.97  # the whole width: the photo, not a window of it
    assert seen == {96, 128, 160}
    # With style_scale 2 the style side is twice the picture's (the optimizer's rule).
    assert sample_size(400, 300, 128, 2.0) == sample_size(400, 300, 64, 1.0)
    # A very wide photo is not squeezed below a side VGG-19 can use.
    assert min(sample_size(4000, 100, 64, 1.0)) == 32


def test_a_cropped_sample_is_a_window_of_the_photo_at_its_own_shape() -> None:
    ramp = torch.linspace(0, 1, 400).expand(3, 300, 400)
    photo = Image.fromarray((ramp.permute(1, 2, 0) * 255).round().byte().numpy())

    def draw(crop: float) -> list[Sample]:
        return random_samples([photo], 24, [96], 1.0, torch.Generator().manual_seed(3), crop)

    rises = []
    for sample in draw(0.5):
        h, w = sample.photo.shape[-2:]
        assert abs(w / h - 4 / 3) < 0.03 and abs(w * h - 96 ** 2) < 0.02 * 96 ** 2
        rises.append(float((sample.photo[..., -1] - sample.photo[..., 0]).abs().mean()))
    # A window's width is between sqrt(0.5) and all of the photo's, and they differ.
    assert min(rises) > 0.69 and max(rises) < 1.0 and max(rises) - min(rises) > 0.1
    assert min(rises) < 0.85
    # At 1 the draws are the whole photos', as without the option.
    whole = random_samples([photo], 24, [96], 1.0, torch.Generator().manual_seed(3))
    assert all(torch.equal(a.photo, b.photo) for a, b in zip(draw(1.0), whole, strict=True))
    with pytest.raises(ValueError, match="crop"):
        _options(crop=0.0)


def test_training_draws_around_the_working_size_in_steps_of_the_targets() -> None:
    assert training_sides(SETTINGS, _options(side=384)) == [320, 352, 384, 416, 448, 480]
    assert training_sides(SETTINGS, _options(side=384, zoom=(1.0, 1.0))) == [384]
    assert training_sides(SETTINGS.model_copy(update={"style_scale": 0.5}),
                          _options(side=384, zoom=(1.0, 1.0))) == [192]


def test_the_network_used_is_the_average_of_the_trained_weights(
        targets: StyleTargets, photos: list[Image.Image]) -> None:
    trainer = Trainer(SETTINGS, targets, photos, _options(steps=5))
    start = [p.detach().clone() for p in trainer.learner.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(start, trainer.net.parameters(), strict=True))
    trainer.run()
    for a, w, s in zip(trainer.net.parameters(), trainer.learner.parameters(), start,
                       strict=True):
        # Between the start and the last step's weights, and neither (warmed up: the
        # first steps weigh most).
        assert not torch.equal(a, w) and not torch.equal(a, s)
    plain = Trainer(SETTINGS, targets, photos, _options(steps=5, average=0.0))
    assert plain.net is plain.learner


def test_training_lowers_the_loss(targets: StyleTargets, photos: list[Image.Image]) -> None:
    trainer = Trainer(SETTINGS, targets, photos, _options(steps=20))
    held = pil_to_tensor(gradient_photo(40, 26, seed=9))  # at the area of a 32 px square
    before = trainer.evaluate(held)
    seen: list[TrainProgress] = []
    result = trainer.run(on_step=seen.append)
    after = trainer.evaluate(held)
    assert after < 0.8 * before, (before, after)
    assert [p.step for p in seen] == list(range(1, 21)) and {p.steps for p in seen} == {20}
    assert all(p.photos_per_s > 0 and p.loss > 0 for p in seen)
    assert result.steps == 20 and result.resumed_from == 0 and result.loss == seen[-1].loss
    assert not result.net.training


def _losses(trainer: Trainer) -> list[float]:
    seen: list[TrainProgress] = []
    trainer.run(on_step=seen.append)
    return [p.loss for p in seen]


def test_resume_continues_exactly_as_an_uninterrupted_run(
        tmp_path: Path, targets: StyleTargets, photos: list[Image.Image]) -> None:
    whole = Trainer(SETTINGS, targets, photos, _options(steps=6))
    expected = _losses(whole)

    first = Trainer(SETTINGS, targets, photos, _options(steps=3))
    assert _losses(first) == expected[:3]
    path = tmp_path / "train.ckpt.safetensors"
    first.save_checkpoint(path, key="k1")

    again = Trainer(SETTINGS, targets, photos, _options(steps=6))
    assert again.resume(path, key="k1") == 3
    assert _losses(again) == expected[3:]
    for (name, a), b in zip(whole.net.state_dict().items(),
                            again.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_checkpoint_is_safetensors_without_pickle(
        tmp_path: Path, targets: StyleTargets, photos: list[Image.Image]) -> None:
    trainer = Trainer(SETTINGS, targets, photos, _options(steps=1))
    trainer.run()
    path = tmp_path / "ckpt.safetensors"
    trainer.save_checkpoint(path)
    with safetensors.safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
        names = set(handle.keys())  # noqa: SIM118 (not a Mapping)
    assert meta["format"] == CHECKPOINT_FORMAT and json.loads(meta["state"])["step"] == 1
    assert "rng" in names and "adam.out.conv.weight.exp_avg_sq" in names
    assert "net.down.0.norm.weight" in names
    assert not list(tmp_path.glob(".stylize-tmp-*"))  # written atomically: nothing left


def test_train_checkpoints_when_stopped_and_resumes(
        tmp_path: Path, targets: StyleTargets, photos: list[Image.Image]) -> None:
    path = tmp_path / "ckpt.safetensors"
    steps: list[int] = []
    with pytest.raises(Cancelled, match="step 2"):
        train(SETTINGS, targets, photos, _options(steps=4), checkpoint=path, key="k",
              on_step=lambda p: steps.append(p.step), should_stop=lambda: len(steps) >= 2)
    assert steps == [1, 2] and path.is_file()
    seen: list[TrainProgress] = []
    result = train(SETTINGS, targets, photos, _options(steps=4), checkpoint=path, key="k",
                   on_step=seen.append)
    assert result.resumed_from == 2 and result.steps == 4
    assert [(p.step, p.resumed_from) for p in seen] == [(3, 2), (4, 2)]


def _refusal(trainer: Trainer, path: Path, key: str = "") -> str:
    with pytest.raises(WeightsError) as info:
        trainer.resume(path, key)
    message = info.value.message
    assert "\n" not in message and message.startswith(path.name)
    assert info.value.category == "checkpoint"
    return message


def _checkpoint(tmp_path: Path, targets: StyleTargets, photos: list[Image.Image]) -> Path:
    """A checkpoint of one step, saved under key "k"."""
    trainer = Trainer(SETTINGS, targets, photos, _options(steps=1))
    trainer.run()
    path = tmp_path / "ckpt.safetensors"
    trainer.save_checkpoint(path, key="k")
    return path


def test_foreign_or_damaged_checkpoints_are_refused(
        tmp_path: Path, targets: StyleTargets, photos: list[Image.Image]) -> None:
    path = _checkpoint(tmp_path, targets, photos)
    fresh = Trainer(SETTINGS, targets, photos, _options(steps=2))
    assert "other training settings" in _refusal(fresh, path, key="other")
    other = Trainer(SETTINGS, targets, photos, _options(steps=2, learning_rate=2e-3))
    assert "other training settings" in _refusal(other, path, key="k")

    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(bytes(data))
    assert "corrupt" in _refusal(fresh, damaged, key="k")
    pickled = tmp_path / "pickled.pt"
    torch.save({"step": 1}, pickled)
    assert "pickled" in _refusal(fresh, pickled)
    assert fresh.step == 0  # nothing of a refused file was used


def test_a_checkpoint_from_before_windows_resumes_and_another_crop_is_refused(
        tmp_path: Path, targets: StyleTargets, photos: list[Image.Image]) -> None:
    path = _checkpoint(tmp_path, targets, photos)
    whole = Trainer(SETTINGS, targets, photos, _options(steps=2, crop=1.0))
    assert "other training settings" in _refusal(whole, path, key="k")
    # The same checkpoint as one saved before TrainOptions had windows: no "crop".
    with safetensors.safe_open(str(path), "pt") as fh:
        tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
        metadata = dict(fh.metadata())
    state = json.loads(metadata["state"])
    del state["options"]["crop"]
    metadata["state"] = json.dumps(state)
    old = tmp_path / "old.safetensors"
    safetensors.torch.save_file(tensors, str(old), metadata)
    again = Trainer(SETTINGS, targets, photos, _options(steps=2))
    assert again.resume(old, "k") == 1


def test_what_training_needs(targets: StyleTargets, photos: list[Image.Image]) -> None:
    with pytest.raises(UsageError):
        Trainer(SETTINGS, targets, [], _options())
    with pytest.raises(ValueError, match=r"sides \[96\]"):
        Trainer(SETTINGS, targets, photos, _options(side=96))
    for bad in ({"zoom": (0.5, 0.2)}, {"zoom": (0.0, 1.0)}, {"average": 1.0}):
        with pytest.raises(ValueError):
            _options(**bad)


def test_a_checkpoint_of_any_header_length_resumes(
        targets: StyleTargets, photos: list[Image.Image], tmp_path: Path) -> None:
    """A checkpoint whose header length begins with ``\\x80`` or ``PK`` (``seed:
    100000000`` made one 0x5980 bytes long) was refused as a pickle, and the training
    was lost (issue 27)."""
    from support.safetensors_files import with_header_length

    trainer = Trainer(SETTINGS, targets, photos, _options(steps=1))
    trainer.run()
    data = trainer.checkpoint_bytes()
    for length in (0x5980, 0x4B50 + 0x10000, 0x1280 + 0x10000):
        if length < int.from_bytes(data[:8], "little"):
            length += 0x100000
        path = tmp_path / f"c{length:x}.safetensors"
        path.write_bytes(with_header_length(data, length))
        assert Trainer(SETTINGS, targets, photos, _options(steps=2)).resume(path) == 1
