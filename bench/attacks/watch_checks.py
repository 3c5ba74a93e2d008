"""The checks at the end of the watch attack: the inbox, the outputs, the logs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .observe import decodes, outputs_in, recorded, sha256
from .setup import Context

if TYPE_CHECKING:
    from .watch import Scene


@dataclass
class End:
    """What is left once the last watchers stopped."""

    done_dir: list[Path]
    failed_dir: list[Path]
    outs: list[Path]
    whole: int
    with_record: int
    temps: list[Path]
    tracebacks: list[str]


def look(s: Scene) -> End:
    def listing(folder: Path) -> list[Path]:
        return sorted(folder.iterdir()) if folder.exists() else []

    outs = outputs_in(s.out)
    return End(done_dir=listing(s.inbox / "done"), failed_dir=listing(s.inbox / "failed"),
               outs=outs, whole=sum(decodes(p) for p in outs),
               with_record=sum(recorded(p) for p in outs), temps=s.temps(),
               tracebacks=[p.name for p in s.top.glob("watch-*.err")
                           if b"Traceback" in p.read_bytes()])


def verify(ctx: Context, s: Scene, events: list[dict[str, Any]], errors: list[str],
           stops: tuple[int, int], pending: list[str], temps_before_clean: int) -> dict[str, Any]:
    """Checks what the attack left; returns the figures for its row."""
    end = look(s)
    done = [e for e in events if e.get("event") == "done"]
    rendered = Counter(e["file"] for e in done if not e.get("already_done"))
    started = Counter(e["file"] for e in events if e.get("event") == "started")
    failed_events = [e for e in events if e.get("event") == "failed"]
    ids = s.ids
    ctx.check(not errors, f"every drop succeeded ({len(errors)} errors: {errors[:3]})")
    ctx.check(all(c == -9 for c in s.kill_codes),
              f"every killed watcher ended by the kill (none 75, a stale lock): {s.kill_codes}")
    ctx.check(stops == (0, 0), f"SIGTERM stops the last and the clean watcher with 0 {stops}")
    ctx.check(not pending, f"inbox empty at the end ({len(pending)} left: {pending[:5]})")
    ctx.check(sorted(p.name for p in end.done_dir) == sorted(s.want) and
              all(sha256(p) == s.want.get(p.name) for p in end.done_dir),
              f"{len(end.done_dir)} photos in done/, each once and byte-identical "
              f"({len(s.want)} dropped)")
    ctx.check(not end.failed_dir and not failed_events,
              f"nothing failed ({len(end.failed_dir)} in failed/, {len(failed_events)} events)")
    ctx.check({p.name for p in end.outs} == {f"{name}.tiny.jpg" for name in s.want},
              f"{len(end.outs)} outputs in out/inbox/, exactly one per photo")
    ctx.check(end.whole == len(end.outs) and end.with_record == len(end.outs),
              f"{end.whole} decode, {end.with_record} have their record")
    ctx.check(not end.temps, f"{len(end.temps)} temp files left after the final clean "
              f"start+stop ({s.temps_at_kills} seen right after kills, {temps_before_clean} "
              f"before the clean start)")
    ctx.check(not ids.rewritten, f"no recorded output written again "
              f"({len(ids.rewritten)} were: {ids.rewritten[:5]})")
    ctx.check(not end.tracebacks, f"no traceback on any watcher's stderr ({end.tracebacks})")
    twice = sorted(f for f, c in rendered.items() if c > 1)
    ctx.check(not twice or len(twice) <= len(ids.orphans),
              f"photos stylized more than once: {len(twice)} (outputs without record seen "
              f"after a kill: {len(ids.orphans)})")
    per_photo = Counter(Counter(e["file"] for e in done).get(name, 0) for name in s.want)
    print(f"  'done' events per photo: {dict(sorted(per_photo.items()))}; rendered once: "
          f"{sum(1 for c in rendered.values() if c == 1)}; done with every style already "
          f"there (killed after the output, before the move): "
          f"{sum(1 for e in done if e.get('already_done'))}; "
          f"started more than once: {sum(1 for c in started.values() if c > 1)}", flush=True)
    return {"outputs": len(end.outs), "decoded": end.whole, "in_done": len(end.done_dir),
            "in_failed": len(end.failed_dir),
            "redone": sum(c - 1 for c in started.values() if c > 1),
            "rendered_twice": len(twice), "unrecorded_at_kill": len(ids.orphans),
            "done_events_per_photo": {str(k): v for k, v in sorted(per_photo.items())},
            "rewritten": len(ids.rewritten), "temp_after_kills": s.temps_at_kills,
            "leftovers": len(end.temps)}
