"""The end of an attack session: one outcome per attack, the figures and the summary."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .setup import Context

FIGURES = ["attack", "runs", "kills", "photos", "outputs", "decoded", "redone", "rewritten",
           "leftovers", "exit_codes", "seconds"]


@dataclass
class Outcome:
    """One attack's summary row. ``status``: ok (every check held), failed (a check did not
    hold), error (the attack raised) or skipped (it could not run here)."""

    name: str
    title: str
    status: str
    reason: str
    seconds: float
    failures: list[str] = field(default_factory=list)
    row: dict[str, Any] = field(default_factory=dict)


def outcome(name: str, title: str, ctx: Context, seconds: float,
            error: BaseException | None = None) -> Outcome:
    failures = [f"{name}: {f}" for f in ctx.failures]
    if error is not None:
        status, reason = "error", f"{type(error).__name__}: {error}"
        failures.append(f"{name}: raised {reason}")
    elif ctx.failures:
        status = "failed"
        more = f" (and {len(ctx.failures) - 1} more)" if len(ctx.failures) > 1 else ""
        reason = ctx.failures[0] + more
    elif ctx.skipped:
        status, reason = "skipped", ctx.skipped
    else:
        status, reason = "ok", f"{ctx.held} checks held"
    return Outcome(name, title, status, reason, round(seconds, 1), failures, ctx.row)


def table(cols: list[str], cells: list[list[str]]) -> str:
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def figures_table(rows: list[dict[str, Any]]) -> str:
    cells = [[str(r.get(c, "-")) if not isinstance(r.get(c), dict)
              else " ".join(f"{k}:{v}" for k, v in r[c].items()) for c in FIGURES] for r in rows]
    return table(FIGURES, cells)


def summary_table(outcomes: list[Outcome]) -> str:
    def short(text: str, n: int = 100) -> str:
        text = " ".join(text.split())
        return text if len(text) <= n else text[:n - 3] + "..."

    cells = [[o.title, o.status, short(o.reason), f"{o.seconds:.1f}"] for o in outcomes]
    return table(["attack", "status", "reason", "seconds"], cells)


def print_end(outcomes: list[Outcome], total: float, json_path: Path | None) -> int:
    """Prints the figures, each row in full and the summary; returns the exit status: 1 when
    an attack failed or raised."""
    rows = [o.row for o in outcomes if o.row]
    if rows:
        print(f"\n{figures_table(rows)}\n")
    for row in rows:
        extra = {k: v for k, v in row.items() if k != "attack"}
        print(f"{row['attack']}: {json.dumps(extra)}")
    failures = [f for o in outcomes for f in o.failures]
    print(f"\n{summary_table(outcomes)}")
    print(f"\ntotal {total:.0f} s; "
          f"{'every check held' if not failures else f'{len(failures)} FAILED:'}")
    for f in failures:
        print(f"  - {f}")
    if json_path:
        json_path.write_text(json.dumps({
            "rows": rows, "failures": failures,
            "summary": [{k: v for k, v in asdict(o).items() if k not in ("row", "failures")}
                        for o in outcomes]}, indent=1))
    bad = any(o.status in ("failed", "error") for o in outcomes)
    return 1 if bad or failures else 0
