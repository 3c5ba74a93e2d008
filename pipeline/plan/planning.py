"""From a manifest to a plan: which photos, which outputs, which are already done.

``plan`` expands each selected job into tasks (photo × style) and marks those
whose output is there and current as skipped.  A task is plain data (paths, a
resolved preset, a key), so that an executor may ship it anywhere.  Nothing here
imports torch: ``stylize run --dry-run`` and the gallery plan without loading
the network.

Where inputs are looked for (see README, "What is an input"):

* hidden files, OS litter and the tool's own files are never inputs;
* a folder that holds a ``.stylize/`` record folder is some job's output folder:
  its files are results, never photos (so job *b* over ``photos/`` does not
  stylize job *a*'s results in ``photos/stylized/``);
* a job's own inbox and its ``done/`` and ``failed/`` folders belong to
  ``stylize watch``; any other folder named ``done`` or ``failed`` is searched
  like every other.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.config.manifest import Job, Manifest
from pipeline.config.naming import (
    RECORD_DIR,
    VIDEO_FORMATS,
    is_litter,
    is_photo_name,
    output_format,
    output_name,
)
from pipeline.config.styles import Preset
from pipeline.config.weights_id import weights_digest
from pipeline.errors import ConfigError
from pipeline.plan.methods import needs_network, result_view, retry_size
from pipeline.store import records
from pipeline.store.hashing import digest_json, file_digest

#: Bumped when the meaning of a key changes, so old records stop matching.
KEY_VERSION = 1
#: Where an inbox's results go inside the job's output folder: a name space of their
#: own, so that an inbox photo and an input photo of the same name never share an output.
INBOX_OUTPUT_DIR = "inbox"

Status = Literal["due", "skipped", "done", "failed", "not_run"]


@dataclass(frozen=True)
class Task:
    """One photo in one style: everything an executor needs, as plain data."""

    job: str
    input: Path
    root: Path | None  # the folder the input must stay inside (None: a photo named by hand)
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
class Plan:
    tasks: list[Task]

    @property
    def due(self) -> list[Task]:
        return [t for t in self.tasks if t.status == "due"]

    @property
    def skipped(self) -> list[Task]:
        return [t for t in self.tasks if t.status == "skipped"]


def select_jobs(manifest: Manifest, names: Iterable[str] | None) -> list[Job]:
    """The named jobs, each once and in the order given (all jobs when none is named)."""
    if not names:
        return list(manifest.jobs)
    return [manifest.job(n) for n in dict.fromkeys(names)]


# -- inputs ---------------------------------------------------------------------------


def _is_output_folder(folder: Path) -> bool:
    return os.path.isdir(folder / RECORD_DIR)


def _reserved(job: Job) -> set[Path]:
    """Folders under the input that are not the job's photos: its outputs and its inbox."""
    if job.inbox is None:
        return {job.output}
    return {job.output, job.inbox}


def discover_inputs(job: Job) -> list[Path]:
    """The job's candidate photos, sorted (see the module docstring for what is left out).

    Entries are chosen by name, so a directory, FIFO or broken link with an
    image name is still listed and later refused with a reason, not ignored.
    """
    if _is_output_folder(job.input):
        raise ConfigError(f"job {job.name!r}: the input folder {job.input} holds the results "
                          f"of a job ({RECORD_DIR}/); results are never taken as photos")
    candidates: Iterator[Path]
    if job.pattern is not None:
        candidates = job.input.glob(job.pattern)
    elif job.recursive:
        candidates = _walk(job.input, _reserved(job))
    else:
        candidates = job.input.iterdir() if job.input.is_dir() else iter(())
    reserved = _reserved(job)
    outputs: dict[Path, bool] = {}  # folder -> holds results, asked once per folder
    found: set[Path] = set()
    for path in candidates:
        rel = path.relative_to(job.input)
        if any(is_litter(part) for part in rel.parts) or not is_photo_name(path.name):
            continue
        if any(path.parent == r or r in path.parents for r in reserved):
            continue
        parent = path.parent
        if parent not in outputs:
            outputs[parent] = any(_is_output_folder(p) for p in _between(job.input, parent))
        if not outputs[parent]:
            found.add(path)
    return sorted(found)


def _between(top: Path, folder: Path) -> Iterator[Path]:
    """``folder`` and its parents up to (not including) ``top``."""
    while folder != top and top in folder.parents:
        yield folder
        folder = folder.parent


