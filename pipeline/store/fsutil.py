"""Durable, atomic file writes and the sweeping of their leftovers.

Every file the tool produces is first written under a temporary name in the
destination folder, flushed to disk, then renamed over the final name with
``os.replace`` (atomic on POSIX within one file system).  A crash therefore
leaves either the old file, the new file, or a temporary file that the next run
sweeps away; never a half-written file under a final name.

The temporary file is created private (``mkstemp`` makes it 0600), then given the
mode any new file of the process would get (``0o666 & ~umask``: 0644 under the
usual umask 022, 0640 under 027) before the rename, so an output is readable by
whoever the user's umask says, from the moment it appears under its name.

Nothing is written through a link the tool did not expect: the tool's own folders
(``.stylize``) are opened without following one (:func:`open_private_dir`), and a path a
person named (``--report``) is replaced only if it is a regular file (:func:`write_named`).
Reading is :mod:`pipeline.store.fsread`'s.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.config.naming import TEMP_PREFIX
from pipeline.errors import DiskFullError, OutputNotWritableError, UsageError

__all__ = ["TEMP_PREFIX", "atomic_path", "atomic_write_bytes", "check_named", "current_umask",
           "fsync_dir", "new_file_mode", "open_private_dir", "set_mtime", "sweep_temp_files",
           "translate_os_error", "write_named"]

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows.

    ``os.umask`` can only be read by setting it, and the umask is process-wide: a
    file another thread creates between setting and restoring it would get the
    wrong mode.  Linux shows the umask in ``/proc/self/status`` (since 4.7), which
    reads it without touching it; elsewhere the swap happens under a lock, which at
    least keeps this module's own writers from racing each other.
    """
    with (contextlib.suppress(OSError, ValueError, IndexError),
          open("/proc/self/status", encoding="ascii", errors="replace") as fh):
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _umask_lock:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permission bits an ordinary new file gets under the current umask."""
    return 0o666 & ~current_umask()


def _utime(path: Path, mtime_ns: int) -> None:
    os.utime(path, ns=(os.stat(path).st_atime_ns, mtime_ns))


def set_mtime(path: Path, mtime_ns: int) -> None:
    """Give ``path`` the modification time ``mtime_ns`` (e.g. its photo's), keeping its
    access time."""
    try:
        _utime(path, mtime_ns)
    except OSError as exc:
        err = translate_os_error(exc, Path(path))
        if err is exc:
            raise
        raise err from exc


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
def atomic_path(final: Path, *, mtime_ns: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success it replaces ``final``.

    The caller writes the whole file to the yielded path (any writer that takes
    a path).  If the body raises, the temporary file is removed and ``final``
    is untouched.  The file gets the umask's mode (see the module docstring) and,
    with ``mtime_ns``, that modification time, both before it takes its name.
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
    tmp = Path(tmp_name)
    try:
        # Held until the file has its final name: a sweeper in another process (a watcher
        # starting up, another run) sees a live write and leaves the file alone.  The
        # kernel drops the lock when this process dies, so a killed writer's file is free.
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, new_file_mode())
        yield tmp
        os.fsync(fd)  # the same file, whichever descriptor wrote it
        if mtime_ns is not None:
            _utime(tmp, mtime_ns)
        os.replace(tmp, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise translate_os_error(exc, final) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        os.close(fd)
    fsync_dir(folder)


def atomic_write_bytes(final: Path, data: bytes, *, mtime_ns: int | None = None,
                       private_dir: bool = False) -> None:
    """Write ``data`` to ``final`` atomically and durably (see :func:`atomic_path`).

    With ``private_dir``, ``final``'s folder is one of the tool's own (``.stylize``):
    it is made if missing, refused if it is a link (:func:`open_private_dir`), and the
    file is written and renamed relative to that folder's descriptor, so no link
    swapped in at any moment can send the bytes anywhere else.
    """
    if not private_dir:
        with atomic_path(final, mtime_ns=mtime_ns) as tmp:
            tmp.write_bytes(data)
        return
    final = Path(final)
    dir_fd = open_private_dir(final.parent)
    try:
        _write_in(dir_fd, final, data, mtime_ns)
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_in(dir_fd: int, final: Path, data: bytes, mtime_ns: int | None) -> None:
    """``atomic_path``'s steps, every name taken relative to ``dir_fd``, no link followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        tmp = f"{TEMP_PREFIX}{secrets.token_hex(6)}{final.suffix}"
        try:
            fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise translate_os_error(exc, final) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until renamed: see atomic_path
        os.fchmod(fd, new_file_mode())
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        if mtime_ns is not None:
            os.utime(fd, ns=(os.fstat(fd).st_atime_ns, mtime_ns))
        os.replace(tmp, final.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        if isinstance(exc, OSError):
            raise translate_os_error(exc, final) from exc
        raise
    finally:
        os.close(fd)


def check_named(path: Path, *, what: str = "the report") -> os.stat_result | None:
    """What is at the path a person named for ``what`` (followed through links), if allowed.

    ``None`` where nothing is yet.  A folder, a socket or a block device is refused with
    one line (:class:`~pipeline.errors.UsageError`, exit 2): checked before a run, so
    that a mistyped ``--report`` costs nothing, and again when it is written.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"{path}: cannot write {what} there ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path}: is a folder; {what} needs a file name (such as "
                         f"{Path(path) / 'report.json'})")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)
            or stat.S_ISCHR(st.st_mode)):
        raise UsageError(f"{path}: is not a file, a pipe or a character device; "
                         f"{what} is not written there")
    return st


def write_named(path: Path, data: bytes, *, what: str = "the report") -> None:
    """Write ``data`` where a person asked for it (``--report FILE``).

    Only a regular file (or nothing) is replaced, atomically; through a link, the file it
    points to is.  A FIFO or a character device (``/dev/stdout``, ``/dev/null``, a link to
    ``/proc/self/fd/1``) is written to as a stream, as the shell's ``>`` would: replacing
    it would take the device away from everyone, or leave the pipe's reader with nothing.
    A FIFO that nobody reads is refused rather than waited on.
    """
    st = check_named(path, what=what)
    if st is None or stat.S_ISREG(st.st_mode):
        atomic_write_bytes(Path(os.path.realpath(path)) if st is not None else path, data)
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise UsageError(f"{path}: nobody is reading this pipe; {what} was not "
                             "written") from None
        raise _not_written(exc, path, what) from exc
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for a file since the stat
            os.close(fd)
            fd = -1
            atomic_write_bytes(Path(os.path.realpath(path)), data)
            return
        # Opened without waiting (a FIFO with no reader, a device waiting for a line);
        # written with waiting, as any writer to a pipe does while its reader reads.
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise _not_written(exc, path, what) from exc
    finally:
        if fd >= 0:
            os.close(fd)


def _not_written(exc: OSError, path: Path, what: str) -> Exception:
    err = translate_os_error(exc, Path(path))
    if err is exc:
        return OutputNotWritableError(f"cannot write {what} to {path}: "
                                      f"{exc.strerror or exc}")
    return err


def open_private_dir(folder: Path) -> int:
    """A descriptor of the tool's own folder ``folder`` (made if missing), never of a link.

    Records and the run lock live in ``<output>/.stylize``; were that a link, they would be
    written wherever it points.  So the folder is opened with ``O_NOFOLLOW`` and whatever
    is written in it is named relative to the descriptor.  A link or a file in its place
    is refused with one line (:class:`~pipeline.errors.OutputNotWritableError`).
    """
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)  # the output folder: links allowed
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.lexists(folder):
            what = "a symbolic link" if os.path.islink(folder) else "not a folder"
            raise OutputNotWritableError(
                f"cannot write in {folder}: it is {what}; stylize keeps its records and "
                "locks only in a real folder there (remove it and run again)") from None
        err = translate_os_error(exc, folder)
        if err is exc:
            err = OutputNotWritableError(f"cannot write in {folder}: "
                                         f"{exc.strerror or exc}")
        raise err from exc


def sweep_temp_files(folder: Path, *, older_than_s: float = 0.0, recursive: bool = False) -> int:
    """Delete leftover temporary files of earlier, interrupted writes; return how many.

    A temporary file that a live process is still writing is never touched: its writer
    holds a lock on it (see :func:`atomic_path`).  ``older_than_s`` spares young files
    too, for writers of earlier versions that took no lock.
    """
    folder = Path(folder)
    pattern = f"**/{TEMP_PREFIX}*" if recursive else f"{TEMP_PREFIX}*"
    now = time.time()
    removed = 0
    # Best effort, never a reason to stop: a folder that cannot be looked at (gone, no
    # permission, a path longer than the system takes) has nothing this sweep could
    # remove, and the photos it holds fail alone when they are written.
    try:
        if not folder.is_dir():
            return 0
        for path in folder.glob(pattern):
            try:
                if now - path.lstat().st_mtime >= older_than_s and _abandoned(path):
                    path.unlink()
                    removed += 1
            except OSError:
                continue
    except OSError:
        pass
    return removed


def _abandoned(path: Path) -> bool:
    """A regular temp file whose writer is gone (nobody holds its lock)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a live writer
    finally:
        os.close(fd)
    return True


def check_writable(folder: Path) -> None:
    """Fail before any work if results could not be written to ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Named like a temp file, so that a run killed right here leaves nothing behind.
        probe_file = folder / f"{TEMP_PREFIX}write-test-{os.getpid()}"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as exc:
        if isinstance(translate_os_error(exc, folder), DiskFullError):
            raise DiskFullError(f"disk full: cannot write in the output folder {folder} "
                                "(free some space and run again); nothing was processed"
                                ) from exc
        # Any other failure (no permission, read-only, a file where a folder should
        # be) means the same thing: results cannot go there.
        why = ("a file is in the way of a folder on its path"
               if exc.errno in (errno.EEXIST, errno.ENOTDIR) else exc.strerror or str(exc))
        raise OutputNotWritableError(f"output folder {folder} is not writable ({why}); "
                                     "nothing was processed") from exc
