"""Attack 1: kill -9 during ``stylize run``.

N small photos and the tiny preset. An uninterrupted run into a second folder is timed first;
then ``stylize run`` is started and SIGKILLed K times: a fifth of the kills in start-up (0.5 s
to the time that run took to its first photo), the others 0 to three photos' time after the
attacked run's first ``done`` line (``--run-kill-after MIN MAX``: a fixed window from the
start instead). Then it is run once more to the end.

The kill plan (phase and place in its window, per kill) is drawn from the seeded random
source before anything is started, so a seed always gives the same plan; a window set by the
uninterrupted run's pace scales with the machine (``--run-pace`` pins that pace too).

Checked: the final run exits 0; ``--dry-run`` then shows 0 to do and lists every output as
skipped; every output decodes and has a record that vouches for it; no ``.stylize-tmp-*`` is
left; no output that had its record was ever written again; the outputs equal the
uninterrupted run's byte for byte; the photos are byte-identical. "Redone" is the sum of
``done`` lines over every run minus N; outputs found without their record after a kill are
counted apart.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .observe import (
    Identities,
    counts,
    decodes,
    digests,
    done_lines,
    outputs_in,
    recorded,
    report_summary,
    temp_files,
    wait_done_line,
)
from .setup import Context, make_photos, make_styles, photo_rng, write_manifest

TITLE = "kill -9 during run"


@dataclass
class Scene:
    top: Path
    photos: list[Path]
    before: dict[str, str]
    manifest: Path
    out: Path
    cache: Path


@dataclass
class Pace:
    first: float  # seconds to the first photo
    per_photo: float
    seconds: float  # the whole uninterrupted run
    measured: bool = True


@dataclass
class Kill:
    phase: str  # "fixed window", "start-up" or "work"
    fraction: float  # where in the phase's window it falls, 0-1


@dataclass
class Tally:
    ids: Identities = field(default_factory=Identities)
    done_lines: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    kill_codes: list[int] = field(default_factory=list)
    temps_at_kills: int = 0
    kills_in_work: int = 0


def plan_kills(ctx: Context) -> list[Kill]:
    a = ctx.args
    kills = []
    for _ in range(a.kills):
        if a.run_kill_after:
            phase = "fixed window"
        elif ctx.rng.random() < a.run_startup_kills:
            phase = "start-up"
        else:
            phase = "work"
        kills.append(Kill(phase, ctx.rng.random()))
    return kills


def delay(kill: Kill, pace: Pace, ctx: Context) -> float:
    """Seconds from the run's start (start-up, fixed) or its first ``done`` line (work)."""
    if kill.phase == "fixed window":
        lo, hi = ctx.args.run_kill_after
    elif kill.phase == "start-up":
        lo, hi = 0.5, max(1.0, pace.first)
    else:
        lo, hi = 0.0, 3 * pace.per_photo
    return lo + kill.fraction * (hi - lo)


def prepare(ctx: Context) -> Scene:
    top = ctx.top
    photos = make_photos(top / "photos", ctx.args.photos, photo_rng(ctx.rng))
    make_styles(top / "styles")
    manifest = write_manifest(top / "jobs.yaml", [
        {"name": "reference", "input": "photos", "styles": ["tiny"], "output": "ref"},
        {"name": "attack", "input": "photos", "styles": ["tiny"], "output": "out"}])
    return Scene(top, photos, digests(photos), manifest, top / "out", top / "cache")


def reference(ctx: Context, s: Scene) -> Pace:
    """An uninterrupted run: its outputs are what the attacked ones must equal, and its pace
    sets the kill windows, so that kills land in start-up and inside the work."""
    t0 = time.perf_counter()
    first = None
    with open(s.top / "ref.err", "w") as ferr:
        ref = ctx.tool.popen("run", s.manifest, "--job", "reference", "--cache-dir", s.cache,
                             cwd=s.top, text=True, stdout=subprocess.PIPE, stderr=ferr)
        assert ref.stdout is not None
        for line in ref.stdout:
            if line.startswith("done ") and first is None:
                first = time.perf_counter() - t0
        ref.wait()
    seconds = time.perf_counter() - t0
    first = first or seconds
    ctx.check(ref.returncode == 0, f"reference run exit {ref.returncode}")
    if ctx.args.run_pace:
        first, per_photo = ctx.args.run_pace
        return Pace(first, per_photo, seconds, measured=False)
    return Pace(first, (seconds - first) / max(1, ctx.args.photos - 1), seconds)


def kill_once(ctx: Context, s: Scene, i: int, kill: Kill, pace: Pace, tally: Tally) -> None:
    log = s.top / f"kill-{i:02d}.out"
    wait = delay(kill, pace, ctx)
    with open(log, "w") as fout, open(s.top / f"kill-{i:02d}.err", "w") as ferr:
        proc = ctx.tool.popen("run", s.manifest, "--job", "attack", "--cache-dir", s.cache,
                              "--report", s.top / f"report-{i:02d}.json",
                              cwd=s.top, stdout=fout, stderr=ferr)
        t0 = time.perf_counter()
        when = kill.phase
        if kill.phase == "work":
            wait_done_line(log, proc)
            when = (f"first photo after {time.perf_counter() - t0:.1f} s"
                    if proc.poll() is None else "it had ended: nothing left to do")
        time.sleep(wait)
        alive = time.perf_counter() - t0
        proc.kill()
        proc.wait(timeout=60)
    tally.codes[proc.returncode] += 1
    tally.kill_codes.append(proc.returncode)
    n_done = done_lines(log.read_text(errors="replace"))
    tally.done_lines += n_done
    temps = temp_files(s.out)
    tally.temps_at_kills += len(temps)
    good, bad = tally.ids.scan(s.out)
    if n_done or temps or bad:
        tally.kills_in_work += 1
    print(f"  kill {i + 1} after {alive:.1f} s ({when}; drawn delay {wait:.2f} s): "
          f"rc {proc.returncode}, {n_done} done in this run, "
          f"{good} recorded, {bad} without record, {len(temps)} temp files", flush=True)


