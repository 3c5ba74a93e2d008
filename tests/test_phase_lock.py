"""A video's frames painted at the lattice phase of the scene they show
(pipeline.engine.phase_lock): the camera's sub-lattice translation taken out before the
network paints and put back after."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config.styles import Registry
from pipeline.engine.fast import FastStylizer
from pipeline.engine.feature_carry import FeatureCarry
from pipeline.engine.network_file import read_network
from pipeline.engine.phase_lock import PhaseLock, shifted

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class _Motion:
    offsets: np.ndarray
    trust: np.ndarray


def _moved(h: int, w: int, dx: float, dy: float = 0.0) -> _Motion:
    """The scene moved by (dx, dy): each pixel was at (x - dx, y - dy) before."""
    offsets = np.zeros((h, w, 2), np.float32)
    offsets[..., 0], offsets[..., 1] = -dx, -dy
    return _Motion(offsets, np.ones((h, w, 1), np.float32))


def test_the_lock_follows_the_translation_below_the_lattice_step() -> None:
    lock = PhaseLock(frames=8, ramp=1)
    first = lock(None, (1.0, 1.0))  # a first frame: the screen's phase
    assert first.motion is None and np.allclose(first.shift, 0) and first.roll == (0, 0)
    # The scene moves 1.5 px right, then 1.5 more, then 1: 1.5, 3 (= -1 + 4), 4 (= 0 + 4).
    locks = [lock(_moved(8, 8, 1.5), (1.0, 1.0)) for _ in range(2)]
    last = lock(_moved(8, 8, 1.0), (1.0, 1.0))
    assert [x.shift[0] for x in locks] == pytest.approx([1.5, -1.0])
    assert last.shift[0] == pytest.approx(0.0)
    # The shifted frames moved by the whole step less the phase's change: 1 - (0 - -1) = 0.
    assert last.motion is not None and np.allclose(last.motion.offsets[..., 0], 0.0)
    # What the shift leaves is the scene's move in whole steps: its noise goes with it.
    assert [x.roll for x in (*locks, last)] == [(0, 0), (4, 0), (4, 0)]
    # A flow with holes is no motion; the lock goes on.
    holes = _moved(8, 8, 1.0)
    holes.offsets[0, 0] = np.nan
    assert lock(holes, (1.0, 1.0)).shift[0] == pytest.approx(1.0)
    nothing = _moved(8, 8, 1.0)
    nothing.offsets[:] = np.nan  # no flow at all: no motion, quietly
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lock(nothing, (1.0, 1.0)).shift[0] == pytest.approx(1.0)
    # At half the working size per frame pixel the lattice is 8 frame pixels: 5 px down is
    # a shift of -3 frame pixels (-1.5 working ones); each axis has its own scale.
    half = PhaseLock(frames=3, ramp=1)
    half(None, (1.0, 0.5))
    moved = half(_moved(8, 8, 5.0, 5.0), (1.0, 0.5))
    assert moved.shift[1] == pytest.approx(-1.5) and moved.shift[0] == pytest.approx(1.0)
    assert moved.roll == (4, 4)  # 5 - 1 and (5 - -3) / 2 working pixels


def test_a_segment_is_locked_in_its_middle_and_at_the_screens_phase_at_its_joins() -> None:
    """Segments are made apart: each paints its warm-up, first and last frames unlocked (the
    screen's phase, as the segments either side of it do), and ramps the lock in between."""
    lock = PhaseLock(frames=30, warmup=4, ramp=5, noise_ramp=10)
    weights = [lock.weight(i) for i in range(30)]
    assert weights[:5] == [0.0] * 5 and weights[-1] == 0.0
    assert weights[6] == pytest.approx(0.4) and weights[9:24] == [1.0] * 15
    assert weights[26] == pytest.approx(0.6)
    locks = [lock(None if i == 0 else _moved(8, 8, 1.0), (1.0, 1.0)) for i in range(30)]
    shifts = [x.shift[0] for x in locks]
    assert shifts[4] == 0.0 and shifts[-1] == 0.0 and shifts[29] == 0.0
    assert any(abs(x) > 0.5 for x in shifts[9:24])
    with pytest.raises(ValueError, match="twice"):  # else the noise is off the lattice
        PhaseLock(frames=30, ramp=6, noise_ramp=11)
    assert [x.weight for x in locks] == pytest.approx(weights)
    # The noise channels have a ramp of their own: none at the joins, where the segments
    # either side paint alike, and full strength from 10 frames after the warm-up.
    noise = [x.noise for x in locks]
    assert noise[:5] == [0.0] * 5 and noise[-1] == 0.0 and noise[14:16] == [1.0] * 2
    assert noise[6] == pytest.approx(0.2) and noise[26] == pytest.approx(0.3)


@pytest.mark.parametrize("size", [(5, 7), (9, 6), (20, 24)])
def test_the_separable_shift_is_the_bicubic_resampling(size: tuple[int, int]) -> None:
    """Four taps along each axis give what PyTorch's bicubic ``grid_sample`` (edges
    reflected) gives, for whole, half, negative and tiny moves, and for moves near the
    side (where the shift falls back to it)."""
    h, w = size
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    for dx, dy in [(0.0, 0.0), (1.0, -2.0), (0.5, -0.5), (-1.5, 1.25), (1e-7, -0.999),
                   (-3.7, 2.0), (w - 2.5, 0.3), (0.3, -(h - 1.0)), (12.3, -7.5)]:
        grid = torch.stack([(xs + dx) / (w - 1) * 2 - 1, (ys + dy) / (h - 1) * 2 - 1], -1)
        expected = torch.nn.functional.grid_sample(
            x, grid[None], mode="bicubic", padding_mode="reflection", align_corners=True)
        got = shifted(x, torch.tensor([[dx, dy]]))
        assert torch.allclose(got, expected, atol=1e-4), (dx, dy)


def test_a_shift_and_its_inverse_give_the_picture_back_inside() -> None:
    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.avg_pool2d(x, 5, 1, 2)  # bicubic is exact on smooth
    shifts = torch.tensor([[1.5, -0.5], [-1.25, 0.75]])
    there = shifted(smooth, shifts)
    assert torch.allclose(shifted(smooth, torch.zeros(2, 2)), smooth, atol=1e-5)
    assert float((there - smooth).abs().mean()) > 0.005  # it did move
    back = shifted(there, -shifts)
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    assert float((back - smooth)[inner].abs().mean()) < 0.02
    # An integer shift moves pixels exactly.
    whole = shifted(x, torch.tensor([[2.0, 1.0], [0.0, 0.0]]))
    assert torch.allclose(whole[0, :, 3:10, 3:10], x[0, :, 4:11, 5:12], atol=1e-5)


def test_a_shipped_network_paints_a_frame_moved_a_pixel_as_the_same_picture_moved() -> None:
    """A scene moved 1 px between two frames (a quarter of the lattice), through The Great
    Wave's shipped network: locked, the second picture is nearer the first moved 1 px than
    painted alone."""
    preset = Registry.discover().resolve("great-wave")
    settings = preset.settings.merged({"size": 96})
    stylizer = FastStylizer(settings, read_network(REPO / "styles/great-wave/network.safetensors"))
    rng = np.random.default_rng(1)
    scene = np.kron(rng.integers(0, 255, (20, 30, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    first, second = (Image.fromarray(scene[40:104, 40 - dx:136 - dx]) for dx in (0, 1))
    motion = _moved(64, 96, 1.0)

    def apart(lock: PhaseLock | None) -> float:
        pictures = stylizer.stylize_batch([first, second], noise=False, lock=lock,
                                          motions=[None, motion])
        a, b = (np.asarray(p, dtype=np.float32) for p in pictures)
        return float(np.abs(b[8:-8, 9:-8] - a[8:-8, 8:-9]).mean())

    assert apart(PhaseLock(frames=3, ramp=1)) < 0.7 * apart(None)
    with pytest.raises(ValueError, match="motions"):
        stylizer.stylize_batch([first, second], lock=PhaseLock(2), motions=[None])



def test_a_locked_frames_noise_moves_with_the_scene() -> None:
    """The Great Wave's network paints from noise channels.  A scene moved by one lattice
    step between two locked frames has its noise rolled with it: the two pictures differ
    as they do painted with no noise (at this tiny size the network's normalization and
    edges make them differ anyway), where noise fixed on the screen adds its own
    change."""
    preset = Registry.discover().resolve("great-wave")
    stylizer = FastStylizer(preset.settings.merged({"size": 96}),
                            read_network(REPO / "styles/great-wave/network.safetensors"))
    assert stylizer.net.config.noise
    rng = np.random.default_rng(3)
    scene = np.kron(rng.integers(0, 255, (20, 30, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    frames = [Image.fromarray(scene[40:104, 40 - 4 * i:136 - 4 * i]) for i in range(6)]
    motions = [None] + [_moved(64, 96, 4.0)] * 5

    def arrays(pictures: list[Image.Image]) -> list[np.ndarray]:
        return [np.asarray(p, dtype=np.float32) for p in pictures]

    def apart(pictures: list[np.ndarray]) -> float:
        a, b = pictures[2:4]
        return float(np.abs(b[8:-8, 12:-8] - a[8:-8, 8:-12]).mean())

    lock = PhaseLock(6, ramp=1, noise_ramp=2)  # the middle two frames: locked, noise full
    locked = arrays(stylizer.stylize_batch(frames, lock=lock, motions=motions))
    plain = arrays(stylizer.stylize_batch(frames, noise=False))
    fixed = arrays(stylizer.stylize_batch(frames, noise=True))
    assert float(np.abs(locked[2] - plain[2]).mean()) > 1.0  # the noise is there
    assert apart(locked) - apart(plain) < 0.25 * (apart(fixed) - apart(plain))


def test_the_lock_and_the_carry_span_batches() -> None:
    """Eight frames of a drifting camera, steadied in one batch or in two of four: the same
    pictures (the lock, its noise and the carry keep their state from batch to batch;
    The Great Wave's network paints from noise channels)."""
    preset = Registry.discover().resolve("great-wave")
    stylizer = FastStylizer(preset.settings.merged({"size": 96}),
                            read_network(REPO / "styles/great-wave/network.safetensors"))
    rng = np.random.default_rng(2)
    scene = np.kron(rng.integers(0, 255, (20, 30, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    frames = [Image.fromarray(scene[40:104, 40 - i:136 - i]) for i in range(8)]
    motions = [None] + [_moved(64, 96, 1.0)] * 7

    def made(batches: list[slice]) -> list[np.ndarray]:
        lock, carry = PhaseLock(8, ramp=1, noise_ramp=2), FeatureCarry(0.6)
        return [np.asarray(p, dtype=np.int16) for part in batches
                for p in stylizer.stylize_batch(frames[part], noise=False, carry=carry,
                                                lock=lock, motions=motions[part])]

    together, apart = made([slice(0, 8)]), made([slice(0, 4), slice(4, 8)])
    # (Within a level: a batch of eight and one of four may take other kernels.)
    assert max(int(np.abs(a - b).max()) for a, b in zip(together, apart, strict=True)) <= 1
