"""What lives in a watched inbox: which names to take, which files were handled, moving aside.

The tracker decides *when* to take a file (and :func:`pipeline.config.naming.classify_name`
*which*); this module holds *where* handled files go and what is remembered of them:

* :class:`Registry` remembers files that are finished yet still in the inbox (normally
  none), in ``<inbox>/.stylize-watch.json``;
* :func:`move_aside`, :func:`unique_name`, :func:`put_aside_failed` and
  :func:`retry_failed` move files to ``done/`` and ``failed/`` (and back) durably,
  never over another file; :func:`put_aside_failed` leaves ``<name>.error.json``
  beside a failed photo.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.config.manifest import Job
from pipeline.config.naming import DONE_DIR, ERROR_SUFFIX, FAILED_DIR, classify_name, json_bytes
from pipeline.errors import StylizeError
from pipeline.store.fsutil import atomic_write_bytes, fsync_dir
from pipeline.store.jsonio import read_json
from pipeline.store.locking import RunLock

logger = logging.getLogger(__name__)

# -- the registry of files left in an inbox --------------------------------------------


FileSig = tuple[int, int, int]  # (size, mtime_ns, inode)


def stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        try:
            return os.lstat(path)  # a broken symbolic link: still a file to refuse
        except OSError:
            return None
    except OSError:
        return None


def file_sig(st: os.stat_result) -> FileSig:
    return st.st_size, st.st_mtime_ns, st.st_ino


#: The registry holds only the files that could not leave the inbox (about 150 bytes each).
MAX_REGISTRY_BYTES = 4 << 20


def _valid_entry(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    sig = [entry.get(k) for k in ("size", "mtime_ns", "ino")]
    return (all(isinstance(v, int) and not isinstance(v, bool) for v in sig)
            and isinstance(entry.get("digest"), str | None))


class Registry:
    """Files that are finished (done or failed) yet still in the inbox, by name.

    Normally empty: finished files leave the inbox.  It matters when moving one out failed
    (a read-only share, a permission), so that such a file is not processed again and again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()  # the tracker reads and prunes, the worker adds
        # Anyone who can drop a photo can put something else under this name: a FIFO (which
        # hung the start), a link to /dev/zero, thousands of "[" (a RecursionError).  It is
        # read as a record is, and anything that is not a registry counts as an empty one.
        try:
            data = read_json(path, MAX_REGISTRY_BYTES, "the inbox registry")
        except (OSError, ValueError) as exc:
            if not isinstance(exc, FileNotFoundError):
                logger.warning("ignoring %s: %s", path, getattr(exc, "strerror", None) or exc)
            return
        files = data.get("files") if isinstance(data, dict) else None
        if isinstance(files, dict):
            self.entries = {k: v for k, v in files.items() if _valid_entry(v)}

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def same_file(self, name: str, sig: FileSig) -> bool:
        e = self.entries.get(name)
        return e is not None and (e.get("size"), e.get("mtime_ns"), e.get("ino")) == sig

    def same_content(self, name: str, digest: str) -> bool:
        e = self.entries.get(name)
        return e is not None and e.get("digest") == digest

    def add(self, name: str, sig: FileSig, digest: str | None, outcome: str) -> None:
        with self._lock:
            self.entries[name] = {"size": sig[0], "mtime_ns": sig[1], "ino": sig[2],
                                  "digest": digest, "outcome": outcome,
                                  "time": datetime.now(UTC).isoformat(timespec="seconds")}
            self.save()

    def update_sig(self, name: str, sig: FileSig) -> None:
        with self._lock:
            if name in self.entries:
                self.entries[name].update(size=sig[0], mtime_ns=sig[1], ino=sig[2])
                self.save()

    def discard(self, name: str) -> None:
        with self._lock:
            if self.entries.pop(name, None) is not None:
                self.save()

    def prune(self, present: Iterable[str]) -> None:
        keep = set(present)
        with self._lock:
            gone = [n for n in self.entries if n not in keep]
            for n in gone:
                del self.entries[n]
            if gone:
                self.save()

    def save(self) -> None:
        with self._lock:
            try:
                if self.entries:
                    atomic_write_bytes(self.path, json_bytes({"version": 1,
                                                              "files": self.entries}))
                else:
                    self.path.unlink(missing_ok=True)
            except (OSError, StylizeError) as exc:
                logger.warning("cannot write %s: %s", self.path, exc)


