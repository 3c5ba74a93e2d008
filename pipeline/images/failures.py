"""How a refusal reads: one :class:`~pipeline.errors.InputError` per problem.

Every module of the package builds its refusals here, so each message is one line
of safe text that starts with ``<file name>: `` whatever bytes the name or the
Pillow exception behind it held.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config.naming import display_name
from pipeline.errors import InputError

#: What a message names: a path (only its last part is shown) or a bare file name.
Shown = Path | str


def fail(shown: Shown, category: str, what: str) -> InputError:
    return InputError(f"{display_name(shown)}: {what}", category=category)


def one_line(text: str, limit: int = 120) -> str:
    line = " ".join(text.split())
    if len(line) > limit:
        line = line[: limit - 3].rstrip() + "..."
    # Pillow messages can quote paths with undecodable bytes.
    return line.encode("utf-8", "backslashreplace").decode("utf-8")


def describe(exc: BaseException) -> str:
    return one_line(str(exc)) or type(exc).__name__


def pixels(count: int) -> str:
    return f"{count / 1e6:.1f} megapixels" if count >= 100_000 else f"{count} pixels"


def mebibytes(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB" if count % (1 << 20) else f"{count >> 20} MiB"
