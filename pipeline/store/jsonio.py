"""Reading back the JSON the tool wrote, which anyone who can write there may have replaced.

Records, the inbox registry and a lock's holder note are JSON files in folders other
people can write to.  Python's ``json`` parser recurses once per ``[`` or ``{``: 1,100 of
them end in a ``RecursionError``, and a structure just under that depth still breaks the
recursive code that walks it later.  So the nesting is measured on the text, before it is
parsed, and anything deeper than :data:`MAX_JSON_DEPTH` is refused as invalid, with every
other way the text can be wrong: always a ``ValueError``, never anything else.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pipeline.store import fsread

__all__ = ["MAX_JSON_DEPTH", "loads", "read_json"]

#: The deepest nesting read back.  A record needs 4 (its ``made``, the settings, a list of
#: style layers); the bound leaves room and keeps every walk far from the recursion limit.
MAX_JSON_DEPTH = 32

# A JSON string, escapes included (written unrolled, so the regex engine never backtracks).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _within_depth(text: str, max_depth: int) -> bool:
    """Whether the brackets outside strings nest properly and at most ``max_depth`` deep.

    Each round deletes the innermost pairs, so valid JSON is left empty after as many
    rounds as it is deep; text still left after ``max_depth`` rounds is either deeper or
    not valid JSON, and refused either way.  Each round is a C-speed ``str.replace``.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if re.search(r"[\[{]" + "{" + str(max_depth + 1) + "}", brackets):
        return False  # that many opened in a row: too deep, found in one C-speed scan
    for _ in range(max_depth):
        if not brackets:
            return True
        inner = brackets.replace("[]", "").replace("{}", "")
        if len(inner) == len(brackets):
            return False  # no pair left to take out: brackets that do not match
        brackets = inner
    return not brackets


def loads(data: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The value of the UTF-8 JSON ``data``; ``ValueError`` if it is not valid or too deep."""
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if not _within_depth(text, max_depth):
        raise ValueError(f"not valid JSON, or nested more than {max_depth} levels deep")
    return json.loads(text)


def read_json(path: Path, max_bytes: int, what: str, *, follow_links: bool = False,
              max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value of the regular file ``path``, read by
    :func:`pipeline.store.fsread.read_bounded`.

    Raises ``OSError`` (missing, not a regular file, a link, over ``max_bytes``) or
    ``ValueError`` (not UTF-8 JSON, or deeper than ``max_depth``).  A link is not
    followed unless ``follow_links``: the tool never writes one where it keeps JSON.
    """
    return loads(fsread.read_bounded(path, max_bytes, what, follow_links=follow_links),
                 max_depth=max_depth)