# -- moving files aside -------------------------------------------------------------


def unique_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem-1.ext`` (-2, ...) when that is taken: keep both."""
    target = folder / name
    stem, ext = os.path.splitext(name)
    n = 0
    while os.path.lexists(target) or (folder.name == FAILED_DIR
                                      and os.path.lexists(f"{target}{ERROR_SUFFIX}")):
        n += 1
        target = folder / f"{stem}-{n}{ext}"
    return target


def _open_aside(folder: Path) -> int:
    """A descriptor of ``done/`` or ``failed/`` (made if missing), never of a link.

    Anyone who can drop a photo in the inbox can put a link there under either name; were
    it followed, every photo would be moved (and error files written) wherever it points.
    Raises ``OSError``, which the worker reports as a photo that could not leave the inbox.
    """
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder)
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise OSError(exc.errno, f"{folder.name}/ in the inbox is a symbolic link or not a "
                          "folder; photos are never moved through one (remove it)",
                          str(folder)) from None
        raise


def move_aside(path: Path, folder: Path) -> Path:
    """Move ``path`` into ``folder`` (created, never a link), never over a file; durable."""
    dir_fd = _open_aside(folder)
    try:
        target = unique_name(folder, path.name)
        os.rename(path, target.name, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    fsync_dir(path.parent)
    return target


def retry_failed(inbox: Path) -> list[Path]:
    """Move every photo in ``<inbox>/failed/`` back into the inbox; drop its error file."""
    failed = inbox / FAILED_DIR
    moved: list[Path] = []
    if failed.is_symlink() or not failed.is_dir():
        return moved  # a link: what it points to is nobody's failed photos
    for entry in sorted(failed.iterdir()):
        if entry.name.endswith(ERROR_SUFFIX) or classify_name(entry.name) == "litter":
            continue
        target = unique_name(inbox, entry.name)
        os.rename(entry, target)
        with contextlib.suppress(OSError):
            Path(f"{entry}{ERROR_SUFFIX}").unlink()
        moved.append(target)
    if moved:
        fsync_dir(inbox)
    return moved


def take_out(path: Path, after: str) -> Path | None:
    """A finished photo leaves the inbox: deleted, or moved to ``done/`` (returned)."""
    if after == "delete":
        path.unlink()
        fsync_dir(path.parent)
        return None
    return move_aside(path, path.parent / DONE_DIR)


def put_aside_failed(path: Path, info: dict[str, Any]) -> tuple[Path, Path]:
    """Move a photo that cannot be used to ``failed/``, with ``<name>.error.json`` beside it.

    The error file is written first, so a failed photo is never there without its
    reason; if the move then fails, the error file is removed again.  Returns the new
    path of the photo and of its error file; raises ``OSError`` or ``StylizeError``.
    """
    failed_dir = path.parent / FAILED_DIR
    dir_fd = _open_aside(failed_dir)
    try:
        target = unique_name(failed_dir, path.name)
        error_file = Path(f"{target}{ERROR_SUFFIX}")
        atomic_write_bytes(error_file, json_bytes(info), private_dir=True)
        try:
            os.rename(path, target.name, dst_dir_fd=dir_fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(error_file.name, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    fsync_dir(path.parent)
    return target, error_file


@dataclass
class Inbox:
    """One watched inbox: its job, lock, registry and observer."""

    job: Job
    path: Path
    lock: RunLock
    registry: Registry
    observer: Any = None
    ident: tuple[int, int] | None = None
    lost: bool = False
    polling: bool = False


@dataclass
class Item:
    """A settled photo, queued for the worker."""

    box: Inbox
    path: Path
    sig: FileSig
    handed_back: bool = False  # returned to the tracker (so no longer "queued")

    @property
    def job(self) -> Job:
        return self.box.job
