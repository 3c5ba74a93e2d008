"""The record that says an output is done, and with what.

Each output ``<folder>/<name>`` has a record ``<folder>/.stylize/<name>.json``
written (atomically) *after* the output itself, so a record never vouches for a
file that is not fully there.  It holds the task key (input content hash +
resolved settings + style images + weights), and the input's size and mtime so
that a rerun can trust the stored content hash instead of re-reading every
photo of a large collection.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.fsutil import atomic_write_bytes
from pipeline.naming import RECORD_DIR, json_bytes

__all__ = ["RECORD_DIR", "Record", "output_matches", "read_record", "record_path",
           "stat_identity", "write_record"]



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


def record_path(output: Path) -> Path:
    return output.parent / RECORD_DIR / f"{output.name}.json"


def read_record(output: Path) -> Record | None:
    """The output's record, or None if missing, unreadable or from another version."""
    try:
        data = json.loads(record_path(output).read_text(encoding="utf-8"))
        return Record(**data)
    except (OSError, ValueError, TypeError):
        return None


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
