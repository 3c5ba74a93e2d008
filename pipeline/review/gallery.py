"""A static HTML page to review a batch: each photo next to its stylized versions.

``build_gallery`` plans the manifest (as ``stylize run --dry-run`` would), then
writes ``<out>/index.html`` with one section per job and, per photo, a row of
thumbnails: the original ("before") and one per style ("after"), captioned with
the style, the state and, from the done-record, when it finished and how long it
took.  Cells whose output is not there yet say "not done"; an output whose
record no longer matches the photo or its settings says "outdated".

The page is self-contained (inline CSS, no script, no external URL) and links
with relative, percent-encoded paths, so the folder can be opened from disk,
zipped or served as it is.  Thumbnails are JPEGs under ``<out>/thumbs/`` named by
a hash of the source path, size and mtime: a rerun reuses the ones whose source
has not changed and removes those no longer shown.  A photo that does not load
becomes a placeholder with the reason, never an error.

This module is a library: it never prints.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from pipeline.config.manifest import Job, Manifest
from pipeline.config.naming import display_name
from pipeline.errors import StylizeError, UsageError
from pipeline.images import LoadedImage, check_path, load_image, save_image
from pipeline.plan.planning import Task, plan, select_jobs
from pipeline.review.gallery_page import Cell, JobView, Row, Thumb, render_page
from pipeline.store import records
from pipeline.store.cache_dir import default_cache_dir
from pipeline.store.fsutil import atomic_write_bytes, sweep_temp_files
from pipeline.training.networks import bind_networks

THUMBS_DIR = "thumbs"
INDEX_NAME = "index.html"
#: Bumped when thumbnails are drawn differently, so old ones are not reused.
THUMB_VERSION = 1
#: 90 is where save_image keeps full-resolution chroma: style textures stay crisp.
THUMB_QUALITY = 90
_THUMB_NAME = re.compile(r"^[0-9a-f]{24}\.jpg$")


@dataclass
class GalleryResult:
    index: Path
    jobs: int = 0
    photos: int = 0
    done: int = 0
    outdated: int = 0
    not_done: int = 0
    thumbs_written: int = 0
    thumbs_reused: int = 0
    thumbs_removed: int = 0
    problems: list[str] = field(default_factory=list)  # one line per image not shown


# -- thumbnails ---------------------------------------------------------------


def _checkerboard(size: tuple[int, int], cell: int = 8) -> Image.Image:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    board = np.where((yy // cell + xx // cell) % 2 == 0, 92, 68).astype(np.uint8)
    return Image.fromarray(board).convert("RGB")


def _flatten(loaded: LoadedImage) -> Image.Image:
    """Transparent parts over a checkerboard, as image editors show them (JPEG has no alpha)."""
    if loaded.alpha is None:
        return loaded.rgb
    return Image.composite(loaded.rgb, _checkerboard(loaded.rgb.size), loaded.alpha)


def _thumb_name(source: Path, st: os.stat_result, size: int) -> str:
    h = hashlib.sha256()
    for part in (str(THUMB_VERSION), os.fsencode(source.absolute()).hex(), str(st.st_size),
                 str(st.st_mtime_ns), str(size)):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:24] + ".jpg"


def _rel_url(target: Path, base: Path) -> str:
    """A relative, percent-encoded URL (the raw bytes of odd names are kept exactly)."""
    rel = Path(os.path.relpath(target, base)).as_posix()
    return quote(os.fsencode(rel))


class _Thumbnailer:
    def __init__(self, out_dir: Path, size: int, result: GalleryResult) -> None:
        self.out_dir = out_dir
        self.folder = out_dir / THUMBS_DIR
        self.size = size
        self.result = result
        self.used: set[str] = set()

    def make(self, source: Path, *, max_pixels: int, root: Path | None = None,
             follow_symlinks: bool = True) -> Thumb:
        try:
            st = os.stat(source)
        except OSError as exc:
            try:
                check_path(source)  # for its precise message
            except StylizeError as refused:
                return self._problem(refused.message)
            return self._problem(f"{display_name(source)}: cannot read ({exc.strerror})")
        name = _thumb_name(source, st, self.size)
        dest = self.folder / name
        self.used.add(name)
        try:
            with Image.open(dest) as existing:
                width, height = existing.size
            self.result.thumbs_reused += 1
            return Thumb(_rel_url(dest, self.out_dir), width, height)
        except (OSError, ValueError, Image.DecompressionBombError):
            pass  # not there yet, or damaged: draw it
        try:
            loaded = load_image(source, max_pixels=max_pixels, max_long_side=self.size,
                                root=root, follow_symlinks=follow_symlinks)
        except StylizeError as exc:  # InputError: this image only
            return self._problem(exc.message)
        img = _flatten(loaded)
        save_image(img, dest, format="JPEG", quality=THUMB_QUALITY)
        self.result.thumbs_written += 1
        return Thumb(_rel_url(dest, self.out_dir), *img.size)

    def _problem(self, message: str) -> Thumb:
        self.result.problems.append(message)
        return Thumb(error=message)

    def prune(self) -> None:
        """Remove thumbnails of ours that the page no longer shows."""
        if not self.folder.is_dir():
            return
        sweep_temp_files(self.folder, older_than_s=600)
        for entry in self.folder.iterdir():
            if _THUMB_NAME.fullmatch(entry.name) and entry.name not in self.used:
                try:
                    entry.unlink()
                    self.result.thumbs_removed += 1
                except OSError:
                    continue


# -- building -----------------------------------------------------------------


def _check_out_dir(out_dir: Path, jobs: Iterable[Job]) -> None:
    for job in jobs:
        inside = out_dir == job.input or job.input in out_dir.parents
        if inside and (job.recursive or job.pattern is not None):
            raise UsageError(f"the gallery folder {out_dir} is inside the input of job "
                             f"{job.name!r}, whose photos would then include the thumbnails; "
                             "choose another --output")


def _is_file(path: Path) -> bool:
    """``Path.is_file`` that is False, not an ``OSError``, for a path the system refuses
    (a name over 255 bytes, a path over 4 KiB): such an output was never written."""
    try:
        return path.is_file()
    except OSError:
        return False


def _cell(task: Task, thumbs: _Thumbnailer, out_dir: Path) -> Cell:
    if not _is_file(task.output):
        return Cell(task.style, "not done", None, None, None, None)
    rec = records.read_record(task.output)
    state = "done" if task.status == "skipped" else "outdated"
    thumb = thumbs.make(task.output, max_pixels=task.preset.settings.max_pixels)
    return Cell(task.style, state, _rel_url(task.output, out_dir), thumb,
                rec.finished if rec else None, rec.seconds if rec else None)


def build_gallery(manifest: Manifest, out_dir: Path, *, jobs: list[str] | None = None,
                  thumb_size: int = 320, cache_dir: Path | None = None) -> GalleryResult:
    """Write ``out_dir/index.html`` and its thumbnails for the selected jobs (all by default).

    ``cache_dir``: the cache the runs used (None: the default), where fast styles'
    networks are found.
    """
    if thumb_size < 16:
        raise UsageError("the thumbnail size must be at least 16 pixels")
    out_dir = Path(out_dir).resolve()  # links are relative to where the page really is
    selected = select_jobs(manifest, jobs)
    _check_out_dir(out_dir, selected)
    # Fast styles' results are current only for the network that made them.
    manifest = bind_networks(manifest, cache_dir or default_cache_dir())
    the_plan = plan(manifest, jobs=[j.name for j in selected])
    result = GalleryResult(out_dir / INDEX_NAME)
    thumbs = _Thumbnailer(out_dir, thumb_size, result)

    by_photo: dict[tuple[str, Path], list[Task]] = {}
    for task in the_plan.tasks:
        by_photo.setdefault((task.job, task.input), []).append(task)

    views: list[JobView] = []
    for job in selected:
        rows: list[Row] = []
        for (job_name, photo), tasks in by_photo.items():
            if job_name != job.name:
                continue
            first = tasks[0]
            before = thumbs.make(photo, max_pixels=first.preset.settings.max_pixels,
                                 root=first.root, follow_symlinks=first.follow_symlinks)
            cells = tuple(_cell(t, thumbs, out_dir) for t in tasks)
            rows.append(Row(photo.relative_to(job.input).as_posix(),
                            _rel_url(photo, out_dir), before, cells))
            for c in cells:
                if c.state == "done":
                    result.done += 1
                elif c.state == "outdated":
                    result.outdated += 1
                else:
                    result.not_done += 1
        result.photos += len(rows)
        output_href = _rel_url(job.output, out_dir) if job.output.is_dir() else None
        views.append(JobView(job.name, job.input, job.output, output_href,
                             tuple(p.name for p in job.styles), tuple(rows)))
    result.jobs = len(views)

    page = render_page(views, title=manifest.path.name, generated=datetime.now().astimezone())
    atomic_write_bytes(result.index, page.encode("utf-8"))
    thumbs.prune()
    return result
