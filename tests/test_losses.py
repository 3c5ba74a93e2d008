"""The style losses: the Gram loss's statistics and the Wasserstein-2 loss (style_loss: w2)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from support.engines import make_targets
from support.images import REPO

from pipeline.config.settings import Settings
from pipeline.engine.losses import (
    W2Target,
    gram,
    newton_schulz,
    trace_sqrt,
    w2_relative,
)
from pipeline.engine.optimize import Engine
from pipeline.engine.style_targets import mean_key

pytestmark = pytest.mark.timeout(60)


def _features(c: int = 8, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    """ReLU-like features (non-negative, correlated channels, a sizeable mean)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(c, c, generator=g) / c**0.5 + torch.eye(c)
    raw = torch.einsum("dc,bchw->bdhw", mix, torch.randn(1, c, h, w, generator=g))
    return torch.relu(raw + 1.0)


def _target(f: torch.Tensor) -> W2Target:
    return W2Target(f.mean((0, 2, 3)), gram(f)[0])


def _exact_w2(x: torch.Tensor, s: torch.Tensor) -> float:
    """W2² between the Gaussian fits of two feature maps, by eigendecompositions in float64."""
    def fit(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = f[0].double().flatten(1)
        mean = m.mean(1)
        centred = m - mean[:, None]
        return mean, centred @ centred.T / m.shape[1]

    def root(a: torch.Tensor) -> torch.Tensor:
        vals, vecs = torch.linalg.eigh(a)
        return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T

    mx, cx = fit(x)
    ms, cs = fit(s)
    rs = root(cs)
    cross = torch.linalg.eigvalsh(rs @ cx @ rs).clamp_min(0).sqrt().sum()
    w2 = (mx - ms).pow(2).sum() + cx.trace() + cs.trace() - 2 * cross
    return float(w2 / (ms @ ms + cs.trace()))


def _spd(n: int, condition: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random SPD matrix with eigenvalues from 1/condition to 1, and its exact root."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    vals = torch.logspace(0, -torch.log10(torch.tensor(condition)).item(), n,
                          dtype=torch.float64)
    return (q * vals) @ q.T, (q * vals.sqrt()) @ q.T


def test_newton_schulz_root_matches_an_eigendecomposition_root() -> None:
    a, root = _spd(64, condition=100.0)
    scale = 37.0  # any magnitude: the iteration scales by the Frobenius norm first
    got, inv = newton_schulz((a * scale).float()[None])
    exact = root * scale**0.5
    assert got.dtype == torch.float32
    assert (got[0].double() - exact).abs().max() < 1e-3 * exact.abs().max()
    assert torch.allclose(got[0].double() @ got[0].double(), a * scale, rtol=0, atol=1e-3 * scale)
    assert (inv[0].double() @ exact - torch.eye(64, dtype=torch.float64)).abs().max() < 1e-3


def test_trace_sqrt_gradient_is_half_the_inverse_root() -> None:
    a, _ = _spd(16, condition=20.0, seed=1)
    a32 = a.float()[None].requires_grad_(True)
    trace_sqrt(a32).sum().backward()
    assert a32.grad is not None
    expected = 0.5 * torch.linalg.inv(_spd(16, condition=20.0, seed=1)[1])
    assert torch.allclose(a32.grad[0].double(), expected, atol=1e-3)


def test_w2_is_zero_for_identical_features() -> None:
    f = _features()
    assert abs(w2_relative(f, _target(f)).item()) < 1e-4


def test_w2_grows_with_a_shifted_mean_and_a_scaled_covariance() -> None:
    f = _features()
    target = _target(f)
    mean = f.mean((2, 3), keepdim=True)
    shifted = [w2_relative(f + d, target).item() for d in (0.0, 0.1, 0.3, 1.0)]
    scaled = [w2_relative(mean + a * (f - mean), target).item() for a in (1.0, 1.2, 1.5, 3.0)]
    for series in (shifted, scaled):
        assert series[0] < 1e-4
        assert all(b > a for a, b in zip(series, series[1:], strict=False)), series
    # Shifting every channel by d adds exactly C·d² to W2² (the covariance is unchanged).
    norm = float(target.scale)
    assert shifted[2] == pytest.approx(8 * 0.3**2 / norm, rel=1e-3, abs=1e-5)


@pytest.mark.parametrize("hw", [(12, 10), (2, 3)])  # N > C, and N < C (the N×N branch)
def test_w2_matches_the_closed_form(hw: tuple[int, int]) -> None:
    x, s = _features(h=hw[0], w=hw[1], seed=1), _features(h=12, w=10, seed=2)
    assert w2_relative(x, _target(s)).item() == pytest.approx(_exact_w2(x, s), rel=1e-3)


def test_w2_is_relative_and_blind_to_a_common_scale() -> None:
    """A float16 network scales every activation: the loss must not change."""
    x, s = _features(seed=3), _features(seed=4)
    plain = w2_relative(x, _target(s)).item()
    assert w2_relative(x / 16, _target(s / 16)).item() == pytest.approx(plain, rel=1e-4)
    zero = torch.zeros_like(x)
    assert w2_relative(zero, _target(s)).item() == pytest.approx(1.0, rel=1e-4)


def test_w2_gradient_moves_features_towards_the_target() -> None:
    x, s = _features(seed=5), _features(seed=6)
    target = _target(s)
    x = x.clone().requires_grad_(True)
    before = w2_relative(x, target)
    before.sum().backward()
    assert x.grad is not None
    with torch.no_grad():
        after = w2_relative(x - 0.5 * x.grad / x.grad.norm(), target)
    assert after.item() < before.item()


def test_w2_targets_from_a_blend_are_the_blend_of_the_statistics(tmp_path: object) -> None:
    """Means and second moments blend linearly; the covariance is derived after blending."""
    a = Image.open(REPO / "styles" / "starry-night" / "starry_night.jpg").convert("RGB")
    b = Image.open(REPO / "styles" / "the-scream" / "the_scream.jpg").convert("RGB")
    paintings = [(a.resize((80, 64)), 1.0), (b.resize((64, 80)), 3.0)]
    engine = Engine(Settings(device="cpu", precision="fp32", style_loss="w2",
                             style_layers={"relu1_1": 1, "relu2_1": 1}))
    blended = make_targets(engine, paintings, [64])[64]
    alone = [make_targets(engine, [p], [64])[64] for p in paintings]
    assert set(blended) == {"relu1_1", "relu2_1", "relu1_1.mean", "relu2_1.mean"}
    for key, value in blended.items():
        assert torch.allclose(value, 0.25 * alone[0][key] + 0.75 * alone[1][key],
                              rtol=1e-4, atol=1e-3), key
    name = "relu2_1"
    target = W2Target(blended[mean_key(name)], blended[name])
    mean = 0.25 * alone[0][mean_key(name)] + 0.75 * alone[1][mean_key(name)]
    second = 0.25 * alone[0][name] + 0.75 * alone[1][name]
    assert torch.allclose(target.mean, mean, rtol=1e-4)
    assert torch.allclose(target.cov, second - torch.outer(mean, mean), rtol=1e-3, atol=1e-1)
    # The blend's covariance is not the blend of the covariances: the means differ.
    covs = [alone[i][name] - torch.outer(alone[i][mean_key(name)], alone[i][mean_key(name)])
            for i in range(2)]
    assert not torch.allclose(target.cov, 0.25 * covs[0] + 0.75 * covs[1], rtol=1e-2)


def test_newton_schulz_stays_finite_on_a_singular_matrix() -> None:
    """Fewer positions than channels make the covariance singular (deep layers, coarse scales)."""
    x = torch.randn(64, 40, generator=torch.Generator().manual_seed(0))
    a = (x @ x.T)[None]  # rank 40
    for iterations in (16, 40):
        root, inv = newton_schulz(a, iterations)
        assert torch.isfinite(root).all() and torch.isfinite(inv).all()
        assert (root[0] @ root[0] - a[0]).abs().max() < 1e-3 * a.abs().max()


def test_w2_of_features_too_large_for_float32_stays_positive_with_a_finite_gradient() -> None:
    """An overshooting step can blow a picture up; the loss must not turn to −inf or NaN."""
    few = _features(c=8, h=2, w=2, seed=7)  # fewer positions than channels: the N×N branch
    many = _features(c=8, h=12, w=10, seed=8)
    target = _target(_features(seed=9))
    for f in (few, many):
        huge = (f * 1e15).requires_grad_(True)  # squares overflow float32
        loss = w2_relative(huge, target)
        assert loss.item() > 0 and not torch.isnan(loss).any(), loss
        loss.sum().backward()
        assert huge.grad is not None and not torch.isnan(huge.grad).any()
    # The floor never lifts a sound value: a modest mismatch is still the closed form.
    x = _features(seed=10)
    assert w2_relative(x, target).item() == pytest.approx(
        _exact_w2(x, _features(seed=9)), rel=1e-3)
