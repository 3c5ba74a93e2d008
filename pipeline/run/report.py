"""What a run reports: each task's result, the totals, and the events on the way.

Plain data, apart from the driver (:mod:`pipeline.run.runner`) that makes it, so that the
views (``pipeline.ui``), the watcher and the video driver read it without the runner.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import StylizeError
from pipeline.plan.planning import Status, Task

if TYPE_CHECKING:
    from pipeline.progress import Progress

__all__ = ["Event", "EventFn", "Report", "TargetsReady", "TaskFinished", "TaskResult",
           "TaskStarted", "TaskStep"]


@dataclass
class TaskResult:
    task: Task
    status: Status
    category: str = ""
    reason: str = ""
    seconds: float = 0.0
    worker: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # size, device, precision

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.task.job, "input": os.fsdecode(self.task.input),
                "style": self.task.style, "output": os.fsdecode(self.task.output),
                "status": self.status, "category": self.category or None,
                "reason": self.reason or None, "seconds": round(self.seconds, 3),
                "worker": self.worker or None}


@dataclass
class Report:
    results: list[TaskResult] = field(default_factory=list)
    targets_computed: int = 0
    targets_cached: int = 0
    targets_shipped: int = 0
    networks_shipped: int = 0
    videos_shipped: int = 0
    seconds: float = 0.0
    stopped: StylizeError | None = None  # why the run ended early, if it did

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def exit_code(self) -> int:
        if self.stopped is not None:
            return self.stopped.exit_code
        failed = self.count("failed")
        # 4 only when nothing at all is fine: a nightly rerun in which one bad photo
        # fails again while the others are already done is "some failed" (3).
        if failed and not (self.count("done") or self.count("skipped")):
            return 4
        return 3 if failed else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": {s: self.count(s) for s in ("done", "skipped", "failed", "not_run")}
            | {"targets_computed": self.targets_computed,
               "targets_cached": self.targets_cached,
               "targets_shipped": self.targets_shipped,
               "networks_shipped": self.networks_shipped,
               "videos_shipped": self.videos_shipped,
               "seconds": round(self.seconds, 3), "exit_code": self.exit_code,
               "stopped": self.stopped.message if self.stopped else None},
            "tasks": [r.as_dict() for r in self.results],
        }


# -- events -------------------------------------------------------------------


@dataclass(frozen=True)
class TargetsReady:
    style: str
    computed: int
    cached: int


@dataclass(frozen=True)
class TaskStarted:
    task: Task
    index: int  # 1-based among the due tasks
    total: int
    worker: str = ""


@dataclass(frozen=True)
class TaskStep:
    task: Task
    progress: Progress
    worker: str = ""


@dataclass(frozen=True)
class TaskFinished:
    result: TaskResult


Event = TargetsReady | TaskStarted | TaskStep | TaskFinished
EventFn = Callable[[Event], None]
