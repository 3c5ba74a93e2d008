"""A due photo's walk through ``stylize run``: opened twice and hashed once.

Once to hash it while planning, once to read the bytes sent to the executor; its size
comes from those bytes, and the digest made while planning travels with the task.
Counted with spies on ``os.open``, ``builtins.open`` and ``hashlib.sha256`` in a real
in-process run of the command.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support.images import gradient_photo
from support.presets import FAST
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.store.hashing import clear_file_digest_memo

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("one_thread")]


class _Sha256Spy:
    """A sha256 that tells, when its digest is taken, whether it hashed ``photo``."""

    def __init__(self, real: Any, photo: bytes, seen: list[str], data: bytes = b"") -> None:
        self._real, self._photo, self._seen = real(data), photo, seen
        self._length, self._prefix = len(data), data[:64]

    def update(self, data: bytes) -> None:
        if not self._length:
            self._prefix = bytes(data[:64])
        self._length += len(data)
        self._real.update(data)

    def _check(self) -> None:
        if self._length == len(self._photo) and self._prefix == self._photo[:64]:
            self._seen.append("hash")

    def hexdigest(self) -> str:
        self._check()
        return str(self._real.hexdigest())

    def digest(self) -> bytes:
        self._check()
        return bytes(self._real.digest())


def test_a_due_photo_is_opened_twice_and_hashed_once(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = photos / "cat.png"
    gradient_photo(96, 64).save(photo)
    defaults = ", ".join(f"{k}: {v}" for k, v in FAST.items())
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(f"""
        defaults: {{{defaults.replace("'", "")}}}
        jobs:
          - {{name: main, input: photos, styles: [udnie], output: out}}
    """))
    clear_file_digest_memo()
    content = photo.read_bytes()
    events: list[str] = []
    real_os_open, real_open, real_sha256 = os.open, builtins.open, hashlib.sha256
    target = os.path.realpath(photo)

    def is_photo(path: Any, dir_fd: int | None = None) -> bool:
        if isinstance(path, int):
            return False
        name = os.fsdecode(path)
        if dir_fd is not None and not os.path.isabs(name):
            name = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), name)
        return os.path.realpath(name) == target

    def spy_os_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None
                    ) -> int:
        if is_photo(path, dir_fd):
            events.append("open")
        return real_os_open(path, flags, mode, dir_fd=dir_fd)

    def spy_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if is_photo(file):
            events.append("open")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy_os_open)
    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(hashlib, "sha256", lambda data=b"": _Sha256Spy(real_sha256, content,
                                                                        events, data))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "jobs.yaml", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out").is_dir() and any((tmp_path / "out").iterdir())
    assert events.count("open") <= 2, events
    assert events.count("hash") == 1, events
