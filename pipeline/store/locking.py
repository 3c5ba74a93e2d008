"""One writer per output folder (and per inbox) at a time, enforced by kernel file locks.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on a small file and, for the locks this module
hands out (:func:`output_locks`, :func:`inbox_lock`), on the folder that holds it.  The
kernel drops both when the holder's descriptors are closed, which includes the holder
being killed (even with SIGKILL), so there is never a stale lock to clean up by hand.

Why the folder too: a lock on a file holds only while the file keeps its name.  Once
someone deletes ``inbox/.stylize-watch.lock``, a second watcher creates a new file of
that name, locks it, and both process every photo.  A folder cannot be deleted from under
its files, so its lock holds whatever happens to the name.  Where the file system cannot
lock a folder (NFS emulates ``flock`` with locks that need a writable descriptor), the
file's lock is all there is, as before.

The lock file is never written through a link: it is opened with ``O_NOFOLLOW`` relative
to its folder's descriptor, and ``<output>/.stylize`` itself must be a real folder
(:func:`pipeline.store.fsutil.open_private_dir`).  The holder's PID and start time are written
into the file only so a person can see who holds it; the note is read back bounded and
parsed with its nesting bounded, and nothing reads it to decide anything.

POSIX only (``fcntl``).  Note that ``flock`` locks belong to the open file description: a
child made with ``fork()`` (without ``exec``) shares it and keeps the lock alive after the
parent dies.  The descriptors are opened close-on-exec, so subprocesses started with
``exec`` do not inherit them.

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
import stat
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from pipeline.config.naming import INBOX_LOCK_NAME, RECORD_DIR
from pipeline.errors import LockedError, OutputNotWritableError
from pipeline.store.fsutil import open_private_dir, translate_os_error
from pipeline.store.jsonio import loads

__all__ = ["OUTPUT_LOCK_NAME", "RunLock", "inbox_lock", "output_lock_path", "output_locks"]

#: The holder's note is a line of JSON; more than this under that name is not one.
_NOTE_BYTES = 4096
#: Errors of a file system that cannot ``flock`` a folder (NFS: EBADF on a read-only fd).
_CANNOT_LOCK_FOLDER = {errno.EBADF, errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP}

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
            lock = RunLock(output_lock_path(folder), what=f"{what} (output {folder})",
                           hold_folder=True, private_folder=True)
            stack.enter_context(lock)
            locks.append(lock)
        yield locks


def refuse_overlapping_runs(roots: Iterable[Path], folders: Iterable[Path], what: str) -> None:
    """Raise ``LockedError`` when another run writes into an output folder nested with ours.

    Called with our own output folders (``roots``) locked.  A run whose output folder holds
    ours (``out/`` around our ``out/sub/``), or lies inside the folders we write into
    (``out/sub/`` below our ``out/`` with a recursive input), writes the same files: each
    lock alone does not see the other.  Each such folder's lock is probed (a shared,
    non-blocking ``flock`` on its ``.stylize`` folder, released at once).  Both runs lock
    first and probe second, so of two that start together at least one sees the other;
    both may refuse, and neither writes.  Folders we hold ourselves are not probed.
    """
    ours = {Path(r).absolute() for r in roots}
    suspects: dict[Path, Path] = {}  # folder to probe -> the output folder of ours it meets
    for root in sorted(ours):
        for ancestor in root.parents:
            if ancestor not in ours:
                suspects.setdefault(ancestor, root)
    for folder in {Path(f).absolute() for f in folders} - ours:
        suspects.setdefault(folder, folder)
    for folder, ours_there in sorted(suspects.items()):
        holder = _held_by_another(folder / RECORD_DIR)
        if holder is not None:
            by = f", held by pid {holder['pid']}" if "pid" in holder else ""
            raise LockedError(f"another stylize run is writing into {folder}, which "
                              f"{'holds' if ours_there != folder else 'is'} an output folder "
                              f"of {what} ({ours_there}) (lock "
                              f"{folder / RECORD_DIR / OUTPUT_LOCK_NAME}{by}); try again "
                              "later")


def _held_by_another(records: Path) -> dict[str, object] | None:
    """The holder's note (``{}`` if unreadable) when a run holds ``records``' folder lock;
    None when it is free, missing, or not a real folder."""
    try:
        fd = os.open(records, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            try:
                note = os.open(OUTPUT_LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                               | os.O_CLOEXEC, dir_fd=fd)
            except OSError:
                return {}
            try:
                return _read_holder(note) or {}
            finally:
                os.close(note)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def inbox_lock(inbox: Path) -> RunLock:
    """The lock a watcher holds on its inbox: the inbox folder itself, and a note in it."""
    return RunLock(Path(inbox) / INBOX_LOCK_NAME, what=f"the inbox {inbox}", hold_folder=True)


class RunLock:
    """Exclusive, non-blocking lock held for the duration of a ``with`` block.

    ``what`` names the locked thing in the error message (typically the manifest path);
    it defaults to the lock file itself.  Raises :class:`~pipeline.errors.LockedError`
    at once if another process (or another ``RunLock`` in this one) holds the lock.
    ``hold_folder`` locks the lock file's folder as well (see the module docstring);
    ``private_folder`` makes that folder if missing and refuses it if it is a link.
    """

    def __init__(self, path: Path, what: str | None = None, *, hold_folder: bool = False,
                 private_folder: bool = False) -> None:
        self.path = Path(path)
        self.what = what
        self.hold_folder = hold_folder
        self.private_folder = private_folder
        self._fd: int | None = None
        self._dir_fd: int | None = None

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
        dir_fd = self._open_folder()
        try:
            if self.hold_folder:
                self._lock(dir_fd, None)
            self._fd = self._lock_note(dir_fd)
        except BaseException:
            os.close(dir_fd)  # drops the folder's lock too
            raise
        self._dir_fd = dir_fd
        self._write_holder(self._fd)

    def _open_folder(self) -> int:
        folder = self.path.parent
        if self.private_folder:
            return open_private_dir(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise translate_os_error(exc, self.path) from exc

    def _lock_note(self, dir_fd: int) -> int:
        """Open and lock the note file, and make sure it still has its name once locked."""
        for _ in range(8):
            fd = self._open_note(dir_fd)
            try:
                self._lock(fd, fd)
                # Deleted or replaced between the open and the lock: a lock on a file that
                # lost its name protects nothing (the next one to come makes a new file).
                named = os.stat(self.path.name, dir_fd=dir_fd, follow_symlinks=False)
                if (named.st_ino, named.st_dev) == _identity(fd):
                    return fd
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise LockedError(self._locked_message(None))

    def _open_note(self, dir_fd: int) -> int:
        # O_RDWR rather than O_TRUNC: truncating on open would wipe the holder's
        # information before we know whether we get the lock.  O_NOFOLLOW: a link planted
        # under the name would have us empty whatever it points to; O_NONBLOCK: a FIFO.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path.name, flags, 0o644, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._refused("a symbolic link") from None
            if exc.errno == errno.EISDIR:
                raise self._refused("a folder") from None
            raise translate_os_error(exc, self.path) from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise self._refused("not a regular file (a pipe, socket or device)")
        return fd

    def _refused(self, what: str) -> OutputNotWritableError:
        return OutputNotWritableError(f"cannot use the lock {self.path}: it is {what}, and "
                                      "stylize never writes a lock through one (remove it)")

    def _lock(self, fd: int, note_fd: int | None) -> None:
        """``flock`` ``fd``, or raise ``LockedError`` naming the holder from its note."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = _read_holder(note_fd) if note_fd is not None else self._peek_holder(fd)
                raise LockedError(self._locked_message(holder)) from exc
            if note_fd is None and exc.errno in _CANNOT_LOCK_FOLDER:
                return  # this file system cannot lock a folder: the file's lock must do
            raise

    def _peek_holder(self, dir_fd: int) -> dict[str, object] | None:
        """The holder's note, read when the folder is held and the note not yet opened."""
        try:
            fd = self._open_note(dir_fd)
        except (OSError, OutputNotWritableError):
            return None
        try:
            return _read_holder(fd)
        finally:
            os.close(fd)

    def release(self) -> None:
        """Give the lock up; the file stays (deleting a locked file races with new lockers)."""
        fd, self._fd = self._fd, None
        dir_fd, self._dir_fd = self._dir_fd, None
        if fd is None:
            return
        try:
            # Empty the file while still holding the lock, so what it says stays true:
            # an empty lock file means nobody holds it.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            # Closing drops the locks as well, so even a failed unlock cannot leave one held.
            os.close(fd)
            if dir_fd is not None:
                os.close(dir_fd)

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


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_ino, st.st_dev


def _read_holder(fd: int) -> dict[str, object] | None:
    """Best-effort read of the holder's note; ``None`` if absent, partial or not a note.

    ``fd`` is the note file this process opened (a regular file, no link followed); at
    most :data:`_NOTE_BYTES` are read, and the JSON's nesting is bounded, so a planted
    note of 5,000 ``[`` is simply not a note.
    """
    try:
        info = loads(os.pread(fd, _NOTE_BYTES, 0))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None
