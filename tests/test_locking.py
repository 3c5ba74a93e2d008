"""Tests for pipeline.store.locking: one run per manifest, no stale locks."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.errors import LockedError
from pipeline.store.locking import RunLock, output_lock_path, output_locks

pytestmark = pytest.mark.timeout(30)

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Exit status of the helper that tries the lock; LockedError's own code (EX_TEMPFAIL).
EXIT_LOCKED = LockedError.exit_code

# Takes the lock, says so on stdout, then sleeps until killed.
HOLDER = """
import sys, time
from pathlib import Path
from pipeline.store.locking import RunLock
with RunLock(Path(sys.argv[1]), what="manifest.yaml"):
    print("locked", flush=True)
    time.sleep(120)
"""

# Tries the lock once: exit 0 if taken, EXIT_LOCKED with the message on stderr if not.
TRIER = """
import sys
from pathlib import Path
from pipeline.errors import LockedError
from pipeline.store.locking import RunLock
try:
    with RunLock(Path(sys.argv[1]), what="manifest.yaml"):
        pass
except LockedError as exc:
    print(exc.message, file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def _env() -> dict[str, str]:
    # Make the child import this checkout even without an editable install.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _try_in_child(lock: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", TRIER, str(lock)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A child process that holds the lock on ``tmp_path/locks/run.lock``."""
    lock = tmp_path / "locks" / "run.lock"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "locked":
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"holder did not take the lock: {line!r} {err}")
        yield proc, lock
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_other_process_is_refused(holder: tuple[subprocess.Popen[str], Path]) -> None:
    proc, lock = holder
    result = _try_in_child(lock)
    assert result.returncode == EXIT_LOCKED, result.stderr
    message = result.stderr.strip()
    assert "\n" not in message
    assert message.startswith("another stylize run is using manifest.yaml")
    assert str(lock) in message
    assert f"pid {proc.pid}" in message
    assert message.endswith("try again later")


