"""Where inputs are looked for, and why two sources never share an output (issue 11).

Planning only: no engine, no torch work; the photos are tiny files made in the test.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from support.images import gradient_photo

from pipeline.config.manifest import load_manifest
from pipeline.config.naming import RECORD_DIR
from pipeline.errors import ConfigError
from pipeline.plan.planning import INBOX_OUTPUT_DIR, discover_inputs, job_task, plan

pytestmark = pytest.mark.timeout(60)


def _manifest(root: Path, job: str) -> Path:
    path = root / "jobs.yaml"
    path.write_text(textwrap.dedent(f"""
        jobs:
          - {job}
    """).lstrip())
    return path


def _photo(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    gradient_photo(40, 30, seed=seed).save(path)
    return path


def test_an_inbox_photo_and_an_input_photo_of_one_name_never_share_an_output(
        tmp_path: Path) -> None:
    _photo(tmp_path / "photos" / "x.png", 1)
    _photo(tmp_path / "inbox" / "x.png", 2)
    manifest = load_manifest(_manifest(tmp_path, "{name: a, input: photos, styles: [udnie], "
                                                 "output: out, inbox: inbox}"))
    job = manifest.jobs[0]
    from_input = plan(manifest).tasks
    assert [t.output for t in from_input] == [tmp_path / "out" / "x.png.udnie.jpg"]
    from_inbox = job_task(job, tmp_path / "inbox" / "x.png", job.styles[0])
    assert from_inbox.output == tmp_path / "out" / INBOX_OUTPUT_DIR / "x.png.udnie.jpg"
    assert from_inbox.root == tmp_path / "inbox" and not from_inbox.follow_symlinks


def test_an_input_folder_holding_the_inbox_does_not_take_the_inbox_photos(
        tmp_path: Path) -> None:
    _photo(tmp_path / "photos" / "a.png")
    _photo(tmp_path / "photos" / "drop" / "x.png")
    _photo(tmp_path / "photos" / "drop" / "done" / "y.png")
    manifest = load_manifest(_manifest(tmp_path, "{name: a, input: photos, recursive: true, "
                                                 "styles: [udnie], output: out, "
                                                 "inbox: photos/drop}"))
    assert [p.name for p in discover_inputs(manifest.jobs[0])] == ["a.png"]


def test_an_input_subfolder_named_like_the_inbox_results_is_refused(tmp_path: Path) -> None:
    _photo(tmp_path / "photos" / INBOX_OUTPUT_DIR / "z.png")
    manifest = load_manifest(_manifest(tmp_path, "{name: a, input: photos, recursive: true, "
                                                 "styles: [udnie], output: out, inbox: in}"))
    (tmp_path / "in").mkdir()
    with pytest.raises(ConfigError, match="where the inbox's results go"):
        plan(manifest)


def test_results_of_another_job_are_never_inputs(tmp_path: Path) -> None:
    """Job b over photos/ must not stylize job a's results in photos/stylized/."""
    _photo(tmp_path / "photos" / "p.png")
    _photo(tmp_path / "photos" / "stylized" / "p.png.udnie.png")
    (tmp_path / "photos" / "stylized" / RECORD_DIR).mkdir()
    _photo(tmp_path / "photos" / "stylized" / "deeper" / "q.png.udnie.png")
    manifest = load_manifest(_manifest(tmp_path, "{name: b, input: photos, recursive: true, "
                                                 "styles: [great-wave], output: out-b}"))
    assert [p.name for p in discover_inputs(manifest.jobs[0])] == ["p.png"]
    globbed = load_manifest(_manifest(tmp_path, "{name: b, input: 'photos/**/*.png', "
                                                "styles: [great-wave], output: out-b}"))
    assert [p.name for p in discover_inputs(globbed.jobs[0])] == ["p.png"]


def test_an_output_folder_as_the_input_is_refused(tmp_path: Path) -> None:
    _photo(tmp_path / "stylized" / "p.png.udnie.png")
    (tmp_path / "stylized" / RECORD_DIR).mkdir()
    manifest = load_manifest(_manifest(tmp_path, "{name: b, input: stylized, "
                                                 "styles: [great-wave], output: out}"))
    with pytest.raises(ConfigError, match="holds the results of a job"):
        plan(manifest)


def test_subfolders_named_done_or_failed_are_searched_like_any_other(tmp_path: Path) -> None:
    _photo(tmp_path / "photos" / "done" / "a.png")
    _photo(tmp_path / "photos" / "failed" / "b.png")
    _photo(tmp_path / "photos" / "@eaDir" / "c.png")  # NAS thumbnails stay litter
    manifest = load_manifest(_manifest(tmp_path, "{name: a, input: photos, recursive: true, "
                                                 "styles: [udnie], output: out}"))
    assert [p.relative_to(tmp_path / "photos").as_posix()
            for p in discover_inputs(manifest.jobs[0])] == ["done/a.png", "failed/b.png"]
