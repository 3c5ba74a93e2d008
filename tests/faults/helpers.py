"""Running the real command line against built inputs: in this process or as a child.

In-process runs (Typer's ``CliRunner``) are fast and let a test patch a fault in;
child processes are for what only a real process can show: ``kill -9``, another
user's permissions, a real full disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.presets import write_preset
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.store.fsutil import TEMP_PREFIX

REPO = Path(__file__).resolve().parents[2]
STYLE_IMAGE = REPO / "styles" / "starry-night" / "starry_night.jpg"

#: The test preset: tiny output, one scale of 3 steps, exact float32 arithmetic.
TINY = {"size": 48, "steps": [3, 2], "precision": "fp32", "device": "cpu"}

#: One thread per child: two busy runs on a 2-core runner otherwise spin against each
#: other (OpenMP busy-waits) and a 48-pixel photo takes seconds instead of a fifth of one.
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def make_styles(folder: Path, **settings: Any) -> Path:
    """A styles folder holding the preset ``tiny`` (Starry Night at 96x60)."""
    write_preset(folder, "tiny", {**TINY, **settings}, description="fault-suite preset",
                 painting=STYLE_IMAGE, painting_name="paint.png")
    return folder


def write_manifest(path: Path, jobs: list[dict[str, Any]], *,
                   styles_path: Sequence[str] = ("styles",),
                   defaults: dict[str, Any] | None = None) -> Path:
    doc: dict[str, Any] = {"styles_path": list(styles_path), "jobs": jobs}
    if defaults:
        doc["defaults"] = defaults
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


@dataclass
class Outcome:
    code: int
    stdout: bytes
    stderr: bytes

    @property
    def err(self) -> str:
        """stderr, which must be valid UTF-8 whatever the file names."""
        return self.stderr.decode("utf-8")

    @property
    def report(self) -> dict[str, Any]:
        """The ``--json`` report from stdout (strict UTF-8, strict JSON)."""
        return json.loads(self.stdout.decode("utf-8"))

    def tasks(self) -> dict[str, dict[str, Any]]:
        """Report rows by input file name."""
        return {os.path.basename(t["input"]): t for t in self.report["tasks"]}


def cli(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> Outcome:
    """``stylize ARGS`` in this process."""
    result = CliRunner().invoke(app, [os.fspath(a) for a in args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback would have reached the user
    return Outcome(result.exit_code, result.stdout_bytes, result.stderr_bytes)


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("STYLIZE_STYLES_PATH", None)
    env.update(CHILD_ENV)
    env.update(extra)
    return env


def stylize_cmd(*args: str | os.PathLike[str]) -> list[str | bytes]:
    # As the installed `stylize` script starts: through the launcher (pipeline.launch).
    return [sys.executable, "-m", "pipeline", *(os.fsencode(a) for a in args)]


def spawn(*args: str | os.PathLike[str], env: dict[str, str] | None = None,
          user: str | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """``stylize ARGS`` as a child process (optionally as another user)."""
    prefix: list[str] = []
    if user is not None:
        prefix = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"]
    return subprocess.Popen([*prefix, *stylize_cmd(*args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env or child_env(), cwd=cwd)


def run_child(*args: str | os.PathLike[str], timeout: float = 120,
              env: dict[str, str] | None = None, user: str | None = None,
              cwd: Path | None = None) -> Outcome:
    proc = spawn(*args, env=env, user=user, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        raise
    return Outcome(proc.returncode, out, err)


def can_run_as(user: str) -> bool:
    """Root, setpriv and a user who can start this very interpreter and import the tool."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    try:
        probe = subprocess.run(
            ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups",
             sys.executable, "-c", "import pipeline.cli"],
            capture_output=True, timeout=60, cwd="/", env=child_env())
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


@contextmanager
def shared_folder() -> Iterator[Path]:
    """A folder other users can reach (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="stylize-faults-"))
    try:
        folder.chmod(0o755)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(folder: Path, pattern: str = "*") -> dict[str, str]:
    """sha256 of every regular file under ``folder`` (records and temp files excluded)."""
    return {os.fsdecode(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob(pattern))
            if p.is_file() and not p.is_symlink() and ".stylize" not in p.parts
            and not p.name.startswith(TEMP_PREFIX)}


def temp_files(folder: Path) -> list[Path]:
    """Leftovers of interrupted writes anywhere under ``folder``."""
    return sorted(p for p in folder.rglob(f"{TEMP_PREFIX}*"))


@contextmanager
def small_tmpfs(tmp_path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. ``"4m"``) under ``tmp_path``, unmounted afterwards; the
    test is skipped where one cannot be mounted (mounting needs root)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    folder = tmp_path / "small-disk"
    folder.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                  str(folder)], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc})")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)
