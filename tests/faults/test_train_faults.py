"""Training survives what runs survive (issue 21): real `stylize train` processes.

A second trainer of the same network exits 75 while the first holds the lock; SIGTERM
checkpoints and exits 130; kill -9 loses nothing but the steps after the last
checkpoint, and the same command resumes from it; a disk that really fills up (a small
tmpfs, root only) stops it with 74 and a whole checkpoint.  Each trainer is a child process
(one thread, a network 4 channels wide, photos at the area of a 32 px square) asked for
far more steps than it will live to take, and checkpointing after every step.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.images import gradient_photo

from faults.helpers import child_env, make_styles, run_child, small_tmpfs, spawn
from pipeline.config.styles import Registry
from pipeline.store.fsutil import TEMP_PREFIX
from pipeline.training.job import checkpoint_step
from pipeline.training.networks import cache_paths, network_key

pytestmark = pytest.mark.timeout(120)

TRAIN = {"train_size": 32, "network_width": 4, "train_batch": 1, "train_steps": 3}
FOREVER = "100000"  # steps: the child is stopped long before


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """Photos, the environment of a child (styles, cache) and the checkpoint's path."""
    styles = make_styles(tmp_path / "styles", **TRAIN)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        gradient_photo(64, 48, seed=i).save(photos / f"p{i}.png")
    cache = tmp_path / "cache"
    env = child_env(STYLIZE_STYLES_PATH=str(styles), STYLIZE_CACHE_DIR=str(cache))
    preset = Registry.discover([styles]).resolve("tiny")
    return photos, env, cache_paths(cache, network_key(preset))[1]


def _wait_for_step(proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """The first progress line a child prints (stdout is not a terminal: plain lines)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            for line in seen.decode().splitlines():
                if line.startswith("step "):
                    return line
    proc.kill()
    _, err = proc.communicate()
    pytest.fail(f"no training step within {timeout} s: {seen!r} {err!r}")


def _train(photos: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return spawn("train", "tiny", "--on", photos, "--checkpoint-every", "0", *args, env=env)


def test_a_second_trainer_exits_75_and_sigterm_checkpoints_then_exits_130(
        setup: tuple[Path, dict[str, str], Path]) -> None:
    photos, env, checkpoint = setup
    first = _train(photos, env, "--steps", FOREVER)
    try:
        _wait_for_step(first)
        second = run_child("train", "tiny", "--on", photos, env=env)
        assert second.code == 75, second.err
        lines = second.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            "error: another stylize run is using the network of style 'tiny' (lock ")
        assert f"held by pid {first.pid}" in lines[0]
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 130, err
    last = err.decode().strip().splitlines()[-1]
    step = checkpoint_step(checkpoint)
    assert step is not None and step >= 1
    # The checkpoint is of the very step it stopped at: nothing was lost.
    assert last == (f"stopped by SIGTERM: training stopped on request at step {step}; the "
                    "last checkpoint is kept, and the same command goes on from it")


def test_kill_9_then_the_same_command_resumes_from_the_checkpoint(
        setup: tuple[Path, dict[str, str], Path]) -> None:
    photos, env, checkpoint = setup
    child = _train(photos, env, "--steps", FOREVER)
    try:
        _wait_for_step(child)
        deadline = time.monotonic() + 60
        while (checkpoint_step(checkpoint) or 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    step = checkpoint_step(checkpoint)
    assert step is not None and step >= 2

    again = run_child("train", "tiny", "--on", photos, "--steps", str(step + 2), "--json",
                      env=env)
    assert again.code == 0, again.err
    report = json.loads(again.stdout)
    assert report["resumed_from"] == step and report["steps"] == step + 2
    assert report["trained"] and len(report["digest"]) == 64
    assert f"resuming from step {step}" in again.err.splitlines()[0]
    # A write the kill cut short left a temp file at most; the next trainer swept it.
    assert not list(checkpoint.parent.glob(f"{TEMP_PREFIX}*"))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (root only): room for the style targets and a few checkpoints."""
    with small_tmpfs(tmp_path, "4m") as folder:
        yield folder


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the brim."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return filler
    finally:
        os.close(fd)


def test_a_really_full_disk_exits_74_with_the_checkpoint_intact(
        setup: tuple[Path, dict[str, str], Path], small_disk: Path) -> None:
    photos, env, _ = setup
    env = {**env, "STYLIZE_CACHE_DIR": str(small_disk)}
    preset = Registry.discover([Path(env["STYLIZE_STYLES_PATH"])]).resolve("tiny")
    checkpoint = cache_paths(small_disk, network_key(preset))[1]
    child = _train(photos, env, "--steps", FOREVER)
    try:
        _wait_for_step(child)
        while checkpoint_step(checkpoint) is None:
            time.sleep(0.05)
        filler = _fill(small_disk)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 74, err
    assert err.decode().strip().splitlines()[-1] == (
        f"error: disk full while writing {checkpoint} (free some space and run again)")
    step = checkpoint_step(checkpoint)
    assert step is not None and step >= 1
    assert not list(checkpoint.parent.glob(f"{TEMP_PREFIX}*"))

    filler.unlink()  # space is freed: the same command goes on, the checkpoint is whole
    again = run_child("train", "tiny", "--on", photos, "--steps", str(step + 1), "--json",
                      env=env)
    assert again.code == 0, again.err
    assert json.loads(again.stdout)["resumed_from"] == step
