"""``init: fast`` against the default schedule: time and both yardstick distances.

For each held-out photo (never trained on), ``method: optimize`` at the preset's
defaults, then ``init: fast`` (the finest scale alone, started from the network's
picture) with the default's last-scale steps and with ``--fewer`` steps, all at
``--size``.  The question the issue asks: does it reach the default's picture (both
distances no worse) in at most half the default's time?

    python -m bench.experiments.init_fast --network bench/out/curve-udnie/net-060min.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from PIL import Image

from bench.common import COLLECTION, HELD_OUT, REPO
from bench.sheet import contact_sheet
from bench.yardstick import Yardstick


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--network", type=Path, required=True)
    ap.add_argument("--style", default="udnie")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--fewer", type=int, default=25, help="last-scale steps of a cheaper run")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "init-fast")
    args = ap.parse_args()

    from pipeline.config.styles import Registry
    from pipeline.engine.network_file import read_network
    from pipeline.engine.optimize import Engine
    from pipeline.engine.style_targets import StyleTargetMaker

    preset = Registry.discover().resolve(args.style)
    network = read_network(args.network)
    base = preset.settings.merged({"size": args.size})
    runs = {"default": (base, None),
            f"init fast, {base.steps[-1]} steps": (base.merged({"init": "fast"}), network),
            f"init fast, {args.fewer} steps": (base.merged({"init": "fast",
                                                            "steps": [args.fewer]}), network)}
    paintings = [(Image.open(i.path).convert("RGB"), i.weight) for i in preset.images]
    args.out.mkdir(parents=True, exist_ok=True)
    rows, sheet = [], []
    for name in HELD_OUT:
        photo = Image.open(COLLECTION / name).convert("RGB")
        stick = Yardstick(photo, paintings[0][0])
        cells = [("photo", photo)]
        for label, (settings, net) in runs.items():
            engine = Engine(settings, net)
            targets = StyleTargetMaker(settings).compute(paintings,
                                                         engine.style_sides(*photo.size))
            start = time.perf_counter()
            picture = engine.stylize(photo, targets)
            seconds = time.perf_counter() - start
            score = stick.score(picture)
            rows.append({"photo": name, "run": label, "seconds": seconds, **score})
            print(f"{name:14} {label:22} {seconds:6.1f} s  content {score['content']:.3f}  "
                  f"style {score['style']:.4f}", flush=True)
            cells.append((f"{label} ({seconds:.0f} s)", picture))
        sheet.append(cells)
    (args.out / "init_fast.json").write_text(json.dumps(rows, indent=1))
    contact_sheet(sheet, height=200).save(args.out / "init_fast.jpg", quality=88)
    print(f"wrote {args.out / 'init_fast.json'} and {args.out / 'init_fast.jpg'}")


if __name__ == "__main__":
    main()
