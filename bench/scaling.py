"""Cost against size: wall time and peak memory of one photo at several output sizes.

Each size runs in a fresh child process (so peak RSS is that size's alone) with the default
preset on a 4:3 crop of the coffee sample, upsampled as needed. The parent prints time and
peak memory per size and fits ``cost ∝ pixels^k`` by least squares on log-log axes, for the
whole run and for the final scale alone. Scales larger than the pass limit (from free memory,
or ``--tile-pixels``) are optimized in tiles; the table says how many.

``--keep DIR`` saves each result; ``--seam-crops`` also saves, for the largest size, 512×512
crops of the result centred on each tile border of the final scale (docs/tiles/).

Run:  python -m bench.scaling [--sizes 256,512,1024,2048] [--steps 250,120,50] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.common import REPO

PHOTO = REPO / "examples" / "photos" / "coffee.png"
STYLE = "starry-night"


def photo_4x3():  # type: ignore[no-untyped-def]
    from PIL import Image

    img = Image.open(PHOTO).convert("RGB")
    w, h = img.size
    cw = h * 4 // 3
    return img.crop(((w - cw) // 2, 0, (w - cw) // 2 + cw, h))


def worker(size: int, steps: str | None, tile_pixels: int, keep: Path | None) -> None:
    import torch
    from PIL import Image

    from pipeline.config.geometry import output_size, pyramid
    from pipeline.config.styles import Registry
    from pipeline.engine import tiles
    from pipeline.engine.optimize import Engine, Progress
    from pipeline.engine.style_targets import StyleTargetMaker

    t0 = time.perf_counter()
    preset = Registry.discover().resolve(STYLE)
    patch: dict[str, object] = {"size": size, "tile_pixels": tile_pixels}
    if steps:
        patch["steps"] = [int(s) for s in steps.split(",")]
    engine = Engine(preset.settings.merged(patch))
    photo = photo_4x3()
    painting = Image.open(preset.images[0].path).convert("RGB")
    sides = engine.style_sides(*photo.size)
    targets = StyleTargetMaker(engine.settings).compute([(painting, 1.0)], sides)
    t1 = time.perf_counter()
    # Peak RSS so far: Python, torch, the weights (twice: compute and float32 precisions)
    # and the style targets. What stylize adds on top is the optimization's own memory.
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    last: dict[int, float] = {}
    seen: list[Progress] = []

    def on_progress(p: Progress) -> None:
        if p.step == 1:
            last[p.scale] = time.perf_counter()
        seen.append(p)

    result = engine.stylize(photo, targets, on_progress=on_progress)
    t2 = time.perf_counter()
    w, h = output_size(*photo.size, size)
    scales = pyramid(w, h, engine.settings)
    final = scales[-1]
    layout = tiles.grid(final.width, final.height, engine.pass_pixels(),
                        engine.settings.tile_overlap)
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        result.save(keep / f"scaling-{size}.png")
        (keep / f"scaling-{size}-tiles.json").write_text(json.dumps(
            [t.__dict__ for t in layout]))
    print(json.dumps({
        "size": size, "width": w, "height": h, "pixels": w * h,
        "scales": [[s.width, s.height, s.steps] for s in scales],
        "tiles_final": len(layout), "pass_pixels": engine.pass_pixels(),
        "setup_s": round(t1 - t0, 2), "stylize_s": round(t2 - t1, 2),
        "final_scale_s": round(t2 - last[len(scales)], 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "stylize_rss_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                 - base_rss) / 1024),
        "precision": str(engine.dtype), "threads": torch.get_num_threads(),
    }))


def fit(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return (sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True))
            / sum((a - mx) ** 2 for a in lx))


def seam_crops(keep: Path, size: int, out: Path) -> None:
    from PIL import Image

    result = Image.open(keep / f"scaling-{size}.png")
    layout = json.loads((keep / f"scaling-{size}-tiles.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    for t in layout:
        if t["fade_left"]:  # a vertical seam: the middle of the cross-fade
            cx, cy = t["x"] + t["fade_left"] // 2, t["y"] + t["height"] // 2
        elif t["fade_top"]:
            cx, cy = t["x"] + t["width"] // 2, t["y"] + t["fade_top"] // 2
        else:
            continue
        box = (max(0, cx - 256), max(0, cy - 256), max(0, cx - 256) + 512, max(0, cy - 256) + 512)
        name = f"seam-x{cx}-y{cy}.jpg"
        result.crop(box).save(out / name, quality=90)
        print(f"seam crop {name}: the tile border runs through the middle of the crop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,1024,2048")
    parser.add_argument("--steps", default=None, help="override the preset's steps per scale")
    parser.add_argument("--tile-pixels", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--seam-crops", type=Path, default=None)
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.tile_pixels, args.keep)
        return
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        cmd = [sys.executable, __file__, "--worker", str(size),
               "--tile-pixels", str(args.tile_pixels)]
        cmd += ["--steps", args.steps] if args.steps else []
        cmd += ["--keep", str(args.keep)] if args.keep else []
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['width']}x{row['height']} ({row['pixels'] / 1e6:.2f} Mpx, "
              f"{row['tiles_final']} tile(s) at the final scale): stylize {row['stylize_s']} s "
              f"(final scale {row['final_scale_s']} s), peak RSS {row['peak_rss_mb']} MB "
              f"({row['stylize_rss_mb']} MB above start-up)",
              flush=True)
    if len(rows) > 1:
        px = [r["pixels"] for r in rows]
        k_run = fit(px, [r["stylize_s"] for r in rows])
        k_final = fit(px, [r["final_scale_s"] for r in rows])
        k_mem = fit(px, [max(1, r["stylize_rss_mb"]) for r in rows])
        print(f"exponent k in cost ∝ pixels^k: time of the whole run {k_run:.2f}, of the final "
              f"scale {k_final:.2f}; memory above start-up {k_mem:.2f}")
    print(json.dumps(rows))
    if args.seam_crops and args.keep:
        seam_crops(args.keep, rows[-1]["size"], args.seam_crops)


if __name__ == "__main__":
    main()
