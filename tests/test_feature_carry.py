"""A video's frames steadied inside the fast path's network (pipeline.engine.feature_carry):
the previous frame's features, carried along the flow, mixed in where it is trusted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config.styles import Registry
from pipeline.engine.fast import FastStylizer
from pipeline.engine.feature_carry import FEATURE_SHARE, FeatureCarry
from pipeline.engine.network_file import read_network

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class _Motion:
    offsets: np.ndarray
    trust: np.ndarray


def _motion(h: int, w: int, dx: float = 0.0, trust: float = 1.0) -> _Motion:
    """Every pixel of an ``h``×``w`` frame was ``dx`` px to its right in the previous one
    (``-dx``: the scene moved right by ``dx``)."""
    offsets = np.zeros((h, w, 2), np.float32)
    offsets[..., 0] = dx
    return _Motion(offsets, np.full((h, w, 1), trust, np.float32))


def _features(seed: int) -> torch.Tensor:
    return torch.randn(1, 8, 6, 10, generator=torch.Generator().manual_seed(seed))


def test_a_first_frame_and_a_zero_weight_leave_the_features_as_they_are() -> None:
    a, b = _features(0), _features(1)
    carry = FeatureCarry(0.6)
    assert torch.equal(carry(a, None), a)  # first frame: nothing to carry
    still = FeatureCarry(0.0)
    still(a, None)
    assert torch.equal(still(b, _motion(24, 40)), b)
    with pytest.raises(ValueError):
        FeatureCarry(1.0)


def test_a_still_frame_mixes_in_the_weight_of_the_previous_where_trusted() -> None:
    a, b = _features(0), _features(1)
    carry = FeatureCarry(0.6)
    carry(a, None)
    mixed = carry(b, _motion(24, 40))
    assert torch.allclose(mixed, b + 0.6 * (a - b), atol=1e-5)
    # Untrusted (occluded, revealed, a wrong flow): the frame's own features.
    carry = FeatureCarry(0.6)
    carry(a, None)
    assert torch.allclose(carry(b, _motion(24, 40, trust=0.0)), b)


def test_features_are_carried_along_the_flow_in_the_frames_pixels() -> None:
    """A scene moved right by 4 px of a frame four times the features' size moves the
    carried features by one of theirs."""
    a, b = _features(0), _features(1)
    carry = FeatureCarry(0.5)
    carry(a, None)
    mixed = carry(b, _motion(24, 40, dx=-4.0))
    expected = b[..., 1:] + 0.5 * (a[..., :-1] - b[..., 1:])
    assert torch.allclose(mixed[..., 1:], expected, atol=1e-4)
    # Recursive: the next frame gets the mix, not the frame's own features.
    c = _features(2)
    again = carry(c, _motion(24, 40))
    assert torch.allclose(again, c + 0.5 * (mixed - c), atol=1e-4)


def test_offsets_are_scaled_per_axis_from_any_frame_size() -> None:
    """A frame eight times the features' size (the network painting at half the output
    size), the scene moved down 8 px: the features move down one pixel, not sideways."""
    a, b = _features(0), _features(1)
    carry = FeatureCarry(0.5)
    carry(a, None)
    motion = _motion(48, 80)
    motion.offsets[..., 1] = -8.0
    mixed = carry(b, motion)
    expected = b[..., 1:, :] + 0.5 * (a[..., :-1, :] - b[..., 1:, :])
    assert torch.allclose(mixed[..., 1:, :], expected, atol=1e-4)


def test_the_share_follows_steady() -> None:
    assert FeatureCarry.for_steady(0.8).weight == pytest.approx(FEATURE_SHARE * 0.8)
    assert FeatureCarry.for_steady(0.0).weight == 0.0


def test_a_shipped_network_paints_a_moving_frame_nearer_its_last_with_the_carry() -> None:
    """Two frames of a camera panning 4 px over a photo, through udnie's shipped network:
    with the carry, the second frame's picture is nearer the first's moved along the same
    motion than without; with no motion trusted, the same as without."""
    preset = Registry.discover().resolve("udnie")
    settings = preset.settings.merged({"size": 96})
    stylizer = FastStylizer(settings, read_network(REPO / "styles/udnie/network.safetensors"))
    rng = np.random.default_rng(0)
    scene = np.kron(rng.integers(0, 255, (20, 30, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    first, second = (Image.fromarray(scene[40:104, 40 - dx:136 - dx]) for dx in (0, 4))
    moved = _motion(64, 96, dx=-4.0)

    def painted(carry: FeatureCarry | None, motion: _Motion) -> list[np.ndarray]:
        pictures = stylizer.stylize_batch([first, second], noise=False, carry=carry,
                                          motions=[None, motion])
        return [np.asarray(p, dtype=np.float32) for p in pictures]

    def apart(pair: list[np.ndarray]) -> float:
        # The second picture against the first moved 4 px right (its left 4 px revealed).
        return float(np.abs(pair[1][:, 8:] - pair[0][:, 4:-4]).mean())

    alone = painted(None, moved)
    carried = painted(FeatureCarry(0.6), moved)
    assert apart(carried) < 0.8 * apart(alone)
    untrusted = painted(FeatureCarry(0.6), _motion(64, 96, dx=-4.0, trust=0.0))
    assert np.abs(untrusted[1] - alone[1]).max() <= 1.0
    # The carry spans batches: a frame in the next batch is made as in the same one.
    third = Image.fromarray(scene[40:104, 32:128])
    together = stylizer.stylize_batch([first, second, third], noise=False,
                                      carry=FeatureCarry(0.6), motions=[None, moved, moved])
    carry = FeatureCarry(0.6)
    stylizer.stylize_batch([first, second], noise=False, carry=carry, motions=[None, moved])
    apart_batches = stylizer.stylize_batch([third], noise=False, carry=carry, motions=[moved])
    # (Within a level: a batch of three and one of one may take other kernels.)
    difference = np.abs(np.asarray(together[2], dtype=np.int16)
                        - np.asarray(apart_batches[0], dtype=np.int16))
    assert difference.max() <= 1
