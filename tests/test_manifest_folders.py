"""Folders of a manifest that would feed results back in as photos (issue 22, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.images import gradient_photo
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config.manifest import load_manifest
from pipeline.errors import ConfigError

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()


def _manifest(tmp_path: Path, *jobs: str) -> Path:
    (tmp_path / "photos").mkdir(exist_ok=True)
    gradient_photo(48, 32).save(tmp_path / "photos" / "c.png")
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs:\n" + "".join(f"  - {{{job}}}\n" for job in jobs))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    return info.value.problems[1:]


@pytest.mark.parametrize(("output", "inbox", "needle"), [
    ("out", "out/inbox", "is inside its output folder"),
    ("out", "out", "is inside its output folder"),
    ("out", "out/deeper/drop", "is inside its output folder"),
    ("drop/out", "drop", "its output folder"),
])
def test_an_inbox_and_an_output_folder_inside_one_another_are_refused(
        tmp_path: Path, output: str, inbox: str, needle: str) -> None:
    path = _manifest(tmp_path, "name: a, input: photos, styles: [udnie], "
                               f"output: {output}, inbox: {inbox}")
    [problem] = _problems(path)
    assert problem.startswith(f"{path}:2: jobs[0].inbox: ")
    assert needle in problem and "would be taken as new photos" in problem


def test_one_jobs_results_in_another_jobs_inbox_are_refused(tmp_path: Path) -> None:
    path = _manifest(tmp_path,
                     "name: a, input: photos, styles: [udnie], output: out/a, inbox: in/a",
                     "name: b, input: photos, styles: [udnie], output: in/a/stylized")
    [problem] = _problems(path)
    assert "jobs[0].inbox" in problem and "job 'b''s output folder" in problem


def test_separate_inbox_and_output_folders_are_accepted(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "name: a, input: photos, styles: [udnie], output: out, "
                               "inbox: inbox")
    assert load_manifest(path).jobs[0].inbox == tmp_path / "inbox"


def test_watch_with_its_inbox_inside_its_output_is_refused_before_it_starts(
        tmp_path: Path) -> None:
    path = _manifest(tmp_path, "name: a, input: photos, styles: [udnie], output: out, "
                               "inbox: out/inbox")
    result = runner.invoke(app, ["watch", str(path)])
    assert result.exit_code == 2, result.output
    assert "is inside its output folder" in result.stderr
    assert not (tmp_path / "out").exists()
