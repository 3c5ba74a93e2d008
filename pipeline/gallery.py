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
import html
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from pipeline import records
from pipeline.errors import StylizeError, UsageError
from pipeline.fsutil import atomic_write_bytes, sweep_temp_files
from pipeline.images import LoadedImage, check_path, load_image, save_image
from pipeline.manifest import Job, Manifest
from pipeline.naming import display_name, safe_text
from pipeline.planning import Task, plan, select_jobs

THUMBS_DIR = "thumbs"
INDEX_NAME = "index.html"
#: Bumped when thumbnails are drawn differently, so old ones are not reused.
THUMB_VERSION = 1
#: 90 is where save_image keeps full-resolution chroma: style textures stay crisp.
THUMB_QUALITY = 90
_THUMB_NAME = re.compile(r"^[0-9a-f]{24}\.jpg$")


# -- what the page shows ------------------------------------------------------


@dataclass(frozen=True)
class Thumb:
    """A thumbnail ready to link, or the reason there is none."""

    src: str | None = None  # relative URL of the thumbnail
    width: int = 0
    height: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Cell:
    """One style of one photo."""

    style: str
    state: str  # "done", "outdated" or "not done"
    href: str | None  # relative URL of the full-size output, when it exists
    thumb: Thumb | None
    finished: str | None  # ISO time from the record
    seconds: float | None


@dataclass(frozen=True)
class Row:
    name: str  # the photo's path relative to the job's input folder
    href: str  # relative URL of the original
    before: Thumb
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class JobView:
    name: str
    input: Path
    output: Path
    output_href: str | None  # None while the folder does not exist
    styles: tuple[str, ...]
    rows: tuple[Row, ...]


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


def _cell(task: Task, thumbs: _Thumbnailer, out_dir: Path) -> Cell:
    if not task.output.is_file():
        return Cell(task.style, "not done", None, None, None, None)
    rec = records.read_record(task.output)
    state = "done" if task.status == "skipped" else "outdated"
    thumb = thumbs.make(task.output, max_pixels=task.preset.settings.max_pixels)
    return Cell(task.style, state, _rel_url(task.output, out_dir), thumb,
                rec.finished if rec else None, rec.seconds if rec else None)


def build_gallery(manifest: Manifest, out_dir: Path, *, jobs: list[str] | None = None,
                  thumb_size: int = 320) -> GalleryResult:
    """Write ``out_dir/index.html`` and its thumbnails for the selected jobs (all by default)."""
    if thumb_size < 16:
        raise UsageError("the thumbnail size must be at least 16 pixels")
    out_dir = Path(out_dir).resolve()  # links are relative to where the page really is
    selected = select_jobs(manifest, jobs)
    _check_out_dir(out_dir, selected)
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


# -- the page -----------------------------------------------------------------

_CSS = """
:root { color-scheme: dark; --bg: #15171b; --card: #1d2026; --frame: #111317;
  --line: #2b2f37; --text: #e4e6ea; --muted: #9097a3; --link: #8ab4f8;
  --done: #3fb950; --outdated: #d29922; --todo: #6e7681; --bad: #f85149; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
a { color: var(--link); text-decoration: none; }
a:hover { text-decoration: underline; }
header.top { padding: 20px 28px 14px; border-bottom: 1px solid var(--line);
  background: #191b20; }
h1 { margin: 0 0 4px; font-size: 20px; font-weight: 600; letter-spacing: .2px; }
.meta { color: var(--muted); font-size: 12.5px; margin: 0; }
nav { margin-top: 10px; display: flex; flex-wrap: wrap; gap: 8px; }
nav a { padding: 3px 10px; border: 1px solid var(--line); border-radius: 999px;
  color: var(--text); font-size: 12.5px; }
nav a span { color: var(--muted); margin-left: 6px; }
main { padding: 8px 28px 40px; max-width: 1600px; }
section.job { margin-top: 26px; }
section.job > h2 { margin: 0; font-size: 17px; font-weight: 600; }
section.job > .meta { margin: 2px 0 12px; }
.empty-job { color: var(--muted); font-style: italic; }
article.photo { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 12px 14px 14px; margin-bottom: 14px; }
article.photo > h3 { margin: 0 0 10px; font-size: 13.5px; font-weight: 600;
  overflow-wrap: anywhere; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; }
figure { margin: 0; min-width: 0; }
.frame { display: flex; align-items: center; justify-content: center; aspect-ratio: 4 / 3;
  background: var(--frame); border: 1px solid var(--line); border-radius: 6px;
  overflow: hidden; }
.frame img { display: block; width: 100%; height: 100%; object-fit: contain; }
figure.before .frame { border-color: #3d4452; }
.placeholder { color: var(--muted); font-size: 12px; padding: 10px; text-align: center;
  overflow-wrap: anywhere; }
.placeholder.bad { color: var(--bad); }
figcaption { display: flex; flex-wrap: wrap; align-items: baseline; gap: 2px 8px;
  margin-top: 6px; font-size: 12.5px; }
figcaption .style { font-weight: 600; overflow-wrap: anywhere; }
figcaption .when { flex-basis: 100%; color: var(--muted); font-size: 11.5px; }
.badge { font-size: 10.5px; text-transform: uppercase; letter-spacing: .5px; padding: 0 6px;
  border-radius: 4px; border: 1px solid currentColor; }
.badge.done { color: var(--done); }
.badge.outdated { color: var(--outdated); }
.badge.not-done { color: var(--todo); }
.badge.original { color: var(--muted); }
footer { padding: 0 28px 28px; color: var(--muted); font-size: 12px; }
"""


