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

A record is read back as something anyone who can write the folder may have replaced:
through the bounded reader (a regular file, never a link, at most
:data:`MAX_RECORD_BYTES`), parsed with its nesting bounded, and checked field by field.
A record that does not validate is no record: its photo is due again, and ``explain``
says so in one line.  Records are written only into a real ``.stylize`` folder, never
through a link (:func:`pipeline.store.fsutil.atomic_write_bytes` with ``private_dir``).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.config.naming import RECORD_DIR, json_bytes
from pipeline.store.fsutil import atomic_write_bytes
from pipeline.store.jsonio import read_json

__all__ = ["RECORD_DIR", "Record", "output_matches", "parse_record", "read_record",
           "record_path", "stat_identity", "write_record"]


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
    """The output's record, or None if missing, unreadable, invalid or from another version."""
    try:
        data = read_json(record_path(output), MAX_RECORD_BYTES, "a record")
    except (OSError, ValueError):
        return None
    return parse_record(data)


#: The type of each field but ``made`` (``bool`` is never taken for ``int``, nor NaN for a
#: number).
_TYPES: dict[str, tuple[type, ...]] = {
    "key": (str,), "input": (str,), "input_digest": (str,), "input_size": (int,),
    "input_mtime_ns": (int,), "style": (str,), "output_size": (int,),
    "output_mtime_ns": (int,), "seconds": (int, float), "finished": (str,)}
#: What ``made`` must hold (``explain`` builds its command from these), and what it may.
_MADE_NEEDS: dict[str, tuple[type, ...]] = {"preset": (str,), "settings": (dict,),
                                            "style_images": (list,)}
_MADE_MAY: dict[str, tuple[type, ...]] = {
    "tool": (str,), "preset_source": (str, type(None)), "preset_path": (str, type(None)),
    "format": (str, type(None)), "weights_digest": (str, type(None)),
    "note": (str, type(None)), "device": (str, type(None)), "precision": (str, type(None)),
    "method": (str,), "network": (str,), "machine": (str,)}
_IMAGE_NEEDS: dict[str, tuple[type, ...]] = {"path": (str,), "digest": (str,),
                                             "weight": (int, float)}


def _typed(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return float in types and math.isfinite(value)
    return isinstance(value, types)


def _fits(data: dict[str, Any], needs: dict[str, tuple[type, ...]],
          may: dict[str, tuple[type, ...]] | None = None) -> bool:
    return (all(k in data and _typed(data[k], t) for k, t in needs.items())
            and all(_typed(data[k], t) for k, t in (may or {}).items() if k in data))


def parse_record(data: Any) -> Record | None:
    """The record that the JSON value ``data`` holds, or None unless every field validates.

    Only what is used is checked in ``made`` (which also keeps what an executor reported);
    anything it holds besides is kept as it is.
    """
    if not isinstance(data, dict) or set(data) - {"made"} != set(_TYPES):
        return None
    if not _fits(data, _TYPES):
        return None
    made = data.get("made")
    if made is not None:
        if not isinstance(made, dict) or not _fits(made, _MADE_NEEDS, _MADE_MAY):
            return None
        if not all(isinstance(i, dict) and _fits(i, _IMAGE_NEEDS) for i in made["style_images"]):
            return None
    return Record(**data)


def write_record(output: Path, record: Record) -> None:
    """Write the record atomically, into a real ``.stylize`` folder (a link there is refused)."""
    atomic_write_bytes(record_path(output), json_bytes(asdict(record)), private_dir=True)


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
