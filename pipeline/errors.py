"""One error hierarchy for the whole tool.

Library code raises these; only ``pipeline.cli`` turns them into exit statuses
and one-line messages.  Every error carries a short machine-readable
``category`` (recorded in reports and ``.error.json`` files) and a message a
person can act on.
"""

from __future__ import annotations

#: The longest error line: what a message quotes (a value from a file, a name) is cut in
#: its middle past this, so that no file can make an error line of megabytes.
MAX_MESSAGE = 1000


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text``, or its start and end around ``…`` when longer than ``limit`` characters."""
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


class StylizeError(Exception):
    """Base of every error the tool expects and explains; its message is one line of at
    most :data:`MAX_MESSAGE` characters."""

    category: str = "error"
    exit_code: int = 1

    def __init__(self, message: str, *, category: str | None = None) -> None:
        super().__init__(clip(message))
        if category is not None:
            self.category = category

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.category


class UsageError(StylizeError):
    """A bad option, an unknown style name, a missing file named on the command line."""

    category = "usage"
    exit_code = 2


class NetworkMissingError(UsageError):
    """A fast style has no trained network for its settings (yet: one may be training)."""

    category = "no_network"


class ConfigError(UsageError):
    """A manifest or preset that does not validate; ``problems`` holds one line per field."""

    category = "config"

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = [clip(p) for p in problems or []]


class InputError(StylizeError):
    """One input photo cannot be used; the batch goes on without it.

    Categories: ``unreadable``, ``not_an_image``, ``truncated``, ``too_large``,
    ``too_small``, ``not_a_file``, ``outside_input``, ``permission``,
    ``unsupported``.
    """

    category = "unreadable"


class PictureError(StylizeError):
    """The engine made no usable picture of one photo (values that are not finite); the
    batch goes on without it."""

    category = "not_finite"


class DivergedError(StylizeError):
    """A training's objective stopped being finite; nothing was written after it."""

    category = "diverged"


class WeightsError(StylizeError):
    """The network weights cannot be found, loaded or verified."""

    category = "weights"


class OutOfMemoryError(StylizeError):
    """The device ran out of memory for one photo."""

    category = "out_of_memory"


class DiskFullError(StylizeError):
    """No space left where outputs or the cache are written: the run must stop."""

    category = "disk_full"
    exit_code = 74  # EX_IOERR


class OutputNotWritableError(StylizeError):
    """The output folder cannot be written: nothing can be done."""

    category = "output_not_writable"
    exit_code = 73  # EX_CANTCREAT


class LockedError(StylizeError):
    """Another run holds the lock on this manifest."""

    category = "locked"
    exit_code = 75  # EX_TEMPFAIL from sysexits.h: try again later


class Cancelled(StylizeError):
    """The work was stopped on request (SIGINT/SIGTERM); nothing partial was kept."""

    category = "cancelled"
    exit_code = 130