def test_this_process_is_refused_while_child_holds(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, lock = holder
    with pytest.raises(LockedError) as info, RunLock(lock, what="m.yaml"):
        pass
    assert info.value.exit_code == 75
    assert "another stylize run is using m.yaml" in info.value.message
    # The holder's note is for people: it names the live holder.
    note = json.loads(lock.read_text())
    assert note["pid"] == proc.pid
    assert note["what"] == "manifest.yaml"


def test_sigkilled_holder_leaves_no_stale_lock(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, lock = holder
    assert _try_in_child(lock).returncode == EXIT_LOCKED
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert lock.exists()  # the file stays, but the kernel lock died with the process

    with RunLock(lock) as taken:
        assert taken.held
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert _try_in_child(lock).returncode == 0


def test_child_can_lock_after_release(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    with RunLock(lock):
        assert _try_in_child(lock).returncode == EXIT_LOCKED
    assert _try_in_child(lock).returncode == 0


def test_second_lock_in_same_process_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    with RunLock(lock), pytest.raises(LockedError), RunLock(lock):
        pass
    # And once released it can be taken again.
    with RunLock(lock) as again:
        assert again.held


def test_release_keeps_file_and_clears_note(tmp_path: Path) -> None:
    lock = tmp_path / "nested" / "dirs" / "run.lock"
    run_lock = RunLock(lock)
    with run_lock:
        assert lock.read_text().strip()
        mode = stat.S_IMODE(lock.stat().st_mode)
        assert mode & ~0o644 == 0  # never more open than rw-r--r--
    assert not run_lock.held
    assert lock.exists()
    assert lock.read_text() == ""


def test_lock_released_when_body_raises(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    with pytest.raises(ZeroDivisionError), RunLock(lock):
        1 / 0  # noqa: B018
    with RunLock(lock):
        pass


def test_reacquiring_a_held_object_is_an_error(tmp_path: Path) -> None:
    run_lock = RunLock(tmp_path / "run.lock")
    with run_lock, pytest.raises(RuntimeError):
        run_lock.acquire()


def test_different_locks_do_not_block_each_other(tmp_path: Path) -> None:
    with RunLock(tmp_path / "a.lock") as a, RunLock(tmp_path / "b.lock") as b:
        assert a.held and b.held
        with pytest.raises(LockedError):  # while the same lock does block
            RunLock(tmp_path / "a.lock").acquire()


# -- output locks ----------------------------------------------------------------------------


def test_the_lock_of_an_output_folder_lives_with_its_records(tmp_path: Path) -> None:
    path = output_lock_path(tmp_path / "out")
    assert path == tmp_path / "out" / ".stylize" / ".run.lock"
    with output_locks([tmp_path / "a", tmp_path / "b", tmp_path / "a"], "jobs.yaml") as held:
        assert [lock.path for lock in held] == [output_lock_path(tmp_path / "a"),
                                                output_lock_path(tmp_path / "b")]
        with pytest.raises(LockedError, match=r"using other.yaml \(output .*/b\)"), \
                output_locks([tmp_path / "b"], "other.yaml"):
            pass
    with output_locks([tmp_path / "b"], "again"):
        pass  # all released


# -- nested output folders of two manifests (issue 27) ------------------------------------

def _nested_manifests(tmp_path: Path) -> tuple[Path, Path]:
    """Manifest 1 writes out/ from a recursive input holding sub/x.png; manifest 2 writes
    out/sub/ from x.png: both make out/sub/x.png.tiny.png and its record."""
    from support.images import SHARED_STYLE, gradient_photo
    from support.presets import FAST, write_preset

    write_preset(tmp_path / "styles", "tiny", FAST, painting=SHARED_STYLE)
    (tmp_path / "one" / "sub").mkdir(parents=True)
    (tmp_path / "two").mkdir()
    gradient_photo(48, 32, seed=1).save(tmp_path / "one" / "sub" / "x.png")
    gradient_photo(48, 32, seed=2).save(tmp_path / "two" / "x.png")
    first, second = tmp_path / "one.yaml", tmp_path / "two.yaml"
    first.write_text("jobs:\n  - {name: a, input: one, recursive: true, styles: [tiny], "
                     "output: out, format: png}\n")
    second.write_text("jobs:\n  - {name: b, input: two, styles: [tiny], output: out/sub, "
                      "format: png}\n")
    return first, second


def _run(manifest: Path, styles: Path) -> tuple[int, str]:
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["run", str(manifest), "-q"],
                                env={"STYLIZE_STYLES_PATH": str(styles)})
    return result.exit_code, result.stderr


@pytest.mark.usefixtures("one_thread")
def test_a_run_inside_another_runs_output_folder_exits_75(tmp_path: Path) -> None:
    from pipeline.store.locking import output_locks

    first, second = _nested_manifests(tmp_path)
    styles = tmp_path / "styles"
    with output_locks([tmp_path / "out"], what=str(first)):  # manifest 1 is running
        code, err = _run(second, styles)
    assert code == 75, err
    assert f"another stylize run is writing into {tmp_path / 'out'}" in err
    assert not (tmp_path / "out" / "sub" / "x.png.tiny.png").exists()


@pytest.mark.usefixtures("one_thread")
def test_a_run_around_another_runs_output_folder_exits_75(tmp_path: Path) -> None:
    from pipeline.store.locking import output_locks

    first, second = _nested_manifests(tmp_path)
    styles = tmp_path / "styles"
    with output_locks([tmp_path / "out" / "sub"], what=str(second)):  # manifest 2 runs
        code, err = _run(first, styles)
    assert code == 75, err
    assert f"another stylize run is writing into {tmp_path / 'out' / 'sub'}" in err
    assert not (tmp_path / "out" / "sub" / "x.png.tiny.png").exists()
    # One after the other, both run (each its own photo's picture).
    assert _run(first, styles)[0] == 0 and _run(second, styles)[0] == 0
