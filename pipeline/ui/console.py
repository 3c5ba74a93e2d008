"""What both live views share: a console, plain lines, and names made safe to show.

Every name and message shown goes through :func:`pipeline.naming.safe_text`
(control characters escaped) and, for Rich markup, :func:`markup`, so no file
name can move the cursor, retitle the terminal, forge a line or inject markup.
"""

from __future__ import annotations

import os

from rich.console import Console
from rich.markup import escape

from pipeline.naming import safe_text


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
        self.console.print(text, highlight=False, soft_wrap=True)
