"""Which files may be read, and reading them: path checks, a safe open, whole-file reads.

:func:`check_path` decides from ``stat`` alone whether a path is a non-empty,
readable regular file inside the input folder; :func:`open_regular` opens it with the
tool's one bounded reader (:func:`pipeline.store.fsread.open_regular`: never blocking, checked
again on the open descriptor); :func:`read_photo` does both and returns the file's
bytes, bounded by ``max_bytes``.  Every OS error
on the way becomes an :class:`~pipeline.errors.InputError` through
:func:`_refusal`, the one place that maps an errno onto a category and words.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pipeline.errors import InputError
from pipeline.images.failures import Shown, fail, mebibytes, one_line
from pipeline.store import fsread

#: A photo's file is bounded: a 100-megapixel 16-bit TIFF is about 600 MB, but no
#: camera JPEG, PNG or HEIC comes near this, and the whole file is held in memory.
DEFAULT_MAX_BYTES = 512 << 20

_NOT_REGULAR = "is not a regular file (a pipe, socket or device)"
_UNREADABLE = "permission denied (the file cannot be read)"


def _refusal(
    shown: Shown,
    exc: OSError,
    *,
    missing: str = "file not found",
    denied: str = _UNREADABLE,
) -> InputError:
    """The refusal for an OS error met while looking at or reading ``shown``.

    ``missing`` and ``denied`` say what "not found" and "permission denied" mean at
    the step that failed (the file itself, a link's target, a folder on the path).
    """
    if isinstance(exc, FileNotFoundError):
        return fail(shown, "unreadable", missing)
    if isinstance(exc, PermissionError):
        return fail(shown, "permission", denied)
    if isinstance(exc, IsADirectoryError):
        return fail(shown, "not_a_file", "is a folder, not an image file")
    if exc.errno == errno.ELOOP:
        return fail(shown, "unreadable", "symbolic link loop (the link leads back to itself)")
    if exc.errno == errno.ENOTDIR:
        return fail(shown, "unreadable", "file not found (a part of its path is not a folder)")
    if exc.errno == errno.ENAMETOOLONG:
        return fail(shown, "unreadable", "the file name is too long")
    return fail(shown, "unreadable", f"cannot be read ({one_line(exc.strerror or str(exc))})")


def _stat_target(path: Path) -> os.stat_result:
    """``stat`` of what ``path`` names, with a link's own problems told apart."""
    try:
        link_st = os.lstat(path)
    except OSError as exc:
        denied = "permission denied (a folder on its path cannot be read)"
        raise _refusal(path, exc, denied=denied) from None
    if not stat.S_ISLNK(link_st.st_mode):
        return link_st
    try:
        return os.stat(path)
    except OSError as exc:
        raise _refusal(
            path,
            exc,
            missing="broken symbolic link (its target does not exist)",
            denied="permission denied (the link's target is not reachable)",
        ) from None


def _check_root(path: Path, resolved: Path, root: Path, follow_symlinks: bool) -> None:
    root_real = Path(root).resolve()
    if resolved.is_relative_to(root_real):
        return
    # Only a symbolic link can make a path under the root land outside it; a path
    # that was never under the root is not ours to read at all.
    via_link = Path(os.path.abspath(path)).is_relative_to(Path(os.path.abspath(root)))
    if not (follow_symlinks and via_link):
        raise fail(
            path,
            "outside_input",
            "points outside the input folder (following links out of it is turned off)",
        )


def check_path(path: Path, *, root: Path | None = None, follow_symlinks: bool = False) -> Path:
    """Refuse ``path`` unless it is a non-empty, readable regular file we may use.

    Nothing is opened: a FIFO would block the whole run on ``open``.  When ``root``
    is given, a path whose real location lies outside it (reached through a symbolic
    link in the path or in one of its folders) is refused with ``outside_input``
    unless ``follow_symlinks`` is true.  Returns the resolved path, which is what
    should be opened, so the link chain is not walked a second time.
    """
    path = Path(path)
    st = _stat_target(path)
    if stat.S_ISDIR(st.st_mode):
        raise fail(path, "not_a_file", "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise fail(path, "not_a_file", _NOT_REGULAR)
    try:
        resolved = path.resolve(strict=True)
    except OSError as exc:  # the tree changed under us since the stat
        raise _refusal(path, exc) from None
    if root is not None:
        _check_root(path, resolved, root, follow_symlinks)
    if not os.access(resolved, os.R_OK):
        raise fail(path, "permission", _UNREADABLE)
    if st.st_size == 0:
        raise fail(path, "not_an_image", "file is empty (0 bytes)")
    return resolved


@contextlib.contextmanager
def open_regular(resolved: Path, shown: Shown, *,
                 max_bytes: int | None = None) -> Iterator[IO[bytes]]:
    """:func:`pipeline.store.fsread.open_regular` for a photo: never blocks, no link followed.

    ``check_path`` already looked, but the file can be swapped for a FIFO or a link
    between that look and this open; the shared reader looks again on the descriptor.
    Its refusals at the open become the photo's :class:`InputError` here; what the
    caller's own reads raise is left to the caller.
    """
    with contextlib.ExitStack() as stack:
        try:
            fh = stack.enter_context(fsread.open_regular(
                resolved, max_bytes=max_bytes, what="a photo", follow_links=False))
        except OSError as exc:
            raise _read_refusal(shown, exc) from None
        yield fh


def _read_refusal(shown: Shown, exc: OSError) -> InputError:
    if isinstance(exc, fsread.FileTooLargeError):
        if exc.size is None:
            return fail(shown, "too_large", "file is too large (it grew past the limit "
                                            f"of {mebibytes(exc.limit)} while being read)")
        return fail(shown, "too_large", f"file is too large ({mebibytes(exc.size)}; "
                                        f"the limit is {mebibytes(exc.limit)})")
    if isinstance(exc, fsread.NotRegularFileError):
        return fail(shown, "not_a_file", _NOT_REGULAR)
    return _refusal(shown, exc, missing="file not found (it disappeared while being read)")


def read_photo(
    path: Path,
    *,
    root: Path | None = None,
    follow_symlinks: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bytes:
    """The whole content of the photo at ``path``, after :func:`check_path`'s checks.

    A file larger than ``max_bytes`` is refused as ``too_large``, before reading
    when its size says so, and during the read when it grows past the limit.
    """
    if max_bytes < 1:
        raise ValueError("max_bytes must be at least 1")
    path = Path(path)
    source = check_path(path, root=root, follow_symlinks=follow_symlinks)
    with open_regular(source, path, max_bytes=max_bytes) as fh:
        try:
            data = fsread.read_all(fh)
        except OSError as exc:
            raise _read_refusal(path, exc) from None
    if not data:  # emptied between the check and the read
        raise fail(path, "not_an_image", "file is empty (0 bytes)")
    return data

