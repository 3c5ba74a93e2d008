"""Stable digests of files, settings and tensors.

These digests name things that must be found again later: cache entries, task
keys, the weights a run used.  They must therefore depend only on content,
never on dict order, process, or memory layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from pipeline.store import fsread
from pipeline.store.fsread import open_regular

if TYPE_CHECKING:
    # Imported where tensors are hashed: planning a run (file and JSON digests) needs no torch.
    import torch

__all__ = ["digest_json", "digest_tensors", "file_digest"]

#: Files are read in blocks of this size so a multi-GB weights file never sits in memory.
_BLOCK = 1 << 20

#: Bound on the memo so a long-running watcher that sees many files cannot grow without limit.
_MEMO_MAX = 4096

# (resolved path, size, mtime_ns, inode) -> hex digest.  The stat fields are part of the key
# rather than checked after the lookup, so a rewritten file (new size, mtime or inode after an
# atomic replace) simply misses and is hashed again.
_memo: OrderedDict[tuple[str, int, int, int], str] = OrderedDict()
_memo_lock = threading.Lock()


def _stat_key(path: Path) -> tuple[tuple[str, int, int, int], int]:
    """The memo key of ``path`` and its mode.

    ``os.path.realpath``, not ``Path.resolve``: on Python 3.11 the latter raises
    ``RuntimeError`` on a link loop, where ``os.stat`` then raises a plain ``OSError``.
    """
    resolved = os.path.realpath(path)
    st = os.stat(resolved)
    return (resolved, st.st_size, st.st_mtime_ns, st.st_ino), st.st_mode


def file_digest(path: Path, *, max_bytes: int | None = None, what: str = "the file") -> str:
    """Return the sha256 hex digest of the file's content.

    The result is remembered for this process, keyed on the resolved path and the file's
    size, mtime (ns) and inode, so asking again about an unchanged file costs one ``stat``.
    The file is read by :func:`pipeline.store.fsread.open_regular`: anything but a regular file
    is refused unopened (a FIFO would block forever and ``/dev/zero`` never ends), and a
    file over ``max_bytes`` (``what`` names it) is refused before a byte is hashed.
    Raises ``OSError`` (``FileNotFoundError``, ``IsADirectoryError``,
    :class:`~pipeline.store.fsread.NotRegularFileError`,
    :class:`~pipeline.store.fsread.FileTooLargeError`).
    """
    key, mode = _stat_key(Path(path))
    if stat.S_ISREG(mode) and max_bytes is not None and key[1] > max_bytes:
        raise fsread.too_large(key[0], what, key[1], max_bytes)
    with _memo_lock:
        cached = _memo.get(key)
        if cached is not None:
            _memo.move_to_end(key)
            return cached

    # Hash outside the lock: two threads hashing the same new file at once only waste work,
    # while holding the lock would serialise every caller behind one large file.
    hasher = hashlib.sha256()
    with open_regular(key[0], max_bytes=max_bytes, what=what) as fh:
        while block := fh.read(_BLOCK):
            hasher.update(block)
    digest = hasher.hexdigest()

    # If the file changed while it was read, the stat taken before reading no longer matches;
    # storing the digest under that old key would pin a digest of mixed content.  Re-stat and
    # only remember the result when nothing moved.
    try:
        unchanged = _stat_key(Path(key[0]))[0] == key
    except OSError:
        unchanged = False
    if unchanged:
        with _memo_lock:
            _memo[key] = digest
            _memo.move_to_end(key)
            while len(_memo) > _MEMO_MAX:
                _memo.popitem(last=False)
    return digest


def clear_file_digest_memo() -> None:
    """Forget every remembered file digest (for tests and long-lived processes)."""
    with _memo_lock:
        _memo.clear()


def _json_default(obj: Any) -> Any:
    # Paths are the one non-JSON type settings routinely hold; anything else is a caller
    # bug, and silently str()-ing it could make two different objects collide.
    if isinstance(obj, PurePath):
        return str(obj)
    raise TypeError(f"cannot digest object of type {type(obj).__name__}: {obj!r}")


def canonical_json(obj: Any) -> str:
    """Serialise ``obj`` to the canonical JSON text that :func:`digest_json` hashes."""
    # json already writes floats with float.__repr__ (shortest round-tripping form), so
    # 0.1 is always "0.1" and 1.0 stays distinct from the int 1.  sort_keys and the compact
    # separators remove the only other sources of variation.
    return json.dumps(
        obj,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=True,
        default=_json_default,
    )


def digest_json(obj: Any) -> str:
    """Return the sha256 hex digest of ``obj`` as canonical JSON.

    Key order does not matter; ``Path`` values hash as their string form; tuples hash like
    lists.  Used to build cache keys and task keys from dicts of settings.
    """
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    import torch

    # Viewing as uint8 works for every dtype, including bfloat16 and float8 that numpy cannot
    # represent; reshape(-1) first because a 0-d tensor cannot change element size in place.
    flat = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
    return flat.numpy().data


def digest_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    """Return a sha256 hex digest of named tensors: names, dtypes, shapes and raw bytes.

    The names are visited in sorted order so the digest does not depend on dict order.
    Bytes are taken in the machine's native byte order, which is little-endian on every
    platform the tool runs on, matching the safetensors file format.
    """
    # The version tag lets a future change of this layout never collide with old digests.
    hasher = hashlib.sha256(b"stylize-tensors-v1\0")
    for name in sorted(tensors):
        tensor = tensors[name]
        data = _tensor_bytes(tensor)
        # A length-framed header per tensor makes the stream unambiguous: no two different
        # sets of tensors can produce the same sequence of bytes.
        header = json.dumps(
            {
                "name": name,
                "dtype": str(tensor.dtype),
                "shape": list(tensor.shape),
                "nbytes": data.nbytes,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode("utf-8")
        hasher.update(len(header).to_bytes(8, "little"))
        hasher.update(header)
        hasher.update(data)
    return hasher.hexdigest()
