"""A video's frames painted at the lattice phase of the scene they show
(pipeline.engine.phase_lock): the camera's sub-lattice translation taken out before the
network paints and put back after."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config.styles import Registry
from pipeline.engine.fast import FastStylizer
from pipeline.engine.network import NetworkConfig, TransformNet
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
    lock = PhaseLock(step=4)
    first = lock(None, 1.0)
    assert first.motion is None and np.allclose(first.shift, 0) and first.roll == (0, 0)
    # The scene moves 1.5 px right, then 1.5 more, then 1: 1.5, 3 (= -1 + 4), 4 (= 0 + 4).
    steps = [lock(_moved(8, 8, 1.5), 1.0) for _ in range(2)]
    last = lock(_moved(8, 8, 1.0), 1.0)
    assert [k.shift[0] for k in steps] == pytest.approx([1.5, -1.0])
    assert [k.roll for k in steps] == [(0, 0), (4, 0)]
    assert last.shift[0] == pytest.approx(0.0) and last.roll == (4, 0)
    # The shifted frames moved by the whole step less the phase's change: 1 - (0 - -1) = 0.
    assert last.motion is not None and np.allclose(last.motion.offsets[..., 0], 0.0)
    # At half the working size per frame pixel the lattice is 8 frame pixels: 5 px down is
    # a shift of -3 frame pixels (-1.5 working ones) and one whole step.
    half = PhaseLock(step=4)
    half(None, 0.5)
    down = half(_moved(8, 8, 0.0, 5.0), 0.5)
    assert down.shift[1] == pytest.approx(-1.5) and down.roll == (0, 4)


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

    assert apart(PhaseLock()) < 0.7 * apart(None)
    with pytest.raises(ValueError, match="motions"):
        stylizer.stylize_batch([first, second], lock=PhaseLock(), motions=[None])


def test_rolled_noise_moves_with_a_scene_moved_by_whole_steps() -> None:
    """A scene moved 8 px (two steps of the lattice) with its noise rolled the same way is
    painted as the same picture moved (inside, away from the edges); with the noise left
    on the screen it is not."""
    torch.manual_seed(0)
    net = TransformNet(NetworkConfig(width=8, blocks=2, noise=2)).eval()
    scene = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 48, 96), 3, 1, 1)
    a_in, b_in = scene[..., 8:88], scene[..., 0:80]  # b: the scene moved 8 px right
    with torch.no_grad():
        a = net(a_in, noise_scale=3.0)
        rolled = net(b_in, noise_scale=3.0, rolls=[(8, 0)])
        fixed = net(b_in, noise_scale=3.0)
    inner = (..., slice(12, -12))

    def apart(b: torch.Tensor) -> float:
        return float((b[..., 8:][inner] - a[..., :-8][inner]).abs().mean())

    assert apart(rolled) < 0.3 * apart(fixed)
