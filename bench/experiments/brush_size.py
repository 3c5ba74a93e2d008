"""Brush size relative to the picture, fast path against optimization, at two output sizes.

A stroke's size is read from the picture's luminance spectrum: the power-weighted mean
spatial frequency, in cycles per picture width, of what the stylization added to the
photo (the picture minus the photo at the picture's size).  Strokes that keep their size
relative to the picture keep this number when the output grows; strokes of a fixed size
in pixels multiply it by the size ratio.  Measured for ``method: optimize`` (at
``--steps``), for the fast path as shipped (the network at a working size of
``train_size²`` pixels, then upsampled with the photo's detail put back) and for the
network run at the full output size, each at ``--sizes``; a contact sheet shows the
same central crop (a quarter of the width) of each.

    python -m bench.experiments.brush_size --network bench/out/curve-udnie/net-060min.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import COLLECTION, HELD_OUT, REPO
from bench.sheet import contact_sheet


def stroke_frequency(picture: Image.Image, photo: Image.Image) -> float:
    """Power-weighted mean frequency (cycles per picture width) of picture − photo."""
    p = np.asarray(picture.convert("L"), np.float64)
    q = np.asarray(photo.convert("L").resize(picture.size, Image.Resampling.LANCZOS),
                   np.float64)
    d = p - q
    d = (d - d.mean()) * np.outer(np.hanning(d.shape[0]), np.hanning(d.shape[1]))
    power = np.abs(np.fft.rfft2(d)) ** 2
    fy = np.fft.fftfreq(d.shape[0]) * d.shape[0] * (d.shape[1] / d.shape[0])
    fx = np.fft.rfftfreq(d.shape[1]) * d.shape[1]
    radius = np.hypot(fy[:, None], fx[None, :])  # cycles per picture width
    power[0, 0] = 0.0
    return float((radius * power).sum() / power.sum())


def _centre(img: Image.Image) -> Image.Image:
    w, h = img.size
    side = w // 4
    return img.crop((w // 2 - side // 2, h // 2 - side // 2, w // 2 + side // 2,
                     h // 2 + side // 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--network", type=Path, required=True)
    ap.add_argument("--style", default="udnie")
    ap.add_argument("--photo", default=HELD_OUT[2])
    ap.add_argument("--sizes", default="512,1536")
    ap.add_argument("--steps", default="40,15,15")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "brush")
    args = ap.parse_args()

    from pipeline.config.styles import Registry
    from pipeline.engine.fast import FastStylizer
    from pipeline.engine.network_file import read_network
    from pipeline.engine.optimize import Engine
    from pipeline.engine.style_targets import StyleTargetMaker

    preset = Registry.discover().resolve(args.style)
    photo = Image.open(COLLECTION / args.photo).convert("RGB")
    network = read_network(args.network)
    args.out.mkdir(parents=True, exist_ok=True)
    results, rows = [], []
    for size in (int(s) for s in args.sizes.split(",")):
        s = preset.settings.merged({"size": size, "steps": [int(x) for x in
                                                            args.steps.split(",")]})
        pictures: dict[str, Image.Image] = {}
        kept = args.out / f"optimize-{size}.png"
        if kept.exists():
            pictures["optimize"] = Image.open(kept).convert("RGB")
        else:
            engine = Engine(s)
            paintings = [(Image.open(i.path).convert("RGB"), i.weight) for i in preset.images]
            targets = StyleTargetMaker(s).compute(paintings, engine.style_sides(*photo.size))
            t0 = time.perf_counter()
            pictures["optimize"] = engine.stylize(photo, targets)
            print(f"optimize at {size}: {time.perf_counter() - t0:.0f} s", flush=True)
            pictures["optimize"].save(kept)
        fast = s.merged({"method": "fast"})
        pictures["fast (training size)"] = FastStylizer(
            fast.merged({"network_paint_scale": 1.0}), network).stylize(photo)
        pictures["fast (shipped: paint scale)"] = FastStylizer(fast, network).stylize(photo)
        # A working side far above any output: the network paints at the output size.
        pictures["network at full size"] = FastStylizer(
            fast.merged({"network_paint_scale": 8.0}), network).stylize(photo)
        row = [(f"photo {size}", _centre(photo.resize(pictures["optimize"].size)))]
        for label, picture in pictures.items():
            freq = stroke_frequency(picture, photo)
            results.append({"size": size, "picture": label, "cycles_per_width": freq})
            print(f"{size:5d} px  {label:22}  {freq:6.1f} cycles per picture width",
                  flush=True)
            row.append((f"{label} {size}", _centre(picture)))
        rows.append(row)
    (args.out / "brush.json").write_text(json.dumps(results, indent=1))
    contact_sheet(rows, height=220).save(args.out / "brush.jpg", quality=88)
    print(f"wrote {args.out / 'brush.json'} and {args.out / 'brush.jpg'}")


if __name__ == "__main__":
    main()
