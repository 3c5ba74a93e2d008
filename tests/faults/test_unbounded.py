"""Inputs that never end: a manifest or a painting that is a device, a FIFO or a bomb.

Each case runs the real ``stylize run`` as a child with a bound on its time and on its
memory (see ``faults.measure``): it must be refused with status 2 and one line, no
traceback, in seconds and in the memory of a plain start.  Before these were bounded,
``/dev/zero`` as the manifest grew to 24 GB, a FIFO blocked forever, a 560-byte alias bomb
took 53 s and 6.4 GB, and a painting that never ends spun while holding the run lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from faults import inputs
from faults.helpers import spawn, write_manifest
from faults.measure import Measured, run_measured

pytestmark = pytest.mark.timeout(120)

#: Generous for a loaded 2-core CI runner; each refusal takes well under two seconds alone.
SECONDS = 10
#: A plain ``stylize run`` that imports torch and stops peaks near 300 MB.
MEGABYTES = 400


def _refused(result: Measured, *needles: str, lines: int = 1) -> list[str]:
    """Status 2, at most ``lines`` lines on stderr holding every needle, within the bounds."""
    assert result.killed is None, result.describe()
    assert result.code == 2, result.describe()
    assert result.seconds < SECONDS, result.describe()
    assert result.peak_mb < MEGABYTES, result.describe()
    text = result.err
    assert "Traceback" not in text, text
    got = text.splitlines()
    assert 1 <= len(got) <= lines, text
    for needle in needles:
        assert needle in text, text
    return got


def _project(tmp_path: Path, styles: list[str]) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    inputs.scene(40, 30, seed=1).save(photos / "p.png")
    return write_manifest(tmp_path / "jobs.yaml", [
        {"name": "a", "input": "photos", "styles": styles, "output": "out"}])


# -- the manifest -------------------------------------------------------------------------


def test_dev_zero_as_the_manifest_is_refused_without_reading_it(tmp_path: Path) -> None:
    result = run_measured("run", "/dev/zero", cwd=tmp_path, timeout=SECONDS, max_mb=MEGABYTES)
    _refused(result, "/dev/zero", "not a regular file")


def test_fifo_as_the_manifest_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "jobs.yaml"
    os.mkfifo(fifo)  # nobody ever writes to it: opening it to read would wait forever
    result = run_measured("run", fifo, cwd=tmp_path, timeout=SECONDS, max_mb=MEGABYTES)
    _refused(result, "jobs.yaml", "not a regular file")


def test_folder_as_the_manifest_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").mkdir()
    result = run_measured("run", tmp_path / "jobs.yaml", cwd=tmp_path, timeout=SECONDS,
                          max_mb=MEGABYTES)
    _refused(result, "is a folder")


def test_yaml_alias_bomb_is_refused_in_a_second(tmp_path: Path) -> None:
    # Nine levels of nine aliases: 9**9 (387 million) nodes from about 560 bytes.
    rows = ["x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        rows.append(f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]")
    rows.append("jobs: *x8")
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text("\n".join(rows) + "\n")
    assert len(manifest.read_bytes()) < 600
    result = run_measured("run", manifest, cwd=tmp_path, timeout=SECONDS, max_mb=MEGABYTES)
    _refused(result, "jobs.yaml:", "aliases")


def test_fifty_megabytes_of_keys_are_refused_by_size(tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.yaml"
    with manifest.open("w") as fh:
        fh.write("defaults:\n")
        line = 0
        while fh.tell() < 50 << 20:
            fh.write("".join(f"  k{line + i}: {line + i}\n" for i in range(10_000)))
            line += 10_000
    result = run_measured("run", manifest, cwd=tmp_path, timeout=SECONDS, max_mb=MEGABYTES)
    _refused(result, "too large", "1 MiB")


# -- a painting ---------------------------------------------------------------------------


def test_dev_zero_as_a_style_image_is_refused_before_the_run(tmp_path: Path) -> None:
    manifest = _project(tmp_path, ["/dev/zero"])
    result = run_measured("run", manifest, cwd=tmp_path, timeout=SECONDS, max_mb=MEGABYTES)
    _refused(result, "jobs[0].styles[0]", "not a regular file", lines=2)
    assert not (tmp_path / "out").exists()


def test_fifo_as_a_style_image_is_refused_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "paintings").mkdir()
    os.mkfifo(tmp_path / "paintings" / "pipe.jpg")
    manifest = _project(tmp_path, ["paintings/pipe.jpg"])
    result = run_measured("run", manifest, cwd=tmp_path, timeout=SECONDS, max_mb=MEGABYTES)
    _refused(result, "jobs[0].styles[0]", "pipe.jpg", "not a regular file", lines=2)
    assert not (tmp_path / "out").exists()


def test_fifo_as_a_preset_image_is_refused(tmp_path: Path) -> None:
    preset = tmp_path / "styles" / "piped"
    preset.mkdir(parents=True)
    os.mkfifo(preset / "paint.png")
    (preset / "preset.yaml").write_text("images: [paint.png]\n")
    manifest = _project(tmp_path, ["piped"])
    result = run_measured("run", manifest, cwd=tmp_path, timeout=SECONDS, max_mb=MEGABYTES)
    # The preset is reported as broken, and the job that names it is told why.
    _refused(result, "jobs[0].styles[0]", "style 'piped' cannot be used", "not a regular file",
             lines=2)


def test_one_sigterm_ends_a_run_whose_painting_never_ends(tmp_path: Path) -> None:
    """A painting that streams forever: one SIGTERM, sent while it would have been read, ends it."""
    (tmp_path / "paintings").mkdir()
    fifo = tmp_path / "paintings" / "stream.png"
    os.mkfifo(fifo)
    manifest = _project(tmp_path, ["paintings/stream.png"])
    # A writer that never stops, so a reader that reads to the end never gets there.
    writer = subprocess.Popen(["sh", "-c", f"exec cat /dev/zero > '{fifo}'"],
                              stderr=subprocess.DEVNULL)
    proc = spawn("run", manifest, cwd=tmp_path)
    try:
        start = time.monotonic()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # once: the first must be enough
        try:
            _, err = proc.communicate(timeout=SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail("one SIGTERM did not end the run")
        assert time.monotonic() - start < SECONDS + 3
        text = err.decode()
        assert "Traceback" not in text, text
        assert proc.returncode == 2, text
        assert "not a regular file" in text, text
    finally:
        for p in (proc, writer):
            if p.poll() is None:
                p.kill()
                p.wait()
