"""The attack: kill -9 during `stylize run` and `stylize watch`, and a full disk, as a user would.

Three attacks on the installed ``stylize`` command, each as child processes of this script
(nothing of ``pipeline`` is imported: only the command, the files it writes and its reports).
Each is a module of ``bench/attacks/``, where its docstring says what it does and checks:

1. ``run``   (attacks/run.py): kill -9 during ``stylize run``, K times, then a run to the end.
2. ``watch`` (attacks/watch.py, drops.py): photos dropped into an inbox four ways while the
   watcher is killed -9 K times; then it empties the inbox, and a clean start and stop.
3. ``disk``  (attacks/disk.py): a tmpfs filled to a few KiB (root only), then freed.

Shared setup (work folders, photos, the preset, the command) is in attacks/setup.py; what is
measured about the result (files, records, temp files, logs, processes) in attacks/observe.py.

``--seed`` reproduces everything random: each attack is handed its own ``random.Random(seed)``
and draws its photos, its drop plan and every kill delay from it, before anything is started
(a kill window set by a measured pace scales with it; ``--run-pace`` pins that pace too).
An attack that raises still gets its row: the summary lists each attack with its status
(ok, failed, error or skipped), the reason and its seconds, and the others still run.

Run:  python -m bench.attack [--photos 30] [--kills 10] [--watch-photos 150] [--watch-kills 10]
      [--disk-photos 30] [--seed 1] [--only run,watch,disk] [--keep] [--json FILE]
Children run with OMP_NUM_THREADS=1 (a shared 2-core machine). Exit status 1 if a check failed
or an attack raised.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.attacks import ATTACKS
from bench.attacks.report import Outcome, outcome, print_end
from bench.attacks.setup import CHILD_ENV, Context, Tool


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=30, help="photos for the run attack")
    p.add_argument("--kills", type=int, default=10, help="kill -9s during run")
    p.add_argument("--run-kill-after", type=float, nargs=2, default=None,
                   metavar=("MIN", "MAX"), help="kill -9 the run this many seconds after its "
                   "start (default: see --run-startup-kills)")
    p.add_argument("--run-startup-kills", type=float, default=0.2,
                   help="share of the run kills made in start-up (0.5 s to the uninterrupted "
                   "run's first photo); the others come 0 to 3 photos' time after the run's "
                   "first 'done' line")
    p.add_argument("--run-pace", type=float, nargs=2, default=None,
                   metavar=("FIRST", "PER_PHOTO"),
                   help="seconds to the first photo and per photo that set the run's kill "
                   "windows (default: measured from the uninterrupted run); with a fixed seed "
                   "the kill delays are then the same to the millisecond")
    p.add_argument("--watch-photos", type=int, default=150, help="photos dropped in the inbox")
    p.add_argument("--watch-kills", type=int, default=10, help="kill -9s of the watcher")
    p.add_argument("--watch-kill-after", type=float, nargs=2, default=(0.0, 6.0),
                   metavar=("MIN", "MAX"),
                   help="seconds after the watcher logs `watching` to kill -9 it")
    p.add_argument("--watch-startup-kills", type=float, default=0.2,
                   help="share of the watcher kills made during start-up (0.5-4 s after it "
                   "starts) instead")
    p.add_argument("--watch-timeout", type=float, default=900,
                   help="seconds the last watcher may take to empty the inbox")
    p.add_argument("--disk-photos", type=int, default=30, help="photos for the disk-full attack")
    p.add_argument("--disk-size", default="3M", help="size of the tmpfs")
    p.add_argument("--disk-leave-kib", type=int, default=40,
                   help="KiB left free on the tmpfs (about 8 KiB per output and record)")
    p.add_argument("--only", default=",".join(ATTACKS),
                   help=f"comma-separated attacks to run, in order (of: {', '.join(ATTACKS)})")
    p.add_argument("--seed", type=int, default=1,
                   help="seeds each attack's one random source: photos, drops, kill delays")
    p.add_argument("--stylize", default=shutil.which("stylize") or
                   os.fspath(Path(sys.executable).with_name("stylize")),
                   help="the command to attack (default: stylize on PATH)")
    p.add_argument("--workdir", type=Path, default=None, help="default: a new folder in /tmp")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p


def run_one(name: str, args: argparse.Namespace, work: Path) -> Outcome:
    """One attack, with its own random source; whatever it raises, it gets its outcome."""
    title, fn = ATTACKS[name]
    tool = Tool(args.stylize)
    ctx = Context(args=args, top=work / name, tool=tool, rng=random.Random(args.seed))
    started = time.perf_counter()
    error: Exception | None = None
    try:
        fn(ctx)
    except Exception as exc:  # noqa: BLE001 - one attack's error must not end the others
        traceback.print_exc()
        print(f"  [ERROR] {title} raised {type(exc).__name__}: {exc}", flush=True)
        error = exc
    finally:
        left = tool.reap()
        if left:
            print(f"  ({left} {title} process(es) still running at its end: killed)", flush=True)
    return outcome(name, title, ctx, time.perf_counter() - started, error)


def main() -> int:
    p = parser()
    args = p.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown or not names:
        p.error(f"--only: unknown attack(s) {unknown} (of: {', '.join(ATTACKS)})")
    os.environ.update(CHILD_ENV)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="stylize-attack-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"attacking {args.stylize} in {work} (seed {args.seed})", flush=True)
    started = time.perf_counter()
    try:
        outcomes = [run_one(name, args, work) for name in names]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return print_end(outcomes, time.perf_counter() - started, args.json)


if __name__ == "__main__":
    sys.exit(main())
