"""Device names: a number torch cannot hold, or a GPU that is not there, is one line
(issue 22, item 13: ``--device cuda:99999999999999999999`` was a RuntimeError traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from support.images import gradient_photo
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config.settings import Settings
from pipeline.engine.device import resolve_device
from pipeline.errors import UsageError

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()
HUGE = "cuda:99999999999999999999"


@pytest.mark.parametrize("name", [HUGE, "cuda:128", "cuda:256"])
def test_a_device_number_torch_cannot_hold_is_refused_by_the_settings(name: str) -> None:
    # torch keeps the number in 8 bits: cuda:256 would silently have been cuda:0.
    with pytest.raises(ValidationError, match="cuda:N takes a device number from 0 to 127"):
        Settings(device=name)


@pytest.mark.parametrize("name", ["cuda:0", "cuda:127", "cuda", "cpu", "mps", "auto"])
def test_device_names_within_the_bound_are_accepted(name: str) -> None:
    assert Settings(device=name).device == name


def test_resolve_device_turns_a_name_torch_refuses_into_one_line() -> None:
    with pytest.raises(UsageError, match="unknown device 'cuda:99999999999999999999'"):
        resolve_device(HUGE)


def test_resolve_device_refuses_a_gpu_number_the_machine_does_not_have(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UsageError) as info:
        resolve_device("cuda:5")
    assert info.value.message == ("device 'cuda:5' asked for, but this machine has 2 CUDA "
                                  "devices (cuda:0 to cuda:1)")
    assert resolve_device("cuda:1") == torch.device("cuda:1")


@pytest.mark.parametrize("command", ["image", "run"])
def test_the_commands_refuse_a_huge_device_number_in_one_line(tmp_path: Path,
                                                              command: str) -> None:
    (tmp_path / "photos").mkdir()
    photo = tmp_path / "photos" / "c.png"
    gradient_photo(48, 32).save(photo)
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text("jobs:\n  - {name: a, input: photos, styles: [udnie], output: out}\n")
    args = (["image", str(photo), "--style", "udnie", "-o", str(tmp_path / "o.jpg")]
            if command == "image" else ["run", str(manifest), "--dry-run"])
    result = runner.invoke(app, [*args, "--device", HUGE])
    assert result.exit_code == 2, result.output
    assert "cuda:N takes a device number from 0 to 127" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
