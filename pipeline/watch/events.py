"""What a watcher says and how it is tuned: events, the live status, the options.

Every file name and message in an event has been through
:func:`pipeline.config.naming.safe_text` when the event is made, so the plain output,
the live view and the JSON log all get text with no control character in it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.config.manifest import Job
from pipeline.config.naming import safe_text
from pipeline.errors import UsageError

logger = logging.getLogger(__name__)

#: How long a truncated-looking file may stay unchanged before it counts as broken.
DEFAULT_INCOMPLETE_GRACE_S = 60.0


@dataclass(frozen=True)
class WatchEvent:
    """What happened; ``kind`` is one of KINDS, ``data`` its details (JSON-ready)."""

    kind: str
    job: str = ""
    file: str = ""  # the name inside the inbox, safe to show
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    KINDS = ("watching", "queued", "started", "step", "done", "failed", "ignored", "warning",
             "stopped")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event": self.kind,
            "time": datetime.fromtimestamp(self.time, UTC).isoformat(timespec="milliseconds")}
        if self.job:
            out["job"] = self.job
        if self.file:
            out["file"] = self.file
        out.update(self.data)
        return out


WatchEventFn = Callable[[WatchEvent], None]


def _safe(value: Any) -> Any:
    """Every string in an event's data made safe to show (paths, messages, lists of them)."""
    if isinstance(value, str | Path):
        return safe_text(value)
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return value


class Emitter:
    """Makes events (sanitized) and hands them to the callback one at a time."""

    def __init__(self, on_event: WatchEventFn | None) -> None:
        self._on_event = on_event or (lambda e: None)
        self._lock = threading.Lock()

    def __call__(self, kind: str, job: Job | None = None, file: str | Path = "",
                 **data: Any) -> None:
        name = safe_text(Path(file).name) if file else ""
        event = WatchEvent(kind, job.name if job else "", name,
                           {k: _safe(v) for k, v in data.items()})
        with self._lock:
            try:
                self._on_event(event)
            except Exception:  # a display problem must not stop the watcher
                logger.exception("event callback failed")


@dataclass(frozen=True)
class WatchOptions:
    settle: float = 3.0  # seconds a file's size, mtime and inode must stay unchanged
    poll: float | None = None  # poll every N seconds instead of native events
    rescan: float = 30.0  # full scan of each inbox this often, whatever the events said
    retry_failed: bool = False  # move failed/ photos back into the inbox at start
    incomplete_grace: float = DEFAULT_INCOMPLETE_GRACE_S
    tick: float | None = None  # how often pending files are looked at [settle / 5]

    def __post_init__(self) -> None:
        if self.settle < 0:
            raise UsageError("--settle must be 0 or more seconds")
        if self.poll is not None and self.poll <= 0:
            raise UsageError("--poll must be more than 0 seconds")
        if self.rescan <= 0:
            raise UsageError("--rescan must be more than 0 seconds")

    @property
    def tick_s(self) -> float:
        return self.tick if self.tick is not None else min(0.5, max(0.05, self.settle / 5))


@dataclass
class WatchStatus:
    """A snapshot for a live view (all text in it is safe to show)."""

    queued: int = 0
    pending: int = 0  # seen, waiting to settle
    current: str = ""  # "job/name" being processed
    step: str = ""  # e.g. "starry-night · scale 2/3 · step 40/120"
    done: int = 0
    failed: int = 0
    inboxes: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """What processing one photo gave: ``ok``, or the first failure's category and message."""

    ok: bool
    outputs: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # styles whose output was already current
    category: str = ""
    message: str = ""
    style: str = ""


#: ``process(job, path)`` stylizes one complete photo in every style of the job; injectable
#: so the watcher's own logic can be tested without the engine.
ProcessFn = Callable[[Job, Path], Outcome]
