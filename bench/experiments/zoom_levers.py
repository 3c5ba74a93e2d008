"""What a zoom leaves: the camera's scale taken out before the network paints (docs/lab-log.md,
"What a zoom leaves").

The lattice lock (pipeline.engine.phase_lock) takes out a camera's translation below the
network's 4-pixel step; a zoom is no one translation.  Here, on one of bench/video.py's
clips at 384×216 (as bench/experiments/flicker_levers.py paints them), each frame is fitted
a similarity (scale, turn and shift: OpenCV's estimateAffinePartial2D on DIS's flow, every
8th pixel) and painted by the preset's shipped network

* ``scene``: moved into the first frame's coordinates (the whole motion taken out, what a
  painted set filmed by the camera would give), painted, moved back;
* ``anchored N``: its scale and turn about the centre taken out since the last frame whose
  index is a multiple of N (an anchor every N frames, so that a segment's warm-up could find
  it), its translation by the lattice lock, the noise rolled with the scene;
* ``part λ`` (``--part``): that share of the scale and turn since the first frame taken
  out (the network sees the zoom at 1 - λ of its rate; what it paints is blown up by the
  zoom to the power λ), the lattice lock on top, the noise rolled;
* alone, with the noise fixed (the reference) or without it.

Each with and without the colour band of the previous frame carried at 0.8 (``+band``); the
warping error and the style distance as multiples of the reference, and the reference's
warping error in five rings from the centre (the zoom's motion grows with the radius), one
JSON line each.

    python -m bench.experiments.zoom_levers --clip dune:zoom --preset great-wave
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import torch

import bench.experiments.flicker_levers as fl
from bench.flicker import consistent, warping_error
from bench.video import scores
from pipeline.engine.network import TransformNet
from pipeline.video.steady import flow, warp

STEP = 4  # the network's lattice: two stride-2 layers
RINGS = ((0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0), (1.0, 1.5))


def _motions(originals: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame: the similarity (3×3) from its pixels to the previous frame's, and the
    median of its flow (the lattice lock's translation)."""
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    h, w = originals[0].shape[:2]
    ys, xs = np.mgrid[4:h:8, 4:w:8]
    points = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    out = [(np.eye(3), np.zeros(2))]
    for t in range(1, len(originals)):
        g1, g0 = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (originals[t], originals[t - 1]))
        f = flow(dis, g1, g0)
        before = points + f[points[:, 1].astype(int), points[:, 0].astype(int)]
        fit, _ = cv2.estimateAffinePartial2D(points, before, method=cv2.LMEDS)
        out.append((np.vstack([fit, [0, 0, 1]]), np.median(f.reshape(-1, 2), axis=0)))
    return out


