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
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import __version__, records
from pipeline.batching import Batcher
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
from pipeline.images import read_photo
from pipeline.images.header import probe_bytes
from pipeline.images.limits import max_photo_bytes
from pipeline.methods import Needs, needs
from pipeline.naming import TEMP_PREFIX, display_name, output_too_long
from pipeline.planning import Plan, Status, Task
from pipeline.styles import Preset
from pipeline.writer import refresh_record, write_result

if TYPE_CHECKING:
    from pipeline.engine.progress import Progress

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
    networks_shipped: int = 0
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
        self.prepared: set[int] = set()  # style sides the executor has for this group
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
        """Send a group's photos (one preset) in batches, each photo read once.

        Style targets are made as photos of new sizes come (:meth:`_prepare`), each
        before the first batch that needs it is sent.
        """
        preset = tasks[0].preset
        self.prepared = set()
        batcher: Batcher[Work] = Batcher(
            lambda w, h: self.executor.batch_size(preset, w, h))
        for task in tasks:
            read = self._work(task)
            if read is not None:
                out = None if read.needs is None else read.needs.output
                for batch in batcher.add(read, out, len(read.photo)):
                    self._submit(batch)
        for batch in batcher.rest():
            self._submit(batch)
        while self.in_flight:
            self._collect()

    def _prepare(self, preset: Preset, wants: Needs) -> None:
        """Have the executor make the style targets (and network) a photo needs."""
        sides = wants.every_side
        if sides - self.prepared:
            before = self.executor.counts
            self.executor.prepare(preset, wants)
            made = self.executor.counts - before
            self.prepared |= sides
            self.on_event(TargetsReady(preset.name, made.computed, made.cached))

    def _submit(self, works: list[Work]) -> None:
        while self.in_flight >= self.executor.capacity():
            self._collect()
        self.executor.submit(works)
        self.in_flight += 1

    def _work(self, task: Task) -> Work | None:
        """Read the photo (here, on the driver) into a Work item with what it needs, from
        its header's size (no needs if the header is unusable or the shape cannot be made
        at this size: the photo then fails in the executor with the decoder's or the
        method's reason); a file that cannot be read fails now."""
        too_long = output_too_long(task.output)
        if too_long:
            self.finish(TaskResult(task, "failed", "unwritable",
                                   f"{display_name(task.output)}: cannot be written ({too_long})"))
            return None
        if _finished_meanwhile(task):
            self.finish(TaskResult(task, "skipped"))
            return None
        try:
            # Taken before reading: if the photo changes meanwhile, its record's size and
            # mtime no longer match, and the next run hashes it again.
            stat: tuple[int, int] | None = records.stat_identity(task.input)
        except OSError:
            stat = None  # read_photo says precisely why
        try:
            data = read_photo(task.input, root=task.root, follow_symlinks=task.follow_symlinks,
                              max_bytes=max_photo_bytes(task.preset.settings.max_pixels))
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
        # The digest made while planning, unless the photo changed since: hashed once.
        digest = task.input_digest if task.input_digest and stat == task.input_stat \
            else hashlib.sha256(data).hexdigest()
        self.sent[work_id] = _Sent(task, digest, stat)
        try:
            info = probe_bytes(data, task.input, max_pixels=task.preset.settings.max_pixels)
            wants: Needs | None = needs(task.preset.settings, info.width, info.height)
        except InputError:
            wants = None
        if wants is not None:
            self._prepare(task.preset, wants)
        return Work(work_id, display_name(task.input), data, task.preset, task.fmt, digest,
                    software=f"stylize {__version__} (style {task.style})", needs=wants)

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


def _finished_meanwhile(task: Task) -> bool:
    """Whether a record made since the plan (by a run that held the lock before this one
    got it) already says this task is done: the plan is made once, before the lock."""
    rec = records.read_record(task.output)
    return (rec is not None and task.key is not None and rec.key == task.key
            and records.output_matches(task.output, rec))


def run(plan: Plan, executor: Executor, *, on_event: EventFn | None = None,
        should_stop: Callable[[], bool] | None = None,
        checked: Collection[Path] = ()) -> Report:
    """Run the due tasks of a plan; returns the report (never raises for one photo).

    ``checked``: output folders the caller has already found writable (``stylize run``
    checks before it locks them), which are not checked again.
    """
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
    for folder in sorted({t.output.parent for t in due if not output_too_long(t.output)}
                         - set(checked)):
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
        driver.report.networks_shipped = counts.networks
        driver.report.seconds = time.perf_counter() - start
    return driver.report
