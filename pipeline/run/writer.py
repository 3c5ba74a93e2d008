"""The driver's writes: each result atomically, then the record that makes it done.

Whatever executor made a picture, it is written here, on the driver: the output
first (a temporary file, flushed, renamed), then its record (the key of exactly the
bytes that were stylized, and how the picture was made).  A kill between the two
leaves an output without a record, which the next run simply makes again.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pipeline import __version__
from pipeline.config.styles import Preset
from pipeline.config.weights_id import weights_digest
from pipeline.errors import StylizeError
from pipeline.executors.base import Finished
from pipeline.plan.planning import Task
from pipeline.store import records
from pipeline.store.fsutil import atomic_write_bytes
from pipeline.store.hashing import file_digest


def write_result(task: Task, finished: Finished, digest: str, stat: tuple[int, int],
                 keys: dict[int, str]) -> None:
    """The output, atomically, then its record: the record is what makes the task done.

    ``keys`` are the driver's (:func:`pipeline.plan.planning.result_keys`), by output size:
    a picture made smaller after running out of memory is recorded under the smaller
    size's key, so that a later run tries the full size again.
    """
    assert finished.data is not None
    preset = task.preset
    if finished.size and finished.size != preset.settings.size:
        preset = preset.with_overrides({"size": finished.size})
    key = keys[preset.settings.size]
    atomic_write_bytes(task.output, finished.data,
                       mtime_ns=stat[1] if preset.settings.keep_mtime else None)
    out_size, out_mtime = records.stat_identity(task.output)
    records.write_record(task.output, records.Record(
        key=key, input=os.fsdecode(task.input), input_digest=digest, input_size=stat[0],
        input_mtime_ns=stat[1], style=task.style, output_size=out_size,
        output_mtime_ns=out_mtime, seconds=round(finished.seconds, 3),
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        made=_made(preset, task, finished)))


def _made(preset: Preset, task: Task, finished: Finished) -> dict[str, Any]:
    """How the picture was made: enough to make it again (``stylize explain``)."""
    return {"tool": f"stylize {__version__}", "preset": preset.name,
            "preset_source": preset.source,
            "preset_path": os.fsdecode(preset.path) if preset.path else None,
            "style_images": [{"path": os.fsdecode(i.path), "weight": i.weight,
                              "digest": file_digest(i.path)} for i in preset.images],
            "settings": preset.settings.model_dump(), "format": task.fmt,
            "weights_digest": weights_digest(preset.settings.weights),
            "note": finished.note or None, "metadata_notes": list(finished.metadata_notes),
            "worker": finished.worker or None, **finished.details}


def refresh_record(task: Task) -> None:
    """Store a touched photo's new size and mtime in its record (its content is unchanged).

    Without this, every later run would read and hash the photo again.  Best effort: a
    record that cannot be rewritten only costs that hashing.
    """
    rec = records.read_record(task.output)
    if rec is None or task.input_stat is None or rec.key != task.key:
        return
    size, mtime = task.input_stat
    with contextlib.suppress(StylizeError, OSError):
        records.write_record(task.output, replace(rec, input_size=size, input_mtime_ns=mtime))