def _about_centre(similarity: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The similarity's scale and turn about ``centre``, without its shift of it."""
    out = np.eye(3)
    out[:2, :2] = similarity[:2, :2]
    out[:2, 2] = centre - similarity[:2, :2] @ centre
    return out


def _power(similarity: np.ndarray, part: float) -> np.ndarray:
    """The scale and turn of ``similarity`` (3×3, no shift) taken to ``part``."""
    a = similarity[:2, :2]
    scale, angle = np.sqrt(abs(np.linalg.det(a))), np.arctan2(a[1, 0], a[0, 0])
    c, s = np.cos(angle * part), np.sin(angle * part)
    out = np.eye(3)
    out[:2, :2] = scale ** part * np.array([[c, -s], [s, c]])
    return out


def painted(net: TransformNet, originals: list[np.ndarray], noise: torch.Tensor,
            scale: float, every: int | None, part: float = 1.0) -> list[np.ndarray]:
    """Each frame moved by its presentation (``every`` None: into the first frame's
    coordinates; N: anchored every N, the lattice lock on top; ``part``: that share of
    the scale and turn taken out), painted, moved back."""
    h, w = originals[0].shape[:2]
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    motions = _motions(originals)
    moved, out = np.zeros(2), []
    for k, frame in enumerate(originals):
        anchor = 0 if every is None else k // every * every
        since = np.eye(3)  # this frame's pixels to the anchor's
        for j in range(anchor + 1, k + 1):
            since = since @ motions[j][0]
        present, roll = since, (0, 0)
        if every is not None:
            moved -= motions[k][1]
            step = STEP / scale
            phase = (moved + step / 2) % step - step / 2
            whole = np.rint((moved - phase) * scale).astype(int)
            present = _about_centre(_power(since, part), centre)
            present[:2, 2] -= phase  # the content moved by minus the phase, as the pipeline does
            roll = (int(whole[1]), int(whole[0]))
        seen = cv2.warpAffine(frame, present[:2], (w, h), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_REFLECT)
        picture = fl.paint(net, seen, torch.roll(noise, roll, dims=(-2, -1)))
        out.append(cv2.warpAffine(picture, present[:2], (w, h),
                                  flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REFLECT))
    return out


def by_ring(originals: list[np.ndarray], stylized: list[np.ndarray]) -> list[float]:
    """The warping error in rings from the centre (radius 1: the frame's edge midpoints)."""
    h, w = stylized[0].shape[:2]
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grays = [cv2.cvtColor(o, cv2.COLOR_RGB2GRAY) for o in originals]
    total, count = np.zeros((h, w)), np.zeros((h, w))
    for t in range(1, len(stylized)):
        back = dis.calc(grays[t], grays[t - 1], None)
        mask = consistent(back, dis.calc(grays[t - 1], grays[t], None))
        carried = warp(stylized[t - 1].astype(np.float32) / 255, back)
        total += ((stylized[t].astype(np.float32) / 255 - carried) ** 2).sum(-1) * mask
        count += mask
    error = total / np.maximum(count, 1)
    ys, xs = np.mgrid[0:h, 0:w]
    radius = np.hypot((xs - w / 2) / (w / 2), (ys - h / 2) / (h / 2))
    return [round(float(error[(radius >= a) & (radius < b)].mean()), 5) for a, b in RINGS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", default="dune:zoom", help="PHOTO:MOVE (bench/video.py's moves)")
    ap.add_argument("--preset", default="great-wave")
    ap.add_argument("--every", type=int, nargs="*", default=[12, 20])
    ap.add_argument("--part", type=float, nargs="*", default=[],
                    help="also: this share of the scale and turn since the first frame "
                    "taken out (no anchors), the lattice lock on top")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    preset, net, originals, fixed, scale = fl.scene(args.preset, args.clip, 72)
    painting = preset.images[0].path
    reference = [fl.paint(net, f, fixed) for f in originals]
    base = warping_error(originals, reference)
    _, base_style = scores(originals, reference, painting)
    print(json.dumps({"clip": args.clip, "preset": args.preset, "run": "alone, noise fixed",
                      "rings": by_ring(originals, reference)}), flush=True)
    runs = {"alone, no noise": lambda: [fl.paint(net, f, fixed * 0) for f in originals],
            "scene": lambda: painted(net, originals, fixed, scale, None)}
    for n in args.every:
        runs[f"anchored {n}"] = lambda n=n: painted(net, originals, fixed, scale, n)
    for part in args.part:
        runs[f"part {part}"] = lambda part=part: painted(net, originals, fixed, scale,
                                                         len(originals), part)
    for name, make in runs.items():
        frames = make()
        for band in ("", "+band"):
            made = fl.blend(frames, originals, "low:0.8:2") if band else frames
            content, style = scores(originals, made, painting)
            print(json.dumps({"clip": args.clip, "preset": args.preset, "run": name + band,
                              "warping_x": round(warping_error(originals, made) / base, 3),
                              "style_x": round(style / base_style, 3),
                              "content": round(content, 3)}), flush=True)


if __name__ == "__main__":
    main()
