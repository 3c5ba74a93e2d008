"""The one way to read a file that someone else could have put in place.

Records, the inbox registry, a lock's holder note, cache entries, manifests, presets,
paintings, photos and weights are all read through :func:`open_regular` (or
:func:`read_bounded`, which reads the whole file): never blocking on a FIFO, never reading
a device, a socket or a folder, not following a link where the caller says so, and never
past a bound in bytes, whatever the file claims its size is or how it grows.  Before this
module there were five hand-written copies of these rules, each missing a different one.

Every refusal is an ``OSError`` whose ``strerror`` is one line a person can act on:
``IsADirectoryError``, :class:`NotRegularFileError` or :class:`FileTooLargeError`;
callers turn them into their own errors (a photo's ``InputError``, a manifest's
``ConfigError``, a record that is no record).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["FileTooLargeError", "NotRegularFileError", "open_regular", "read_all",
           "read_bounded", "size_text", "too_large"]


class NotRegularFileError(OSError):
    """Not a regular file: a FIFO, a device, a socket, or a link where none is followed.

    ``strerror`` says which in words a person can act on; a folder is reported as
    :class:`IsADirectoryError` instead, which callers already tell apart.
    """


class FileTooLargeError(OSError):
    """A file holds more than its reader's bound; ``strerror`` says how much, and the bound.

    ``size`` is the size the file declared (``None`` when it grew past the bound while
    being read, or declares none, as ``/proc`` files do) and ``limit`` the bound.
    """

    size: int | None = None
    limit: int = 0


def size_text(count: int) -> str:
    """``count`` bytes in words: ``512 bytes``, ``1 MiB``, ``50.1 MiB``, ``2.0 GiB``."""
    if count < 1 << 20:
        return f"{count} bytes"
    unit, scale = ("GiB", 1 << 30) if count >= 1 << 30 else ("MiB", 1 << 20)
    return f"{count // scale} {unit}" if count % scale == 0 else f"{count / scale:.1f} {unit}"


def _refusal(path: Path | str, mode: int, what: str) -> OSError:
    shown = os.fspath(path)
    if stat.S_ISDIR(mode):
        return IsADirectoryError(errno.EISDIR, f"is a folder; {what} must be a file", shown)
    if stat.S_ISLNK(mode):
        return NotRegularFileError(errno.ELOOP, f"is a symbolic link; {what} is never read "
                                                "through a link (remove the link)", shown)
    return NotRegularFileError(errno.EINVAL, f"is not a regular file (a pipe, socket or "
                                             f"device); {what} must be a regular file", shown)


def too_large(path: Path | str, what: str, size: int | None, limit: int) -> FileTooLargeError:
    """The refusal of ``path`` (``what``) by its ``size`` (None: it grew) against ``limit``."""
    amount = (f"{size_text(size)}; the limit is" if size is not None
              else "it grew past, or holds more than, the limit of")
    exc = FileTooLargeError(errno.EFBIG, f"too large for {what} ({amount} "
                                         f"{size_text(limit)})", os.fspath(path))
    exc.size, exc.limit = size, limit
    return exc


def _checked(path: Path | str, st: os.stat_result, max_bytes: int | None, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise _refusal(path, st.st_mode, what)
    if max_bytes is not None and st.st_size > max_bytes:
        raise too_large(path, what, st.st_size, max_bytes)


class _BoundedRaw(io.RawIOBase):
    """An open regular file that is never read past byte ``max_bytes``.

    The bound is on the position, not on a running count, so a reader that seeks back
    (Pillow does) re-reads freely, and a file that grew after its ``fstat`` still stops
    one byte past the bound with :class:`FileTooLargeError`.
    """

    def __init__(self, fd: int, path: Path | str, max_bytes: int | None, what: str) -> None:
        super().__init__()
        self._fd, self._path, self._max, self._what = fd, path, max_bytes, what

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._max is not None:
            room = self._max + 1 - self.tell()
            if room <= 0:
                raise too_large(self._path, self._what, None, self._max)
            view = view[:room]
        got = os.readv(self._fd, [view])
        if self._max is not None and got and self.tell() > self._max:
            raise too_large(self._path, self._what, None, self._max)
        return got

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


_READ_FLAGS = (os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)
               | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0))


@contextlib.contextmanager
def open_regular(path: Path | str, *, max_bytes: int | None, what: str = "the file",
                 follow_links: bool = True, dir_fd: int | None = None
                 ) -> Iterator[io.BufferedReader[Any]]:
    """Open the regular file ``path`` for reading, never blocking and never past ``max_bytes``.

    The one way to open a file someone else could have put in place.  It is looked at
    before it is opened (a FIFO, device, socket or folder is refused unopened: opening
    some devices has effects), opened with ``O_NONBLOCK`` (a FIFO swapped in since returns
    at once) and, unless ``follow_links``, ``O_NOFOLLOW``, then checked again on the
    descriptor.  A file whose size is over ``max_bytes`` (``None``: no bound) is refused
    before a byte is read, and one that grows is never read past it.  ``what`` names the
    file in the refusal (``"a record"``).  Raises ``FileNotFoundError`` and other OS
    errors as they are, ``IsADirectoryError``, :class:`NotRegularFileError` and
    :class:`FileTooLargeError`; each ``strerror`` is one line a person can act on.
    """
    _checked(path, os.stat(path, dir_fd=dir_fd, follow_symlinks=follow_links), max_bytes, what)
    flags = _READ_FLAGS if follow_links else _READ_FLAGS | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_links:  # a link put there since the stat
            raise _refusal(path, stat.S_IFLNK, what) from None
        raise
    try:
        _checked(path, os.fstat(fd), max_bytes, what)  # swapped since the stat
        raw = _BoundedRaw(fd, path, max_bytes, what)
    except BaseException:
        os.close(fd)
        raise
    with io.BufferedReader(raw, buffer_size=_READ_CHUNK) as fh:
        yield fh


#: Reads are at most this size, so a file that grows while it is read stops near its bound.
_READ_CHUNK = 1 << 20


def read_bounded(path: Path | str, max_bytes: int, what: str = "the file", *,
                 follow_links: bool = True, dir_fd: int | None = None) -> bytes:
    """The whole content of the regular file ``path``: :func:`open_regular`, then read.

    At most ``max_bytes + 1`` bytes are ever read (the last one only to tell that the
    file is over its bound).
    """
    with open_regular(path, max_bytes=max_bytes, what=what, follow_links=follow_links,
                      dir_fd=dir_fd) as fh:
        return read_all(fh)


def read_all(fh: IO[bytes]) -> bytes:
    """The rest of a file from :func:`open_regular`, read in chunks (its bound applies)."""
    chunks = []
    while chunk := fh.read(_READ_CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)
