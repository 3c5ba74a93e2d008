"""Weights given as a path (issue 22, item 12).

Before: ``--weights nonexist.pth``, a folder or ``/dev/zero`` gave tracebacks, even with
``--dry-run``; a preset's relative ``weights:`` was looked for in the current folder
instead of the preset's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.images import gradient_photo
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config.manifest import load_manifest
from pipeline.config.styles import Registry
from pipeline.config.weights_id import weights_digest
from pipeline.errors import ConfigError, WeightsError

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()


def _bad_weights(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Name -> (the --weights value, the end of its one-line refusal)."""
    fifo = tmp_path / "pipe.pth"
    os.mkfifo(fifo)
    (tmp_path / "empty.pth").write_bytes(b"")
    return {
        "missing": ("nonexist.pth", f"weights file not found: {tmp_path}/nonexist.pth"),
        "folder": (str(tmp_path), "is a folder; weights are a .pth or .safetensors file"),
        "device": ("/dev/zero", "weights file /dev/zero: is not a regular file (a pipe, "
                                "socket or device)"),
        "fifo": (str(fifo), "is not a regular file (a pipe, socket or device)"),
        "empty": ("empty.pth", "empty.pth: file is empty (0 bytes)"),
    }


@pytest.mark.parametrize("case", ["missing", "folder", "device", "fifo", "empty"])
def test_image_refuses_weights_that_cannot_be_weights_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    monkeypatch.chdir(tmp_path)
    value, ending = _bad_weights(tmp_path)[case]
    gradient_photo(48, 32).save(tmp_path / "c.png")
    result = runner.invoke(app, ["image", "c.png", "--style", "udnie", "--weights", value,
                                 "-o", "o.jpg"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("error: weights file ") and line.endswith(ending), line
    assert not (tmp_path / "o.jpg").exists()


@pytest.mark.parametrize("case", ["missing", "folder", "device", "fifo"])
def test_the_dry_run_refuses_weights_that_cannot_be_weights(tmp_path: Path,
                                                            case: str) -> None:
    value, ending = _bad_weights(tmp_path)[case]
    (tmp_path / "photos").mkdir()
    gradient_photo(48, 32).save(tmp_path / "photos" / "c.png")
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(f"defaults: {{weights: '{value}'}}\njobs:\n"
                        "  - {name: a, input: photos, styles: [udnie, great-wave], output: out}\n")
    result = runner.invoke(app, ["run", str(manifest), "--dry-run"])
    assert result.exit_code == 2, result.output
    # One line for the job's two styles, at the line that names the file.
    [_, problem] = result.stderr.splitlines()
    assert problem.startswith(f"  {manifest}:1: defaults.weights: weights file ")
    assert problem.endswith(ending)


def _preset_with_weights(folder: Path, weights: str) -> Path:
    preset = folder / "mine"
    preset.mkdir(parents=True)
    gradient_photo(40, 40).save(preset / "paint.png")
    (preset / "preset.yaml").write_text(f"images: [paint.png]\nsettings: {{weights: {weights}}}\n")
    return preset


def test_a_presets_relative_weights_are_the_file_beside_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    preset = _preset_with_weights(tmp_path / "styles", "vgg.pth")
    (preset / "vgg.pth").write_bytes(b"not checked until loaded")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    registry = Registry.discover([tmp_path / "styles"])
    assert registry.presets["mine"].settings.weights == str(preset / "vgg.pth")


def test_a_preset_whose_weights_are_missing_is_reported_with_the_path_beside_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    preset = _preset_with_weights(tmp_path / "styles", "vgg.pth")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vgg.pth").write_bytes(b"the wrong file, in the current folder")
    registry = Registry.discover([tmp_path / "styles"])
    assert "mine" not in registry.presets
    assert registry.problems == [f"{preset / 'preset.yaml'}: weights file not found: "
                                 f"{preset / 'vgg.pth'}"]


def test_a_manifests_relative_weights_are_resolved_from_its_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "photos").mkdir(parents=True)
    (project / "vgg.pth").write_bytes(b"weights")
    manifest = project / "jobs.yaml"
    manifest.write_text("jobs:\n  - {name: a, input: photos, styles: [udnie], output: out, "
                        "weights: vgg.pth}\n")
    monkeypatch.chdir(tmp_path)
    job = load_manifest(manifest).jobs[0]
    assert job.styles[0].settings.weights == str(project / "vgg.pth")
    (project / "vgg.pth").unlink()
    with pytest.raises(ConfigError) as info:
        load_manifest(manifest)
    assert info.value.problems[1] == (f"{manifest}:2: jobs[0].weights: weights file not "
                                      f"found: {project / 'vgg.pth'}")


@pytest.mark.parametrize("spec", ["/dev/zero", "{tmp}", "{tmp}/nonexist.pth"])
def test_the_weights_readers_turn_a_bad_path_into_a_weights_error(tmp_path: Path,
                                                                  spec: str) -> None:
    from pipeline.engine.weights import load_weights

    spec = spec.format(tmp=tmp_path)
    with pytest.raises(WeightsError, match="weights file"):
        weights_digest(spec)
    with pytest.raises(WeightsError, match="weights file"):
        load_weights(spec)
