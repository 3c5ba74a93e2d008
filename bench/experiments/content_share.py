"""What share of a training step the photos' own VGG-19 pass takes: the most that caching
each training photo's content features could save (issue 28's lever).

    python -m bench.experiments.content_share [--style udnie] [--steps 20]

Times ``Trainer.train_step`` at the preset's training settings on the shared collection
(less the held-out photos), and within it the passes made without a gradient (the
photos'; the pictures' pass needs one).
"""

from __future__ import annotations

import argparse
import time

import torch
from PIL import Image

from bench.common import COLLECTION, HELD_OUT


class _Timed(torch.nn.Module):
    """The loss network, timing its passes made without a gradient."""

    def __init__(self, vgg: torch.nn.Module) -> None:
        super().__init__()
        self.vgg, self.feature_scale = vgg, vgg.feature_scale
        self.seconds = 0.0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if torch.is_grad_enabled():
            return self.vgg(x)
        start = time.perf_counter()
        out = self.vgg(x)
        self.seconds += time.perf_counter() - start
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--style", default="udnie")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()

    from pipeline.config.styles import Registry
    from pipeline.engine.network import NetworkConfig
    from pipeline.engine.training import Trainer, TrainOptions, training_sides
    from pipeline.render.targets import StyleTargetStore
    from pipeline.store.cache import ArtifactCache

    preset = Registry.discover().resolve(args.style)
    s = preset.settings
    photos = [Image.open(p).convert("RGB") for p in sorted(COLLECTION.glob("*.jpg"))
              if p.stem not in HELD_OUT]
    options = TrainOptions(side=s.train_size, batch=s.train_batch, steps=args.steps,
                           learning_rate=s.train_learning_rate, seed=s.seed,
                           config=NetworkConfig(width=s.network_width, noise=s.network_noise))
    targets = StyleTargetStore(ArtifactCache()).get(s, preset, training_sides(s, options))
    trainer = Trainer(s, targets, photos, options)
    timed = _Timed(trainer.vgg)
    trainer.vgg = timed  # type: ignore[assignment]
    for _ in range(3):  # warm-up
        trainer.train_step()
    timed.seconds = 0.0
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    total = time.perf_counter() - start
    print(f"a step {total / args.steps:.3f} s, of which the photos' VGG-19 pass "
          f"{timed.seconds / args.steps:.3f} s ({100 * timed.seconds / total:.0f} %): "
          f"at most {total / (total - timed.seconds):.2f}x the steps a minute with their "
          "features cached")


if __name__ == "__main__":
    main()
