"""``stylize run``: exit statuses, reports, plain output for cron, the lock, and kill -9.

Real runs with the real VGG weights at 48 px.  The tests that are about processes (the lock,
SIGKILL, output to a pipe) start ``stylize`` as a subprocess; the others use CliRunner.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.images import gradient_photo
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.store import records
from pipeline.store.fsutil import TEMP_PREFIX
from pipeline.store.locking import OUTPUT_LOCK_NAME, RunLock, output_lock_path

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("one_thread")]
runner = CliRunner()

DEFAULTS = "{size: 48, min_side: 24, steps: [4, 2], precision: fp32, device: cpu, seed: 3}"
ANSI = "\x1b["




def _project(root: Path, photos: dict[str, int | str], jobs: str | None = None,
             defaults: str = DEFAULTS) -> Path:
    """Photos by name (an int is the seed of a 64×48 picture, a str is the file's text)."""
    for name, what in photos.items():
        path = root / "photos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(what, str):
            path.write_text(what)
        else:
            gradient_photo(64, 48, seed=what).save(path, quality=95)
    (root / "photos").mkdir(parents=True, exist_ok=True)
    jobs = jobs or "  - {name: main, input: photos, styles: [udnie], output: out}\n"
    (root / "jobs.yaml").write_text(f"defaults: {defaults}\njobs:\n{jobs}")
    return root / "jobs.yaml"


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["run", *args])
    return result.exit_code, result.stdout, result.stderr


def _env() -> dict[str, str]:
    # STYLIZE_CACHE_DIR comes from conftest's isolated cache; one thread per process keeps
    # two concurrent runs from fighting over the two cores of a small CI machine.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "80"}


