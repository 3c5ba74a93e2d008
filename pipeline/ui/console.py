"""What the commands and the live views share: lines for people, and names made safe.

Every name and message shown goes through :func:`pipeline.config.naming.safe_text`
(control characters escaped), so no file name can move the cursor, retitle the
terminal or forge a line.  Nor is any of it read as Rich markup: the consoles are
made with markup off, :func:`plain` builds a line as a ``Text`` (never parsed),
and the live views, the one place that writes markup, escape every value with
:func:`markup`.  A name holding ``[/]`` once crashed ``stylize image`` after it had
written its result (``MarkupError``); ``[bold]`` in a name silently vanished.
"""

from __future__ import annotations

import os

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from pipeline.config.naming import safe_text


def plain(text: str | os.PathLike[str], label: str = "", style: str = "") -> Text:
    """A line that is never read as markup: ``label`` (our own word) in ``style``, then
    ``text`` (a message, a path: anything a user did not write) made safe."""
    line = Text(safe_text(text))
    return Text.assemble((label, style), " ", line) if label else line


def shown_path(path: os.PathLike[str] | str) -> str:
    """A path for people: relative to the current folder when inside it, one safe line."""
    text = os.fsdecode(path)
    try:
        rel = os.path.relpath(text)
        if not rel.startswith(".."):
            text = rel
    except ValueError:
        pass
    return safe_text(text)


def shown(path: os.PathLike[str] | str) -> str:
    """:func:`shown_path`, ready to embed in a Rich markup line."""
    return escape(shown_path(path))


def markup(text: str) -> str:
    """Any text (a name, a reason) made safe to embed in a Rich markup line."""
    return escape(safe_text(text))


class View:
    """A live view on a terminal (unless quiet), plain lines elsewhere."""

    def __init__(self, console: Console, *, quiet: bool = False, verbose: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.verbose = verbose
        self.live_view = console.is_terminal and not quiet

    def line(self, text: str) -> None:
        """One line of Rich markup; callers escape every value with :func:`markup`."""
        self.console.print(text, markup=True, highlight=False, soft_wrap=True)
