"""The scheduler: output naming, what counts as done, reruns that do nothing, and repairs.

One small batch is stylized once per module (real VGG weights, 48 px, a few steps); each test
works on its own copy of the finished project and of the style-target cache, so that tests
stay independent.  Copies keep mtimes to the nanosecond, so a copy is as done as the original.
"""

from __future__ import annotations

import logging
import os
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.engines import run_local
from support.images import gradient_photo

from pipeline.config.manifest import load_manifest
from pipeline.plan.planning import Plan, plan
from pipeline.run.report import Report
from pipeline.store import records
from pipeline.store.cache import ArtifactCache
from pipeline.store.fsutil import TEMP_PREFIX

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("one_thread")]

#: Builtin presets at test size: deterministic and quick on a CPU.
DEFAULTS = "{size: 48, min_side: 24, steps: [4, 2], precision: fp32, device: cpu, seed: 1}"




def _manifest_text(main_extra: str = "") -> str:
    text = f"""
        defaults: {DEFAULTS}
        jobs:
          - name: main
            input: photos
            recursive: true
            styles: [udnie]
            output: out/main
            {main_extra}
          - name: other
            input: "other/*.png"
            styles: [udnie]
            output: out/other
    """
    return textwrap.dedent(text).lstrip("\n")


@dataclass
class Project:
    root: Path
    cache: Path

    @property
    def manifest(self) -> Path:
        return self.root / "jobs.yaml"

    def plan(self) -> Plan:
        return plan(load_manifest(self.manifest))

    def run(self) -> Report:
        return run_local(self.plan(), ArtifactCache(self.cache))

    def outputs(self) -> dict[str, int]:
        """Every output file (relative path) and its mtime in ns; records left out."""
        return {str(p.relative_to(self.root)): p.stat().st_mtime_ns
                for p in sorted((self.root / "out").rglob("*.jpg"))
                if records.RECORD_DIR not in p.parts}


def _statuses(the_plan: Plan) -> dict[str, str]:
    return {f"{t.job}:{t.input.name}": t.status for t in the_plan.tasks}


@pytest.fixture(scope="module")
def _done_batch(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """photos/a.jpg, photos/sub/b.png (job main) and other/c.png (job other), all done."""
    root = tmp_path_factory.mktemp("batch")
    (root / "photos" / "sub").mkdir(parents=True)
    (root / "other").mkdir()
    gradient_photo(64, 48, seed=1).save(root / "photos" / "a.jpg", quality=95)
    gradient_photo(64, 48, seed=2).save(root / "photos" / "sub" / "b.png")
    gradient_photo(64, 48, seed=3).save(root / "other" / "c.png")
    (root / "jobs.yaml").write_text(_manifest_text())
    project = Project(root, tmp_path_factory.mktemp("batch-cache"))
    with pytest.MonkeyPatch.context() as mp:  # conftest's isolation is per test; this is not
        mp.delenv("STYLIZE_STYLES_PATH", raising=False)
        mp.setenv("STYLIZE_CACHE_DIR", str(project.cache))
        report = project.run()
    assert report.count("done") == 3 and report.exit_code == 0, report.as_dict()
    assert report.targets_computed >= 1
    return project


@pytest.fixture
def done(_done_batch: Project, tmp_path: Path) -> Project:
    """A private copy of the finished batch and its cache."""
    root, cache = tmp_path / "project", tmp_path / "cache"
    shutil.copytree(_done_batch.root, root)
    shutil.copytree(_done_batch.cache, cache)
    return Project(root, cache)


# -- output naming --------------------------------------------------------------------------


def test_output_names_never_collide(tmp_path: Path) -> None:
    for rel in ["a.jpg", "a.png", "a.JPG.jpg", "x/a.jpg", "y/a.jpg", "y/z/a.jpg"]:
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        gradient_photo(32, 32).save(tmp_path / "in" / rel, format="PNG")
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent("""
        jobs:
          - {name: j, input: in, recursive: true, styles: [udnie, great-wave], output: out}
          - {name: k, input: in, styles: [udnie], output: out-png, format: png}
          - {name: s, input: in, styles: [udnie], output: out-same, format: same}
    """))
    the_plan = plan(load_manifest(tmp_path / "jobs.yaml"))
    names = sorted(str(t.output.relative_to(tmp_path)) for t in the_plan.tasks)
    assert len(set(names)) == len(names) == 6 * 2 + 3 + 3
    expected = {
        "out/a.jpg.udnie.jpg", "out/a.jpg.great-wave.jpg", "out/a.png.udnie.jpg",
        "out/a.png.great-wave.jpg", "out/a.JPG.jpg.udnie.jpg", "out/x/a.jpg.udnie.jpg",
        "out/y/a.jpg.udnie.jpg", "out/y/z/a.jpg.udnie.jpg", "out/y/z/a.jpg.great-wave.jpg",
        "out-png/a.jpg.udnie.png", "out-png/a.png.udnie.png",
        "out-same/a.jpg.udnie.jpg", "out-same/a.png.udnie.png",
    }
    assert expected <= set(names)
    assert all(t.status == "due" for t in the_plan.tasks)


