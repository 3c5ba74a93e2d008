"""Judge the quality options by eye (issue 14): Gram vs W2, averaging off vs on, padding.

Renders every photo in every style with each variant (a set of settings on top of the
preset's) and writes a contact sheet: one row per photo and style, one column per variant,
each cell labelled with its wall time and two distances (the yardstick's Gram style distance,
and the W2 distance of ``pipeline.engine.losses.w2_relative`` over the same five layers,
so that W2 is judged by its own measure too, not only by the Gram yardstick that favours the
Gram loss). Renders run in this process, one after the other.

Run:  python -m bench.looks [--size 512] [--variants gram,w2,gram-avg,w2-avg]
                            [--styles all] [--photos all] [--out docs/looks]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from bench.common import REPO
from bench.sheet import contact_sheet
from bench.yardstick import STYLE_LAYERS, Yardstick
from pipeline.config.styles import Registry
from pipeline.engine.losses import W2Target, gram, w2_relative
from pipeline.engine.optimize import Engine
from pipeline.engine.style_targets import StyleTargetMaker

PHOTOS = REPO / "examples" / "photos"

VARIANTS: dict[str, dict[str, Any]] = {
    "gram": {},
    "w2": {"style_loss": "w2"},
    "gram-avg": {"average": 0.9},
    "w2-avg": {"style_loss": "w2", "average": 0.9},
    # W2 at the Gram loss's time: a W2 step costs about 1.4× a Gram step at 160 px on
    # the 2-core CPU (the Newton–Schulz products), so it gets that many fewer steps.
    "w2-eq": {"style_loss": "w2", "steps": [180, 85, 36]},
    "w2-avg-eq": {"style_loss": "w2", "average": 0.9, "steps": [180, 85, 36]},
    "gram-replicate": {"pad": "replicate"},
    "adam": {"optimizer": "adam", "steps": [500, 250, 100]},
    "adam-avg": {"optimizer": "adam", "steps": [500, 250, 100], "average": 0.95},
}


def w2_distance(stick: Yardstick, picture: Image.Image) -> float:
    """Mean W2 distance over the yardstick's style layers, painting at the picture's pixels."""
    scale = math.sqrt(picture.width * picture.height
                      / (stick.painting.width * stick.painting.height))
    painting = stick.painting.resize((round(stick.painting.width * scale),
                                      round(stick.painting.height * scale)),
                                     Image.Resampling.LANCZOS)
    fs, fo = stick.features(painting), stick.features(picture.convert("RGB"))
    total = 0.0
    for name in STYLE_LAYERS:
        target = W2Target(fs[name].mean((0, 2, 3)), gram(fs[name])[0])
        total += float(w2_relative(fo[name], target))
    return total / len(STYLE_LAYERS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--variants", default="gram,w2,gram-avg,w2-avg",
                        help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--styles", default="all")
    parser.add_argument("--photos", default="all")
    parser.add_argument("--set", default="{}", help="settings for every variant, as JSON")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "looks")
    parser.add_argument("--cell", type=int, default=200, help="cell height in the sheet")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    registry = Registry.discover()
    styles = sorted(registry.presets) if args.styles == "all" else args.styles.split(",")
    photos = (sorted(p.name for p in PHOTOS.iterdir()) if args.photos == "all"
              else args.photos.split(","))
    variants = args.variants.split(",")
    common = json.loads(args.set)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[list[tuple[str, Image.Image]]] = []
    results: list[dict[str, Any]] = []
    for style in styles:
        preset = registry.resolve(style)
        painting = Image.open(preset.images[0].path).convert("RGB")
        for photo_name in photos:
            photo = Image.open(PHOTOS / photo_name).convert("RGB")
            stick = Yardstick(photo, painting)
            row = [(f"{photo_name} / {style}", photo)]
            for variant in variants:
                settings = preset.settings.merged({"size": args.size, "seed": 0}
                                                  | VARIANTS[variant] | common)
                t0 = time.perf_counter()
                engine = Engine(settings)
                targets = StyleTargetMaker(engine.settings).compute(
                    [(painting, 1.0)], engine.style_sides(*photo.size))
                picture = engine.stylize(photo, targets)
                seconds = time.perf_counter() - t0
                with torch.no_grad():
                    scores = stick.score(picture) | {"w2": w2_distance(stick, picture)}
                name = f"{Path(photo_name).stem}.{style}.{variant}.png"
                picture.save(args.out / name)
                results.append({"photo": photo_name, "preset": style, "variant": variant,
                                "seconds": round(seconds, 1), **scores, "file": name})
                print(json.dumps(results[-1]), flush=True)
                row.append((f"{variant} {seconds:.0f}s c{scores['content']:.2f} "
                            f"g{scores['style']:.3f} w{scores['w2']:.3f}", picture))
            rows.append(row)
    (args.out / "looks.json").write_text(json.dumps(results, indent=1))
    sheet = contact_sheet(rows, args.cell)
    sheet.save(args.out / "looks.jpg", quality=88)
    print(f"wrote {args.out / 'looks.jpg'}")


if __name__ == "__main__":
    main()
