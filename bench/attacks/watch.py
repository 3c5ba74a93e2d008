"""Attack 2: kill -9 during ``stylize watch``.

M photos are dropped into an inbox (see :mod:`drops`); meanwhile the watcher (``stylize watch
jobs.yaml --settle 0.5 --json-log FILE``) is SIGKILLed K times (a fifth of them in start-up,
0.5-4 s after it starts, the others ``--watch-kill-after`` seconds after it logs
``watching``) and restarted at once. At the end the last watcher runs until the inbox is
empty, is stopped with SIGTERM, and a clean watcher is started and stopped once more.

Checked: every photo is in ``inbox/done/`` exactly once and byte-identical to what was dropped
(no ``-1`` copies), nothing in ``failed/``; exactly one output per photo in ``out/inbox/``, each
decoding, each with its record; no temporary file in ``out/inbox``, its ``.stylize`` or the
inbox; no recorded output written twice; ``done`` events per photo from the JSON logs.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .drops import Droppers, plan_drops
from .observe import (
    Identities,
    counts,
    digests,
    inbox_pending,
    temp_files,
    wait_watching,
    watch_events,
)
from .setup import Context, make_photos, make_styles, photo_rng, write_manifest
from .watch_checks import verify

TITLE = "kill -9 during watch"


@dataclass
class Scene:
    top: Path
    want: dict[str, str]  # photo name -> sha256 of what is dropped
    manifest: Path
    inbox: Path
    staging: Path
    out: Path
    starts: int = 0  # watchers started so far (names their logs)
    ids: Identities = field(default_factory=Identities)
    codes: Counter[int] = field(default_factory=Counter)
    kill_codes: list[int] = field(default_factory=list)
    temps_at_kills: int = 0

    def temps(self) -> list[Path]:
        return temp_files(self.top / "out") + temp_files(self.inbox)

    def log(self, n: int) -> Path:
        return self.top / f"watch-{n:02d}.jsonl"


@dataclass(frozen=True)
class Kill:
    startup: bool
    delay: float  # from the start (start-up) or from its `watching` line


def prepare(ctx: Context) -> tuple[Scene, list[Path]]:
    top = ctx.top
    sources = make_photos(top / "sources", ctx.args.watch_photos, photo_rng(ctx.rng),
                          prefix="w")
    make_styles(top / "styles")
    for name in ("library", "inbox", "staging"):
        (top / name).mkdir()
    manifest = write_manifest(top / "jobs.yaml", [
        {"name": "box", "input": "library", "styles": ["tiny"], "output": "out",
         "inbox": "inbox"}])
    scene = Scene(top, digests(sources), manifest, top / "inbox", top / "staging",
                  top / "out" / "inbox")
    return scene, sources


def plan_kills(ctx: Context) -> list[Kill]:
    a = ctx.args
    kills = []
    for _ in range(a.watch_kills):
        if ctx.rng.random() < a.watch_startup_kills:
            kills.append(Kill(True, ctx.rng.uniform(0.5, 4.0)))
        else:
            kills.append(Kill(False, ctx.rng.uniform(*a.watch_kill_after)))
    return kills


def watcher(ctx: Context, s: Scene) -> tuple[subprocess.Popen[Any], Path]:
    n = s.starts
    s.starts += 1
    with open(s.top / f"watch-{n:02d}.out", "wb") as fout, \
            open(s.top / f"watch-{n:02d}.err", "wb") as ferr:
        proc = ctx.tool.popen("watch", s.manifest, "--settle", "0.5", "--json-log", s.log(n),
                              "--cache-dir", s.top / "cache", cwd=s.top, stdout=fout,
                              stderr=ferr)
    return proc, s.log(n)


def kill_once(ctx: Context, s: Scene, i: int, kill: Kill) -> None:
    proc, log = watcher(ctx, s)
    t0 = time.perf_counter()
    when = "start-up"
    if not kill.startup:
        when = f"{wait_watching(log, proc, 120):.1f} s start-up + work"
    time.sleep(kill.delay)
    alive = time.perf_counter() - t0
    proc.kill()
    proc.wait(timeout=60)
    s.codes[proc.returncode] += 1
    s.kill_codes.append(proc.returncode)
    temps = s.temps()
    s.temps_at_kills += len(temps)
    good, bad = s.ids.scan(s.out)
    done = s.inbox / "done"
    done_now = len(list(done.glob("*"))) if done.exists() else 0
    print(f"  kill {i + 1} after {alive:.1f} s ({when}; drawn delay {kill.delay:.2f} s): "
          f"rc {proc.returncode}, {done_now} in done/, {good} outputs "
          f"recorded, {bad} without record, {len(temps)} temp files", flush=True)


def drain(ctx: Context, s: Scene, droppers: Droppers) -> tuple[int, list[str]]:
    """The last watcher runs until the inbox is empty, then SIGTERM; (its exit, what was
    left in the inbox)."""
    last, _ = watcher(ctx, s)
    droppers.join()
    deadline = time.monotonic() + ctx.args.watch_timeout
    while inbox_pending(s.inbox) and time.monotonic() < deadline and last.poll() is None:
        time.sleep(1)
    pending = inbox_pending(s.inbox)
    time.sleep(1)
    last.send_signal(signal.SIGTERM)
    last.wait(timeout=120)
    s.codes[last.returncode] += 1
    return last.returncode, pending


def clean_start_stop(ctx: Context, s: Scene) -> int:
    """A clean start and stop: it must find nothing to do and leave nothing behind."""
    clean, log = watcher(ctx, s)
    wait_watching(log, clean, 120)
    time.sleep(2)
    clean.send_signal(signal.SIGTERM)
    clean.wait(timeout=120)
    s.codes[clean.returncode] += 1
    return clean.returncode


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def attack(ctx: Context) -> None:
    a = ctx.args
    lo, hi = a.watch_kill_after
    print(f"\n== kill -9 during `stylize watch`: {a.watch_photos} photos dropped, "
          f"{a.watch_kills} kills ({a.watch_startup_kills:.0%} in start-up, the others "
          f"{lo}-{hi} s after it logs `watching`) ==", flush=True)
    s, sources = prepare(ctx)
    span = a.watch_kills * (4 + (lo + hi) / 2)  # drops spread over the kill phase
    droppers = Droppers(plan_drops(ctx.rng, sources, span * 3 / max(1, len(sources))),
                        s.inbox, s.staging, threads=3)
    kills = plan_kills(ctx)
    how = Counter(d.method for d in droppers.plan)
    print(f"  plan (seed {a.seed}): drops {dict(how)}, kills "
          + ", ".join(f"{'start-up' if k.startup else 'work'} {k.delay:.2f} s" for k in kills)
          + f"; fingerprint {fingerprint([d.key() for d in droppers.plan], kills)}", flush=True)
    started = time.perf_counter()
    droppers.start()
    try:
        for i, kill in enumerate(kills):
            kill_once(ctx, s, i, kill)
        last_rc, pending = drain(ctx, s, droppers)
    finally:
        droppers.stop()
    elapsed = time.perf_counter() - started
    s.ids.scan(s.out)
    temps_before_clean = s.temps()
    clean_rc = clean_start_stop(ctx, s)
    events, torn = watch_events(s.top)
    ctx.row = {"attack": TITLE, "runs": s.starts, "kills": a.watch_kills,
               "photos": a.watch_photos, "drops": dict(how)}
    ctx.row.update(verify(ctx, s, events, droppers.errors, (last_rc, clean_rc), pending,
                          len(temps_before_clean)))
    print(f"  torn log lines: {torn}", flush=True)
    ctx.row.update({"torn_log_lines": torn, "exit_codes": counts(s.codes),
                    "seconds": round(elapsed, 1)})
