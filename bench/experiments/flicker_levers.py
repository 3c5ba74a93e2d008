"""What makes the fast path's videos flicker, and what each lever costs in style.

One question, answered in docs/lab-log.md ("Videos: flicker levers"): on a clip made from a
held-out photo with camera motion (bench/video.py's clips), how do the warping error
(bench/flicker.py) and the style distance (bench/yardstick.py, every 12th frame) move with

* the network's noise channels: ``fixed`` (as shipped: one draw, fixed on the screen),
  ``zero``, or ``ampA`` (the fixed draw times A);
* a network file (``--network``: a stability-trained candidate, say);
* the steadying blend afterwards: none, the whole previous frame carried along the flow
  (``full:W``), or only its low frequencies (``low:W:SIGMA``);
* or a carry inside the network (``feat:W:WHERE``, ReCoNet-like): the previous frame's
  features, carried along the same flow, mixed at W into the new frame's where the flow
  is trusted, then painted by the rest of the network; WHERE is ``quarter`` (after the
  residual blocks) or ``half`` (after the first step up), and an optional fourth field
  the interpolation that carries them (``bilinear``, ``bicubic``, ``nearest``).
  ``feat:W:WHERE+low:W2:SIGMA`` adds the band blend afterwards; ``feat1:...`` carries the
  previous frame's own features, not the mix (no memory beyond one frame).

    python -m bench.experiments.flicker_levers --clip bridge:pan --preset udnie \\
        --noise fixed,zero --blend none,full:0.5,low:0.7:2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from bench.common import COLLECTION, REPO
from bench.flicker import warping_error
from bench.video import camera, scores
from pipeline.config.styles import Preset, Registry
from pipeline.engine.fast import working_size
from pipeline.engine.network import NOISE_SEED, TransformNet
from pipeline.engine.network_file import read_network
from pipeline.render.network_loader import network_config
from pipeline.video.steady import MATCH_TOLERANCE, flow, warp

OUT = (384, 216)
#: The DIS preset of the carrying flow (``--flow``).
FLOW = {"fast": cv2.DISOPTICAL_FLOW_PRESET_FAST, "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
PRESET = [FLOW["fast"]]


def _inputs(frame: np.ndarray, noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The frame as a tensor, at the working size (the noise's), and the network's input
    (the working-size frame and the noise, padded to a multiple of 4)."""
    wh, ww = noise.shape[-2:]
    full = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    small = F.interpolate(full, size=(wh, ww), mode="area")
    x = torch.cat([small, noise], 1)
    ph, pw = -wh % 4, -ww % 4
    return full, small, F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x


