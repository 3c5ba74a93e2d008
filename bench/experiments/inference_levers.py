"""Levers on a shipped network's pictures that need no training: what each does to the
objective against the optimizer's bar on the held-out photos (docs/lab-log.md, fifteenth
round).

Each held-out photo is painted by the preset's shipped network at 384 px, as the fast path
paints it, then

* ``colour``: its colours moved toward the painting's (their mean and covariance matched,
  the symmetric map), by half or wholly;
* ``photo``: the photo mixed back in (``strength`` 0.9 and 0.8);
* ``small``: painted at 0.5 or 0.7 of the size, upsampled, alone or as the band below a
  Gaussian of 2, 4 or 8 px under the full-size picture's finer detail (larger motifs);
* ``large``: painted at 1.3 or 1.67 times the size (640 px, the working side), downsampled
  (finer strokes).

Scored with bench/yardstick.py against the bar's pictures, which bench.fast_quality leaves
in its ``--out`` folder (``<photo>-optimize.png``); prints the objective as a multiple of
the bar's for each picture and the means.

    python -m bench.experiments.inference_levers --style great-wave --bar bench/out/cq-great-wave
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bench.common import COLLECTION, HELD_OUT, REPO
from bench.yardstick import Yardstick
from pipeline.config.styles import Registry
from pipeline.engine.fast import FastStylizer
from pipeline.engine.network_file import read_network

SIZE = 384


def matched_colours(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``x`` (N×3) moved to ``reference``'s colour mean and covariance."""
    mx, mr = x.mean(0), reference.mean(0)
    cx = np.cov((x - mx).T) + 1e-5 * np.eye(3)
    cr = np.cov((reference - mr).T) + 1e-5 * np.eye(3)
    ex, vx = np.linalg.eigh(cx)
    root, inverse_root = (vx @ np.diag(ex ** p) @ vx.T for p in (0.5, -0.5))
    em, vm = np.linalg.eigh(root @ cr @ root)
    transfer = inverse_root @ vm @ np.diag(np.sqrt(np.maximum(em, 0))) @ vm.T @ inverse_root
    return (x - mx) @ transfer.T + mr


def candidates(paint: dict[float, Image.Image], photo: Image.Image,
               palette: np.ndarray) -> dict[str, np.ndarray]:
    """The pictures to score, from the network's pictures at each size factor."""
    a = np.asarray(paint[1.0], dtype=np.float32)
    h, w = a.shape[:2]
    out = {"as shipped": a}
    flat = a.reshape(-1, 3) / 255
    moved = matched_colours(flat, palette).reshape(a.shape) * 255
    out |= {f"colour {k}": a + k * (moved - a) for k in (0.5, 1.0)}
    own = np.asarray(photo.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float32)
    out |= {f"photo {1 - k:.1f}": a + k * (own - a) for k in (0.1, 0.2)}
    for f, picture in paint.items():
        if f == 1.0:
            continue
        up = picture.resize((w, h), Image.Resampling.BICUBIC if f < 1 else
                            Image.Resampling.LANCZOS)
        b = np.asarray(up, dtype=np.float32)
        out[f"{'small' if f < 1 else 'large'} {f}"] = b
        if f < 1:
            for sigma in (2, 4, 8):
                low = cv2.GaussianBlur(b, (0, 0), sigma) - cv2.GaussianBlur(a, (0, 0), sigma)
                out[f"small {f}, band below {sigma} px"] = a + low
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--style", default="great-wave")
    ap.add_argument("--bar", type=Path, required=True,
                    help="a bench.fast_quality --out folder with the bar's pictures")
    args = ap.parse_args()
    preset = Registry.discover().resolve(args.style)
    weight = preset.settings.style_weight
    painting = Image.open(preset.images[0].path).convert("RGB")
    palette = np.asarray(painting.resize((256, 256)), dtype=np.float32).reshape(-1, 3) / 255
    network = read_network(REPO / "styles" / args.style / "network.safetensors")
    stylizers = {f: FastStylizer(preset.settings.merged({"size": round(SIZE * f),
                                                          "method": "fast"}), network)
                 for f in (0.5, 0.7, 1.0, 1.3, 1.67)}
    ratios: dict[str, list[float]] = {}
    for name in HELD_OUT:
        photo = Image.open(COLLECTION / name).convert("RGB")
        stick = Yardstick(photo, painting)
        bar = stick.score(Image.open(args.bar / f"{Path(name).stem}-optimize.png"))
        paint = {f: s.stylize(photo) for f, s in stylizers.items()}
        for label, x in candidates(paint, photo, palette).items():
            score = stick.score(Image.fromarray(np.clip(x + 0.5, 0, 255).astype(np.uint8)))
            ratio = ((score["content"] + weight * score["style"])
                     / (bar["content"] + weight * bar["style"]))
            ratios.setdefault(label, []).append(ratio)
            print(f"{name:14} {label:28} content {score['content']:.3f}  style "
                  f"{score['style']:.4f}  x bar {ratio:.3f}", flush=True)
    for label, values in ratios.items():
        print(f"{label:28} x bar, mean over the photos: {np.mean(values):.3f}")


if __name__ == "__main__":
    main()
