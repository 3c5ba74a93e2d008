"""``jobs.yaml``: the job manifest, validated before anything runs.

Schema (unknown keys are rejected everywhere)::

    styles_path: [my-styles]      # optional extra preset folders
    executor: {kind: ray, address: auto, workers: 4}   # optional; default in-process
    defaults: {size: 512, ...}    # optional knobs for every job
    jobs:
      - name: holiday             # unique; letters, digits, '-', '_'
        input: photos/holiday     # a folder, or a glob such as photos/**/*.jpg
        recursive: false          # folders only: descend into subfolders
        styles: [starry-night, paintings/mine.jpg]
        output: stylized/holiday
        inbox: inbox/holiday      # optional, for `stylize watch`
        after: move               # watch mode: move inputs to <inbox>/done, or delete
        follow_symlinks: false    # follow symlinks that lead outside the input folder
        size: 768                 # any knob of pipeline.config.settings.Settings overrides

Relative paths are resolved against the manifest's folder.  Errors name the
file, the line and the field path, one per line.  The file is read through
:mod:`pipeline.config.yamlio`: a regular file of at most 1 MiB, with aliases and nesting
bounded, so no path or text given as a manifest can block, spin or exhaust memory.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.config import yamlio
from pipeline.config.settings import Settings, SettingsPatch, resolve_weights
from pipeline.config.styles import Preset, Registry, check_weights
from pipeline.config.validation import Loc, error_items, field_path
from pipeline.errors import ConfigError, UsageError

# Used with fullmatch: ``$`` would also match before a trailing newline.
_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_GLOB_CHARS = re.compile(r"[*?\[]")
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: Most Ray workers one run may start (each is a process holding a network).
MAX_WORKERS = 1024


class JobModel(SettingsPatch):  # type: ignore[misc, valid-type]
    """One job: where photos come from, which styles, where results go; plus knob overrides."""

    model_config = ConfigDict(extra="forbid")

    name: str
    input: str
    recursive: bool = False
    styles: list[str] = Field(min_length=1)
    output: str
    inbox: str | None = None
    after: Literal["move", "delete"] = "move"
    follow_symlinks: bool = False

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _JOB_NAME.fullmatch(value):
            raise ValueError("use letters, digits, '-' and '_' (it names files and folders)")
        return value


class ExecutorModel(BaseModel):
    """Where the photos are stylized: ``executor: {kind: ray, address: auto, workers: 4}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local", "ray"] = "local"
    address: str | None = None  # ray: a cluster (auto, HOST:PORT); none starts a local one
    # Bounded like every knob that decides how much is started or held.
    workers: int | None = Field(None, ge=1, le=MAX_WORKERS)
    cpus_per_worker: int | None = Field(None, ge=1, le=1024)
    gpus_per_worker: float | None = Field(None, ge=0, le=64, allow_inf_nan=False)


class ManifestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    styles_path: list[str] = Field(default_factory=list)
    executor: ExecutorModel = Field(default_factory=ExecutorModel)
    defaults: SettingsPatch = Field(default_factory=SettingsPatch)  # type: ignore[valid-type]
    jobs: list[JobModel] = Field(min_length=1)


@dataclass(frozen=True)
class Job:
    """A validated job with absolute paths and its styles resolved to presets."""

    name: str
    index: int
    input: Path  # a folder, or the fixed part of a glob
    pattern: str | None  # the glob relative to ``input``, or None for a folder
    recursive: bool
    styles: tuple[Preset, ...]  # each with the job's settings applied
    output: Path
    inbox: Path | None
    after: str
    follow_symlinks: bool


@dataclass(frozen=True)
class Manifest:
    path: Path
    jobs: tuple[Job, ...]
    registry: Registry
    executor: ExecutorModel = ExecutorModel()

    def job(self, name: str) -> Job:
        for job in self.jobs:
            if job.name == name:
                return job
        raise UsageError(f"no job named {name!r} in {self.path}; jobs: "
                         + ", ".join(j.name for j in self.jobs))


# -- line numbers -------------------------------------------------------------


