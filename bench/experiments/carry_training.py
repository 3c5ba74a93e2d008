"""Can a network learn to paint well from features carried along the flow?  (Issue 29.)

The fast path steadies a video by mixing the previous frame's features, carried along the
optical flow, into each new frame's (pipeline/engine/feature_carry.py); the mix costs style,
most on a turning camera, because the network was trained on one photo's features at a
time.  Here the shipped network is fine-tuned on pairs made from the training photos with no
video: a photo, and the same photo moved by a small random similarity (a turn of up to
``--turn`` degrees, a zoom, a shift), whose exact motion is known.  Every other step, the
moved view is painted from its own features mixed with the photo's, carried along that
motion at ``--share``, and judged by the network's own objective (content towards the moved
view, style towards the painting); the steps between are plain training, so photos are
still painted as before.  Then bench/experiments/flicker_levers.py (``--network``) says
whether the carry's style cost fell, and bench/fast_quality.py whether photos kept theirs.

    python -m bench.experiments.carry_training --style udnie --out bench/out/carry-udnie \
        --minutes 10 --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from bench.common import COLLECTION, HELD_OUT


def _similarity(generator: torch.Generator, turn: float) -> torch.Tensor:
    """A random 2×3 affine map (normalized coordinates, output to input): a turn of up to
    ``turn`` degrees, a zoom within 4 %, a shift of up to 3 % of the picture."""
    u = torch.rand(4, generator=generator) * 2 - 1
    angle, zoom = math.radians(turn) * float(u[0]), 1 + 0.04 * float(u[1])
    c, s = math.cos(angle) / zoom, math.sin(angle) / zoom
    return torch.tensor([[c, -s, 0.06 * float(u[2])], [s, c, 0.06 * float(u[3])]])


class _Carried(torch.nn.Module):
    """The network painting the moved view from its features mixed with the photo's,
    carried along the known motion (where it lands inside the photo)."""

    def __init__(self, net: torch.nn.Module, first: torch.Tensor, theta: torch.Tensor,
                 share: float) -> None:
        super().__init__()
        self.net, self.first, self.theta, self.share = net, first, theta, share

    def forward(self, photo: torch.Tensor, generator: torch.Generator | None = None,
                noise_scale: float = 1.0) -> torch.Tensor:
        h, w = photo.shape[-2:]
        here = self.net.features(photo, generator, 0.0)
        before = self.net.features(self.first, generator, 0.0)
        grid = F.affine_grid(self.theta[None], [1, 1, *here.shape[-2:]], align_corners=False)
        carried = F.grid_sample(before, grid.to(before.dtype), mode="bicubic",
                                padding_mode="border", align_corners=False)
        inside = (grid.abs() <= 1).all(-1)[:, None].to(here.dtype)
        mixed = here + self.share * inside * (carried - here)
        return self.net.paint(mixed, h, w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--style", default="udnie")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--share", type=float, default=0.6)
    ap.add_argument("--turn", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from pipeline.config.styles import Registry
    from pipeline.engine import train_samples
    from pipeline.engine.network import NetworkConfig
    from pipeline.engine.network_file import read_network, write_network
    from pipeline.engine.training import Trainer, TrainOptions, training_sides
    from pipeline.render.targets import StyleTargetStore
    from pipeline.store.cache import ArtifactCache

    torch.set_num_threads(args.threads)
    preset = Registry.discover().resolve(args.style)
    s = preset.settings
    photos = [Image.open(p).convert("RGB") for p in sorted(COLLECTION.glob("*.jpg"))
              if p.name not in HELD_OUT]
    options = TrainOptions(side=s.train_size, batch=s.train_batch, steps=10**9,
                           learning_rate=s.train_learning_rate, seed=s.seed,
                           config=NetworkConfig(width=s.network_width, noise=s.network_noise))
    targets = StyleTargetStore(ArtifactCache()).get(s, preset, training_sides(s, options))
    start = read_network(Path("styles") / args.style / "network.safetensors").net
    t = Trainer(s, targets, photos, options, start=start)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "settings.json").write_text(json.dumps(vars(args), default=str, indent=1))
    trained_s, step, last_log, losses = 0.0, 0, time.perf_counter(), []
    while trained_s < args.minutes * 60:
        t0 = time.perf_counter()
        carried = step % 2 == 1
        samples = train_samples.random_samples(t.photos, options.batch, t.sides,
                                               t.settings.style_scale, t.generator)
        t.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for sample in samples:
            net: torch.nn.Module = t.learner
            photo = sample.photo
            if carried:
                theta = _similarity(t.generator, args.turn)
                grid = F.affine_grid(theta[None], list(photo.shape), align_corners=False)
                moved = F.grid_sample(photo, grid, mode="bicubic", padding_mode="reflection",
                                      align_corners=False).clamp(0, 1)
                net, photo = _Carried(t.learner, sample.photo, theta, args.share), moved
            loss, _ = t._objective(net, photo, sample.style_side, t.generator)
            (loss / len(samples)).backward()
            total += float(loss.detach())
        t.optimizer.step()
        step += 1
        decay = min(options.average, (1 + step) / (10 + step))
        with torch.no_grad():
            for a, w in zip(t.net.parameters(), t.learner.parameters(), strict=True):
                a.lerp_(w, 1 - decay)
        losses.append(total / len(samples))
        trained_s += time.perf_counter() - t0
        if time.perf_counter() - last_log >= 60:
            entry = {"step": step, "trained_s": round(trained_s, 1),
                     "loss": round(sum(losses) / len(losses), 4)}
            print(json.dumps(entry), flush=True)
            losses, last_log = [], time.perf_counter()
    write_network(args.out / f"net-{int(args.minutes):03d}min.safetensors", t.net)
    (args.out / "done.json").write_text(json.dumps({"step": step, "trained_s": trained_s}))


if __name__ == "__main__":
    main()