def _walk(top: Path, reserved: set[Path]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        # Never descend into outputs (ours or another job's) or into the inbox.
        dirnames[:] = sorted(d for d in dirnames if not is_litter(d) and not is_photo_name(d)
                             and (here / d) not in reserved
                             and not _is_output_folder(here / d))
        # A folder with a photo's name is listed, so that it is refused with a reason.
        yield from (here / name for name in filenames)
        yield from (here / d for d in os.listdir(here)
                    if is_photo_name(d) and (here / d).is_dir())


# -- outputs and keys -------------------------------------------------------------------


def output_path(job: Job, photo: Path, preset: Preset, fmt: str) -> Path:
    """``<output>/<subfolders>/<photo name>.<style><suffix>`` (see README: output naming).

    Subfolders are mirrored so equal names in two folders never collide.  A photo
    from the job's inbox goes to ``<output>/inbox/`` instead.
    """
    if job.inbox is not None and photo.parent == job.inbox:
        return job.output / INBOX_OUTPUT_DIR / output_name(photo.name, preset.name, fmt)
    rel = photo.relative_to(job.input)
    return job.output / rel.parent / output_name(rel.name, preset.name, fmt)


def task_key(input_digest: str, preset: Preset, fmt: str) -> str:
    """What decides the pixels of a result: the photo, the settings, the paintings, the net
    (VGG-19), and for ``method: fast`` or ``init: fast`` the trained network (a retrained
    one makes its results due again)."""
    fast = {"network": preset.network or None} if needs_network(preset.settings) else {}
    return digest_json({
        "v": KEY_VERSION,
        "input": input_digest,
        "settings": result_view(preset.settings, video=fmt in VIDEO_FORMATS),
        "style_images": preset.paintings_identity(),
        "weights": weights_digest(preset.settings.weights),
        "format": fmt,
        **fast,
    })


def result_keys(task: Task, digest: str) -> dict[int, str]:
    """The keys a result of these bytes may be recorded under, by output size: the
    settings' size, and the smaller one of the retry after running out of memory.  Made
    by the driver when it reads the bytes, so that the writer records what it is given."""
    size = task.preset.settings.size
    keys = {size: task.key if task.key and digest == task.input_digest
            else task_key(digest, task.preset, task.fmt)}
    smaller = retry_size(size)
    if smaller is not None:
        keys[smaller] = task_key(digest, task.preset.with_overrides({"size": smaller}), task.fmt)
    return keys


def _input_digest(photo: Path, stat: tuple[int, int], rec: records.Record | None) -> str | None:
    """The photo's content hash, reusing the record's when size and mtime are unchanged."""
    if rec is not None and (rec.input_size, rec.input_mtime_ns) == stat:
        return rec.input_digest
    try:
        return file_digest(photo)
    except OSError:
        return None


def make_task(job_name: str, photo: Path, preset: Preset, output: Path, *, root: Path | None,
              follow_symlinks: bool = False, fmt: str | None = None) -> Task:
    """The task of ``photo`` in ``preset`` written to ``output``, due or already done."""
    fmt = fmt or output_format(preset.settings.format, photo)
    rec = records.read_record(output)
    stat: tuple[int, int] | None = None
    digest = key = None
    with contextlib.suppress(OSError):
        if photo.is_file():
            stat = records.stat_identity(photo)
            digest = _input_digest(photo, stat, rec)
    if digest is not None:
        key = task_key(digest, preset, fmt)
    status: Status = "due"
    if (rec is not None and key is not None and rec.key == key
            and records.output_matches(output, rec)):
        status = "skipped"
    stale = status == "skipped" and rec is not None and stat != (rec.input_size,
                                                                 rec.input_mtime_ns)
    return Task(job_name, photo, root, follow_symlinks, preset, output, fmt, key, digest, stat,
                status, stale)


def job_task(job: Job, photo: Path, preset: Preset) -> Task:
    """A task of a job's input folder, or of its inbox (never through a link out of it)."""
    fmt = output_format(preset.settings.format, photo)
    out = output_path(job, photo, preset, fmt)
    if job.inbox is not None and photo.parent == job.inbox:
        # Anyone who can drop a file into an inbox could otherwise make the tool read
        # (and copy, stylized, into the output) any file it can read.
        return make_task(job.name, photo, preset, out, root=job.inbox, fmt=fmt)
    return make_task(job.name, photo, preset, out, root=job.input,
                     follow_symlinks=job.follow_symlinks, fmt=fmt)


def plan(manifest: Manifest, *, jobs: Iterable[str] | None = None) -> Plan:
    """Every task of the selected jobs, each marked due or skipped."""
    selected = select_jobs(manifest, jobs)
    tasks = [job_task(job, photo, preset)
             for job in selected for photo in discover_inputs(job) for preset in job.styles]
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
    for job in selected:
        _check_inbox_outputs(job, tasks)
    return Plan(tasks)


def _check_collisions(outputs: list[tuple[str, Path]]) -> None:
    seen: dict[Path, str] = {}
    for job, output in outputs:
        other = seen.get(output)
        if other is not None:
            raise ConfigError(f"jobs {other!r} and {job!r} would both write {output}; "
                              "give them different output folders")
        seen[output] = job


def _check_inbox_outputs(job: Job, tasks: Iterable[Task]) -> None:
    """Refuse an input subfolder whose results would mix with the inbox's own."""
    if job.inbox is None:
        return
    shared = job.output / INBOX_OUTPUT_DIR
    for task in tasks:
        if task.job == job.name and task.output.parent == shared and task.root != job.inbox:
            raise ConfigError(f"job {job.name!r}: the input subfolder {INBOX_OUTPUT_DIR!r} "
                             f"would write into {shared}, where the inbox's results go; "
                             "rename that subfolder")


__all__ = ["INBOX_OUTPUT_DIR", "KEY_VERSION", "Plan", "Status", "Task",
           "discover_inputs", "job_task", "make_task", "output_path", "plan", "select_jobs",
           "task_key"]
