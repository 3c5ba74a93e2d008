"""Does lower precision change the result? fp32 against bf16 (and fp16 on a GPU).

Runs the default preset on the race's photo and painting (500² pixels) once per precision on
the chosen device, scores each result with the yardstick of ``bench/yardstick.py``, and prints
each precision's distances, their difference from fp32's in percent, and the wall time. The
target (issue: speed): a low precision that is the default must stay within 2% of fp32 on both
distances.

Run:  python -m bench.precision [--device auto] [--precisions fp32,bf16,fp16] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from PIL import Image

from bench.common import REPO
from bench.yardstick import Yardstick
from pipeline.config.styles import Registry
from pipeline.engine.device import resolve_device, resolve_precision
from pipeline.engine.optimize import Engine
from pipeline.engine.style_targets import StyleTargetMaker

PHOTO = REPO / "examples" / "photos" / "astronaut.png"
STYLE = "starry-night"
PIXELS = 500 * 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", default=None, help="default: fp32,bf16 (+fp16 on GPU)")
    parser.add_argument("--out", type=Path, default=None, help="write results.json and images")
    args = parser.parse_args()

    device = resolve_device(args.device)
    names = (args.precisions.split(",") if args.precisions
             else ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else []))
    if device.type == "cuda" and "fp32" in names:
        # cuDNN's backward kernels are not deterministic: a second fp32 run shows how far
        # two runs of the same precision land apart, the floor for any comparison.
        names.insert(names.index("fp32") + 1, "fp32-again")
    preset = Registry.discover().resolve(STYLE)
    photo = Image.open(PHOTO).convert("RGB")
    size = round(max(photo.size) * math.sqrt(PIXELS / (photo.width * photo.height)))
    stick = Yardstick(PHOTO, preset.images[0].path, device=str(device))
    default = str(resolve_precision("auto", device)).removeprefix("torch.")
    print(f"device {device}, default precision {default}, photo {PHOTO.name} at --size {size}, "
          f"style {STYLE}, steps {preset.settings.steps}")
    rows: dict[str, dict[str, float]] = {}
    for name in names:
        engine = Engine(preset.settings.merged({"size": size, "device": str(device),
                                                "precision": name.removesuffix("-again")}))
        painting = Image.open(preset.images[0].path).convert("RGB")
        targets = StyleTargetMaker(engine.settings).compute([(painting, 1.0)],
                                               engine.style_sides(*photo.size))
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        result = engine.stylize(photo, targets)
        seconds = time.perf_counter() - t0
        rows[name] = stick.score(result) | {"seconds": round(seconds, 2)}
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            result.save(args.out / f"{device.type}-{name}.png")
        ref = rows.get("fp32")
        change = ("" if ref is None or name == "fp32" else
                  f"  content {100 * (rows[name]['content'] / ref['content'] - 1):+.2f}%"
                  f"  style {100 * (rows[name]['style'] / ref['style'] - 1):+.2f}%")
        print(f"{name:5s} content {rows[name]['content']:.4f}  style {rows[name]['style']:.5f}"
              f"  {seconds:7.2f} s{change}", flush=True)
    if args.out:
        (args.out / f"precision-{device.type}.json").write_text(json.dumps(
            {"device": str(device), "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
