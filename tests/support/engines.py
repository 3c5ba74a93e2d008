"""Running the real engine, runner and trainer in a test: tiny, in this process."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from support.images import gradient_photo


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))

def batch_and_singles_in_float64(engine: object, photos: list[Image.Image],
                                 targets: object) -> tuple[list, list]:
    """The float64 pictures of ``photos`` stylized as one batch, then one by one.

    Runs the engine's network and pictures in float64 (on a copy: the modules are shared
    with every engine of the process), so that rounding cannot hide whether photos
    interact.  The pictures are the last optimization pass's results.
    """
    import copy

    import torch

    engine.net = copy.deepcopy(engine.net).double()  # type: ignore[attr-defined]
    engine.net.dtype = torch.float64  # type: ignore[attr-defined]
    engine.picture_dtype = torch.float64  # type: ignore[attr-defined]
    passes: list = []
    engine.stylize_batch(photos, targets, on_pass=passes.append)  # type: ignore[attr-defined]
    together = list(passes[-1].result.split(1))
    alone = []
    for photo in photos:
        engine.stylize(photo, targets, on_pass=passes.append)  # type: ignore[attr-defined]
        alone.append(passes[-1].result)
    return together, alone

def run_local(plan: object, cache: object, **kwargs: object) -> object:
    """Run a plan in this process (the in-process executor), as `stylize run` does."""
    from pipeline.executors.local import LocalExecutor
    from pipeline.run.runner import run

    executor = LocalExecutor(cache)  # type: ignore[arg-type]
    try:
        return run(plan, executor, **kwargs)  # type: ignore[arg-type]
    finally:
        executor.close()

def make_targets(engine: object, paintings: list, sides: object) -> dict:
    """Style targets of ``paintings`` for ``engine``'s settings at these sides."""
    from pipeline.engine.style_targets import StyleTargetMaker

    return StyleTargetMaker(engine.settings).compute(paintings, sides)  # type: ignore[attr-defined, arg-type]

def train_tiny_network(preset: object, target: Path, seed: int = 0) -> str:
    """A real network for a fast ``preset``, a few steps trained at its (tiny) settings and
    written to ``target`` as ``stylize train`` writes it; its digest."""
    from pipeline.engine.network_file import network_digest, network_tensors, write_network
    from pipeline.engine.style_targets import StyleTargetMaker
    from pipeline.engine.training import Trainer, TrainOptions, training_sides
    from pipeline.render.network_loader import network_config
    from pipeline.training.networks import META_DIGEST, META_KEY, META_STYLE, network_key

    s = preset.settings  # type: ignore[attr-defined]
    painting = Image.open(preset.images[0].path).convert("RGB")  # type: ignore[attr-defined]
    options = TrainOptions(side=s.train_size, batch=2, steps=3, seed=seed,
                           config=network_config(s))
    targets = StyleTargetMaker(s).compute([(painting, 1.0)], training_sides(s, options))
    photos = [gradient_photo(64, 48, seed=i) for i in range(4)]
    trainer = Trainer(s, targets, photos, options)
    trainer.run()
    digest = network_digest(trainer.net.config, network_tensors(trainer.net))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_network(target, trainer.net, {META_KEY: network_key(preset),  # type: ignore[arg-type]
                                        META_DIGEST: digest,
                                        META_STYLE: preset.name})  # type: ignore[attr-defined]
    return digest
