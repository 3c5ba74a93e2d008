"""Engine overhead and full-image time at 512 px (issue: the stylizing engine).

Prints, for a 512 px photo on the chosen device and precision:
* seconds per optimizer step of the engine (last scale, after warm-up);
* seconds per bare forward + input-gradient backward through the same
  truncated VGG-19 at the same precision, and the ratio of the two;
* the wall time of one full ``stylize image`` with the default preset.

With ``--sizes 96x64,192x128,384x256`` it prints the same two figures, and their ratio,
at each of those sizes instead (the coarse scales, where a step's fixed costs weigh most).

Run:  python -m bench.engine_step [--device cpu] [--precision auto] [--steps 20]
      python -m bench.engine_step --no-full --sizes 96x64,192x128,384x256
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from bench.common import REPO
from pipeline.config.geometry import output_size, pyramid
from pipeline.config.settings import Settings
from pipeline.config.styles import Registry
from pipeline.engine.optimize import Engine
from pipeline.engine.style_targets import StyleTargetMaker
from pipeline.images import pil_to_tensor

PHOTO = REPO / "examples" / "photos" / "astronaut.png"


def bare_step_seconds(engine: Engine, x: torch.Tensor, steps: int) -> float:
    """Forward + backward to the input only: the floor any optimizer step pays."""
    x = x.clone().requires_grad_(True)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        feats = engine.net(x)
        # A scalar that touches every captured layer, as the real loss does.
        total = sum(f.float().mean() for f in feats.values())
        (grad,) = torch.autograd.grad(total, x)
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # the first passes create oneDNN/cuDNN primitives
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def engine_step_seconds(engine: Engine, photo: Image.Image, steps: int,
                        at_own_size: bool = False) -> float:
    """Median seconds per step of the real optimizer at the final scale of ``photo``.

    At the engine's output size, or with ``at_own_size`` at the photo's own size (which
    ``output_size`` would otherwise scale up to ``size``).
    """
    w, h = photo.size if at_own_size else output_size(photo.width, photo.height,
                                                      engine.settings.size)
    last = pyramid(w, h, engine.settings)[-1]
    style = Registry.discover().presets["starry-night"]
    painting = Image.open(style.images[0].path).convert("RGB")
    targets = StyleTargetMaker(engine.settings).compute([(painting, 1.0)], [last.style_side])
    single = engine.settings.merged({"steps": [steps + 2], "min_side": max(w, h),
                                     "size": max(w, h)})
    bench_engine = Engine(single)
    stamps: list[float] = []
    bench_engine.stylize(photo.resize((w, h)), targets,
                         on_progress=lambda p: stamps.append(time.perf_counter()))
    deltas = [b - a for a, b in zip(stamps[2:], stamps[3:], strict=False)]
    return sorted(deltas)[len(deltas) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--no-full", action="store_true", help="skip the full stylize image run")
    parser.add_argument("--sizes", default="", help="WxH,...: measure at these sizes instead")
    args = parser.parse_args()

    settings = Settings(size=512, device=args.device, precision=args.precision)
    if not args.no_full:
        # First, while this process has run no torch work: its idle OpenMP threads were
        # seen spinning at over 100% CPU while the child ran, taking cores from it.
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.jpg"
            cmd = [sys.executable, "-m", "pipeline", "image", str(PHOTO), "--style",
                   "starry-night", "--size", "512", "-o", str(out), "--quiet",
                   "--device", args.device, "--precision", args.precision,
                   "--cache-dir", str(Path(tmp) / "cache")]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            print(f"full `stylize image` at 512 px, default preset (steps "
                  f"{settings.steps}), cold cache: {time.perf_counter() - t0:.1f} s wall")

    engine = Engine(settings)
    photo = Image.open(PHOTO).convert("RGB")
    print(f"device {engine.device} ({platform.processor() or platform.machine()}), "
          f"precision {str(engine.dtype).removeprefix('torch.')}, threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}")
    sizes = [tuple(int(v) for v in item.split("x")) for item in args.sizes.split(",") if item]
    for w, h in sizes or [output_size(photo.width, photo.height, 512)]:
        sized = photo.resize((w, h), Image.Resampling.LANCZOS)
        x = pil_to_tensor(sized).to(engine.device)
        print(f"image {w}x{h}, network cut after {list(engine.net.capture.values())[-1]}")
        bare = bare_step_seconds(engine, x, args.steps)
        step = engine_step_seconds(engine, sized, args.steps, at_own_size=bool(sizes))
        print(f"  bare forward+backward: {bare * 1000:8.1f} ms/step")
        print(f"  engine optimizer step: {step * 1000:8.1f} ms/step")
        print(f"  ratio engine/bare:     {step / bare:8.3f}")


if __name__ == "__main__":
    main()
