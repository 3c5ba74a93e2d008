"""`stylize run` on a folder of same-size photos, one at a time and in automatic batches.

Builds ``--count`` different 640×480 photos (crops and flips of the samples) in a scratch
folder, writes two manifests that differ only in ``batch_size`` (1, and 0 = automatic), runs
``stylize run`` on each in a child process, and prints the wall times and images per minute.
The outputs of the two runs are compared too (mean absolute difference in levels of 255).

Run:  python -m bench.run_batched [--count 16] [--size 512] [--work DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import make_photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="batched-"))
    make_photos(work / "photos", args.count)
    times = {}
    for batch in (1, 0):
        name = "auto" if batch == 0 else str(batch)
        manifest = work / f"jobs-{name}.yaml"
        manifest.write_text(f"defaults: {{size: {args.size}, batch_size: {batch}}}\n"
                            f"jobs:\n  - {{name: b{name}, input: photos, styles: [starry-night],"
                            f" output: out-{name}}}\n")
        cmd = [sys.executable, "-m", "pipeline", "run", str(manifest), "--quiet",
               "--cache-dir", str(work / "cache")]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        times[name] = time.perf_counter() - t0
        print(f"batch_size {name:4s}: {times[name]:7.1f} s for {args.count} photos, "
              f"{60 * args.count / times[name]:.1f} images/min", flush=True)
    diffs = []
    for out in sorted((work / "out-1").glob("*.jpg")):
        a = np.asarray(Image.open(out), np.int16)
        b = np.asarray(Image.open(work / "out-auto" / out.name), np.int16)
        diffs.append(float(np.abs(a - b).mean()))
    print(f"batched against one by one: mean |difference| {np.mean(diffs):.2f} levels "
          f"(largest {max(diffs):.2f}) over {len(diffs)} photos")


if __name__ == "__main__":
    main()
