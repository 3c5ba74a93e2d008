"""The four shipped presets ship trained networks (issue 28): found with no training, checked
against their presets, never unpickled; a user's own training still wins.

Skipped for a preset whose network is not in the checkout (a preset without one is valid:
it trains on first use), and failed if none ships at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.images import REPO, gradient_photo
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config.styles import Registry
from pipeline.engine.network_file import read_network
from pipeline.render.network_loader import network_config
from pipeline.store import records
from pipeline.training.networks import PRESET_NETWORK_FILE, find_network, network_key

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("one_thread")]

SHIPPED = ("great-wave", "starry-night", "the-scream", "udnie")
#: A shipped network is a few MB (half width: about 1.7 M parameters in float32).
MAX_SHIPPED_BYTES = 16 << 20


def test_every_shipped_preset_has_its_network() -> None:
    missing = [s for s in SHIPPED if not (REPO / "styles" / s / PRESET_NETWORK_FILE).exists()]
    assert missing == []


@pytest.mark.parametrize("style", SHIPPED)
def test_a_shipped_network_is_found_checked_and_described(style: str, tmp_path: Path) -> None:
    path = REPO / "styles" / style / PRESET_NETWORK_FILE
    data = path.read_bytes()
    assert len(data) < MAX_SHIPPED_BYTES
    size = int.from_bytes(data[:8], "little")
    assert data[8:9] == b"{" and json.loads(data[8:8 + size])  # safetensors, not a pickle
    preset = Registry.discover().resolve(style)
    ref = find_network(preset, tmp_path / "empty-cache")
    assert ref is not None and ref.source == "preset" and ref.path == path
    loaded = read_network(path, network_config(preset.settings))
    assert loaded.digest == ref.digest and loaded.metadata["network_key"] == network_key(preset)
    training = json.loads(loaded.metadata["training"])
    # What it was trained on, how long and where: said by `stylize styles show`.
    assert training["photos"] >= 4 and training["steps"] > 0 and training["device"]
    assert set(training["held_out"]) and "collection" in training["collection"]


def test_a_fast_picture_with_a_shipped_network_needs_no_training(tmp_path: Path) -> None:
    photo, out = tmp_path / "p.png", tmp_path / "p.udnie.png"
    gradient_photo(96, 64, seed=2).save(photo)
    cache = tmp_path / "cache"
    result = CliRunner().invoke(app, ["image", str(photo), "--style", "udnie", "--method",
                                      "fast", "--size", "96", "-o", str(out)],
                                env={"STYLIZE_CACHE_DIR": str(cache)})
    assert result.exit_code == 0, result.stderr
    assert "training" not in result.stderr and not (cache / "network").exists()
    made = records.read_record(out).made  # type: ignore[union-attr]
    shipped = find_network(Registry.discover().resolve("udnie"), cache)
    assert shipped is not None and made["method"] == "fast" and made["network"] == shipped.digest


def test_a_users_own_training_overrides_the_shipped_network(tmp_path: Path) -> None:
    from pipeline.training.job import ensure_network

    preset = Registry.discover().resolve("udnie")
    cache = tmp_path / "cache"
    shipped = find_network(preset, cache)
    assert shipped is not None and shipped.source == "preset"
    photos = []
    for i in range(4):
        photos.append(tmp_path / f"p{i}.png")
        gradient_photo(80, 64, seed=i).save(photos[-1])
    # What `stylize train udnie --on DIR --steps 1` does: the shipped network does not count.
    report = ensure_network(preset, photos, cache, steps=1, accept_shipped=False)
    assert report.trained and report.digest != shipped.digest
    mine = find_network(preset, cache)
    assert mine is not None and mine.source == "cache" and mine.digest == report.digest
    assert os.path.commonpath([mine.path, cache]) == str(cache)


def test_a_new_painting_starts_from_a_shipped_network(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's own preset of the shipped architecture starts its training from udnie's
    shipped network (recorded in the file); one of another width from random weights."""
    from support.presets import FAST, write_preset

    from pipeline.training.job import ensure_network

    folder = tmp_path / "styles"
    write_preset(folder, "mine", FAST | {"method": "fast", "train_size": 32})
    write_preset(folder, "narrow", FAST | {"method": "fast", "train_size": 32,
                                           "network_width": 8})
    monkeypatch.setenv("STYLIZE_STYLES_PATH", str(folder))
    photos = []
    for i in range(4):
        photos.append(tmp_path / f"p{i}.png")
        gradient_photo(80, 64, seed=i).save(photos[-1])
    udnie = find_network(Registry.discover().resolve("udnie"), tmp_path / "empty")
    assert udnie is not None
    for name, start in (("mine", udnie.digest), ("narrow", None)):
        report = ensure_network(Registry.discover().resolve(name), photos, tmp_path / "cache",
                                steps=1)
        training = json.loads(read_network(report.path).metadata["training"])
        assert training["start"] == start, name