def test_outputs_inside_the_input_folder_are_never_inputs(tmp_path: Path) -> None:
    (tmp_path / "photos" / "stylized").mkdir(parents=True)
    gradient_photo(32, 32).save(tmp_path / "photos" / "a.jpg")
    # What an earlier run wrote: the glob matches it, but it is the job's own output.
    gradient_photo(32, 32).save(tmp_path / "photos" / "stylized" / "a.jpg.udnie.jpg")
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent("""
        jobs:
          - {name: g, input: "photos/**/*.jpg", styles: [udnie], output: photos/stylized}
          - {name: r, input: photos, recursive: true, styles: [udnie], output: photos/r-out}
    """))
    (tmp_path / "photos" / "r-out").mkdir()
    gradient_photo(32, 32).save(tmp_path / "photos" / "r-out" / "a.jpg.udnie.jpg")
    the_plan = plan(load_manifest(tmp_path / "jobs.yaml"))
    inputs = {(t.job, str(t.input.relative_to(tmp_path))) for t in the_plan.tasks}
    # Each sees the other's results (another job's output is just a folder of photos), but
    # neither sees its own.
    assert inputs == {("g", "photos/a.jpg"), ("g", "photos/r-out/a.jpg.udnie.jpg"),
                      ("r", "photos/a.jpg"), ("r", "photos/stylized/a.jpg.udnie.jpg")}


def test_job_selection(done: Project) -> None:
    manifest = load_manifest(done.manifest)
    assert {t.job for t in plan(manifest, jobs=["other"]).tasks} == {"other"}
    # Named twice is still one job, not two jobs that would write the same files.
    assert len(plan(manifest, jobs=["main", "main"]).tasks) == 2


# -- what counts as done -------------------------------------------------------------------


def test_rerun_does_nothing(done: Project) -> None:
    before = done.outputs()
    assert len(before) == 3
    the_plan = done.plan()
    assert set(_statuses(the_plan).values()) == {"skipped"}
    report = run_local(the_plan, ArtifactCache(done.cache))
    assert report.count("skipped") == 3 and report.count("done") == 0
    assert (report.targets_computed, report.exit_code) == (0, 0)
    assert done.outputs() == before


def test_changed_photo_makes_only_its_task_due(done: Project) -> None:
    before = done.outputs()
    gradient_photo(64, 48, seed=99).save(done.root / "photos" / "sub" / "b.png")
    the_plan = done.plan()
    assert _statuses(the_plan) == {"main:a.jpg": "skipped", "main:b.png": "due",
                                   "other:c.png": "skipped"}
    report = run_local(the_plan, ArtifactCache(done.cache))
    assert report.count("done") == 1 and report.exit_code == 0
    # Same size as before: its style targets come from the cache.
    assert (report.targets_computed, report.targets_cached) == (0, 1)
    after = done.outputs()
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {"out/main/sub/b.png.udnie.jpg"}
    assert set(_statuses(done.plan()).values()) == {"skipped"}


def test_touching_a_photo_does_not_make_it_due(done: Project) -> None:
    photo = done.root / "photos" / "a.jpg"
    st = photo.stat()
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    # Rewritten with the same bytes: new inode and mtime, same content.
    other = done.root / "other" / "c.png"
    data = other.read_bytes()
    other.unlink()
    other.write_bytes(data)
    the_plan = done.plan()
    assert set(_statuses(the_plan).values()) == {"skipped"}
    stale = {t.input.name for t in the_plan.tasks if t.stale_stat}
    assert stale == {"a.jpg", "c.png"}
    before = done.outputs()
    report = run_local(the_plan, ArtifactCache(done.cache))
    assert report.count("skipped") == 3 and done.outputs() == before
    # The run stored the new size and mtime, so the next one trusts the record again
    # instead of hashing the photo on every run.
    output = next(t.output for t in the_plan.tasks if t.input == photo)
    rec = records.read_record(output)
    assert rec is not None
    assert (rec.input_size, rec.input_mtime_ns) == records.stat_identity(photo)
    assert not any(t.stale_stat for t in done.plan().tasks)


def test_changed_content_with_the_old_size_and_mtime_is_trusted_to_the_record(
        done: Project) -> None:
    # The documented trade-off: size and mtime unchanged means the stored hash is reused.
    photo = done.root / "other" / "c.png"
    st = photo.stat()
    data = bytearray(photo.read_bytes())
    data[-20] ^= 0xFF
    photo.write_bytes(bytes(data))
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _statuses(done.plan())["other:c.png"] == "skipped"
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # any change of mtime: rehash
    assert _statuses(done.plan())["other:c.png"] == "due"


