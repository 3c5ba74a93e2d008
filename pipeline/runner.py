"""Running a plan: the driver's side of every photo, whatever executes it.

``run`` sweeps leftovers, checks that results can be written, then for each
group of tasks with one preset asks the executor to prepare the style targets
and hands it the photos, a few batches at a time.  Each photo's bytes are read
here, hashed, and sent as plain data; each result comes back as bytes and is
written here (:mod:`pipeline.writer`), atomically, and only then its record.
So exactly-once, resume and skipping hold the same whether the executor is this
process or a cluster: the executor never touches the job's folders.

This module is a library: it reports through an ``on_event`` callback, never
prints, never exits.  One photo's failure is recorded with its reason and the
batch goes on; only a full disk, an unwritable output folder, a stop request or
a setup error (the weights, a style image) end a run early.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import __version__, records
from pipeline.engine.geometry import output_size
from pipeline.errors import (
    Cancelled,
    DiskFullError,
    InputError,
    OutputNotWritableError,
    StylizeError,
)
from pipeline.executors.base import ExecEvent, Executor, Finished, Started, Step, Work
from pipeline.fsutil import sweep_temp_files, translate_os_error
from pipeline.hashing import digest_json
from pipeline.images import probe, read_photo
from pipeline.naming import TEMP_PREFIX, display_name, output_too_long
from pipeline.planning import Plan, Status, Task
from pipeline.styles import Preset
from pipeline.writer import refresh_record, write_result

if TYPE_CHECKING:
    from pipeline.engine.optimize import Progress

STOPPING = (DiskFullError, OutputNotWritableError, Cancelled)


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


# -- before any work ------------------------------------------------------------


def check_writable(folder: Path) -> None:
    """Fail before any work if results could not be written to ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Named like a temp file, so that a run killed right here leaves nothing behind.
        probe_file = folder / f"{TEMP_PREFIX}write-test-{os.getpid()}"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as exc:
        if isinstance(translate_os_error(exc, folder), DiskFullError):
            raise DiskFullError(f"disk full: cannot write in the output folder {folder} "
                                "(free some space and run again); nothing was processed"
                                ) from exc
        # Any other failure (no permission, read-only, a file where a folder should
        # be) means the same thing: results cannot go there.
        why = ("a file is in the way of a folder on its path"
               if exc.errno in (errno.EEXIST, errno.ENOTDIR) else exc.strerror or str(exc))
        raise OutputNotWritableError(f"output folder {folder} is not writable ({why}); "
                                     "nothing was processed") from exc


def _group_key(preset: Preset) -> str:
    return digest_json({"style": preset.name, "settings": preset.settings.model_dump(),
                        "images": [str(i.path) for i in preset.images]})


# -- the driver ---------------------------------------------------------------------


@dataclass
class _Sent:
    """A task whose bytes went to the executor: what its record will need."""

    task: Task
    digest: str
    stat: tuple[int, int]


class _Driver:
    def __init__(self, plan: Plan, executor: Executor, on_event: EventFn,
                 should_stop: Callable[[], bool] | None) -> None:
        self.executor = executor
        self.on_event = on_event
        self.should_stop = should_stop
        self.due = plan.due
        self.report = Report(results=[TaskResult(t, "skipped") for t in plan.skipped])
        self.sent: dict[int, _Sent] = {}
        self.started = 0
        self.in_flight = 0
        self.next_id = 0
        executor.bind(self._on_exec_event, should_stop)

    def _on_exec_event(self, event: ExecEvent) -> None:
        sent = self.sent.get(event.id)
        if sent is None:
            return
        if isinstance(event, Started):
            self.started += 1
            self.on_event(TaskStarted(sent.task, self.started, len(self.due), event.worker))
        elif isinstance(event, Step):
            self.on_event(TaskStep(sent.task, event.progress, event.worker))

    def finish(self, result: TaskResult) -> None:
        self.report.results.append(result)
        self.on_event(TaskFinished(result))

    # -- sending ----------------------------------------------------------------------

    def run_group(self, tasks: list[Task]) -> None:
        preset = tasks[0].preset
        sizes = header_sizes(tasks)  # headers only, read once
        before = self.executor.counts
        self.executor.prepare(preset, [s for s in sizes if s is not None])
        made = self.executor.counts - before
        self.on_event(TargetsReady(preset.name, made.computed, made.cached))
        for batch in make_batches(tasks, sizes, self.executor.batch_size):
            works = [w for w in (self._work(t) for t in batch) if w is not None]
            if works:
                while self.in_flight >= self.executor.capacity():
                    self._collect()
                self.executor.submit(works)
                self.in_flight += 1
        while self.in_flight:
            self._collect()

    def _work(self, task: Task) -> Work | None:
        """Read the photo (here, on the driver) into a Work item; a bad file fails now."""
        too_long = output_too_long(task.output)
        if too_long:
            self.finish(TaskResult(task, "failed", "unwritable",
                                   f"{display_name(task.output)}: cannot be written ({too_long})"))
            return None
        try:
            # Taken before reading: if the photo changes meanwhile, its record's size and
            # mtime no longer match, and the next run hashes it again.
            stat: tuple[int, int] | None = records.stat_identity(task.input)
        except OSError:
            stat = None  # read_photo says precisely why
        try:
            data = read_photo(task.input, root=task.root, follow_symlinks=task.follow_symlinks,
                              max_bytes=_max_file_bytes(task))
            stat = stat or records.stat_identity(task.input)
        except InputError as exc:
            self.finish(TaskResult(task, "failed", exc.category, exc.message))
            return None
        except OSError as exc:
            self.finish(TaskResult(task, "failed", "unreadable",
                                   f"{display_name(task.input)}: cannot be read "
                                   f"({exc.strerror or exc})"))
            return None
        work_id = self.next_id
        self.next_id += 1
        digest = hashlib.sha256(data).hexdigest()
        self.sent[work_id] = _Sent(task, digest, stat)
        return Work(work_id, display_name(task.input), data, task.preset, task.fmt, digest,
                    software=f"stylize {__version__} (style {task.style})")

    # -- receiving ----------------------------------------------------------------------

    def _collect(self) -> None:
        results = self.executor.wait()
        self.in_flight -= 1
        for finished in results:
            self._received(finished)

    def _received(self, finished: Finished) -> None:
        sent = self.sent.pop(finished.id)
        task = sent.task
        if not finished.ok:
            self.finish(TaskResult(task, "failed", finished.category, finished.message,
                                   finished.seconds, finished.worker))
            return
        try:
            write_result(task, finished, sent.digest, sent.stat)
        except STOPPING:
            raise  # a full disk, an unwritable folder: every later photo would fail too
        except (OSError, StylizeError) as exc:  # this output only (a name too long, ...)
            why = exc.message if isinstance(exc, StylizeError) else (exc.strerror or str(exc))
            self.finish(TaskResult(task, "failed", "unwritable",
                                   f"{display_name(task.output)}: cannot be written ({why})",
                                   finished.seconds, finished.worker))
            return
        self.finish(TaskResult(task, "done", reason=finished.note, seconds=finished.seconds,
                               worker=finished.worker,
                               details={"width": finished.width, "height": finished.height,
                                        **finished.details}))