def _e(text: object) -> str:
    """Escaped for HTML; bytes of a file name that are not UTF-8 are shown as \\xNN."""
    return html.escape(safe_text(str(text)), quote=True)


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        shown = datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        shown = iso
    return f'<time datetime="{_e(iso)}">{_e(shown)}</time>'


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s"


def _frame(thumb: Thumb | None, href: str | None, alt: str, empty: str) -> str:
    if thumb is None:
        return f'<div class="frame"><span class="placeholder">{_e(empty)}</span></div>'
    if thumb.src is None:
        return (f'<div class="frame"><span class="placeholder bad">cannot show: '
                f'{_e(thumb.error)}</span></div>')
    img = (f'<img src="{_e(thumb.src)}" width="{thumb.width}" height="{thumb.height}" '
           f'alt="{_e(alt)}" loading="lazy" decoding="async">')
    if href is None:
        return f'<div class="frame">{img}</div>'
    return f'<a class="frame" href="{_e(href)}">{img}</a>'


def _row(row: Row) -> str:
    parts = [f'<article class="photo"><h3><a href="{_e(row.href)}">{_e(row.name)}</a></h3>',
             '<div class="grid">',
             '<figure class="before">', _frame(row.before, row.href, row.name, ""),
             '<figcaption><span class="style">original</span>'
             '<span class="badge original">before</span></figcaption></figure>']
    for cell in row.cells:
        slug = cell.state.replace(" ", "-")
        when = " · ".join(x for x in (_when(cell.finished), _duration(cell.seconds)) if x)
        if cell.state == "outdated":
            when = (when + " · " if when else "") + "photo or settings changed since"
        parts += [f'<figure class="after {slug}">',
                  _frame(cell.thumb, cell.href, f"{row.name} in {cell.style}", "not done yet"),
                  f'<figcaption><span class="style">{_e(cell.style)}</span>'
                  f'<span class="badge {slug}">{_e(cell.state)}</span>',
                  f'<span class="when">{when}</span>' if when else "",
                  '</figcaption></figure>']
    parts.append("</div></article>")
    return "".join(parts)


def _count(view: JobView, state: str) -> int:
    return sum(1 for r in view.rows for c in r.cells if c.state == state)


def _job(view: JobView) -> str:
    total = sum(len(r.cells) for r in view.rows)
    photos = len(view.rows)
    meta = (f"{photos} photo{'s' if photos != 1 else ''} · styles: "
            f"{_e(', '.join(view.styles))} · {_count(view, 'done')} of {total} done")
    if _count(view, "outdated"):
        meta += f" · {_count(view, 'outdated')} outdated"
    if view.output_href is None:
        meta += f" · output {_e(view.output)} (not created yet)"
    else:
        meta += f' · output <a href="{_e(view.output_href)}">{_e(view.output)}</a>'
    body = "".join(_row(r) for r in view.rows) or (
        f'<p class="empty-job">no photos found in {_e(view.input)}</p>')
    return (f'<section class="job" id="job-{_e(view.name)}"><h2>{_e(view.name)}</h2>'
            f'<p class="meta">{meta}</p>{body}</section>')


def render_page(views: list[JobView], *, title: str, generated: datetime) -> str:
    """The whole HTML document (every name escaped, every link relative)."""
    total = sum(len(r.cells) for v in views for r in v.rows)
    done = sum(_count(v, "done") for v in views)
    nav = "".join(f'<a href="#job-{_e(v.name)}">{_e(v.name)}<span>'
                  f'{_count(v, "done")}/{sum(len(r.cells) for r in v.rows)}</span></a>'
                  for v in views)
    stamp = generated.strftime("%Y-%m-%d %H:%M")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>stylize gallery · {_e(title)}</title><style>{_CSS}</style></head>\n"
        f'<body><header class="top"><h1>stylize gallery · {_e(title)}</h1>'
        f'<p class="meta">{done} of {total} done · generated '
        f'<time datetime="{_e(generated.isoformat(timespec="seconds"))}">{_e(stamp)}</time>'
        f"</p><nav>{nav}</nav></header>\n<main>"
        + "\n".join(_job(v) for v in views)
        + '</main>\n<footer>Click a picture for the full-size file. Made by '
        "<code>stylize gallery</code>; run it again to refresh.</footer></body></html>\n"
    )