def _stylize(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _start(*args: str, cwd: Path, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=cwd,
                            env=_env(), text=True, **kwargs)  # type: ignore[call-overload]


def _summary(data: dict) -> tuple[int, int, int, int]:  # type: ignore[type-arg]
    s = data["summary"]
    return s["done"], s["skipped"], s["failed"], s["exit_code"]


def _mtimes(folder: Path) -> dict[str, int]:
    """Every file a run wrote (the run lock, rewritten by each run, left out)."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != OUTPUT_LOCK_NAME}


def _sha256(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob("*.jpg"))}


# -- exit statuses, reports, plain output ---------------------------------------------------


def test_plain_output_junk_input_exit_3_report_and_quiet(tmp_path: Path) -> None:
    _project(tmp_path, {"a.jpg": 1, "b.png": 2, "x.jpg": "this is a text file"})
    report_file = tmp_path / "logs" / "last.json"
    first = _stylize("run", "jobs.yaml", "--report", str(report_file), cwd=tmp_path)
    assert first.returncode == 3, first.stderr
    assert ANSI not in first.stdout + first.stderr and "Traceback" not in first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "3 to do, 0 already done"
    assert lines[-1].startswith("summary: 2 done, 0 skipped, 1 failed, 0 not run in ")
    assert lines[-1].endswith("style targets: 1 computed, 0 from the cache")
    per_photo = [line for line in lines if line.startswith(("done ", "failed "))]
    assert len(per_photo) == 3  # one line per photo, no progress bars
    assert any(line.startswith("done photos/a.jpg [udnie] -> out/a.jpg.udnie.jpg (")
               for line in per_photo)
    assert any(line.startswith("done photos/b.png [udnie] -> out/b.png.udnie.jpg (")
               for line in per_photo)
    assert "failed photos/x.jpg [udnie]: x.jpg: not an image" in first.stdout

    report = json.loads(report_file.read_text())
    assert _summary(report) == (2, 0, 1, 3)
    by_name = {Path(t["input"]).name: t for t in report["tasks"]}
    assert by_name["x.jpg"]["status"] == "failed"
    assert by_name["x.jpg"]["category"] == "not_an_image" and by_name["x.jpg"]["reason"]
    for name in ("a.jpg", "b.png"):
        assert by_name[name]["status"] == "done" and by_name[name]["category"] is None
        assert Path(by_name[name]["output"]).is_file()
    assert not (tmp_path / "out" / "x.jpg.udnie.jpg").exists()
    assert not list(report_file.parent.glob(f"{TEMP_PREFIX}*"))

    # Between runs: one style-target cache entry is garbled and one output deleted, so the
    # next run needs the entry, finds it corrupt, says so and rebuilds it.
    (entry,) = (Path(os.environ["STYLIZE_CACHE_DIR"]) / "gram").rglob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    (tmp_path / "out" / "b.png.udnie.jpg").unlink()

    quiet = _stylize("run", "jobs.yaml", "--quiet", "--json", cwd=tmp_path)
    assert quiet.returncode == 3, quiet.stderr
    data = json.loads(quiet.stdout)  # stdout holds the report and nothing else
    assert _summary(data) == (1, 1, 1, 3)
    assert data["summary"]["targets_computed"] == 1
    err = quiet.stderr.splitlines()
    assert ANSI not in quiet.stderr
    assert len(err) == 3, err  # the corrupt entry, the failure, the summary: nothing else
    assert err[0].startswith("WARNING: discarding corrupt cache entry ") and str(entry) in err[0]
    assert err[1].startswith("failed photos/x.jpg [udnie]: x.jpg: not an image")
    assert err[2].startswith("summary: 1 done, 1 skipped, 1 failed, 0 not run in ")
    assert entry.is_file()  # rebuilt


def test_rerun_reports_everything_skipped_and_dry_run_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _project(tmp_path, {"a.jpg": 1, "sub/b.jpg": 2},
             "  - {name: main, input: photos, recursive: true, styles: [udnie], output: out}\n")
    monkeypatch.chdir(tmp_path)
    cache = Path(os.environ["STYLIZE_CACHE_DIR"])

    code, stdout, stderr = _invoke("--dry-run")
    assert code == 0, stderr
    assert stdout.splitlines() == [
        "due\tmain\tphotos/a.jpg\tudnie\tout/a.jpg.udnie.jpg",
        "due\tmain\tphotos/sub/b.jpg\tudnie\tout/sub/b.jpg.udnie.jpg",
        "2 to do, 0 already done"]
    assert not (tmp_path / "out").exists() and not list(cache.iterdir())

    code, stdout, stderr = _invoke("--report", "first.json")
    assert code == 0, stderr + stdout
    assert _summary(json.loads(Path("first.json").read_text())) == (2, 0, 0, 0)
    assert ANSI not in stdout
    outputs = _mtimes(tmp_path / "out")
    assert {"a.jpg.udnie.jpg", "sub/b.jpg.udnie.jpg"} <= set(outputs)

    code, stdout, stderr = _invoke("--json", "--report", "second.json")
    assert code == 0, stderr
    data = json.loads(stdout)
    assert data == json.loads(Path("second.json").read_text())  # --report: the same JSON
    assert _summary(data) == (0, 2, 0, 0)
    assert data["summary"]["targets_computed"] == 0
    assert {t["status"] for t in data["tasks"]} == {"skipped"}
    assert "0 to do, 2 already done" in stderr  # with --json, people's lines go to stderr
    assert _mtimes(tmp_path / "out") == outputs  # nothing rewritten, not even a record

    code, stdout, stderr = _invoke("--quiet")
    assert code == 0 and stderr == ""
    assert len(stdout.splitlines()) == 1
    assert stdout.startswith("summary: 0 done, 2 skipped, 0 failed, 0 not run in ")

    code, stdout, _ = _invoke("--dry-run")
    assert code == 0 and stdout.splitlines()[-1] == "0 to do, 2 already done"
    assert stdout.splitlines()[0].startswith("skipped\tmain\tphotos/a.jpg\tudnie\t")
    assert _mtimes(tmp_path / "out") == outputs


def test_every_photo_failing_exits_4(tmp_path: Path) -> None:
    manifest = _project(tmp_path, {"x.jpg": "not a picture", "y.png": ""})
    code, stdout, stderr = _invoke(str(manifest), "--json")
    assert code == 4, stderr
    data = json.loads(stdout)
    assert _summary(data) == (0, 0, 2, 4)
    assert {t["category"] for t in data["tasks"]} <= {"not_an_image", "truncated", "unreadable"}
    assert all(t["reason"] for t in data["tasks"])
    assert not _mtimes(tmp_path / "out")  # no output, no record


def test_nothing_to_do_exits_0(tmp_path: Path) -> None:
    manifest = _project(tmp_path, {})
    code, stdout, stderr = _invoke(str(manifest), "--json")
    assert code == 0, stderr
    assert _summary(json.loads(stdout)) == (0, 0, 0, 0)


# -- the lock --------------------------------------------------------------------------------


def test_second_run_exits_75_and_a_killed_run_leaves_no_stale_lock(tmp_path: Path) -> None:
    """The lock belongs to the outputs: a run writing the same outputs waits its turn (75),
    whatever its cache folder; a run of an unrelated job goes ahead."""
    _project(tmp_path, {"a.jpg": 1}, textwrap.dedent("""\
          - {name: slow, input: photos, styles: [udnie], output: out/slow, steps: [10000]}
          - {name: quick, input: empty, styles: [udnie], output: out/quick}
    """))
    (tmp_path / "empty").mkdir()
    lock = output_lock_path(tmp_path / "out" / "slow")
    log = tmp_path / "first.log"
    with open(log, "w") as fh:
        first = _start("run", "jobs.yaml", "--job", "slow", cwd=tmp_path, stdout=fh,
                       stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:  # until the first run holds the lock
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the first run never took the lock"
            try:
                if json.loads(lock.read_text())["pid"] == first.pid:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)

        for extra in ([], ["--cache-dir", str(tmp_path / "another-cache")]):
            start = time.monotonic()
            second = _stylize("run", "jobs.yaml", *extra, cwd=tmp_path, timeout=60)
            assert second.returncode == 75, second.stderr
            assert time.monotonic() - start < 60
            assert second.stdout == ""
            (line,) = second.stderr.splitlines()  # one line, no traceback
            assert line.startswith("error: another stylize run is using jobs.yaml")
            assert f"held by pid {first.pid}" in line and line.endswith("try again later")
        unrelated = _stylize("run", "jobs.yaml", "--job", "quick", cwd=tmp_path, timeout=60)
        assert unrelated.returncode == 0, unrelated.stderr
        assert first.poll() is None  # the first one is not disturbed
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    assert json.loads(lock.read_text())["pid"] == first.pid  # the dead holder's note stays...
    with RunLock(lock):  # ...but the kernel dropped the lock itself
        pass
    assert lock.read_text() == ""  # released cleanly: an empty lock file means free


def test_sigterm_stops_between_two_steps_with_130_and_keeps_nothing_partial(
        tmp_path: Path) -> None:
    # What `systemctl stop` or a cron timeout does to a long batch.
    _project(tmp_path, {"a.jpg": 1, "b.jpg": 2},
             "  - {name: slow, input: photos, styles: [udnie], output: out, "
             "steps: [10000]}\n")
    run = _start("run", "jobs.yaml", "--report", "r.json", cwd=tmp_path,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert run.stdout is not None and run.stderr is not None
        first = run.stdout.readline()  # printed once the signal handlers are in place
        assert first == "2 to do, 0 already done\n", first + run.stderr.read()
        time.sleep(1.0)  # well into the first photo's steps
        run.send_signal(signal.SIGTERM)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 130, stderr
    assert stderr.splitlines()[-1] == ("stopped by SIGTERM; nothing partial was written, and "
                                       "the next run does the rest") and "Traceback" not in stderr
    assert stdout.splitlines()[-1].startswith("summary: 0 done, 0 skipped, 0 failed, 2 not run")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["exit_code"] == 130 and report["summary"]["not_run"] == 2
    assert {t["category"] for t in report["tasks"]} == {"cancelled"}
    assert not _mtimes(tmp_path / "out")  # nothing partial, no temp, no record


# -- kill -9 in the middle of a batch --------------------------------------------------------


KILL_DEFAULTS = "{size: 48, min_side: 24, steps: [6, 3], precision: fp32, device: cpu, seed: 5}"


def test_kill_9_mid_batch_then_rerun_finishes_it_byte_identical(tmp_path: Path) -> None:
    photos = {f"p{i}.jpg": i for i in range(1, 5)}
    victim = tmp_path / "victim"
    reference = tmp_path / "reference"
    _project(victim, photos, defaults=KILL_DEFAULTS)
    _project(reference, photos, defaults=KILL_DEFAULTS)

    # The uninterrupted run, alongside (another manifest: another lock).
    with open(tmp_path / "reference.log", "w") as fh:
        ref = _start("run", "jobs.yaml", cwd=reference, stdout=fh, stderr=subprocess.STDOUT)
    run = _start("run", "jobs.yaml", cwd=victim, stdout=subprocess.PIPE,
                 stderr=subprocess.STDOUT)
    try:
        seen = []
        assert run.stdout is not None
        for line in run.stdout:  # until the first photo is done: the second is under way
            seen.append(line)
            if line.startswith("done "):
                run.send_signal(signal.SIGKILL)
                break
        run.wait(timeout=30)
        run.stdout.close()
        assert run.returncode == -signal.SIGKILL, "".join(seen)

        out = victim / "out"
        finished = len(list((out / records.RECORD_DIR).glob("*.json")))
        assert 1 <= finished < 4
        # As if the kill had come in the middle of writing a file.
        (out / f"{TEMP_PREFIX}p2.jpg.udnie.jpg").write_bytes(b"\xff\xd8 half a jpeg")

        again = _stylize("run", "jobs.yaml", "--json", cwd=victim)
        assert again.returncode == 0, again.stderr
        # Only what was not finished is done again: at most the interrupted photo and those
        # never started.
        assert _summary(json.loads(again.stdout)) == (4 - finished, finished, 0, 0)
        assert not list(victim.rglob(f"{TEMP_PREFIX}*"))
        assert ref.wait(timeout=90) == 0, (tmp_path / "reference.log").read_text()
    finally:
        for proc in (run, ref):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    got, expected = _sha256(out), _sha256(reference / "out")
    assert sorted(got) == [f"p{i}.jpg.udnie.jpg" for i in range(1, 5)]
    assert got == expected


def test_executor_options_are_checked_before_any_work(tmp_path: Path) -> None:
    manifest = _project(tmp_path, {"a.jpg": 1})
    code, _, stderr = _invoke(str(manifest), "--executor", "nope")
    assert code == 2 and stderr.splitlines() == [
        "error: unknown executor 'nope'; known: local, ray"]
    code, _, stderr = _invoke(str(manifest), "--workers", "2")
    assert code == 2 and stderr.splitlines() == [
        "error: --workers only apply with --executor ray"]
    assert not list((tmp_path / "out").glob("*.jpg"))


def test_an_output_name_too_long_fails_that_photo_only(tmp_path: Path) -> None:
    """The photo's name fits, its output's (name + style + suffix) does not."""
    manifest = _project(tmp_path, {"x" * 245 + ".png": 1, "ok.png": 2})
    code, stdout, stderr = _invoke(str(manifest), "--json")
    assert code == 3, stderr
    rows = {Path(t["input"]).name: t for t in json.loads(stdout)["tasks"]}
    assert rows["ok.png"]["status"] == "done"
    long_row = rows["x" * 245 + ".png"]
    assert (long_row["status"], long_row["category"]) == ("failed", "unwritable")
    assert long_row["reason"].endswith("cannot be written (File name too long)")
    assert "Traceback" not in stderr