def test_changed_setting_makes_that_jobs_tasks_due(done: Project) -> None:
    done.manifest.write_text(_manifest_text("seed: 2"))
    assert _statuses(done.plan()) == {"main:a.jpg": "due", "main:b.png": "due",
                                      "other:c.png": "skipped"}


@pytest.mark.parametrize("extra", ["device: auto", "max_pixels: 1000000"])
def test_setting_that_does_not_change_pixels_keeps_tasks_done(done: Project,
                                                              extra: str) -> None:
    done.manifest.write_text(_manifest_text(extra))
    assert set(_statuses(done.plan()).values()) == {"skipped"}


def test_changed_defaults_or_style_make_every_task_due(done: Project) -> None:
    text = _manifest_text()
    done.manifest.write_text(text.replace("steps: [4, 2]", "steps: [4, 3]"))
    assert set(_statuses(done.plan()).values()) == {"due"}
    done.manifest.write_text(text.replace("[udnie]", "[great-wave]", 1))
    assert _statuses(done.plan()) == {"main:a.jpg": "due", "main:b.png": "due",
                                      "other:c.png": "skipped"}


@pytest.mark.parametrize("damage", ["delete", "replace", "touch", "truncate", "no record",
                                    "bad record"])
def test_damaged_output_or_record_makes_its_task_due(done: Project, damage: str) -> None:
    output = done.root / "out" / "main" / "a.jpg.udnie.jpg"
    record = records.record_path(output)
    assert record.is_file()
    if damage == "delete":
        output.unlink()
    elif damage == "replace":
        gradient_photo(48, 36, seed=5).save(output)
    elif damage == "touch":
        os.utime(output)
    elif damage == "truncate":
        with open(output, "r+b") as fh:
            fh.truncate(100)
    elif damage == "no record":
        record.unlink()
    else:
        record.write_text('{"key": "x"')
    assert _statuses(done.plan()) == {"main:a.jpg": "due", "main:b.png": "skipped",
                                      "other:c.png": "skipped"}
    report = done.run()
    assert report.count("done") == 1 and report.exit_code == 0
    assert set(_statuses(done.plan()).values()) == {"skipped"}


def test_corrupt_cache_entry_is_logged_and_rebuilt(done: Project,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    entries = sorted((done.cache / "gram").rglob("*.safetensors"))
    assert entries
    for entry in entries:  # garble every one: whichever the task needs is corrupt
        data = bytearray(entry.read_bytes())
        data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
        entry.write_bytes(bytes(data))
    (done.root / "out" / "other" / "c.png.udnie.jpg").unlink()
    with caplog.at_level(logging.WARNING):
        report = done.run()
    assert report.count("done") == 1 and report.exit_code == 0
    assert report.targets_computed >= 1 and report.targets_cached == 0
    assert any("corrupt cache entry" in r.getMessage() for r in caplog.records), caplog.text
    # Rebuilt: the next run that needs it reads it from the cache.
    (done.root / "out" / "other" / "c.png.udnie.jpg").unlink()
    report = done.run()
    assert (report.count("done"), report.targets_computed, report.targets_cached) == (1, 0, 1)


def test_reports_of_a_reused_executor_count_their_own_run_only(done: Project) -> None:
    # A watcher keeps one executor for days: each run's report says what that run did.
    from pipeline.executors.local import LocalExecutor
    from pipeline.run.runner import run

    text = _manifest_text()
    executor = LocalExecutor(ArtifactCache(done.cache))
    try:
        done.manifest.write_text(text.replace("[udnie]", "[great-wave]", 1))
        first = run(done.plan(), executor)  # a new style for main: its targets are computed
        assert first.count("done") == 2 and first.targets_computed >= 1, first.as_dict()
        assert first.targets_cached == 0
        done.manifest.write_text(text)
        (done.root / "out" / "other" / "c.png.udnie.jpg").unlink()
        second = run(done.plan(), executor)  # udnie's targets are in the cache
        assert second.count("done") == 1, second.as_dict()
        assert (second.targets_computed, second.targets_cached) == (0, 1)
        # The executor's own counts are running totals over both runs.
        assert executor.counts.computed == first.targets_computed
        assert executor.counts.cached == 1
    finally:
        executor.close()


def test_stale_temp_files_are_swept_at_the_start(done: Project) -> None:
    leftovers = [done.root / "out" / "main" / f"{TEMP_PREFIX}abc.jpg",
                 done.root / "out" / "main" / "sub" / f"{TEMP_PREFIX}def.jpg",
                 done.root / "out" / "main" / records.RECORD_DIR / f"{TEMP_PREFIX}ghi.json"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    keep = done.root / "out" / "main" / "notes.txt"
    keep.write_text("mine")
    report = done.run()  # nothing is due: sweeping does not depend on work to do
    assert report.count("skipped") == 3
    assert not [p for p in leftovers if p.exists()]
    assert keep.read_text() == "mine"
