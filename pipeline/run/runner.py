"""Running a plan: the driver's side of every photo, whatever executes it.

``run`` sweeps leftovers, checks that results can be written, then for each
group of tasks with one preset asks the executor to prepare the style targets
and hands it the photos, a few batches at a time.  Each photo's bytes are read
here, hashed, and sent as plain data; each result comes back as bytes and is
written here (:mod:`pipeline.run.writer`), atomically, and only then its record.
So exactly-once, resume and skipping hold the same whether the executor is this
process or a cluster: the executor never touches the job's folders.

This module is a library: it reports through an ``on_event`` callback, never
prints, never exits.  One photo's failure is recorded with its reason and the
batch goes on; only a full disk, an unwritable output folder, a stop request or
a setup error (the weights, a style image) end a run early.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import av

from pipeline import __version__
from pipeline.config.naming import display_name, is_video_name, output_too_long
from pipeline.config.styles import Preset
from pipeline.config.views import settings_digest
from pipeline.errors import (
    Cancelled,
    DiskFullError,
    InputError,
    OutputNotWritableError,
    StylizeError,
    clip,
)
from pipeline.executors.base import ExecEvent, Executor, Finished, Started, Step, Work
from pipeline.images import read_photo
from pipeline.images.header import probe_bytes
from pipeline.images.limits import max_photo_bytes
from pipeline.plan.batching import Batcher
from pipeline.plan.methods import Needs, needs
from pipeline.plan.planning import Plan, Task, result_keys
from pipeline.run.report import (
    EventFn,
    Report,
    TargetsReady,
    TaskFinished,
    TaskResult,
    TaskStarted,
    TaskStep,
)
from pipeline.run.writer import refresh_record, write_result
from pipeline.store import records
from pipeline.store.fsutil import check_writable, sweep_temp_files
from pipeline.store.hashing import digest_json
from pipeline.video.driver import Video, start_video
from pipeline.video.probe import MAX_VIDEO_BYTES
from pipeline.video.segments import Segment

STOPPING = (DiskFullError, OutputNotWritableError, Cancelled)


def _group_key(preset: Preset) -> str:
    return digest_json({"style": preset.name, "settings": settings_digest(preset.settings),
                        "images": [str(i.path) for i in preset.images]})


# -- the driver ---------------------------------------------------------------------


@dataclass
class _Sent:
    """A task whose bytes went to the executor: what its record will need."""

    task: Task
    digest: str
    stat: tuple[int, int]
    keys: dict[int, str]  # by output size (planning.result_keys)


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
        self.videos: dict[int, tuple[Video, Segment]] = {}  # work id -> its video's segment
        self.started_tasks: set[int] = set()  # id() of the tasks whose start was said
        self.started = 0
        self.in_flight = 0
        self.next_id = 0
        executor.bind(self._on_exec_event, should_stop)

    def _on_exec_event(self, event: ExecEvent) -> None:
        sent = self.sent.get(event.id)
        if sent is None:
            return
        if isinstance(event, Started):
            if id(sent.task) in self.started_tasks:
                return  # a video's later segment: the video started once
            self.started_tasks.add(id(sent.task))
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
            if is_video_name(task.input):
                self._video(task)
                continue
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

    def _video(self, task: Task) -> None:
        """Probe a video here and send each segment not yet on disk as its own work."""
        read = self._read(task, MAX_VIDEO_BYTES)
        if read is None:
            return
        data, digest, stat = read
        try:
            video = start_video(task, data, digest, self.should_stop)
        except InputError as exc:
            self.finish(TaskResult(task, "failed", exc.category, exc.message))
            return
        except (av.FFmpegError, ValueError) as exc:  # FFmpeg's own surprise: this video only
            self.finish(TaskResult(task, "failed", "not_a_video",
                                   f"{display_name(task.input)}: cannot be read as a video "
                                   f"({clip(str(exc))})"))
            return
        with contextlib.suppress(InputError):  # too small: each segment then says so
            self._prepare(task.preset, video.needs())
        if not video.pending:  # every segment made by a run that was stopped
            self._video_done(video, _Sent(task, digest, stat, result_keys(task, digest)))
        for segment in video.due():
            work_id = self._next_work(task, digest, stat)
            self.videos[work_id] = (video, segment)
            self._submit([video.work(segment, work_id)])

    def _next_work(self, task: Task, digest: str, stat: tuple[int, int]) -> int:
        work_id = self.next_id
        self.next_id += 1
        self.sent[work_id] = _Sent(task, digest, stat, result_keys(task, digest))
        return work_id

    def _work(self, task: Task) -> Work | None:
        """Read the photo (here, on the driver) into a Work item with what it needs, from
        its header's size (no needs if the header is unusable or the shape cannot be made
        at this size: the photo then fails in the executor with the decoder's or the
        method's reason); a file that cannot be read fails now."""
        read = self._read(task, max_photo_bytes(task.preset.settings.max_pixels))
        if read is None:
            return None
        data, digest, stat = read
        work_id = self._next_work(task, digest, stat)
        try:
            info = probe_bytes(data, task.input, max_pixels=task.preset.settings.max_pixels)
            wants: Needs | None = needs(task.preset.settings, info.width, info.height)
        except InputError:
            wants = None
        if wants is not None:
            self._prepare(task.preset, wants)
        return Work(work_id, display_name(task.input), data, task.preset, task.fmt, digest,
                    software=f"stylize {__version__} (style {task.style})", needs=wants)

    def _read(self, task: Task, max_bytes: int) -> tuple[bytes, str, tuple[int, int]] | None:
        """An input's bytes, digest and (size, mtime), read here; a file that cannot be
        read (or whose output cannot be written) fails now."""
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
                              max_bytes=max_bytes)
            stat = stat or records.stat_identity(task.input)
        except InputError as exc:
            self.finish(TaskResult(task, "failed", exc.category, exc.message))
            return None
        except OSError as exc:
            self.finish(TaskResult(task, "failed", "unreadable",
                                   f"{display_name(task.input)}: cannot be read "
                                   f"({exc.strerror or exc})"))
            return None
        # The digest made while planning, unless the photo changed since: hashed once.
        digest = task.input_digest if task.input_digest and stat == task.input_stat \
            else hashlib.sha256(data).hexdigest()
        return data, digest, stat

    # -- receiving ----------------------------------------------------------------------

    def _collect(self) -> None:
        results = self.executor.wait()
        self.in_flight -= 1
        for finished in results:
            self._received(finished)

    def _received(self, finished: Finished) -> None:
        sent = self.sent.pop(finished.id)
        task = sent.task
        part = self.videos.pop(finished.id, None)
        if part is not None and part[0].failed:
            return  # another segment of this video failed: it was said once
        if not finished.ok:
            if part is not None:
                part[0].failed = True
            self.finish(TaskResult(task, "failed", finished.category, finished.message,
                                   finished.seconds, finished.worker))
            return
        if part is not None:
            video, segment = part
            if self._kept(video, segment, finished):
                self._video_done(video, sent)
            return
        self._write(sent, finished)

    def _kept(self, video: Video, segment: Segment, finished: Finished) -> bool:
        """A segment kept on disk; whether it was the video's last."""
        try:
            return video.keep(segment, finished)
        except STOPPING:
            raise
        except (OSError, StylizeError) as exc:
            video.failed = True
            self._unwritable(video.task, exc, finished)
            return False

    def _video_done(self, video: Video, sent: _Sent) -> None:
        """Every segment is on disk: the final file, its record, then the parts go."""
        try:
            finished = video.finish(-1)
        except InputError as exc:
            self.finish(TaskResult(video.task, "failed", exc.category, exc.message))
            return
        except (av.FFmpegError, OSError, ValueError) as exc:
            self.finish(TaskResult(video.task, "failed", "internal",
                                   f"{display_name(video.task.input)}: the segments could "
                                   f"not be joined ({exc})"))
            return
        if self._write(sent, finished):
            video.clean()

    def _unwritable(self, task: Task, exc: OSError | StylizeError, finished: Finished) -> None:
        why = exc.message if isinstance(exc, StylizeError) else (exc.strerror or str(exc))
        self.finish(TaskResult(task, "failed", "unwritable",
                               f"{display_name(task.output)}: cannot be written ({why})",
                               finished.seconds, finished.worker))

    def _write(self, sent: _Sent, finished: Finished) -> bool:
        """The output, then its record; whether it was written."""
        task = sent.task
        try:
            write_result(task, finished, sent.digest, sent.stat, sent.keys)
        except STOPPING:
            raise  # a full disk, an unwritable folder: every later photo would fail too
        except (OSError, StylizeError) as exc:  # this output only (a name too long, ...)
            self._unwritable(task, exc, finished)
            return False
        self.finish(TaskResult(task, "done", reason=finished.note, seconds=finished.seconds,
                               worker=finished.worker,
                               details={"width": finished.width, "height": finished.height,
                                        **finished.details}))
        return True


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
        driver.report.videos_shipped = counts.videos
        driver.report.seconds = time.perf_counter() - start
    return driver.report