def header_sizes(tasks: list[Task]) -> list[tuple[int, int] | None]:
    """Each photo's size from its header (None when unreadable: its task fails on its own)."""
    sizes: list[tuple[int, int] | None] = []
    for task in tasks:
        try:
            info = probe(task.input, max_pixels=task.preset.settings.max_pixels,
                         root=task.root, follow_symlinks=task.follow_symlinks)
            sizes.append((info.width, info.height))
        except InputError:
            sizes.append(None)
    return sizes


def make_batches(tasks: list[Task], sizes: list[tuple[int, int] | None],
                 batch_size: Callable[[Preset, int, int], int]) -> list[list[Task]]:
    """Tasks of one preset bucketed by the output size their header predicts, then cut to
    ``batch_size(preset, width, height)``; an unreadable header makes a batch of one."""
    buckets: dict[tuple[int, int] | None, list[Task]] = {}
    for task, size in zip(tasks, sizes, strict=True):
        out = output_size(*size, task.preset.settings.size) if size is not None else None
        buckets.setdefault(out, []).append(task)
    batches: list[list[Task]] = []
    for out, bucket in buckets.items():
        n = 1 if out is None else max(1, batch_size(bucket[0].preset, *out))
        batches += [bucket[i:i + n] for i in range(0, len(bucket), n)]
    return batches


def _max_file_bytes(task: Task) -> int:
    """A photo's file is never larger than its pixels stored uncompressed, with headroom."""
    return max(64 << 20, task.preset.settings.max_pixels * 8)


def run(plan: Plan, executor: Executor, *, on_event: EventFn | None = None,
        should_stop: Callable[[], bool] | None = None) -> Report:
    """Run the due tasks of a plan; returns the report (never raises for one photo)."""
    start = time.perf_counter()
    # The executor may outlive this run (a watcher's, reused): its counts are running
    # totals, and the report is about this run only.
    counts_before = executor.counts
    driver = _Driver(plan, executor, on_event or (lambda e: None), should_stop)
    due = plan.due
    for folder in sorted({t.output.parent for t in plan.tasks}):
        sweep_temp_files(folder)
        # Records are written the same way, so a kill can leave temp files there too.
        sweep_temp_files(folder / records.RECORD_DIR)
    for folder in sorted({t.output.parent for t in due if not output_too_long(t.output)}):
        check_writable(folder)  # a path too long fails its photos alone (in _work)
    for task in plan.skipped:
        if task.stale_stat:
            refresh_record(task)
    groups: dict[str, list[Task]] = {}
    for task in due:
        groups.setdefault(_group_key(task.preset), []).append(task)
    try:
        for tasks in groups.values():
            driver.run_group(tasks)
    except STOPPING as exc:
        executor.cancel()
        driver.report.stopped = exc
        ran = {id(r.task) for r in driver.report.results}
        driver.report.results += [TaskResult(t, "not_run", exc.category, exc.message)
                                  for t in due if id(t) not in ran]
    except BaseException:
        executor.cancel()
        raise
    finally:
        counts = executor.counts - counts_before
        driver.report.targets_computed = counts.computed
        driver.report.targets_cached = counts.cached
        driver.report.targets_shipped = counts.shipped
        driver.report.seconds = time.perf_counter() - start
    return driver.report
