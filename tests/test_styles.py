"""Presets: the shipped four, user folders, plugins through entry points, and bad presets."""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
from pathlib import Path

import pytest
from PIL import Image
from support.engines import make_targets
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import styles as S
from pipeline.errors import UsageError

runner = CliRunner()
SHIPPED = ["great-wave", "starry-night", "the-scream", "udnie"]


def test_shipped_presets_all_load() -> None:
    registry = S.Registry.discover()
    assert registry.problems == []
    assert registry.names() == SHIPPED
    for preset in registry.presets.values():
        assert preset.source == "builtin" and preset.description
        assert all(img.path.is_file() for img in preset.images)


def test_unknown_style_lists_known_ones() -> None:
    with pytest.raises(UsageError, match="unknown style 'stary-night'; known: great-wave, "):
        S.Registry.discover().resolve("stary-night")


def _write_preset(folder: Path, name: str, body: str) -> Path:
    (folder / name).mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), "red").save(folder / name / "p.png")
    (folder / name / "preset.yaml").write_text(body)
    return folder / name


def test_user_folder_overrides_builtin_visibly(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _write_preset(tmp_path, "udnie", "description: my udnie\nimages: [p.png]\n")
    monkeypatch.setenv(S.STYLES_PATH_ENV, str(tmp_path))
    registry = S.Registry.discover()
    assert registry.presets["udnie"].source == "user"
    assert registry.presets["udnie"].overrides == "builtin"
    rows = json.loads(runner.invoke(app, ["styles", "list", "--json"]).stdout)["styles"]
    assert {"name": "udnie", "source": "user", "overrides": "builtin"}.items() <= next(
        r for r in rows if r["name"] == "udnie").items()


def test_bad_preset_reported_with_path_and_others_still_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_preset(tmp_path, "broken", "images: [p.png]\nsettings:\n  size: -4\n")
    _write_preset(tmp_path, "typo", "images: [p.png]\nsettings:\n  stlye_weight: 3\n")
    _write_preset(tmp_path, "noimage", "images: [missing.png]\n")
    _write_preset(tmp_path, "good", "images: [p.png]\n")
    monkeypatch.setenv(S.STYLES_PATH_ENV, str(tmp_path))
    registry = S.Registry.discover()
    assert "good" in registry.names() and "broken" not in registry.names()
    text = "\n".join(registry.problems)
    assert str(tmp_path / "broken" / "preset.yaml") in text and "settings.size" in text
    assert "settings.stlye_weight: unknown key" in text
    assert "style image not found: missing.png" in text
    result = runner.invoke(app, ["styles", "list"])
    assert result.exit_code == 0 and "good" in result.stdout
    assert "warning:" in result.stderr
    # Asked for by name, a preset that did not load says why, not "unknown style".
    with pytest.raises(UsageError, match=r"style 'broken' cannot be used: .*broken.preset\.yaml:"
                                         r" invalid preset: settings\.size"):
        registry.resolve("broken")
    photo = tmp_path / "photo.png"
    Image.new("RGB", (32, 32), "blue").save(photo)
    used = runner.invoke(app, ["image", str(photo), "--style", "typo", "-o",
                               str(tmp_path / "out.png")])
    assert used.exit_code == 2 and "style 'typo' cannot be used:" in used.stderr
    assert "stlye_weight: unknown key" in used.stderr and "unknown style" not in used.stderr


def test_same_name_twice_in_one_level_is_a_conflict(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _write_preset(a, "twin", "images: [p.png]\n")
    _write_preset(b, "twin", "images: [p.png]\n")
    monkeypatch.setenv(S.STYLES_PATH_ENV, f"{a}:{b}")
    registry = S.Registry.discover()
    assert "twin" not in registry.names()
    assert any("defined twice" in p for p in registry.problems)
    with pytest.raises(UsageError, match="style 'twin' cannot be used: style 'twin' is defined "
                                         "twice"):
        registry.resolve("twin")


def test_styles_show_resolves_every_setting() -> None:
    result = runner.invoke(app, ["styles", "show", "starry-night"])
    assert result.exit_code == 0
    for knob in ("size:", "steps:", "style_weight:", "style_layers:", "precision:"):
        assert knob in result.stdout
    bad = runner.invoke(app, ["styles", "show", "nope"])
    assert bad.exit_code == 2 and "unknown style 'nope'" in bad.stderr


def test_plugin_presets_from_an_installed_distribution(tmp_path: Path) -> None:
    """A fake distribution on sys.path registering a folder under ``stylize.styles``."""
    pkg = tmp_path / "site" / "fancy_styles"
    _write_preset(pkg / "presets", "fancy", "description: from a plugin\nimages: [p.png]\n")
    (pkg / "__init__.py").write_text(
        "from pathlib import Path\nPRESETS = Path(__file__).parent / 'presets'\n")
    dist = tmp_path / "site" / "fancy_styles-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fancy-styles\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[stylize.styles]\nfancy = fancy_styles:PRESETS\n")
    sys.path.insert(0, str(tmp_path / "site"))
    importlib.invalidate_caches()
    try:
        registry = S.Registry.discover()
        assert registry.presets["fancy"].source == "plugin:fancy-styles"
        listed = runner.invoke(app, ["styles", "list", "--json"])
        rows = json.loads(listed.stdout)["styles"]
        assert {"fancy", *SHIPPED} <= {r["name"] for r in rows}
    finally:
        sys.path.remove(str(tmp_path / "site"))
        sys.modules.pop("fancy_styles", None)
        importlib.invalidate_caches()
    assert "fancy" not in S.Registry.discover().names()


def test_several_paintings_are_blended_by_weight(tmp_path: Path) -> None:
    """A preset of two paintings: its Gram targets are the weighted mean of each one's."""
    import torch
    from support.images import REPO

    from pipeline.config.settings import Settings
    from pipeline.config.styles import load_preset
    from pipeline.engine.optimize import Engine
    from pipeline.render.targets import _load_style_images

    folder = tmp_path / "duo"
    folder.mkdir()
    Image.open(REPO / "styles" / "starry-night" / "starry_night.jpg").resize((80, 64)).save(
        folder / "a.png")
    Image.open(REPO / "styles" / "the-scream" / "the_scream.jpg").resize((64, 80)).save(
        folder / "b.png")
    (folder / "preset.yaml").write_text(
        "images:\n  - a.png\n  - {path: b.png, weight: 3}\nsettings: {device: cpu, "
        "precision: fp32}\n")
    preset = load_preset(folder)
    assert [i.weight for i in preset.images] == [1.0, 3.0]
    engine = Engine(Settings(device="cpu", precision="fp32"))
    paintings = _load_style_images(preset)
    blended = make_targets(engine, paintings, [64])[64]
    alone = [make_targets(engine, [(img, 1.0)], [64])[64] for img, _ in paintings]
    for name, gram in blended.items():
        expected = 0.25 * alone[0][name] + 0.75 * alone[1][name]
        assert torch.allclose(gram, expected, rtol=1e-4, atol=1e-3), name
        assert not torch.allclose(gram, alone[0][name], rtol=0.05)


# -- presets and paintings that never end, and names that are not one line (issue 11) -----


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["fifo", "device", "loop", "empty"])
def test_preset_image_that_is_not_a_usable_file_is_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    preset = _write_preset(tmp_path, "odd", "images: [odd.png]\n")
    image = preset / "odd.png"
    if kind == "fifo":
        os.mkfifo(image)
        expected = "is not a regular file (a pipe, socket or device)"
    elif kind == "device":
        image.symlink_to("/dev/zero")
        expected = "is not a regular file (a pipe, socket or device)"
    elif kind == "loop":
        image.symlink_to(image)  # Path.resolve raised RuntimeError on this
        expected = "symbolic link loop"
    else:
        image.touch()
        expected = "file is empty"
    _write_preset(tmp_path, "good", "images: [p.png]\n")
    monkeypatch.setenv(S.STYLES_PATH_ENV, str(tmp_path))
    registry = S.Registry.discover()
    assert "good" in registry.names() and "odd" not in registry.names()
    head = f"{preset / 'preset.yaml'}: style image odd.png: {expected}"
    assert any(p.startswith(head) for p in registry.problems), registry.problems


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_painting_given_by_path_that_never_ends_is_refused(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        painting = tmp_path / "pipe.jpg"
        os.mkfifo(painting)
    else:
        painting = Path("/dev/zero")
    with pytest.raises(UsageError, match=f"^style image {painting}: is not a regular file"):
        S.Registry.discover().resolve(str(painting))


@pytest.mark.timeout(10)
def test_preset_yaml_is_read_within_the_same_bounds_as_a_manifest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = ["x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    rows += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]" for i in range(1, 9)]
    _write_preset(tmp_path, "bomb", "\n".join(rows) + "\nimages: *x8\n")
    _write_preset(tmp_path, "big", "images: [p.png]\n" + "#" * (1 << 20) + "\n")
    fifo = tmp_path / "piped.yaml"
    os.mkfifo(fifo)
    monkeypatch.setenv(S.STYLES_PATH_ENV, str(tmp_path))
    registry = S.Registry.discover()
    assert not {"bomb", "big"} & set(registry.names())
    text = "\n".join(registry.problems)
    assert f"{tmp_path / 'bomb' / 'preset.yaml'}:6: more than 100000 values" in text, text
    assert f"{tmp_path / 'big' / 'preset.yaml'}: too large for a preset" in text, text
    # Given by path, a FIFO is refused at once instead of blocking in open.
    with pytest.raises(UsageError, match="piped.yaml: is not a regular file"):
        S.Registry.discover().resolve(str(fifo))


def test_preset_name_ending_in_a_newline_is_refused(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _write_preset(tmp_path, "bad\n", "images: [p.png]\n")
    monkeypatch.setenv(S.STYLES_PATH_ENV, str(tmp_path))
    registry = S.Registry.discover()
    assert "bad\n" not in registry.names()
    assert any("preset names use a-z" in p for p in registry.problems), registry.problems
