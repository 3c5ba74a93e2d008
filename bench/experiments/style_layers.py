"""Where a fast picture's style distance comes from: the yardstick's style distance layer by layer.

For each held-out photo (bench/train_curve.py), the picture of each network given and the
optimized picture kept by bench/fast_quality.py in ``--pictures`` are scored by the
yardstick (bench/yardstick.py), and each style layer's relative Gram distance is printed
beside the content distance: which layers (fine texture at relu1_1 and relu2_1, large
structures at relu4_1 and relu5_1) the network falls short on.

    python -m bench.experiments.style_layers --pictures bench/out/quality-final60 \
        --networks 'bench/out/curve6-udnie/net-060min.safetensors'
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

from PIL import Image

from bench.common import COLLECTION, HELD_OUT
from bench.yardstick import STYLE_LAYERS, Yardstick


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--style", default="udnie")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--pictures", type=Path, required=True,
                    help="a bench/fast_quality.py --out folder (its <photo>-optimize.png)")
    ap.add_argument("--networks", required=True, help="a glob of network files")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()

    from pipeline.config.styles import Registry
    from pipeline.engine.fast import FastStylizer
    from pipeline.engine.network_file import read_network

    preset = Registry.discover().resolve(args.style)
    painting = Image.open(preset.images[0].path).convert("RGB")
    settings = preset.settings.merged({"size": args.size, "method": "fast"})
    stylizers = {f"{p.parent.name}/{p.stem}": FastStylizer(settings, read_network(p))
                 for p in sorted(Path(x) for x in glob.glob(args.networks))}
    print(f"{'photo':9} {'picture':32} " + " ".join(f"{n:>8}" for n in STYLE_LAYERS)
          + "  content")
    rows = []
    for name in HELD_OUT:
        photo = Image.open(COLLECTION / name).convert("RGB")
        stick = Yardstick(photo, painting)
        pictures = {"optimize": Image.open(args.pictures / f"{Path(name).stem}-optimize.png")}
        pictures |= {label: s.stylize(photo) for label, s in stylizers.items()}
        for label, picture in pictures.items():
            score = stick.score(picture.convert("RGB"))
            rows.append({"photo": name, "picture": label, "content": score["content"],
                         **score["layers"]})
            print(f"{Path(name).stem:9} {label:32} "
                  + " ".join(f"{score['layers'][n]:8.4f}" for n in STYLE_LAYERS)
                  + f"  {score['content']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
