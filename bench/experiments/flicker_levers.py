"""What makes the fast path's videos flicker, and what each lever costs in style.

One question, answered in docs/lab-log.md ("Videos: flicker levers"): on a clip made from a
held-out photo with camera motion (bench/video.py's clips), how do the warping error
(bench/flicker.py) and the style distance (bench/yardstick.py, every 12th frame) move with

* the network's noise channels: ``fixed`` (as shipped: one draw, fixed on the screen),
  ``zero``, or ``ampA`` (the fixed draw times A);
* a network file (``--network``: a stability-trained candidate, say);
* the steadying blend afterwards: none, the whole previous frame carried along the flow
  (``full:W``), or only its low frequencies (``low:W:SIGMA``).

    python -m bench.experiments.flicker_levers --clip bridge:pan --preset udnie \\
        --noise fixed,zero --blend none,full:0.5,low:0.7:2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from bench.common import COLLECTION, REPO
from bench.flicker import warping_error
from bench.video import camera, scores
from pipeline.config.styles import Registry
from pipeline.engine.fast import working_size
from pipeline.engine.network import NOISE_SEED, TransformNet
from pipeline.engine.network_file import read_network
from pipeline.render.network_loader import network_config
from pipeline.video.steady import MATCH_TOLERANCE, flow, warp

OUT = (384, 216)


def paint(net: TransformNet, frame: np.ndarray, noise: torch.Tensor) -> np.ndarray:
    """The fast path's picture of one frame with these noise channels (as FastStylizer
    paints it: at the working size, upsampled, the frame's detail put back)."""
    w, h = OUT
    ww, wh = noise.shape[-1], noise.shape[-2]
    full = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    small = F.interpolate(full, size=(wh, ww), mode="area")
    x = torch.cat([small, noise], 1)
    ph, pw = -wh % 4, -ww % 4
    x = F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x
    with torch.no_grad():
        p = torch.sigmoid(net.out(net.up(net.blocks(net.down(x))))[..., :wh, :ww].float())

    def up(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False)
    out = (up(p) + full - up(small)).clamp(0, 1)
    return (out[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def blend(frames: list[np.ndarray], originals: list[np.ndarray], spec: str,
          tolerance: float = MATCH_TOLERANCE) -> list[np.ndarray]:
    if spec == "none":
        return frames
    kind, *numbers = spec.split(":")
    weight = float(numbers[0])
    sigma = float(numbers[1]) if kind == "low" else 0.0
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    out = [frames[0]]
    for t in range(1, len(frames)):
        g1, g0 = (cv2.cvtColor(originals[i], cv2.COLOR_RGB2GRAY) for i in (t, t - 1))
        offsets = flow(dis, g1, g0)
        differs = np.abs(warp(originals[t - 1], offsets).astype(np.float32)
                         - originals[t].astype(np.float32)).mean(2)
        trust = np.clip(2 - differs / (tolerance / 2), 0, 1)[..., None] * weight
        carried = warp(out[-1], offsets).astype(np.float32)
        s = frames[t].astype(np.float32)
        if kind == "low":
            mixed = s + trust * (cv2.GaussianBlur(carried, (0, 0), sigma)
                                 - cv2.GaussianBlur(s, (0, 0), sigma))
        else:
            mixed = s * (1 - trust) + carried * trust
        out.append(np.clip(np.rint(mixed), 0, 255).astype(np.uint8))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", default="bridge:pan", help="PHOTO:MOVE (pan, zoom or orbit)")
    ap.add_argument("--frames", type=int, default=72)
    ap.add_argument("--preset", default="udnie")
    ap.add_argument("--network", type=Path, help="default: the preset's shipped network")
    ap.add_argument("--noise", default="fixed")
    ap.add_argument("--blend", default="none")
    ap.add_argument("--tolerance", type=float, default=MATCH_TOLERANCE,
                    help="how far (0-255) a warped original may differ and still be trusted")
    args = ap.parse_args()
    torch.set_num_threads(2)
    preset = Registry.discover().resolve(args.preset)
    path = args.network or REPO / "styles" / args.preset / "network.safetensors"
    net = read_network(path, network_config(preset.settings)).net.eval()
    photo, move = args.clip.split(":")
    originals = [cv2.resize(f, OUT, interpolation=cv2.INTER_AREA)
                 for f in camera(COLLECTION / f"{photo}.jpg", move, args.frames, (640, 360))]
    s = preset.settings
    ww, wh = working_size(*OUT, s.train_size * s.network_paint_scale)
    fixed = torch.randn(1, net.config.noise, wh, ww,
                        generator=torch.Generator().manual_seed(NOISE_SEED))
    base: float | None = None
    base_style: float | None = None
    for noise_spec in args.noise.split(","):
        scale = 0.0 if noise_spec == "zero" else (
            1.0 if noise_spec == "fixed" else float(noise_spec.removeprefix("amp")))
        painted = [paint(net, f, fixed * scale) for f in originals]
        for spec in args.blend.split(","):
            frames = blend(painted, originals, spec, args.tolerance)
            error = warping_error(originals, frames)
            content, style = scores(originals, frames, preset.images[0].path)
            base = base if base is not None else error
            base_style = base_style if base_style is not None else style
            print(json.dumps({"clip": args.clip, "network": str(path), "noise": noise_spec,
                              "blend": spec, "tolerance": args.tolerance,
                              "warping": round(error, 5),
                              "warping_x": round(error / base, 3), "style": round(style, 4),
                              "style_x": round(style / base_style, 3),
                              "content": round(content, 3)}), flush=True)


if __name__ == "__main__":
    main()
