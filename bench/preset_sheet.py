"""One contact sheet of the shipped presets: photo, optimized picture and fast picture.

Reads what bench/fast_quality.py kept in each preset's ``--out`` folder (the optimized
``[40, 15, 15]`` picture of each held-out photo and each network's picture) and puts them
side by side, a row per preset, with the objective of each picture (content + the
preset's style weight × style, from that folder's scores.json) in its label.

    python -m bench.preset_sheet --out docs/fast/presets.jpg \\
        udnie=bench/out/q-udnie:curve6-udnie/net-015min great-wave=bench/out/q-wave:...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from bench.common import COLLECTION, HELD_OUT
from bench.sheet import contact_sheet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", nargs="+", metavar="PRESET=FOLDER:NETWORK",
                    help="a preset, the fast_quality.py folder of its scores, and the "
                    "network's label there (folder/stem)")
    ap.add_argument("--photos", default="dune.jpg,kleiber.jpg",
                    help="which held-out photos (comma-separated)")
    ap.add_argument("--height", type=int, default=180)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    photos = args.photos.split(",")
    unknown = sorted(set(photos) - set(HELD_OUT))
    if unknown:
        raise SystemExit(f"not held-out photos: {', '.join(unknown)}")
    rows = []
    for spec in args.rows:
        preset, _, rest = spec.partition("=")
        folder, _, network = rest.partition(":")
        scores = {(r["photo"], r["picture"]): r["objective"]
                  for r in json.loads((Path(folder) / "scores.json").read_text())}
        cells = []
        for name in photos:
            stem = Path(name).stem
            cells.append((f"{preset}: {stem}", Image.open(COLLECTION / name)))
            cells.append((f"optimize {scores[(name, 'optimize')]:.2f}",
                          Image.open(Path(folder) / f"{stem}-optimize.png")))
            cells.append((f"fast {network.split('/')[-1]} {scores[(name, network)]:.2f}",
                          Image.open(Path(folder) / f"{stem}-{network.replace('/', '-')}.png")))
        rows.append(cells)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(rows, height=args.height).save(args.out, quality=88)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
