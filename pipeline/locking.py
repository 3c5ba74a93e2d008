"""One writer per output folder (and per inbox) at a time, enforced by a kernel file lock.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on a small file.  The kernel drops it when the
holder's file is closed, which includes the holder being killed (even with SIGKILL), so there
is never a stale lock to clean up by hand.  The holder's PID and start time are written into
the file only so a person can see who holds it; nothing reads them to decide anything.

POSIX only (``fcntl``).  Note that ``flock`` locks belong to the open file description: a
child made with ``fork()`` (without ``exec``) shares it and keeps the lock alive after the
parent dies.  The descriptor is opened close-on-exec, so subprocesses started with ``exec``
do not inherit it.

This module does not import torch, so the CLI can take the lock and fail fast before paying
for the heavy imports.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from pipeline.errors import LockedError
from pipeline.fsutil import translate_os_error
from pipeline.naming import RECORD_DIR

__all__ = ["OUTPUT_LOCK_NAME", "RunLock", "output_lock_path", "output_locks"]

#: The lock file of an output folder, inside its record folder.
OUTPUT_LOCK_NAME = ".run.lock"


def output_lock_path(output: Path) -> Path:
    """The lock that a run holds on an output folder while it writes there.

    The lock belongs to the outputs, not to the manifest or the cache: two runs that
    would write the same results (one manifest with two --cache-dir, or two manifests
    sharing an output folder) exclude each other, and runs of unrelated jobs do not.
    """
    return Path(output) / RECORD_DIR / OUTPUT_LOCK_NAME


@contextlib.contextmanager
def output_locks(folders: Iterable[Path], what: str) -> Iterator[list[RunLock]]:
    """Hold the lock of every output folder (in a fixed order) for the ``with`` block."""
    with contextlib.ExitStack() as stack:
        locks = []
        for folder in sorted(set(folders)):
            lock = RunLock(output_lock_path(folder), what=f"{what} (output {folder})")
            stack.enter_context(lock)
            locks.append(lock)
        yield locks


class RunLock:
    """Exclusive, non-blocking lock held for the duration of a ``with`` block.

    ``what`` names the locked thing in the error message (typically the manifest path);
    it defaults to the lock file itself.  Raises :class:`~pipeline.errors.LockedError`
    at once if another process (or another ``RunLock`` in this one) holds the lock.
    """

    def __init__(self, path: Path, what: str | None = None) -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def __repr__(self) -> str:
        state = "held" if self.held else "free"
        return f"RunLock({str(self.path)!r}, {state})"

    @property
    def held(self) -> bool:
        """Whether this object currently holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise ``LockedError``; see the class docstring."""
        if self._fd is not None:
            raise RuntimeError(f"{self!r} is already held by this object")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_RDWR rather than O_TRUNC: truncating on open would wipe the holder's
            # information before we know whether we get the lock.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise translate_os_error(exc, self.path) from exc

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockedError(self._locked_message(holder)) from exc
            raise
        self._fd = fd
        self._write_holder(fd)

    def release(self) -> None:
        """Give the lock up; the file stays (deleting a locked file races with new lockers)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Empty the file while still holding the lock, so what it says stays true:
            # an empty lock file means nobody holds it.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            # Closing drops the lock as well, so even a failed unlock cannot leave it held.
            os.close(fd)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _locked_message(self, holder: dict[str, object] | None) -> str:
        subject = self.what if self.what is not None else str(self.path)
        by = ""
        if holder and "pid" in holder:
            by = f", held by pid {holder['pid']}"
            if holder.get("host"):
                by += f" on {holder['host']}"
            if holder.get("started"):
                by += f" since {holder['started']}"
        return f"another stylize run is using {subject} (lock {self.path}{by}); try again later"

    def _write_holder(self, fd: int) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if self.what is not None:
            info["what"] = self.what
        data = (json.dumps(info, sort_keys=True) + "\n").encode("utf-8")
        # Informational only: a full disk must not stop a run that does hold the lock.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)


def _read_holder(fd: int) -> dict[str, object] | None:
    """Best-effort read of the holder's note; ``None`` if absent, partial or unreadable."""
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None
