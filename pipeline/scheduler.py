"""Planning and running a manifest: photos × styles -> tasks -> outputs.

``plan`` expands each job into tasks and marks those whose output is already
there and current as skipped.  ``run`` groups the due tasks by style and
settings, gets each group's style targets once (from the cache or computed),
then stylizes photo after photo.  A task is plain data (paths, a preset, a key)
so that it could be shipped to another process or machine; the executor here
is the simplest one, in-process.

This module is a library: it reports through an ``on_event`` callback, never
prints, never exits.  One photo's failure is recorded with its reason and the
batch goes on; only a full disk, an unwritable output folder or a stop request
end a run early.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from pipeline import records
from pipeline.cache import ArtifactCache
from pipeline.engine import memory
from pipeline.engine.optimize import MIN_SCALE_SIDE, Engine, Progress, output_size
from pipeline.engine.weights import weights_digest
from pipeline.errors import (
    Cancelled,
    DiskFullError,
    InputError,
    OutOfMemoryError,
    OutputNotWritableError,
    StylizeError,
)
from pipeline.fsutil import TEMP_PREFIX, sweep_temp_files, translate_os_error
from pipeline.hashing import digest_json, file_digest
from pipeline.images import LoadedImage, display_name, probe
from pipeline.manifest import Job, Manifest
from pipeline.render import SUFFIXES, load_content, output_format, save_result
from pipeline.styles import Preset
from pipeline.targets import StyleTargetStore

logger = logging.getLogger(__name__)

#: Names an input must have to be picked up (case-insensitive).
INPUT_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif",
                            ".heic", ".heif", ".avif", ".mpo"})
#: Folders never searched for photos: our own records, NAS thumbnails, OS litter.
SKIP_DIRS = frozenset({records.RECORD_DIR, "@eaDir", "done", "failed", "__MACOSX"})
KEY_VERSION = 1

Status = Literal["due", "skipped", "done", "failed", "not_run"]


@dataclass(frozen=True)
class Task:
    """One photo in one style: everything a worker needs, as plain data."""

    job: str
    input: Path
    root: Path  # the job's input folder; inputs outside it are refused
    follow_symlinks: bool
    preset: Preset
    output: Path
    fmt: str
    key: str | None  # None when the input could not even be hashed
    input_digest: str | None
    input_stat: tuple[int, int] | None  # (size, mtime_ns) when planned
    status: Status
    #: Skipped, but the photo's size or mtime differ from its record (touched, copied):
    #: the run stores the new ones so that later runs need not hash the photo again.
    stale_stat: bool = False

    @property
    def style(self) -> str:
        return self.preset.name


@dataclass
class TaskResult:
    task: Task
    status: Status
    category: str = ""
    reason: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.task.job, "input": os.fsdecode(self.task.input),
                "style": self.task.style, "output": os.fsdecode(self.task.output),
                "status": self.status, "category": self.category or None,
                "reason": self.reason or None, "seconds": round(self.seconds, 3)}


@dataclass
class Plan:
    tasks: list[Task]

    @property
    def due(self) -> list[Task]:
        return [t for t in self.tasks if t.status == "due"]

    @property
    def skipped(self) -> list[Task]:
        return [t for t in self.tasks if t.status == "skipped"]


@dataclass
class Report:
    results: list[TaskResult] = field(default_factory=list)
    targets_computed: int = 0
    targets_cached: int = 0
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


@dataclass(frozen=True)
class TaskStep:
    task: Task
    progress: Progress


@dataclass(frozen=True)
class TaskFinished:
    result: TaskResult


Event = TargetsReady | TaskStarted | TaskStep | TaskFinished
EventFn = Callable[[Event], None]


# -- planning -----------------------------------------------------------------


def _is_litter(name: str) -> bool:
    return name.startswith((".", "._", "~$")) or name.endswith("~") or name in (
        "Thumbs.db", "desktop.ini")


def discover_inputs(job: Job) -> list[Path]:
    """The job's candidate photos, sorted; hidden files and OS litter are left out.

    Entries are chosen by name, so a directory, FIFO or broken link with an
    image name is still listed and later refused with a reason, not ignored.
    """
    found: list[Path] = []
    candidates: Iterator[Path]
    if job.pattern is not None:
        candidates = job.input.glob(job.pattern)
    elif job.recursive:
        candidates = _walk(job.input, job.output)
    else:
        candidates = job.input.iterdir() if job.input.is_dir() else iter(())
    for path in candidates:
        rel = path.relative_to(job.input)
        if any(_is_litter(part) or part in SKIP_DIRS for part in rel.parts):
            continue
        # Our own results are never photos to stylize again (an output folder inside the
        # input folder of a glob such as photos/**/*.jpg would otherwise grow every run).
        if path.parent == job.output or job.output in path.parents:
            continue
        if path.suffix.lower() in INPUT_SUFFIXES:
            found.append(path)
    return sorted(set(found))


def _walk(top: Path, output: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        # Never descend into our own output (an output folder inside the input one).
        dirnames[:] = sorted(d for d in dirnames if not _is_litter(d) and d not in SKIP_DIRS
                             and (here / d).resolve() != output
                             and Path(d).suffix.lower() not in INPUT_SUFFIXES)
        for name in filenames + [d for d in os.listdir(here)
                                 if Path(d).suffix.lower() in INPUT_SUFFIXES
                                 and (here / d).is_dir()]:
            yield here / name


def output_path(job: Job, photo: Path, preset: Preset, fmt: str) -> Path:
    """``<output>/<subfolders>/<photo name>.<style><suffix>`` (see README: output naming).

    The photo's full name, suffix included, is kept so that ``a.jpg`` and
    ``a.png`` never collide; subfolders are mirrored so equal names in two
    folders never collide; the style is in the name so styles never collide.
    """
    rel = photo.relative_to(job.input)
    return job.output / rel.parent / f"{rel.name}.{preset.name}{SUFFIXES[fmt]}"


def task_key(input_digest: str, preset: Preset, fmt: str) -> str:
    return digest_json({
        "v": KEY_VERSION,
        "input": input_digest,
        "settings": preset.settings.engine_view(),
        "style_images": [[file_digest(i.path), i.weight] for i in preset.images],
        "weights": weights_digest(preset.settings.weights),
        "format": fmt,
    })


def _input_digest(photo: Path, stat: tuple[int, int], rec: records.Record | None) -> str | None:
    """The photo's content hash, reusing the record's when size and mtime are unchanged."""
    if rec is not None and (rec.input_size, rec.input_mtime_ns) == stat:
        return rec.input_digest
    try:
        return file_digest(photo)
    except OSError:
        return None


def plan(manifest: Manifest, *, jobs: list[str] | None = None) -> Plan:
    """Every task of the selected jobs, each marked due or skipped."""
    # `--job a --job a` means job a once, not two jobs that collide.
    selected = ([manifest.job(n) for n in dict.fromkeys(jobs)] if jobs
                else list(manifest.jobs))
    tasks: list[Task] = []
    for job in selected:
        for photo in discover_inputs(job):
            for preset in job.styles:
                tasks.append(make_task(job, photo, preset))
    outputs = [(t.job, t.output) for t in tasks]
    names = {job.name for job in selected}
    for job in manifest.jobs:
        if job.name not in names:
            # The jobs not run now still own their outputs: running jobs one at a time
            # (--job) must not let two of them overwrite each other's results in turn.
            outputs += [(job.name, output_path(job, photo, preset,
                                               output_format(preset.settings.format, photo)))
                        for photo in discover_inputs(job) for preset in job.styles]
    _check_collisions(outputs)
    return Plan(tasks)


def make_task(job: Job, photo: Path, preset: Preset, *, root: Path | None = None) -> Task:
    fmt = output_format(preset.settings.format, photo)
    out = output_path(job, photo, preset, fmt) if root is None else (
        job.output / f"{photo.name}.{preset.name}{SUFFIXES[fmt]}")
    rec = records.read_record(out)
    stat: tuple[int, int] | None = None
    digest = key = None
    with contextlib.suppress(OSError):
        if photo.is_file():
            stat = records.stat_identity(photo)
            digest = _input_digest(photo, stat, rec)
    if digest is not None:
        key = task_key(digest, preset, fmt)
    status: Status = "due"
    if rec is not None and key is not None and rec.key == key and records.output_matches(out, rec):
        status = "skipped"
    stale = status == "skipped" and rec is not None and stat != (rec.input_size,
                                                                 rec.input_mtime_ns)
    return Task(job.name, photo, root or job.input, job.follow_symlinks, preset, out, fmt, key,
                digest, stat, status, stale)


def _check_collisions(outputs: list[tuple[str, Path]]) -> None:
    seen: dict[Path, str] = {}
    for job, output in outputs:
        other = seen.get(output)
        if other is not None:
            from pipeline.errors import ConfigError

            raise ConfigError(f"jobs {other!r} and {job!r} would both write {output}; "
                              "give them different output folders")
        seen[output] = job


# -- running ------------------------------------------------------------------


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


#: After running out of memory, a photo is tried once more at this fraction of the size.
OOM_RETRY_SCALE = 0.5


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _photo_size(task: Task) -> tuple[int, int] | None:
    try:
        info = probe(task.input, max_pixels=task.preset.settings.max_pixels, root=task.root,
                     follow_symlinks=task.follow_symlinks)
    except InputError:
        return None  # the task itself will fail with the reason
    return info.width, info.height


class Runner:
    """Runs tasks in this process; engines and style targets are kept between tasks."""

    def __init__(self, cache: ArtifactCache | None, on_event: EventFn | None = None,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.store = StyleTargetStore(cache)
        self.on_event = on_event or (lambda e: None)
        self.should_stop = should_stop

    def prepare(self, preset: Preset, sizes: list[tuple[int, int]]) -> Engine:
        """Build the engine and fetch the style targets these photo sizes need."""
        engine = Engine(preset.settings)
        wanted: set[int] = set()
        for w, h in sizes:
            # A photo too thin for this size fails in its own task, with its name.
            with contextlib.suppress(InputError):
                wanted.update(engine.style_sides(w, h))
        sides = sorted(wanted)
        before = (self.store.counts.computed, self.store.counts.cached)
        if sides:
            self.store.get(engine, preset, sides)
        self.on_event(TargetsReady(preset.name, self.store.counts.computed - before[0],
                                   self.store.counts.cached - before[1]))
        return engine

    def run_task(self, engine: Engine, task: Task, index: int, total: int) -> TaskResult:
        """One photo; errors that concern this photo only are returned, not raised."""
        self.on_event(TaskStarted(task, index, total))
        start = time.perf_counter()
        try:
            out_of_memory: str | None = None  # where, when the first attempt ran out
            try:
                result = self._render(engine, task, start)
            except torch.OutOfMemoryError:
                out_of_memory = f" on {engine.device}"
            except MemoryError:
                out_of_memory = ""
            # Retried outside the except clause, so that the failed attempt's tensors
            # (held by the traceback's frames) are freed before the second one.
            if out_of_memory is not None:
                result = self._retry_smaller(engine, task, out_of_memory, start)
        except Exception as exc:
            result = _failed(task, exc)
        return self._finished(result, time.perf_counter() - start)

    def _finished(self, result: TaskResult, seconds: float) -> TaskResult:
        result.seconds = seconds
        self.on_event(TaskFinished(result))
        return result

    def run_batch(self, engine: Engine, tasks: list[Task], index: int,
                  total: int) -> list[TaskResult]:
        """Photos of one output size optimized together; each still fails on its own.

        A photo that cannot be loaded fails alone before the batch starts.  If the
        batch runs out of memory, its photos are done one by one instead (each with
        the single photo's retry).  A batch's time is shared equally by its photos.
        """
        start = time.perf_counter()
        results: list[TaskResult] = []
        loaded: list[_Loaded] = []
        for i, task in enumerate(tasks):
            self.on_event(TaskStarted(task, index + i, total))
            try:
                loaded.append(self._load(engine, task))
            except Exception as exc:
                results.append(self._finished(_failed(task, exc), 0.0))
        # The header's size predicts the loaded one; a photo that differs goes alone.
        sizes = [output_size(*item.photo.rgb.size, engine.settings.size) for item in loaded]
        batch = [item for item, size in zip(loaded, sizes, strict=True) if size == sizes[0]]
        alone = [item.task for item, size in zip(loaded, sizes, strict=True)
                 if size != sizes[0]]
        pictures: list[Image.Image] | None = None
        if len(batch) > 1:
            try:
                pictures = self._stylize_batch(engine, batch)
            except (torch.OutOfMemoryError, MemoryError):
                pictures = None  # handled below, outside the except clause
            except Exception as exc:
                pictures = None
                logger.warning("a batch of %d photos failed (%s); doing them one by one",
                               len(batch), exc)
        if pictures is None:
            free_memory(engine.device)
            alone = [item.task for item in batch] + alone
        else:
            share = (time.perf_counter() - start) / len(batch)
            for item, picture in zip(batch, pictures, strict=True):
                try:
                    result = self._write(engine, item, picture, share)
                except Exception as exc:
                    result = _failed(item.task, exc)
                results.append(self._finished(result, share))
        for task in alone:
            results.append(self.run_task(engine, task, index + tasks.index(task), total))
        return results

    def _stylize_batch(self, engine: Engine, batch: list[_Loaded]) -> list[Image.Image]:
        w, h = batch[0].photo.rgb.size
        targets = self.store.get(engine, batch[0].task.preset, engine.style_sides(w, h))
        last = batch[-1].task  # the progress view shows the latest photo started
        return engine.stylize_batch([item.photo.rgb for item in batch], targets,
                                    on_progress=lambda p: self.on_event(TaskStep(last, p)),
                                    should_stop=self.should_stop)

    def _retry_smaller(self, engine: Engine, task: Task, where: str,
                       start: float) -> TaskResult:
        """After running out of memory: one more try at a smaller size, with a fresh engine.

        The record written then holds the smaller size's key, so a later run tries
        the full size again.  Raises ``OutOfMemoryError`` (category ``out_of_memory``)
        when the smaller size cannot be tried or runs out of memory too.
        """
        name = display_name(task.input)
        size = task.preset.settings.size
        smaller = int(size * OOM_RETRY_SCALE)
        free_memory(engine.device)
        if smaller < MIN_SCALE_SIDE:
            raise OutOfMemoryError(f"{name}: out of memory{where} at size {size}; "
                                   "try a smaller size")
        logger.warning("%s: out of memory%s at size %d; trying once more at size %d",
                       name, where, size, smaller)
        small = replace(task, preset=task.preset.with_overrides({"size": smaller}), key=None)
        try:
            self._render(Engine(small.preset.settings), small, start)
        except (torch.OutOfMemoryError, MemoryError):
            failed = True
        else:
            failed = False
        if failed:  # outside the except clause, for the same reason as in run_task
            free_memory(engine.device)
            raise OutOfMemoryError(f"{name}: out of memory{where} at size {size} and at "
                                   f"size {smaller}; try a smaller size")
        return TaskResult(task, "done", reason=f"{name}: out of memory{where} at size {size}; "
                                               f"written at size {smaller} instead")

    def _load(self, engine: Engine, task: Task) -> _Loaded:
        photo = load_content(task.input, engine, root=task.root,
                             follow_symlinks=task.follow_symlinks)
        # The photo may have changed since planning: then hash it again.
        stat = records.stat_identity(task.input)
        digest, key = task.input_digest, task.key
        if stat != task.input_stat or digest is None or key is None:
            digest = file_digest(task.input)
            key = task_key(digest, task.preset, task.fmt)
        return _Loaded(task, photo, digest, key, stat)

    def _render(self, engine: Engine, task: Task, start: float) -> TaskResult:
        item = self._load(engine, task)
        targets = self.store.get(engine, task.preset,
                                 engine.style_sides(*item.photo.rgb.size))
        picture = engine.stylize(item.photo.rgb, targets,
                                 on_progress=lambda p: self.on_event(TaskStep(task, p)),
                                 should_stop=self.should_stop)
        return self._write(engine, item, picture, time.perf_counter() - start)

    def _write(self, engine: Engine, item: _Loaded, picture: Image.Image,
               seconds: float) -> TaskResult:
        task = item.task
        save_result(engine, item.photo, picture, task.output, fmt=task.fmt)
        out_size, out_mtime = records.stat_identity(task.output)
        # The record is written last: it is what makes the task count as done.
        records.write_record(task.output, records.Record(
            key=item.key, input=os.fsdecode(task.input), input_digest=item.digest,
            input_size=item.stat[0], input_mtime_ns=item.stat[1], style=task.style,
            output_size=out_size, output_mtime_ns=out_mtime, seconds=round(seconds, 3),
            finished=datetime.now(UTC).isoformat(timespec="seconds")))
        return TaskResult(task, "done")


@dataclass
class _Loaded:
    """A photo read and hashed, ready to be stylized."""

    task: Task
    photo: LoadedImage
    digest: str
    key: str
    stat: tuple[int, int]


def _failed(task: Task, exc: Exception) -> TaskResult:
    """The result of a photo whose processing raised ``exc``; stopping errors are re-raised."""
    if isinstance(exc, (DiskFullError, OutputNotWritableError, Cancelled)):
        raise exc
    if isinstance(exc, InputError | StylizeError):
        return TaskResult(task, "failed", exc.category, exc.message)
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return TaskResult(task, "failed", "out_of_memory",
                          f"{display_name(task.input)}: out of memory; try a smaller size")
    # A bug or an unforeseen library error: this photo only.
    logger.error("unexpected error while stylizing %s", display_name(task.input),
                 exc_info=exc)
    return TaskResult(task, "failed", "internal",
                      f"{display_name(task.input)}: {type(exc).__name__}: {exc}")


def _batches(engine: Engine, tasks: list[Task],
             sizes: list[tuple[int, int] | None] | None = None) -> list[list[Task]]:
    """The tasks in the order to run them, as batches of photos of one output size.

    On the CPU (batch size 1) every task is its own batch, in plan order.  Otherwise
    photos are bucketed by the output size their header predicts, and each bucket is
    cut into batches of the configured size or of what the GPU's free memory holds.
    """
    s = engine.settings
    if s.batch_size == 1 or (s.batch_size == 0 and engine.device.type != "cuda"):
        return [[t] for t in tasks]
    buckets: dict[tuple[int, int] | None, list[Task]] = {}
    for i, task in enumerate(tasks):
        size = sizes[i] if sizes is not None else _photo_size(task)
        out = output_size(*size, s.size) if size is not None else None
        buckets.setdefault(out, []).append(task)
    batches: list[list[Task]] = []
    for out, bucket in buckets.items():
        if out is None:  # unreadable headers: each fails on its own
            batches += [[t] for t in bucket]
            continue
        n = s.batch_size or memory.auto_batch_size(engine.device, engine.dtype, out[0] * out[1])
        batches += [bucket[i:i + n] for i in range(0, len(bucket), n)]
    return batches


def _refresh_record(task: Task) -> None:
    """Store a touched photo's new size and mtime in its record (its content hash is unchanged).

    Without this, every later run would read and hash the photo again.  Best effort: a
    record that cannot be rewritten only costs that hashing.
    """
    rec = records.read_record(task.output)
    if rec is None or task.input_stat is None or rec.key != task.key:
        return
    size, mtime = task.input_stat
    with contextlib.suppress(StylizeError, OSError):
        records.write_record(task.output, replace(rec, input_size=size, input_mtime_ns=mtime))


def run(plan_: Plan, *, cache: ArtifactCache | None, on_event: EventFn | None = None,
        should_stop: Callable[[], bool] | None = None) -> Report:
    """Run the due tasks of a plan; returns the report (never raises for one photo)."""
    start = time.perf_counter()
    report = Report()
    report.results += [TaskResult(t, "skipped") for t in plan_.skipped]
    due = plan_.due
    for folder in sorted({t.output.parent for t in due} | {t.output.parent
                                                             for t in plan_.skipped}):
        sweep_temp_files(folder)
        # Records are written the same way, so a kill can leave temp files there too.
        sweep_temp_files(folder / records.RECORD_DIR)
    for folder in sorted({t.output.parent for t in due}):
        check_writable(folder)
    for task in plan_.skipped:
        if task.stale_stat:
            _refresh_record(task)
    runner = Runner(cache, on_event, should_stop)
    groups: dict[str, list[Task]] = {}
    for task in due:
        groups.setdefault(_group_key(task.preset), []).append(task)
    finished = 0
    try:
        for tasks in groups.values():
            sizes = [_photo_size(t) for t in tasks]  # headers only, read once
            engine = runner.prepare(tasks[0].preset, [s for s in sizes if s is not None])
            for batch in _batches(engine, tasks, sizes):
                if len(batch) == 1:
                    report.results.append(runner.run_task(engine, batch[0], finished + 1,
                                                          len(due)))
                else:
                    report.results += runner.run_batch(engine, batch, finished + 1, len(due))
                finished += len(batch)
    except (DiskFullError, OutputNotWritableError, Cancelled) as exc:
        report.stopped = exc
        ran = {id(r.task) for r in report.results}
        report.results += [TaskResult(t, "not_run", exc.category, exc.message)
                           for t in due if id(t) not in ran]
    finally:
        report.targets_computed = runner.store.counts.computed
        report.targets_cached = runner.store.counts.cached
        report.seconds = time.perf_counter() - start
    return report