def _finished(logits: torch.Tensor, full: torch.Tensor, small: torch.Tensor) -> np.ndarray:
    """The network's output (padded logits) upsampled to the frame, its detail put back."""
    w, h = OUT
    p = torch.sigmoid(logits[..., :small.shape[-2], :small.shape[-1]].float())

    def up(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False)
    out = (up(p) + full - up(small)).clamp(0, 1)
    return (out[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def paint(net: TransformNet, frame: np.ndarray, noise: torch.Tensor) -> np.ndarray:
    """The fast path's picture of one frame with these noise channels (as FastStylizer
    paints it: at the working size, upsampled, the frame's detail put back)."""
    full, small, x = _inputs(frame, noise)
    with torch.no_grad():
        return _finished(net.out(net.up(net.blocks(net.down(x)))), full, small)


def _trusted(dis: cv2.DISOpticalFlow, now: np.ndarray, before: np.ndarray,
             tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """The flow from ``now`` back to ``before`` (H×W×2) and the trust in it (H×W)."""
    g1, g0 = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (now, before))
    offsets = flow(dis, g1, g0)
    differs = np.abs(warp(before, offsets).astype(np.float32) - now.astype(np.float32)).mean(2)
    return offsets, np.clip(2 - differs / (tolerance / 2), 0, 1)


def _carry_features(features: torch.Tensor, offsets: np.ndarray,
                    mode: str = "bilinear") -> torch.Tensor:
    """``features`` (1×C×h×w) moved along ``offsets`` (full-size pixels, H×W×2)."""
    h, w = features.shape[-2:]
    H, W = offsets.shape[:2]
    small = cv2.resize(offsets, (w, h), interpolation=cv2.INTER_AREA)
    small = small * np.array([w / W, h / H], dtype=np.float32)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.stack([(gx + small[..., 0]) / (w - 1) * 2 - 1,
                     (gy + small[..., 1]) / (h - 1) * 2 - 1], -1)
    return F.grid_sample(features, torch.from_numpy(grid)[None], mode=mode,
                         padding_mode="border", align_corners=True)


def paint_carried(net: TransformNet, originals: list[np.ndarray], noise: torch.Tensor,
                  weight: float, where: str, tolerance: float,
                  mode: str = "bilinear", recursive: bool = True) -> list[np.ndarray]:
    """Each frame painted with the previous frame's features carried into the network's
    own (``feat:W:WHERE``); the output as :func:`paint` makes it."""
    dis = cv2.DISOpticalFlow.create(PRESET[0])
    head = [net.up[0]] if where == "half" else []
    tail = [net.up[1], net.out] if where == "half" else [net.up[0], net.up[1], net.out]
    out, previous = [], None
    for t, frame in enumerate(originals):
        full, small, x = _inputs(frame, noise)
        with torch.no_grad():
            feats = net.blocks(net.down(x))
            for layer in head:
                feats = layer(feats)
            raw = feats
            if previous is not None:
                offsets, trust = _trusted(dis, frame, originals[t - 1], tolerance)
                fh, fw = feats.shape[-2:]
                trust_small = cv2.resize(trust, (fw, fh), interpolation=cv2.INTER_AREA)
                mix = torch.from_numpy(trust_small)[None, None] * weight
                feats = feats + mix * (_carry_features(previous, offsets, mode) - feats)
                previous = feats if recursive else raw
            else:
                previous = feats
            for layer in tail:
                feats = layer(feats)
            out.append(_finished(feats, full, small))
    return out


def blend(frames: list[np.ndarray], originals: list[np.ndarray], spec: str,
          tolerance: float = MATCH_TOLERANCE) -> list[np.ndarray]:
    if spec == "none":
        return frames
    kind, *numbers = spec.split(":")
    weight = float(numbers[0])
    sigma = float(numbers[1]) if kind == "low" else 0.0
    dis = cv2.DISOpticalFlow.create(PRESET[0])
    out = [frames[0]]
    for t in range(1, len(frames)):
        offsets, trusted = _trusted(dis, originals[t], originals[t - 1], tolerance)
        trust = trusted[..., None] * weight
        carried = warp(out[-1], offsets).astype(np.float32)
        s = frames[t].astype(np.float32)
        if kind == "low":
            mixed = s + trust * (cv2.GaussianBlur(carried, (0, 0), sigma)
                                 - cv2.GaussianBlur(s, (0, 0), sigma))
        else:
            mixed = s * (1 - trust) + carried * trust
        out.append(np.clip(np.rint(mixed), 0, 255).astype(np.uint8))
    return out


class Scene(NamedTuple):
    """A clip to paint, and what paints it."""

    preset: Preset
    net: TransformNet
    originals: list[np.ndarray]  # its frames at OUT
    noise: torch.Tensor  # the photo path's noise channels, fixed on the screen
    scale: float  # working pixels per frame pixel


def scene(preset_name: str, clip: str, frames: int, network: Path | None = None) -> Scene:
    """``clip`` (PHOTO:MOVE, bench/video.py's camera) at OUT and the preset's network
    (``network``: another file of its architecture), read as the experiments use them."""
    preset = Registry.discover().resolve(preset_name)
    path = network or REPO / "styles" / preset_name / "network.safetensors"
    net = read_network(path, network_config(preset.settings)).net.eval()
    photo, move = clip.split(":")
    originals = [cv2.resize(f, OUT, interpolation=cv2.INTER_AREA)
                 for f in camera(COLLECTION / f"{photo}.jpg", move, frames, (640, 360))]
    s = preset.settings
    ww, wh = working_size(*OUT, s.train_size * s.network_paint_scale)
    fixed = torch.randn(1, net.config.noise, wh, ww,
                        generator=torch.Generator().manual_seed(NOISE_SEED))
    return Scene(preset, net, originals, fixed, ww / OUT[0])


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
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--flow", choices=sorted(FLOW), default="fast",
                    help="DIS preset of the flow that carries (the pipeline's: fast)")
    args = ap.parse_args()
    PRESET[0] = FLOW[args.flow]
    torch.set_num_threads(args.threads)
    path = args.network or REPO / "styles" / args.preset / "network.safetensors"
    preset, net, originals, fixed, _ = scene(args.preset, args.clip, args.frames, path)
    base: float | None = None
    base_style: float | None = None
    for noise_spec in args.noise.split(","):
        scale = 0.0 if noise_spec == "zero" else (
            1.0 if noise_spec == "fixed" else float(noise_spec.removeprefix("amp")))
        painted = [paint(net, f, fixed * scale) for f in originals]
        for spec in args.blend.split(","):
            inside, _, after = spec.partition("+") if spec.startswith("feat") else ("", "", spec)
            frames = painted
            if inside:
                kind, weight, where, *mode = inside.split(":")
                frames = paint_carried(net, originals, fixed * scale, float(weight), where,
                                       args.tolerance, *mode, recursive=kind == "feat")
            frames = blend(frames, originals, after or "none", args.tolerance)
            error = warping_error(originals, frames)
            content, style = scores(originals, frames, preset.images[0].path)
            base = base if base is not None else error
            base_style = base_style if base_style is not None else style
            print(json.dumps({"clip": args.clip, "network": str(path), "noise": noise_spec,
                              "blend": spec, "tolerance": args.tolerance, "flow": args.flow,
                              "warping": round(error, 5),
                              "warping_x": round(error / base, 3), "style": round(style, 4),
                              "style_x": round(style / base_style, 3),
                              "content": round(content, 3)}), flush=True)


if __name__ == "__main__":
    main()
