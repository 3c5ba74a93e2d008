"""Shared fixtures: tiny images, a fast preset, an isolated cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n auto` runs one worker per core: each keeps to one thread (and so do the
    # `stylize` processes some tests start), or the workers' OpenMP threads fight for cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
SHARED_STYLE = REPO / "styles" / "starry-night" / "starry_night.jpg"
PHOTOS = REPO / "examples" / "photos"

#: Settings small enough for a test: tiny output, two scales, few steps.
#: ``min_scales: 1``: two scales of 12 and 6 steps (the default would add a third).
FAST = {"size": 64, "min_side": 32, "steps": [12, 6], "min_scales": 1, "precision": "fp32",
        "device": "cpu"}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own cache folder and no user style folders."""
    monkeypatch.setenv("STYLIZE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("STYLIZE_STYLES_PATH", raising=False)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """torch on one thread for a module of tiny-image tests.

    Tiny images gain nothing from threads, and on a busy machine OpenMP threads that spin
    against other processes make each step many times slower.  The `stylize` child
    processes of the fault tests use one thread too (faults/helpers.CHILD_ENV).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def gradient_photo(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A smooth synthetic photo with some structure (a disc on a gradient)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = xx / width
    g = yy / height
    disc = ((xx - width * 0.6) ** 2 + (yy - height * 0.5) ** 2) < (min(width, height) * 0.3) ** 2
    b = np.where(disc, 0.9, 0.2)
    img = np.stack([r, g, b], axis=-1) * 255 + rng.normal(0, 3, (height, width, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    gradient_photo().save(path)
    return path


@pytest.fixture
def fast_preset_dir(tmp_path: Path) -> Path:
    """A user style folder holding the preset 'fast' (Starry Night, tiny and quick)."""
    folder = tmp_path / "user-styles"
    (folder / "fast").mkdir(parents=True)
    Image.open(SHARED_STYLE).convert("RGB").resize((96, 60)).save(folder / "fast" / "paint.png")
    lines = ["description: tiny test preset", "images: [paint.png]", "settings:"]
    lines += [f"  {k}: {v}" for k, v in FAST.items()]
    (folder / "fast" / "preset.yaml").write_text("\n".join(lines) + "\n")
    return folder


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
    from pipeline.runner import run

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
    from pipeline.engine.network import network_digest, network_tensors, write_network
    from pipeline.engine.style_targets import StyleTargetMaker
    from pipeline.engine.training import Trainer, TrainOptions, training_sides
    from pipeline.network_loader import network_config
    from pipeline.networks import META_DIGEST, META_KEY, META_STYLE, network_key

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
