"""Why the fast path trains on whole photos: the style distance of crops of an optimum.

An optimized picture (bench/fast_quality.py keeps them) is scored by the yardstick
(bench/yardstick.py) whole, then cut into the four corner squares of a fraction of its
short side, each scored against the same painting's Grams (the painting resized to the
whole picture's area, as the optimizer's targets are).  If a painting's statistics were
the same everywhere, the crops would score about what the whole does; a network trained
to give every crop the whole painting's Grams would then aim at the optimum.  Prints the
style distance per VGG-19 layer and its mean.

    python -m bench.experiments.crop_statistics --pictures bench/out/quality-udnie --style udnie
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import COLLECTION, HELD_OUT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pictures", type=Path, required=True,
                    help="a folder of NAME-optimize.png (bench/fast_quality.py --out)")
    ap.add_argument("--style", default="udnie")
    ap.add_argument("--fractions", default="1,0.75,0.5")
    args = ap.parse_args()

    import torch
    from PIL import Image
    from yardstick import STYLE_LAYERS, Yardstick

    from pipeline.config.styles import Registry
    from pipeline.engine.losses import gram, relative_error

    torch.set_num_threads(max(1, torch.get_num_threads()))
    preset = Registry.discover().resolve(args.style)
    painting = Image.open(preset.images[0].path).convert("RGB")
    print(f"{'photo':10} {'size':9} {'crop':>5}  " + " ".join(f"{n:>7}" for n in STYLE_LAYERS)
          + "     mean")
    for name in HELD_OUT:
        path = args.pictures / f"{Path(name).stem}-optimize.png"
        if not path.exists():
            continue
        stick = Yardstick(Image.open(COLLECTION / name), painting)
        picture = Image.open(path).convert("RGB")
        _, style_features = stick.targets(picture.size)
        w, h = picture.size
        for fraction in (float(f) for f in args.fractions.split(",")):
            if fraction >= 1:
                boxes = [(0, 0, w, h)]
            else:
                c = round(min(w, h) * fraction)
                boxes = [(x, y, x + c, y + c) for x in (0, w - c) for y in (0, h - c)]
            errors = torch.zeros(len(STYLE_LAYERS))
            for box in boxes:
                f = stick.features(picture.crop(box))
                errors += torch.tensor([relative_error(gram(f[n]), gram(style_features[n])).item()
                                        for n in STYLE_LAYERS])
            errors /= len(boxes)
            print(f"{Path(name).stem:10} {w}x{h:<5} {fraction:5.2f}  "
                  + " ".join(f"{e:7.3f}" for e in errors.tolist())
                  + f"  {float(errors.mean()):7.3f}", flush=True)


if __name__ == "__main__":
    main()
