"""The record that says an output is done, and with what.

Each output ``<folder>/<name>`` has a record ``<folder>/.stylize/<name>.json``
written (atomically) *after* the output itself, so a record never vouches for a
file that is not fully there.  It holds the task key (input content hash +
resolved settings + style images + weights), and the input's size and mtime so
that a rerun can trust the stored content hash instead of re-reading every
photo of a large collection.  ``made`` says how the picture was made (the fully
resolved settings, the preset and its paintings' digests, the weights' digest,
the tool's version, device, precision and the size used), which is what
``stylize explain`` turns back into a command.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.fsutil import atomic_write_bytes
from pipeline.naming import RECORD_DIR, json_bytes

__all__ = ["RECORD_DIR", "Record", "output_matches", "read_record", "record_path",
           "stat_identity", "write_record"]


#: A record is a few kilobytes; anything larger under that name is not one of ours.
MAX_RECORD_BYTES = 1 << 20


@dataclass(frozen=True)
class Record:
    key: str
    input: str
    input_digest: str
    input_size: int
    input_mtime_ns: int
    style: str
    output_size: int
    output_mtime_ns: int
    seconds: float
    finished: str
    made: dict[str, Any] | None = None  # absent in records of earlier versions


def record_path(output: Path) -> Path:
    return output.parent / RECORD_DIR / f"{output.name}.json"


def read_record(output: Path) -> Record | None:
    """The output's record, or None if missing, unreadable or from another version."""
    try:
        data = json.loads(_read_small(record_path(output)).decode("utf-8"))
        return Record(**data)
    except (OSError, ValueError, TypeError):
        return None


def _read_small(path: Path) -> bytes:
    """A regular file's bytes, never blocking on a FIFO and never more than a record holds."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_RECORD_BYTES:
            raise ValueError(f"{path} is not a record")
        return os.read(fd, MAX_RECORD_BYTES + 1)
    finally:
        os.close(fd)


def write_record(output: Path, record: Record) -> None:
    atomic_write_bytes(record_path(output), json_bytes(asdict(record)))


def output_matches(output: Path, record: Record) -> bool:
    """True if the output file is the very one the record was written for."""
    try:
        st = output.stat()
    except OSError:
        return False
    return st.st_size == record.output_size and st.st_mtime_ns == record.output_mtime_ns


def stat_identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns
