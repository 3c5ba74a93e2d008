"""Optimized pictures of the training photos, for distilling them into a network.

Each training photo of the collection (the held-out ones excluded, see train_curve.py) is
stylized by ``method: optimize`` at ``--size`` with ``--steps`` and kept in ``--out`` as
``<photo stem>.png``; a picture already there is not made again.

    python bench/teachers.py --style udnie --size 512 --out bench/out/teachers-udnie
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from train_curve import COLLECTION, HELD_OUT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--style", default="udnie")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", default="40,15,15")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from PIL import Image

    from pipeline.engine.optimize import Engine
    from pipeline.engine.style_targets import StyleTargetMaker
    from pipeline.styles import Registry

    preset = Registry.discover().resolve(args.style)
    settings = preset.settings.merged({"size": args.size,
                                       "steps": [int(s) for s in args.steps.split(",")]})
    engine = Engine(settings)
    maker = StyleTargetMaker(settings)
    paintings = [(Image.open(i.path).convert("RGB"), i.weight) for i in preset.images]
    args.out.mkdir(parents=True, exist_ok=True)
    for path in sorted(COLLECTION.glob("*.jpg")):
        target = args.out / f"{path.stem}.png"
        if path.name in HELD_OUT or target.exists():
            continue
        photo = Image.open(path).convert("RGB")
        start = time.perf_counter()
        picture = engine.stylize(photo, maker.compute(paintings, engine.style_sides(*photo.size)))
        picture.save(target)
        print(f"{path.name}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
