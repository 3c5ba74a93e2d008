"""Durable, atomic file writes and the sweeping of their leftovers.

Every file the tool produces is first written under a temporary name in the
destination folder, flushed to disk, then renamed over the final name with
``os.replace`` (atomic on POSIX within one file system).  A crash therefore
leaves either the old file, the new file, or a temporary file that the next run
sweeps away; never a half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import DiskFullError, OutputNotWritableError
from pipeline.naming import TEMP_PREFIX

__all__ = ["TEMP_PREFIX", "atomic_path", "atomic_write_bytes", "fsync_dir", "sweep_temp_files",
           "translate_os_error"]


def fsync_dir(folder: Path) -> None:
    # The rename is only durable once the directory entry is on disk too.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def translate_os_error(exc: OSError, path: Path) -> Exception:
    """Map the OS errors a writer can meet onto the tool's own errors."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"disk full while writing {path} (free some space and run again)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputNotWritableError(f"cannot write {path}: {exc.strerror}")
    return exc


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success it replaces ``final``.

    The caller writes the whole file to the yielded path (any writer that takes
    a path).  If the body raises, the temporary file is removed and ``final``
    is untouched.
    """
    final = Path(final)
    folder = final.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=final.suffix, dir=folder)
    except OSError as exc:
        err = translate_os_error(exc, final)
        if err is exc:
            why = ("a file is in the way of a folder on its path"
                   if exc.errno in (errno.EEXIST, errno.ENOTDIR) else exc.strerror or str(exc))
            err = OutputNotWritableError(f"cannot write {final}: {why}")
        raise err from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise translate_os_error(exc, final) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(folder)


def atomic_write_bytes(final: Path, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically and durably."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def sweep_temp_files(folder: Path, *, older_than_s: float = 0.0, recursive: bool = False) -> int:
    """Delete leftover temporary files of earlier, interrupted writes; return how many.

    ``older_than_s`` protects files another live process is writing right now
    (callers that hold the run lock can pass 0).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    pattern = f"**/{TEMP_PREFIX}*" if recursive else f"{TEMP_PREFIX}*"
    now = time.time()
    removed = 0
    for path in folder.glob(pattern):
        try:
            if path.is_file() and now - path.stat().st_mtime >= older_than_s:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed
