"""A content-addressed cache of tensor artifacts (style Gram matrices, content features, ...).

Entries live at ``<root>/<kind>/<key[:2]>/<key>.safetensors``.  The key is a digest of
everything that determines the content (see :func:`pipeline.store.hashing.digest_json`), so an
entry never needs invalidating: changed settings simply produce a different key.

Files are safetensors, never pickle, so a cache folder another user can write to cannot run
code in this process.  Each entry records the digest of its own tensors; an entry that is
truncated, corrupt or tampered with is detected on read, deleted and reported as a miss, so
the caller rebuilds it instead of producing a wrong picture.  An entry is read once, whole,
by the bounded reader (:func:`pipeline.store.fsread.read_bounded`): a FIFO, a folder, a link or
a file over :data:`MAX_ENTRY_BYTES` in an entry's place is dropped the same way.

Write failures: :meth:`ArtifactCache.put` raises the tool's own errors from
:mod:`pipeline.store.fsutil`.  ``DiskFullError`` means the run must stop (outputs would fail next).
``OutputNotWritableError`` (read-only or foreign-owned cache folder) only costs speed: callers
may log it and continue without caching, which is what
:class:`~pipeline.render.targets.StyleTargetStore` does.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError

from pipeline.errors import OutputNotWritableError
from pipeline.store import fsutil, jsonio
from pipeline.store.cache_dir import ENV_CACHE_DIR, default_cache_dir
from pipeline.store.fsread import FileTooLargeError, NotRegularFileError, read_bounded
from pipeline.store.hashing import digest_tensors

__all__ = ["ArtifactCache", "default_cache_dir", "ENV_CACHE_DIR"]

logger = logging.getLogger(__name__)

#: Metadata fields the cache owns; callers cannot set them.
RESERVED_METADATA = frozenset({"key", "sha256", "kind", "created"})

#: The largest entry read.  Style targets are a few MB per side (Gram matrices and means of
#: five VGG layers, 2.4 MB in float32); every layer of VGG-19 in float64 stays under 60 MB.
MAX_ENTRY_BYTES = 256 << 20

#: Leftover temp files younger than this may belong to a live writer in another process.
STALE_TEMP_AGE_S = 3600.0

# Kinds and keys become path components, so they are restricted to a safe alphabet: this
# keeps a key like "../../etc" from escaping the cache root.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{2,128}\Z")

# safetensors reports I/O failures as SafetensorError("... (os error 28)") rather than
# OSError; the errno is recovered from the message so ENOSPC is still told apart.
_OS_ERROR_RE = re.compile(r"os error (\d+)")


class _CorruptEntry(Exception):
    """Internal: an entry exists but cannot be trusted; the message says why."""


class ArtifactCache:
    """Content-addressed store of ``dict[str, Tensor]`` artifacts under ``root``.

    Safe to share between threads and processes: writes are atomic renames, and a reader
    sees either a whole old entry, a whole new one, or none.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def __repr__(self) -> str:
        return f"ArtifactCache(root={str(self.root)!r})"

    # -- paths -----------------------------------------------------------------------------

    def path_for(self, kind: str, key: str) -> Path:
        """Return where the entry ``(kind, key)`` lives (whether or not it exists)."""
        if not _NAME_RE.match(kind):
            raise ValueError(f"invalid cache kind {kind!r}")
        if not _KEY_RE.match(key):
            raise ValueError(f"invalid cache key {key!r}")
        # Two-character fan-out keeps folders small enough for every file system.
        return self.root / kind / key[:2] / f"{key}.safetensors"

    # -- reading ---------------------------------------------------------------------------

    def get(self, kind: str, key: str) -> dict[str, torch.Tensor] | None:
        """Return the tensors stored under ``(kind, key)`` (on CPU), or ``None`` on a miss.

        An entry that is not a regular file (a FIFO, a folder, a link), is larger than
        :data:`MAX_ENTRY_BYTES` or fails verification is logged, deleted, and ``None``
        is returned so the caller rebuilds it.
        """
        path = self.path_for(kind, key)
        try:
            before = os.lstat(path)
            # Read whole through the bounded reader: a FIFO planted here blocked the run for
            # good, and a sparse 2 GiB entry with a valid header was read whole.
            data = read_bounded(path, MAX_ENTRY_BYTES, "a cache entry", follow_links=False)
            tensors = _verified(data, kind, key)
        except FileNotFoundError:
            # Missing, or deleted since (another process found it corrupt): a plain miss.
            return None
        except (_CorruptEntry, IsADirectoryError, NotRegularFileError,
                FileTooLargeError) as exc:
            logger.warning("discarding corrupt cache entry %s: %s", path, _why(exc))
            self._discard(path, before)
            return None
        except OSError as exc:
            # Unreadable is not corrupt: deleting would not help and may not be allowed.
            logger.warning("cannot read cache entry %s (%s); computing it again", path, exc)
            return None
        return tensors

    @staticmethod
    def _discard(path: Path, seen: os.stat_result) -> None:
        # Only delete the very file that failed: if a concurrent writer has already
        # replaced it (new inode), its fresh entry must survive.
        try:
            now = os.lstat(path)
            if (now.st_ino, now.st_dev) == (seen.st_ino, seen.st_dev):
                if stat.S_ISDIR(now.st_mode):
                    os.rmdir(path)  # an empty one; anything in it is not ours to delete
                else:
                    path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("cannot delete corrupt cache entry %s: %s", path, exc)

    # -- writing ---------------------------------------------------------------------------

    def put(
        self,
        kind: str,
        key: str,
        tensors: Mapping[str, torch.Tensor],
        metadata: Mapping[str, str] | None = None,
    ) -> Path:
        """Store ``tensors`` under ``(kind, key)`` atomically and return the entry's path.

        Tensors are copied to contiguous CPU memory first.  ``metadata`` (str -> str) is
        kept in the file next to the cache's own ``key``, ``sha256``, ``kind`` and
        ``created`` fields, which it may not override.

        Raises ``DiskFullError`` when the disk is full and ``OutputNotWritableError`` when
        the cache folder cannot be written; no temporary file or partial entry is left.
        """
        final = self.path_for(kind, key)
        extra = dict(metadata or {})
        clash = RESERVED_METADATA.intersection(extra)
        if clash:
            raise ValueError(f"metadata keys reserved by the cache: {sorted(clash)}")
        for name, value in extra.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"cache metadata must map str to str, got {name!r}: {value!r}")

        prepared = _prepare_tensors(tensors)
        header = {
            **extra,
            "key": key,
            "kind": kind,
            "sha256": digest_tensors(prepared),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            with fsutil.atomic_path(final) as tmp:
                try:
                    safetensors.torch.save_file(prepared, str(tmp), metadata=header)
                except SafetensorError as exc:
                    # Re-raise I/O failures as OSError so atomic_path translates them
                    # (ENOSPC -> DiskFullError) and removes the temporary file.
                    match = _OS_ERROR_RE.search(str(exc))
                    if match:
                        code = int(match.group(1))
                        raise OSError(code, os.strerror(code), str(tmp)) from exc
                    raise
        except OSError as exc:
            # What atomic_path leaves as it is: a folder that would not go away in the
            # entry's place, say.  Caching is then off for this entry, as for a read-only
            # cache, instead of stopping the run.
            raise OutputNotWritableError(f"cannot write the cache entry {final}: "
                                         f"{exc.strerror or exc}") from exc
        return final

    # -- housekeeping ----------------------------------------------------------------------

    def sweep(self) -> int:
        """Delete temporary files left by interrupted writes (older than an hour); return count.

        The age limit protects files that a concurrent run is writing right now.
        """
        return fsutil.sweep_temp_files(self.root, recursive=True, older_than_s=STALE_TEMP_AGE_S)

    def discard(self, kind: str, key: str) -> bool:
        """Remove one entry if present; return whether a file was removed."""
        try:
            self.path_for(kind, key).unlink()
        except FileNotFoundError:
            return False
        return True


def _why(exc: Exception) -> str:
    return (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)


def _header(data: bytes) -> dict[str, Any]:
    """The JSON header of safetensors ``data``: 8 bytes of length, then that much JSON."""
    if len(data) < 8:
        raise _CorruptEntry(f"unreadable safetensors file ({len(data)} bytes)")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise _CorruptEntry("unreadable safetensors file (its header runs past its end)")
    try:
        header = jsonio.loads(data[8:8 + size])
    except ValueError as exc:
        raise _CorruptEntry(f"unreadable safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise _CorruptEntry("unreadable safetensors header (not a JSON object)")
    return header


def _verified(data: bytes, kind: str, key: str) -> dict[str, torch.Tensor]:
    """The tensors of an entry's bytes, checked against its key, kind and content digest.

    Metadata and tensors come from the same bytes, read once: two opens could pair the
    metadata of one version with the tensors of another if a writer replaced the file in
    between, and a good entry would then be thrown away.
    """
    metadata = _header(data).get("__metadata__")
    if not metadata or not isinstance(metadata, dict):
        raise _CorruptEntry("no metadata")
    try:
        tensors = safetensors.torch.load(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise _CorruptEntry(f"unreadable safetensors file ({exc})") from exc
    stored_key = metadata.get("key")
    if stored_key != key:
        raise _CorruptEntry(f"metadata key {stored_key!r} does not match requested key")
    stored_kind = metadata.get("kind")
    if stored_kind is not None and stored_kind != kind:
        raise _CorruptEntry(f"metadata kind {stored_kind!r} does not match {kind!r}")
    expected = metadata.get("sha256")
    if not expected:
        raise _CorruptEntry("no sha256 in metadata")
    actual = digest_tensors(tensors)
    if actual != expected:
        raise _CorruptEntry(f"content hash mismatch (expected {expected}, got {actual})")
    return tensors


def _prepare_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detach, move to CPU, make contiguous, and un-share storage (safetensors refuses it)."""
    prepared: dict[str, torch.Tensor] = {}
    seen_storage: set[int] = set()
    for name, tensor in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, got {name!r}")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"value for {name!r} is {type(tensor).__name__}, not a Tensor")
        cpu = tensor.detach().to("cpu").contiguous()
        ptr = cpu.untyped_storage().data_ptr()
        # Two names viewing one storage (e.g. slices of a batch) would make save_file
        # raise; a copy costs little next to recomputing the artifact every run.
        if ptr in seen_storage and cpu.numel() > 0:
            cpu = cpu.clone()
            ptr = cpu.untyped_storage().data_ptr()
        seen_storage.add(ptr)
        prepared[name] = cpu
    return prepared
