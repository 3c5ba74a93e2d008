"""The method policy (pipeline.plan.methods): what a photo needs, decided once, without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.config.geometry import pyramid
from pipeline.config.settings import Settings
from pipeline.errors import InputError
from pipeline.plan.methods import METHODS, needs, needs_network, result_view, retry_size


def test_optimize_needs_every_scale_and_the_retry():
    s = Settings(size=512)
    got = needs(s, 4000, 3000)
    assert got.output == (512, 384)
    assert list(got.sides) == sorted({sc.style_side for sc in pyramid(512, 384, s)})
    small = s.merged({"size": 256})
    assert list(got.retry_sides) == sorted({sc.style_side for sc in pyramid(256, 192, small)})
    assert got.every_side == {*got.sides, *got.retry_sides}
    assert not got.network


def test_fast_needs_a_network_and_no_targets():
    got = needs(Settings(method="fast"), 4000, 3000)
    assert got.sides == () and got.retry_sides == ()
    assert got.network
    # init: fast optimizes the finest scale only, from the network's picture.
    warm = needs(Settings(init="fast"), 4000, 3000)
    assert warm.network and len(warm.sides) == 1


@pytest.mark.parametrize("method,limit", [("optimize", 16), ("fast", 8)])
def test_a_shape_too_thin_is_refused_by_its_method(method, limit):
    s = Settings(method=method, size=64)
    # 64 long: the short side is 64 * w / h.
    ok_h = 64 * 64 // limit
    needs(s, 64, ok_h)
    with pytest.raises(InputError) as err:
        needs(s, 64, ok_h * 3)
    assert err.value.category == "too_small"


def test_retry_size_and_its_floor():
    assert retry_size(512) == 256
    assert retry_size(31) is None  # 15 px: under the smallest scale


def test_result_views_are_each_methods_own():
    fast = Settings(method="fast")
    assert result_view(fast) == result_view(fast.merged({"steps": [5], "style_weight": 3}))
    assert result_view(Settings()) != result_view(Settings(style_weight=3))
    assert "method" not in result_view(Settings())  # optimize keys as before methods
    assert needs_network(fast) and not needs_network(Settings())
    assert set(METHODS) == set(Settings.model_fields["method"].annotation.__args__)


def test_the_policy_loads_no_torch():
    code = ("import sys, pipeline.plan.methods as m; from pipeline.config.settings import Settings;"
            "m.needs(Settings(), 640, 480); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
