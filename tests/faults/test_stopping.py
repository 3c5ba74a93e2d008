"""What a closed output and a hang-up do to a run or a watcher (issue 11, defects 6 and 10).

A closed stdout (``stylize run | head -1``) or SIGHUP (the terminal closed) stops the work
as SIGTERM does: the current photo is abandoned between two steps, nothing partial is
written, the report is written, and the process ends (run: 130, watch: 0), releasing its
locks.  It never stays alive holding a lock and doing nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.store.locking import RunLock, output_lock_path

from .helpers import child_env, make_styles, stylize_cmd, temp_files, write_manifest
from .inputs import scene

pytestmark = pytest.mark.timeout(180)

SLOW = {"size": 96, "steps": [2000]}  # many seconds a photo: surely stopped mid-photo


def _project(tmp_path: Path, n: int, *, inbox: bool = False, **settings: object) -> Path:
    make_styles(tmp_path / "styles", **settings)
    (tmp_path / "photos").mkdir()
    for i in range(n):
        scene(64, 48, i).save(tmp_path / "photos" / f"p{i}.png")
    job: dict[str, object] = {"name": "a", "input": "photos", "styles": ["tiny"],
                              "output": "out"}
    if inbox:
        (tmp_path / "inbox").mkdir()
        job["inbox"] = "inbox"
    return write_manifest(tmp_path / "jobs.yaml", [job])


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b""
    while b"\n" not in buf:
        assert time.monotonic() < deadline, "no line on stdout"
        chunk = proc.stdout.read(4096)
        if chunk:
            buf += chunk
        else:
            time.sleep(0.05)
    return buf


def test_run_into_a_closed_pipe_stops_as_after_sigterm(tmp_path: Path) -> None:
    manifest = _project(tmp_path, 3, size=64, steps=[300])  # a few seconds a photo
    report = tmp_path / "report.json"
    proc = subprocess.Popen(stylize_cmd("run", manifest, "--report", report),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    _read_line(proc, 60)  # "3 to do, 0 already done": the run is under way
    assert proc.stdout is not None
    proc.stdout.close()  # what `| head -1` does once it has its line
    # The first photo's "done" line meets the closed pipe; the next photo is abandoned.
    code = proc.wait(timeout=60)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert code == 130, err
    assert "the output was closed" in err and "Traceback" not in err
    rows = json.loads(report.read_text())["tasks"]
    assert {r["status"] for r in rows} <= {"not_run", "done"}
    assert not temp_files(tmp_path / "out")
    with RunLock(output_lock_path(tmp_path / "out")):
        pass  # released


def test_run_gets_sighup_and_stops_with_a_report(tmp_path: Path) -> None:
    manifest = _project(tmp_path, 2, **SLOW)
    report = tmp_path / "report.json"
    proc = subprocess.Popen(stylize_cmd("run", manifest, "--report", report, "--verbose"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    _read_line(proc, 60)
    time.sleep(1.5)
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"stopped by SIGHUP" in err
    rows = json.loads(report.read_text())["tasks"]
    assert [r["status"] for r in rows] == ["not_run", "not_run"]
    assert not temp_files(tmp_path / "out")


def test_watch_into_a_closed_pipe_ends_and_releases_the_inbox(tmp_path: Path) -> None:
    manifest = _project(tmp_path, 0, inbox=True, size=48, steps=[3, 2])
    proc = subprocess.Popen(stylize_cmd("watch", manifest, "--settle", "0.3"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    _read_line(proc, 60)  # "watching ..."
    assert proc.stdout is not None
    proc.stdout.close()
    scene(64, 48, 7).save(tmp_path / "inbox" / "new.png")  # its "queued"/"done" lines fail
    code = proc.wait(timeout=90)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert code == 0, err
    assert "Traceback" not in err
    with RunLock(tmp_path / "inbox" / ".stylize-watch.lock"):
        pass  # released: no zombie holds it