def _line_map(node: yaml.Node, path: Loc = (), out: dict[Loc, int] | None = None,
              duplicates: list[Loc] | None = None) -> dict[Loc, int]:
    """Field path -> 1-based line, from the YAML node tree.

    Keys given twice in one mapping (YAML would silently keep the last) are appended to
    ``duplicates``; the map then holds the line of the last one.
    """
    out = {} if out is None else out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            k = str(key.value)
            if k in seen and duplicates is not None and key.tag != _MERGE_TAG:
                duplicates.append(path + (k,))
            seen.add(k)
            out[path + (k,)] = key.start_mark.line + 1
            _line_map(value, path + (k,), out, duplicates)
            out[path + (k,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, path + (i,), out, duplicates)
    return out


def _line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


class _Problems:
    def __init__(self, path: Path, lines: dict[Loc, int]) -> None:
        self.path, self.lines, self.items = path, lines, []  # type: ignore[var-annotated]

    def add(self, loc: Loc, message: str) -> None:
        line = _line_of(self.lines, loc)
        where = f"{self.path}:{line}" if line else str(self.path)
        item = f"{where}: {field_path(loc)}: {message}"
        if item not in self.items:  # one weights file of a job's three styles: one line
            self.items.append(item)

    def raise_if_any(self) -> None:
        if self.items:
            count = len(self.items)
            head = f"{self.path}: {count} problem{'s' if count > 1 else ''}; nothing was processed"
            raise ConfigError(head, [head, *self.items])


# -- loading ------------------------------------------------------------------


def _real(path: Path) -> Path:
    """``path`` with its symbolic links followed, as far as they lead.

    Not ``Path.resolve``: on Python 3.11 it raises ``RuntimeError`` on a link loop, which
    reached the user as a traceback.  A loop is reported by :func:`_link_loop` instead.
    """
    return Path(os.path.realpath(path))


def _link_loop(path: Path) -> bool:
    """True when following the links of ``path`` never ends (ELOOP)."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _split_glob(base: Path, text: str) -> tuple[Path, str | None]:
    """``photos/**/*.jpg`` -> (``base/photos``, ``**/*.jpg``); a plain folder -> (folder, None).

    The folder is returned as written (joined to ``base``), not yet resolved.
    """
    parts = Path(text).parts
    for i, part in enumerate(parts):
        if _GLOB_CHARS.search(part):
            return (base / Path(*parts[:i])) if i else base, str(Path(*parts[i:]))
    return base / text, None


def _parse(path: Path) -> tuple[ManifestModel, _Problems]:
    """The validated top level, and the problem list (with lines) for what follows."""
    try:
        # Bounded: a regular file of at most 1 MiB, aliases and nesting limited (yamlio).
        node = yamlio.compose(path, "manifest")
    except FileNotFoundError:
        raise UsageError(f"manifest not found: {path}") from None
    duplicates: list[Loc] = []
    lines = _line_map(node, duplicates=duplicates) if node is not None else {}
    problems = _Problems(path, lines)
    for dup in duplicates:
        problems.add(dup, "duplicate key (YAML would silently keep only the last one)")
    # After the line map: building the data applies merge keys to the nodes in place.
    raw = yamlio.construct(node, path)
    try:
        model = ManifestModel.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        for err_loc, msg in error_items(exc):
            problems.add(err_loc, msg)
        problems.raise_if_any()
        raise  # unreachable: raise_if_any raised
    return model, problems


def load_manifest(path: Path, *, registry: Registry | None = None,
                  cli_overrides: dict[str, Any] | None = None) -> Manifest:
    """Read, validate and resolve a manifest; raise ConfigError listing every problem."""
    path = Path(path)
    model, problems = _parse(path)
    base = _real(path).parent
    if registry is None:
        registry = Registry.discover([base / p for p in model.styles_path])
    jobs: list[Job] = []
    names: set[str] = set()
    for i, jm in enumerate(model.jobs):
        loc: Loc = ("jobs", i)
        if jm.name in names:
            problems.add(loc + ("name",), f"job name {jm.name!r} is used twice")
        names.add(jm.name)
        presets = _presets(jm, loc, model, registry, base, cli_overrides, problems)
        job = _job(jm, i, tuple(presets), base, problems)
        for other in jobs:
            shared = sorted({p.name for p in presets} & {p.name for p in other.styles})
            if other.output == job.output and shared:
                problems.add(loc + ("output",), f"jobs {other.name!r} and {jm.name!r} both write "
                                                f"style {shared[0]!r} into {job.output}; give "
                                                "them different output folders")
                break
        jobs.append(job)
    _check_inboxes(jobs, problems)
    problems.raise_if_any()
    return Manifest(_real(path), tuple(jobs), registry, model.executor)


def _within(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or somewhere below it (both already resolved)."""
    return path == folder or folder in path.parents


def _check_inboxes(jobs: list[Job], problems: _Problems) -> None:
    """No inbox inside an output folder, and no output folder inside an inbox.

    Either way the watcher would take results as new photos: it stylized its own
    results again and again (``c.png.udnie.jpg.udnie.jpg...``) until the name was too
    long, and moved each real result into ``done/``.  Across jobs too: one job's results
    landing in another's inbox loop the same way.
    """
    for job in jobs:
        if job.inbox is None:
            continue
        loc: Loc = ("jobs", job.index, "inbox")
        for other in jobs:
            whose = "its" if other is job else f"job {other.name!r}'s"
            if _within(job.inbox, other.output):
                problems.add(loc, f"the inbox {job.inbox} is inside {whose} output folder "
                                  f"{other.output}: its results would be taken as new photos; "
                                  "use an inbox outside every output folder")
                break
            if _within(other.output, job.inbox):
                problems.add(loc, f"{whose} output folder {other.output} is inside the inbox "
                                  f"{job.inbox}: its results would be taken as new photos; "
                                  "use an output folder outside every inbox")
                break


def _presets(jm: JobModel, loc: Loc, model: ManifestModel, registry: Registry, base: Path,
             cli_overrides: dict[str, Any] | None, problems: _Problems) -> list[Preset]:
    """The job's styles, each with defaults < job < command line applied."""
    job_patch = jm.model_dump(include=set(Settings.model_fields), exclude_unset=True,
                              exclude_none=True)
    defaults = model.defaults.model_dump(exclude_unset=True, exclude_none=True)
    for patch in (defaults, job_patch):
        if isinstance(patch.get("weights"), str):  # relative to the manifest, as every path
            patch["weights"] = resolve_weights(patch["weights"], base)
    weights_loc = (loc + ("weights",) if "weights" in job_patch
                   else ("defaults", "weights") if "weights" in defaults else None)
    presets: list[Preset] = []
    for k, style in enumerate(jm.styles):
        try:
            preset = registry.resolve(style, relative_to=base)
            preset = preset.with_overrides(defaults, job_patch, cli_overrides)
        except UsageError as exc:
            problems.add(loc + ("styles", k), exc.message)
            continue
        except ValidationError as exc:
            for err_loc, msg in error_items(exc):
                problems.add(loc + err_loc, msg)
            continue
        # The style names the output file: two entries with one name would collide.
        if any(p.name == preset.name for p in presets):
            problems.add(loc + ("styles", k), f"style {preset.name!r} is listed twice "
                                              "(outputs are named after the style)")
            continue
        try:
            check_weights(preset.settings.weights)
        except UsageError as exc:
            problems.add(weights_loc or loc + ("styles", k), exc.message)
            continue
        presets.append(preset)
    return presets


def _job(jm: JobModel, i: int, presets: tuple[Preset, ...], base: Path,
         problems: _Problems) -> Job:
    """The job with its folders resolved and checked."""
    loc: Loc = ("jobs", i)
    given_input, pattern = _split_glob(base, jm.input)
    input_dir, output_dir = _real(given_input), _real(base / jm.output)
    inbox_dir = _real(base / jm.inbox) if jm.inbox else None
    looped = False
    for field, given in (("input", given_input), ("output", base / jm.output),
                         ("inbox", base / jm.inbox if jm.inbox else None)):
        if given is not None and _link_loop(given):
            problems.add(loc + (field,), f"symbolic link loop: {given} (a link on the way "
                                         "leads back to itself)")
            looped = True
    if looped:
        pass  # the folders cannot be compared; the loop is the problem to fix first
    elif not input_dir.exists():
        problems.add(loc + ("input",), f"input folder not found: {input_dir}")
    elif not input_dir.is_dir():
        problems.add(loc + ("input",), f"not a folder: {input_dir}")
    elif output_dir == input_dir:
        # Results would be picked up as photos by the next run.
        problems.add(loc + ("output",), "the output folder is the input folder; "
                                        "use a separate folder (it may be inside it)")
    if pattern is not None and jm.recursive:
        problems.add(loc + ("recursive",), "recursive applies to folders; "
                                           "use ** in the glob instead")
    return Job(jm.name, i, input_dir, pattern, jm.recursive, presets, output_dir, inbox_dir,
               jm.after, jm.follow_symlinks)
