"""Every knob that decides how much work or memory there is has a bound where it is
validated (issue 22, item 8): ``scale_ratio: 1.000000001`` passed, the dry run said
"1 to do", and the run built a list of scales until memory ran out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from support.images import gradient_photo
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config.manifest import load_manifest
from pipeline.config.settings import (
    MAX_BATCH,
    MAX_SCALES,
    MIN_TILE_PIXELS,
    Settings,
)
from pipeline.config.styles import Registry
from pipeline.errors import ConfigError

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()


@pytest.mark.parametrize(("knobs", "needle"), [
    ({"scale_ratio": 1.000000001}, "scale_ratio: Input should be greater than or equal to 1.1"),
    ({"steps": [100, 10**9]}, "steps[1]: Input should be less than or equal to 10000"),
    ({"steps": [10] * (MAX_SCALES + 1)}, "steps: List should have at most 16 items"),
    ({"min_side": 10**9}, "min_side: Input should be less than or equal to 16384"),
    ({"size": 10**6}, "size: Input should be less than or equal to 16384"),
    ({"pyramid_scales": 10**6}, "pyramid_scales: Input should be less than or equal to 16"),
    ({"min_steps": 10**9}, "min_steps: Input should be less than or equal to 10000"),
    ({"tile_pixels": 1}, "tile_pixels: use 0 (from the device's memory) or at least 4096"),
    ({"tile_pixels": 10**12}, "tile_pixels: Input should be less than or equal to 268435456"),
    ({"batch_size": 10**6}, "batch_size: Input should be less than or equal to 64"),
    ({"max_pixels": 10**15}, "max_pixels: Input should be less than or equal to 1000000000"),
    ({"seed": 2**64}, "seed: Input should be less than or equal to"),
    ({"style_weight": float("inf")}, "style_weight: Input should be a finite number"),
    ({"style_layers": {"relu1_1": float("nan")}}, "style_layers.relu1_1: Input should be a "
                                                  "finite number"),
    # Within each bound alone, too much together: named, with what to change.
    ({"size": 16384, "min_side": 16, "scale_ratio": 1.5},
     "size 16384 from min_side 16 at scale_ratio 1.5 makes 19 scales; at most 16: raise "
     "scale_ratio or min_side"),
    ({"size": 8192, "style_scale": 4},
     "size 8192 × style_scale 4 asks for a style image of 32768 px at the finest scale; at "
     "most 16384: lower style_scale or size"),
])
def test_a_knob_past_its_bound_is_refused_with_its_name(knobs: dict[str, Any],
                                                         needle: str) -> None:
    from pipeline.config.validation import format_validation_error

    with pytest.raises(ValidationError) as info:
        Settings(**knobs)
    lines = format_validation_error(info.value)
    assert any(line.startswith(needle) for line in lines), lines


@pytest.mark.parametrize("knobs", [
    {}, {"scale_ratio": 1.1}, {"size": 16384, "min_side": 16}, {"tile_pixels": 0},
    {"tile_pixels": MIN_TILE_PIXELS}, {"batch_size": MAX_BATCH}, {"size": 4096, "style_scale": 4},
    {"steps": [10_000] * MAX_SCALES},
])
def test_values_within_the_bounds_are_accepted(knobs: dict[str, Any]) -> None:
    Settings(**knobs)


def test_every_shipped_preset_is_within_the_bounds() -> None:
    registry = Registry.discover()
    assert not registry.problems
    assert {"udnie", "starry-night", "the-scream", "great-wave"} <= set(registry.names())


@pytest.mark.parametrize(("size", "min_side", "ratio", "min_scales"), [
    (512, 128, 2.0, 3), (512, 128, 1.1, 1), (16384, 16, 2.0, 1), (100, 128, 2.0, 3),
    (257, 128, 2.0, 1), (16384, 128, 1.4, 8), (48, 24, 2.0, 1),
])
def test_scale_count_is_the_number_of_scales_the_pyramid_makes(
        size: int, min_side: int, ratio: float, min_scales: int) -> None:
    from pipeline.config.geometry import pyramid, scale_count

    settings = Settings(size=size, min_side=min_side, scale_ratio=ratio, min_scales=min_scales)
    assert scale_count(size, min_side, ratio, min_scales) == len(pyramid(size, size, settings))


def test_the_bounds_agree_with_the_engine() -> None:
    from pipeline.engine.memory import MAX_AUTO_BATCH
    from pipeline.engine.tiles import MIN_TILE_SIDE

    assert MIN_TILE_PIXELS == MIN_TILE_SIDE**2
    assert MAX_BATCH == MAX_AUTO_BATCH


def _manifest(tmp_path: Path, knobs: str) -> Path:
    (tmp_path / "photos").mkdir()
    gradient_photo(48, 32).save(tmp_path / "photos" / "c.png")
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs:\n  - name: a\n    input: photos\n    styles: [udnie]\n"
                    f"    output: out\n    {knobs}\n")
    return path


def test_the_dry_run_refuses_a_scale_ratio_just_above_one(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "scale_ratio: 1.000000001")
    result = runner.invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert (f"{path}:6: jobs[0].scale_ratio: Input should be greater than or equal to 1.1"
            in result.stderr)
    assert "to do" not in result.output


def test_a_manifest_asking_for_too_many_scales_names_the_job(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "size: 16384\n    min_side: 16\n    scale_ratio: 1.2")
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    assert any("jobs[0]: size 16384 from min_side 16 at scale_ratio 1.2 makes" in line
               for line in info.value.problems), info.value.problems


@pytest.mark.parametrize("executor", ["{kind: ray, workers: 100000000}",
                                      "{kind: ray, cpus_per_worker: 100000}",
                                      "{kind: ray, gpus_per_worker: .inf}"])
def test_the_executor_is_bounded_too(tmp_path: Path, executor: str) -> None:
    path = _manifest(tmp_path, "size: 64")
    path.write_text(f"executor: {executor}\n" + path.read_text())
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    assert "executor." in info.value.problems[1]


def test_image_refuses_a_scale_ratio_just_above_one_in_one_line(tmp_path: Path) -> None:
    photo = tmp_path / "c.png"
    gradient_photo(48, 32).save(photo)
    result = runner.invoke(app, ["image", str(photo), "--style", "udnie", "--set",
                                 "scale_ratio=1.000000001", "-o", str(tmp_path / "o.jpg")])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "error: invalid setting: scale_ratio: Input should be greater than or equal to 1.1"]


@pytest.mark.parametrize(("option", "value"), [("--poll", "1e-9"), ("--rescan", "0.001"),
                                               ("--settle", "inf"), ("--settle", "-1")])
def test_watch_timings_are_bounded(tmp_path: Path, option: str, value: str) -> None:
    # A poll or rescan every nanosecond is a busy loop; an endless settle takes nothing.
    path = _manifest(tmp_path, "inbox: inbox")
    result = runner.invoke(app, ["watch", str(path), option, value])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert not (tmp_path / "inbox").exists()
