"""GPU figures: memory per pixel of one pass, and images per minute by batch size.

* Memory: the peak memory allocated by one optimizer step (forward, the full loss and the
  input-gradient backward) at 512² and 1024², per pixel, for each precision; these back the
  constants of ``pipeline/engine/memory.py``.
* Throughput: photos of one size (512 px long side, the default preset's steps) optimized as
  batches of 1, 2, 4, ... and the batch size the engine picks by itself; images per minute
  counts the whole multiscale optimization, after one warm-up batch.

Run:  python -m bench.batch [--batches 1,2,4,8,16] [--size 512] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image

from bench.common import REPO
from pipeline.config.geometry import output_size
from pipeline.config.styles import Registry
from pipeline.engine import memory
from pipeline.engine.losses import gram, relative_error, total_variation
from pipeline.engine.objective import layer_weights
from pipeline.engine.optimize import Engine
from pipeline.engine.style_targets import StyleTargetMaker

PHOTOS = sorted((REPO / "examples" / "photos").glob("*.png"))


def bytes_per_pixel(engine: Engine, side: int) -> float:
    """Peak bytes allocated by one step at ``side``², per pixel, above what was held before."""
    x = torch.rand(1, 3, side, side, device=engine.device)
    with torch.no_grad():
        f = engine.net(x)
        content = {n: f[n] for n in engine.content_layers}
        style = {n: gram(f[n]) for n in layer_weights(engine.settings)[1]}
    del f
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    x.requires_grad_(True)
    f = engine.net(x)
    loss = sum(relative_error(f[n], content[n]) for n in content)
    loss = loss + sum(relative_error(gram(f[n]), style[n]) for n in style) + total_variation(x)
    loss.sum().backward()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / side**2


def photos_of_one_size(n: int, size: int) -> list[Image.Image]:
    """``n`` different 4:3 photos (crops and flips of the samples), all of one output size."""
    out = []
    for i in range(n):
        img = Image.open(PHOTOS[i % len(PHOTOS)]).convert("RGB")
        w, h = img.size
        box = (i // len(PHOTOS) * 7 % max(1, w // 8), 0, w, min(h, round(w * 3 / 4)))
        img = img.crop(box).resize((size, size * 3 // 4), Image.Resampling.LANCZOS)
        out.append(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else img)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,2,4,8,16")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA device")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    preset = Registry.discover().resolve("starry-night")
    figures: dict[str, object] = {"device": torch.cuda.get_device_name()}

    per_pixel = {}
    for precision in ("fp32", "bf16", "fp16"):
        engine = Engine(preset.settings.merged({"device": "cuda", "precision": precision}))
        for side in (512, 1024):
            per_pixel[f"{precision}@{side}"] = round(bytes_per_pixel(engine, side))
            print(f"memory per pixel, {precision} at {side}²: {per_pixel[f'{precision}@{side}']} B")
        del engine
        torch.cuda.empty_cache()
    figures["bytes_per_pixel"] = per_pixel

    settings = preset.settings.merged({"size": args.size, "device": "cuda",
                                       "precision": args.precision})
    engine = Engine(settings)
    painting = Image.open(preset.images[0].path).convert("RGB")
    w, h = output_size(args.size, args.size * 3 // 4, args.size)
    targets = StyleTargetMaker(engine.settings).compute([(painting, 1.0)], engine.style_sides(w, h))
    auto = memory.batch_size(engine.settings, engine.device, engine.dtype, w * h)
    sizes = sorted({int(b) for b in args.batches.split(",")} | {auto})
    print(f"{w}x{h}, precision {engine.dtype}, steps {settings.steps}; automatic batch {auto}")
    engine.stylize_batch(photos_of_one_size(2, args.size), targets)  # warm-up
    rates = {}
    for b in sizes:
        photos = photos_of_one_size(b, args.size)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        engine.stylize_batch(photos, targets)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        rates[b] = round(60 * b / seconds, 1)
        print(f"batch {b:3d}: {seconds:7.2f} s, {rates[b]:7.1f} images/min"
              f"{'  (automatic)' if b == auto else ''}", flush=True)
    figures.update(size=[w, h], precision=str(engine.dtype), auto_batch=auto,
                   images_per_minute=rates)

    # Batch against one by one: pixels differ in detail (L-BFGS amplifies rounding), so
    # compare what each result achieves on the race's yardstick.
    from yardstick import Yardstick

    photos = photos_of_one_size(4, args.size)
    together = engine.stylize_batch(photos, targets)
    rows = []
    for photo, batched in zip(photos, together, strict=True):
        alone = engine.stylize(photo, targets)
        stick = Yardstick(photo.resize(alone.size), painting, device="cuda")
        a, b = stick.score(alone), stick.score(batched)
        rows.append({"alone": a, "batched": b})
        print(f"alone content {a['content']:.4f} style {a['style']:.5f} | batched content "
              f"{b['content']:.4f} ({100 * (b['content'] / a['content'] - 1):+.1f}%) style "
              f"{b['style']:.5f} ({100 * (b['style'] / a['style'] - 1):+.1f}%)", flush=True)
    figures["batch_vs_alone"] = rows
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "batch.json").write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
