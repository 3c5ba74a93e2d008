"""Turning pydantic's validation errors into lines a person can act on."""

from __future__ import annotations

from pydantic import ValidationError

Loc = tuple[int | str, ...]


def field_path(loc: Loc) -> str:
    """``("jobs", 1, "styles", 0)`` -> ``jobs[1].styles[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def error_items(exc: ValidationError) -> list[tuple[Loc, str]]:
    """(location, message) per problem, without pydantic's URLs and union member names."""
    items = []
    for err in exc.errors(include_url=False):
        # Union members add their type names to the location; they mean nothing to a user.
        # (Whole names: a prefix such as "str" would also drop a field named "strength".)
        loc = tuple(p for p in err["loc"]
                    if not (isinstance(p, str) and (p.startswith("function-")
                                                    or p in ("str", "StyleImageSpec",
                                                             "list[...]"))))
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        items.append((loc, msg.removeprefix("Value error, ")))
    return items


def format_validation_error(exc: ValidationError, prefix: Loc = ()) -> list[str]:
    """One ``path: message`` line per problem (just the message for the whole model, whose
    checks across fields name their fields themselves)."""
    return [f"{field_path(prefix + loc)}: {msg}" if prefix + loc else msg
            for loc, msg in error_items(exc)]
