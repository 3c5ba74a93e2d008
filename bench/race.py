"""The race: pastiche's defaults against stylize's default preset, scored by a neutral yardstick.

Both tools run as child processes on this machine, one after the other, on the same photo
and painting at the same pixel count (pastiche's default: 500² pixels), both seeded. Their
intermediate pictures are kept with the time they appeared. Every picture is then scored by
the yardstick of ``bench/yardstick.py`` (content and style distances, Caffe VGG-19, float32).
stylize's early pictures come from its low-resolution scales; they are upsampled (bicubic) to
the final size before scoring, so every point is a full-size picture one could stop at.

``--pastiche-from docs/race/race.json`` reuses the pastiche points of an earlier run (its
scores and times) instead of running pastiche's half hour again; the summary says so. A shared
machine is not equally fast every day, so it then also runs pastiche again for
``--calibrate-steps`` (100) steps and compares the time to reach that step with the earlier
run's: the earlier pastiche times are scaled by that ratio for the "calibrated" speedup.

Writes: ``<out>/race.json`` (every point), ``<out>/race.png`` (both distances over time),
``<out>/race_images.jpg`` (photo, painting, pastiche, stylize side by side), and prints a summary.

Run:  python -m bench.race [--pastiche-steps 1000] [--photo ...] [--style ...] [--out docs/race]
(needs matplotlib: pip install -e ".[bench]").  On the reference 2-core CPU, pastiche's 1000
steps take about half an hour.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import REPO
from bench.yardstick import Yardstick, dominates

PHOTO = REPO / "examples" / "photos" / "astronaut.png"
STYLE = REPO / "styles" / "starry-night" / "starry_night.jpg"
PIXELS = 500 * 500  # pastiche's default --size-pixels
SNAPSHOT_EVERY = 10


# -- the stylize side (a child process, so start-up counts as it does for pastiche) ----------


def ours_worker(photo: Path, style: Path, size: int, folder: Path, seed: int,
                steps: list[int] | None) -> None:
    from PIL import Image

    from pipeline.config.styles import Registry
    from pipeline.engine.optimize import Engine
    from pipeline.engine.style_targets import StyleTargetMaker

    preset = Registry.discover().resolve("starry-night" if style == STYLE else str(style))
    settings = preset.settings.merged({"size": size, "seed": seed}
                                      | ({"steps": steps} if steps else {}))
    engine = Engine(settings)
    content = Image.open(photo).convert("RGB")
    painting = Image.open(style).convert("RGB")
    targets = StyleTargetMaker(settings).compute([(painting, 1.0)],
                                                 engine.style_sides(*content.size))
    times: list[dict[str, float | str]] = []

    def snap(progress: object, image: Image.Image) -> None:
        name = f"{len(times):04d}.png"
        image.save(folder / name)
        times.append({"file": name, "time": time.time()})

    result = engine.stylize(content, targets, on_snapshot=snap, snapshot_every=SNAPSHOT_EVERY)
    result.save(folder / "final.png")
    times.append({"file": "final.png", "time": time.time()})
    (folder / "times.json").write_text(json.dumps(times))


# -- the race -----------------------------------------------------------------


def run_pastiche(photo: Path, style: Path, steps: int, folder: Path, seed: int) -> dict:
    workspace = folder / "workspace"
    workspace.mkdir(parents=True)
    cmd = ["pastiche", "--content", str(photo), "--styles", str(style),
           "--output", str(folder / "final.png"), "--num-steps", str(steps),
           "--seed", str(seed), "--device", "cpu", "--workspace", str(workspace),
           "--workspace-step", "25", "--no-verbose"]
    start = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - start
    points = []
    for png in sorted(workspace.glob("*.png")):
        points.append({"step": int(png.stem), "file": str(png),
                       "time": png.stat().st_mtime - start})
    points.append({"step": steps, "file": str(folder / "final.png"), "time": wall})
    return {"wall": wall, "points": points, "final": str(folder / "final.png")}


def run_ours(photo: Path, style: Path, size: int, folder: Path, seed: int,
             steps: str | None) -> dict:
    folder.mkdir(parents=True)
    cmd = [sys.executable, __file__, "--worker", "--photo", str(photo), "--style", str(style),
           "--size", str(size), "--out", str(folder), "--seed", str(seed)]
    if steps:
        cmd += ["--ours-steps", steps]
    start = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - start
    times = json.loads((folder / "times.json").read_text())
    points = [{"step": i, "file": str(folder / t["file"]), "time": t["time"] - start}
              for i, t in enumerate(times)]
    return {"wall": wall, "points": points, "final": str(folder / "final.png")}


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    series = [("pastiche", "tab:orange", "pastiche", 1.0, ".-"),
              ("stylize", "tab:blue", "stylize", 1.0, ".-")]
    calibration = results["pastiche"].get("calibration")
    if calibration:  # the reused pastiche run, at the speed this machine had today
        series[0] = ("pastiche", "tab:orange", "pastiche (earlier run)", 1.0, ".-")
        series.insert(1, ("pastiche", "tab:red", f"pastiche × {calibration['ratio']} "
                          "(today's speed)", calibration["ratio"], "--"))
    for name, colour, label, factor, style in series:
        pts = results[name]["points"]
        t = [p["time"] * factor for p in pts]
        axes[0].plot(t, [p["content"] for p in pts], style, color=colour, label=label)
        axes[1].plot(t, [p["style"] for p in pts], style, color=colour, label=label)
    for ax, title in zip(axes, ("content distance (relu4_2)", "style distance (mean of 5 Grams)"),
                         strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("wall time since start (s)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("lower is better on both; both tools on the same 2-core CPU")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def side_by_side(photo: Path, style: Path, pastiche: Path, ours: Path, out: Path) -> None:
    from PIL import Image, ImageDraw

    h = 300
    cells = []
    for label, path in (("photo", photo), ("painting", style), ("pastiche", pastiche),
                        ("stylize", ours)):
        img = Image.open(path).convert("RGB")
        cells.append((label, img.resize((round(img.width * h / img.height), h),
                                        Image.Resampling.LANCZOS)))
    grid = Image.new("RGB", (sum(c.width for _, c in cells) + 5 * len(cells) + 5, h + 30),
                     (24, 24, 24))
    draw = ImageDraw.Draw(grid)
    x = 5
    for label, cell in cells:
        grid.paste(cell, (x, 25))
        draw.text((x + 4, 6), label, fill=(220, 220, 220))
        x += cell.width + 5
    grid.save(out, quality=85)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=PHOTO)
    parser.add_argument("--style", type=Path, default=STYLE)
    parser.add_argument("--pastiche-steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "race")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--ours-steps", default=None,
                        help="override stylize's steps per scale, e.g. 250,120,50 "
                             "(default: the preset's)")
    parser.add_argument("--pastiche-from", type=Path, default=None,
                        help="reuse the pastiche points of an earlier race.json")
    parser.add_argument("--calibrate-steps", type=int, default=100,
                        help="with --pastiche-from: pastiche steps to run now for calibration")
    parser.add_argument("--replot", type=Path, default=None,
                        help="only redraw the plot of an earlier race.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        steps = [int(v) for v in args.ours_steps.split(",")] if args.ours_steps else None
        ours_worker(args.photo, args.style, args.size, args.out, args.seed, steps)
        return

    if args.replot:
        plot(json.loads(args.replot.read_text()), args.replot.with_suffix(".png"))
        return

    import tempfile

    from PIL import Image

    work = args.work or Path(tempfile.mkdtemp(prefix="race-"))
    args.out.mkdir(parents=True, exist_ok=True)
    w, h = Image.open(args.photo).size
    # The same pixel count as pastiche: stylize's size is a long side.
    scale = math.sqrt(PIXELS / (w * h))
    size = round(max(w, h) * scale)
    print(f"photo {args.photo.name} {w}x{h}, painting {args.style.name}; "
          f"{PIXELS} pixels (stylize --size {size}); scratch {work}", flush=True)
    if args.pastiche_from:
        earlier = json.loads(args.pastiche_from.read_text())
        results = {"pastiche": earlier["pastiche"]}
        results["pastiche"]["reused_from"] = str(args.pastiche_from)
        args.pastiche_steps = earlier["summary"]["pastiche_steps"]
        now = run_pastiche(args.photo, args.style, args.calibrate_steps,
                           work / "pastiche-now", args.seed)
        then = next(p for p in results["pastiche"]["points"]
                    if p["step"] >= args.calibrate_steps)
        results["pastiche"]["calibration"] = {
            "steps": args.calibrate_steps, "now_s": round(now["wall"], 1),
            "then_s": round(then["time"], 1), "ratio": round(now["wall"] / then["time"], 3)}
        print(f"calibration: pastiche {args.calibrate_steps} steps now {now['wall']:.1f} s, "
              f"in the earlier run {then['time']:.1f} s", flush=True)
    else:
        results = {"pastiche": run_pastiche(args.photo, args.style, args.pastiche_steps,
                                            work / "pastiche", args.seed)}
    print(f"pastiche {args.pastiche_steps} steps: {results['pastiche']['wall']:.1f} s",
          flush=True)
    results["stylize"] = run_ours(args.photo, args.style, size, work / "stylize", args.seed,
                                  args.ours_steps)
    print(f"stylize default preset: {results['stylize']['wall']:.1f} s", flush=True)

    stick = Yardstick(args.photo, args.style)
    final_size = Image.open(results["stylize"]["final"]).size
    for name, res in results.items():
        if "reused_from" in res and name == "pastiche":
            continue
        for p in res["points"]:
            p.update(stick.score(Path(p["file"]), at=final_size))
    p_final = results["pastiche"]["points"][-1]
    o_final = results["stylize"]["points"][-1]
    p300 = next((p for p in results["pastiche"]["points"] if p["step"] >= 300), p_final)
    first_dominating = next((p for p in results["stylize"]["points"]
                             if dominates(p, p300)), None)
    summary = {
        "machine": f"{os.cpu_count()} CPUs",
        "pastiche_reused_from": results["pastiche"].get("reused_from"),
        "pixels": PIXELS,
        "pastiche_steps": args.pastiche_steps,
        "pastiche_wall_s": round(results["pastiche"]["wall"], 1),
        "stylize_wall_s": round(results["stylize"]["wall"], 1),
        "speedup": round(results["pastiche"]["wall"] / results["stylize"]["wall"], 2),
        "calibration": results["pastiche"].get("calibration"),
        "speedup_calibrated": (round(results["pastiche"]["wall"]
                                     * results["pastiche"]["calibration"]["ratio"]
                                     / results["stylize"]["wall"], 2)
                               if "calibration" in results["pastiche"] else None),
        "pastiche_final": {"content": p_final["content"], "style": p_final["style"]},
        "stylize_final": {"content": o_final["content"], "style": o_final["style"]},
        "stylize_dominates_pastiche_final": dominates(o_final, p_final),
        "pastiche_300": {"step": p300["step"], "time_s": round(p300["time"], 1),
                         "content": p300["content"], "style": p300["style"]},
        "stylize_time_to_dominate_pastiche_300_s": (round(first_dominating["time"], 1)
                                                    if first_dominating else None),
    }
    (args.out / "race.json").write_text(json.dumps({"summary": summary, **results}, indent=1))
    plot(results, args.out / "race.png")
    pastiche_final = Path(results["pastiche"]["final"])
    if pastiche_final.exists():
        side_by_side(args.photo, args.style, pastiche_final, Path(results["stylize"]["final"]),
                     args.out / "race_images.jpg")
    else:  # reused points: the earlier run's picture of pastiche's result stays as it is
        Image.open(results["stylize"]["final"]).save(args.out / "stylize_final.jpg",
                                                     quality=90)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
