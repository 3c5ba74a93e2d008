"""The gallery's page: what it shows (plain data) and the HTML it is written as.

Self-contained (inline CSS, no script, no external URL), with every text escaped
for HTML after :func:`pipeline.config.naming.safe_text`, so a file name can neither break
the markup nor carry a control character into the page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.config.naming import safe_text

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
