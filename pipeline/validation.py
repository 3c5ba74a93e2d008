"""Turning pydantic's validation errors into lines a person can act on."""

from __future__ import annotations

from pydantic import ValidationError


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("jobs", 1, "styles", 0)`` -> ``jobs[1].styles[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def format_validation_error(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[str]:
    """One ``path: message`` line per problem, without pydantic's URLs and type names."""
    lines = []
    for err in exc.errors(include_url=False):
        # Union members add their type names to the location; they mean nothing to a user.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and
                                                     (p.startswith(("str", "function-")) or
                                                      p in ("StyleImageSpec", "list[...]"))))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        msg = msg.removeprefix("Value error, ")
        lines.append(f"{field_path(prefix + loc)}: {msg}")
    return lines
