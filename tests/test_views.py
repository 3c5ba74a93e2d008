"""Named views of the settings (pipeline.config.views) and the keys made of them.

The digests pinned here are those of the shipped udnie preset as keyed before the views
existed: a reshape of how keys are built must leave every finished result, trained
network and cached style target valid.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.config import views
from pipeline.config.settings import SETTING_NAMES, Settings
from pipeline.config.styles import Preset, Registry
from pipeline.plan.methods import FAST_STEADYING, result_view
from pipeline.plan.planning import task_key
from pipeline.training.networks import network_key

INPUT = "d" * 64
NETWORK = "n" * 64


@pytest.fixture(scope="module")
def udnie() -> Preset:
    return Registry.discover().resolve("udnie")


def test_every_knob_is_in_exactly_one_view() -> None:
    assert views.unsorted_knobs() == []
    assert set().union(*views.VIEWS.values()) == set(SETTING_NAMES)


def test_a_knob_in_no_view_or_in_two_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = dict(views.VIEWS)
    changed["loss"] = changed["loss"] - {"tv_weight"}
    changed["video"] = changed["video"] | {"size"}
    monkeypatch.setattr(views, "VIEWS", changed)
    assert views.unsorted_knobs() == ["size", "tv_weight"]


def test_keys_are_those_made_before_the_views(udnie: Preset) -> None:
    # As udnie was then: its network trained at ratio 0.3, painting at its training size,
    # a video's warm frames given the finest scale's steps (the knobs added since, at
    # their neutral values, leave the keys as they were).
    before = udnie.with_overrides({"network_style_ratio": 0.3, "network_paint_scale": 1.0,
                                   "warm_steps": None})
    fast = replace(before.with_overrides({"method": "fast"}), network=NETWORK)
    assert task_key(INPUT, before, "jpeg") == (
        "3e1f5b8382da56be4a6ae4c0c75fc8a838b4d2c124830d2d10b3db9e51a983aa")
    assert task_key(INPUT, fast, "jpeg") == (
        "83903b8af5dbab2a94b9a6ddba6fd30dabafb9da1d80bd6ac48fd1124cf924d5")
    assert task_key(INPUT, before, "mp4") == (
        "ef6ea06ac3356c4dcf2c709bf6ad6f17a2643d76b38fa25c01094be6fae083d7")
    assert network_key(before) == (
        "b4f62c89db810d9ab11ea25a48a079a250261cdfa568543c9bd06383b3573106")
    assert network_key(udnie.with_overrides(
        {"network_width": 32, "train_size": 128, "network_style_ratio": 0.5})) == (
        "1f098adcb18df6486a663ba27658937768f66e0414d8e93b1f003b65e12262bc")


def test_the_style_targets_key_is_that_made_before_the_views(udnie: Preset) -> None:
    from pipeline.engine.style_targets import StyleTargetMaker
    from pipeline.render.targets import side_key

    maker = StyleTargetMaker(udnie.settings.merged({"device": "cpu"}))
    assert side_key(maker, udnie, 256) == (
        "b2539fff0df140c47a5286a0c58fe2a0ba6292da744c758403e0878b64f60db3")


@pytest.mark.parametrize(("change", "photo", "fast", "video", "network"), [
    ({"tv_weight": 4.0}, True, False, True, True),  # loss: the optimizer's and the network's
    ({"network_width": 32}, False, False, False, True),  # the network's alone
    ({"train_steps": 10}, False, False, False, False),  # how far, not which network
    ({"device": "cpu", "tile_pixels": 5000, "max_pixels": 10}, False, False, False, False),
    ({"precision": "fp32"}, True, True, True, False),
    ({"quality": 50}, True, True, True, False),
    ({"steady": 0.5}, False, False, True, False),  # a video's alone
    ({"network_paint_scale": 1.0}, False, True, False, False),  # where a network paints
    ({"temporal_weight": 10.0}, False, False, True, False),  # an optimized video's
    ({"steps": [10, 10]}, True, False, True, False),
])
def test_each_key_holds_the_views_that_decide_its_artifact(
        udnie: Preset, change: dict[str, object], photo: bool, fast: bool, video: bool,
        network: bool) -> None:
    changed = udnie.with_overrides(change)

    def as_fast(p: Preset) -> Preset:
        return replace(p.with_overrides({"method": "fast"}), network=NETWORK)

    assert (task_key(INPUT, changed, "jpeg") != task_key(INPUT, udnie, "jpeg")) == photo
    assert (task_key(INPUT, as_fast(changed), "jpeg")
            != task_key(INPUT, as_fast(udnie), "jpeg")) == fast
    assert (task_key(INPUT, changed, "mp4") != task_key(INPUT, udnie, "mp4")) == video
    assert (network_key(changed) != network_key(udnie)) == network


def test_where_a_network_paints_keys_an_optimization_started_from_its_picture() -> None:
    def differs(**knobs: object) -> bool:
        return (result_view(Settings(**knobs)) !=
                result_view(Settings(**knobs, network_paint_scale=1.0)))

    assert differs(init="fast")
    assert not differs()  # an optimization from the photo never runs the network


def test_the_optimizers_video_knobs_are_not_keyed_where_nothing_is_carried() -> None:
    def video_key(**knobs: object) -> object:
        return result_view(Settings(**knobs), video=True)

    assert video_key(temporal_weight=50.0) != video_key()
    assert video_key(steady=0, temporal_weight=50.0, warm_steps=9) == video_key(steady=0)


def test_a_fast_steady_videos_key_names_how_it_is_held_steady() -> None:
    """A change of the fast path's steadying makes its steady videos due again; frame by
    frame (steady 0) and the optimizer's are left alone."""
    def video(**knobs: object) -> dict[str, object]:
        return result_view(Settings(**knobs), video=True)["video"]

    assert video(method="fast")["steadying"] == FAST_STEADYING
    assert "steadying" not in video(method="fast", steady=0)
    assert "steadying" not in video(method="optimize")