def describe(ctx: Context, kills: list[Kill], pace: Pace) -> str:
    a = ctx.args
    if a.run_kill_after:
        how = f"{a.run_kill_after[0]}-{a.run_kill_after[1]} s after the start"
    else:
        how = (f"{a.run_startup_kills:.0%} in start-up (0.5-{max(1.0, pace.first):.1f} s), the "
               f"others 0-{3 * pace.per_photo:.1f} s after the run's first 'done' line")
    source = "uninterrupted" if pace.measured else "pace set by --run-pace; uninterrupted"
    print(f"\n== kill -9 during `stylize run`: {a.photos} photos, {a.kills} kills, {how} "
          f"({source}: first photo after {pace.first:.1f} s, {pace.per_photo:.2f} s a photo, "
          f"{pace.seconds:.1f} s in all) ==", flush=True)
    print(f"  kill plan (seed {a.seed}): "
          + ", ".join(f"{k.phase} {k.fraction:.3f}" for k in kills), flush=True)
    return how


def attack(ctx: Context) -> None:
    s = prepare(ctx)
    kills = plan_kills(ctx)  # drawn before anything runs: the same for a seed, whatever the pace
    pace = reference(ctx, s)
    how = describe(ctx, kills, pace)
    started = time.perf_counter()
    tally = Tally()
    for i, kill in enumerate(kills):
        kill_once(ctx, s, i, kill, pace, tally)
    final = ctx.tool.run("run", s.manifest, "--job", "attack", "--cache-dir", s.cache,
                         "--report", s.top / "report-final.json", cwd=s.top)
    tally.codes[final.returncode] += 1
    final_done = done_lines(final.stdout)
    tally.done_lines += final_done
    elapsed = time.perf_counter() - started
    tally.ids.scan(s.out)
    outs = verify(ctx, s, tally, final)
    ctx.row = {
        "attack": TITLE, "kill_moments": how,
        "uninterrupted_s": round(pace.seconds, 1), "first_photo_s": round(pace.first, 1),
        "per_photo_s": round(pace.per_photo, 2), "runs": ctx.args.kills + 1,
        "kills": ctx.args.kills, "kills_in_work": tally.kills_in_work,
        "photos": ctx.args.photos, "outputs": len(outs),
        "decoded": sum(decodes(p) for p in outs), "redone": tally.done_lines - ctx.args.photos,
        "unrecorded_at_kill": len(tally.ids.orphans), "rewritten": len(tally.ids.rewritten),
        "temp_after_kills": tally.temps_at_kills, "leftovers": len(temp_files(s.out)),
        "cache_leftovers": len(temp_files(s.cache)),
        "done_in_killed_runs": tally.done_lines - final_done, "exit_codes": counts(tally.codes),
        "reports_written": len(list(s.top.glob("report-*.json"))),
        "seconds": round(elapsed, 1)}


def verify(ctx: Context, s: Scene, tally: Tally,
           final: subprocess.CompletedProcess[str]) -> list[Path]:
    """The checks after the final run; returns the outputs on disk."""
    n = ctx.args.photos
    report = report_summary(s.top / "report-final.json")
    due, skipped, last = ctx.tool.dry_run(s.manifest, s.top, "attack")
    outs = outputs_in(s.out)
    decoded = sum(decodes(p) for p in outs)
    with_record = sum(recorded(p) for p in outs)
    temps = temp_files(s.out)
    ids = tally.ids
    ctx.check(all(c in (-9, 0) for c in tally.kill_codes),
              f"killed runs ended by the kill (never 75, a stale lock): {tally.kill_codes}")
    ctx.check(final.returncode == 0, f"final run exit {final.returncode} "
              f"({final.stderr.strip()[-200:]})")
    ctx.check("Traceback" not in final.stderr, "no traceback in the final run")
    ctx.check(report.get("done", -1) + report.get("skipped", -1) == n,
              f"final report: {report.get('done')} done + {report.get('skipped')} skipped "
              f"= {n} photos")
    ctx.check(due == 0 and len(skipped) == n,
              f"dry-run after: {due} to do, {len(skipped)} listed skipped ('{last}')")
    ctx.check(len(outs) == n and {p.name for p in outs} == skipped,
              f"{len(outs)} outputs on disk, the same names the dry-run skips")
    ctx.check(decoded == len(outs), f"{decoded}/{len(outs)} outputs decode fully")
    ctx.check(with_record == len(outs), f"{with_record}/{len(outs)} outputs have the record "
              "that vouches for them")
    ctx.check(not temps, f"{len(temps)} temp files left in the output folder "
              f"({tally.temps_at_kills} seen right after kills, swept by the next start)")
    ctx.check(not ids.rewritten, f"no recorded output written again "
              f"({len(ids.rewritten)} were: {ids.rewritten[:5]})")
    ctx.check(tally.done_lines - n == len(ids.orphans),
              f"done over all runs {tally.done_lines} - {n} photos = "
              f"{tally.done_lines - n} redone; outputs found without their record after a "
              f"kill: {len(ids.orphans)}")
    ref = outputs_in(s.top / "ref")
    ctx.check(bool(ref) and digests(outs) == digests(ref),
              "outputs byte-identical to the uninterrupted run's")
    ctx.check(digests(s.photos) == s.before, "inputs byte-identical (sha256) after the attack")
    return outs
