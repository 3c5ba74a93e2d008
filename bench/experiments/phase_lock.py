"""The lattice's phase: how much of a moving camera's flicker is the network painting a
frame moved by a fraction of its 4-pixel step anew (docs/lab-log.md, "The lattice's
phase").

On one of bench/video.py's clips (at 384×216, as bench/experiments/flicker_levers.py
paints them), each frame is painted by the preset's shipped network

* alone, with the noise fixed on the screen (the photo path: the reference) or without it;
* locked: moved by the sub-step part of the camera's translation (the median of DIS's flow,
  accumulated) before the network paints and moved back after, with the noise left out,
  fixed on the screen, or rolled by the whole steps of the translation (moving with the
  scene; the pipeline's :class:`pipeline.engine.phase_lock.PhaseLock` rolls it too, faded
  in and out at segment joins, where rolled noise would jump: the lab log);
* each of those with the colour band of the previous frame carried at 0.8 afterwards
  (``+band``), and the pipeline's carry inside the network for comparison.

Warping error and style distance as multiples of the reference, one JSON line each.

    python -m bench.experiments.phase_lock --clip garden:orbit --preset great-wave
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import torch

import bench.experiments.flicker_levers as fl
from bench.flicker import warping_error
from bench.video import scores
from pipeline.engine.network import TransformNet
from pipeline.video.steady import flow

STEP = 4  # the network's lattice: two stride-2 layers


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``img`` with its content moved by (dx, dy) pixels (bicubic, edges reflected)."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def _locks(originals: list[np.ndarray], scale: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame: the sub-step shift (frame pixels) and the whole steps (working pixels)."""
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    moved, out = np.zeros(2), []
    for t, frame in enumerate(originals):
        if t:
            g1, g0 = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (frame, originals[t - 1]))
            moved -= np.median(flow(dis, g1, g0).reshape(-1, 2), axis=0)
        phase = (moved * scale + STEP / 2) % STEP - STEP / 2
        out.append((phase / scale, np.rint(moved * scale - phase).astype(int)))
    return out


def locked(net: TransformNet, originals: list[np.ndarray], noise: torch.Tensor,
           scale: float, roll: bool) -> list[np.ndarray]:
    out = []
    for frame, (phase, whole) in zip(originals, _locks(originals, scale), strict=True):
        n = torch.roll(noise, (int(whole[1]), int(whole[0])), dims=(-2, -1)) if roll else noise
        painted = fl.paint(net, _shift(frame, -phase[0], -phase[1]), n)
        out.append(np.clip(_shift(painted, phase[0], phase[1]), 0, 255).astype(np.uint8))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", default="garden:orbit", help="PHOTO:MOVE (bench/video.py's moves)")
    ap.add_argument("--preset", default="great-wave")
    ap.add_argument("--frames", type=int, default=72)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    preset, net, originals, fixed, scale = fl.scene(args.preset, args.clip, args.frames)
    zero = fixed * 0
    painting = preset.images[0].path
    reference = [fl.paint(net, f, fixed) for f in originals]
    base = warping_error(originals, reference)
    _, base_style = scores(originals, reference, painting)
    runs = {
        "alone, noise fixed": reference,
        "alone, no noise": [fl.paint(net, f, zero) for f in originals],
        "locked, no noise": locked(net, originals, zero, scale, roll=False),
        "locked, noise fixed": locked(net, originals, fixed, scale, roll=False),
        "locked, noise rolled": locked(net, originals, fixed, scale, roll=True),
        "carried features 0.6, no noise (before)": fl.paint_carried(
            net, originals, zero, 0.6, "quarter", fl.MATCH_TOLERANCE, "bicubic"),
    }
    for name, frames in runs.items():
        for band in ("", "+band"):
            made = fl.blend(frames, originals, "low:0.8:2") if band else frames
            error = warping_error(originals, made)
            content, style = scores(originals, made, painting)
            print(json.dumps({"clip": args.clip, "preset": args.preset, "run": name + band,
                              "warping_x": round(error / base, 3),
                              "style_x": round(style / base_style, 3),
                              "content": round(content, 3)}), flush=True)


if __name__ == "__main__":
    main()
