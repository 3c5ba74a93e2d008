"""Photos a minute through ``stylize run`` with ``method: fast``, everything included.

A folder of ``--photos`` photos (the collection's, copied under distinct names) is run
by the real command, in a child process, with a fast job whose preset's network is put
in a fresh cache: decoding, the network, encoding with metadata, the atomic write and
the record all count, and so does the process's start.  Then ``--optimize N`` photos
of the same folder are run with ``method: optimize`` for the comparison.

    python -m bench.fast_speed --network bench/out/curve-udnie/net-060min.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import COLLECTION


def _stylize() -> list[str]:
    found = shutil.which("stylize")
    return [found] if found else [sys.executable, "-m", "pipeline"]


def _run(root: Path, method: str, env: dict[str, str], job: str) -> tuple[float, dict]:  # type: ignore[type-arg]
    start = time.perf_counter()
    proc = subprocess.run([*_stylize(), "run", str(root / "jobs.yaml"), "--job", job, "--json",
                           "-q"], env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"stylize run ({method}) failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, json.loads(proc.stdout)["summary"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--network", type=Path, required=True)
    ap.add_argument("--style", default="udnie")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--photos", type=int, default=120)
    ap.add_argument("--optimize", type=int, default=2, help="photos run by optimization")
    args = ap.parse_args()

    from pipeline.config.styles import Registry
    from pipeline.engine.network_file import (
        network_digest,
        network_tensors,
        read_network,
        write_network,
    )
    from pipeline.store.cache_dir import ENV_CACHE_DIR
    from pipeline.training.networks import (
        META_DIGEST,
        META_KEY,
        META_STYLE,
        cache_paths,
        network_key,
    )

    root = Path(tempfile.mkdtemp(prefix="fast-speed-"))
    try:
        sources = sorted(COLLECTION.glob("*.jpg"))
        for folder in ("fast", "optimize"):
            (root / folder).mkdir()
        for i in range(args.photos):
            shutil.copy(sources[i % len(sources)], root / "fast" / f"{i:04d}.jpg")
        for i in range(args.optimize):
            shutil.copy(sources[i % len(sources)], root / "optimize" / f"{i:04d}.jpg")
        (root / "jobs.yaml").write_text(
            f"defaults: {{size: {args.size}}}\njobs:\n"
            f"  - {{name: fast, input: fast, styles: [{args.style}], output: out-fast, "
            f"method: fast}}\n"
            f"  - {{name: optimize, input: optimize, styles: [{args.style}], "
            f"output: out-optimize}}\n")
        preset = Registry.discover().resolve(args.style).with_overrides(
            {"size": args.size, "method": "fast"})
        loaded = read_network(args.network)
        cache = root / "cache"
        digest = network_digest(loaded.config, network_tensors(loaded.net))
        write_network(cache_paths(cache, network_key(preset))[0], loaded.net,
                      {META_KEY: network_key(preset), META_DIGEST: digest,
                       META_STYLE: preset.name})
        env = dict(os.environ, **{ENV_CACHE_DIR: str(cache)})
        fast_s, fast = _run(root, "fast", env, "fast")
        print(f"fast:     {fast['done']} photos at {args.size} px in {fast_s:.1f} s: "
              f"{60 * fast['done'] / fast_s:.0f} photos/min (process start included)")
        if args.optimize:
            opt_s, opt = _run(root, "optimize", env, "optimize")
            print(f"optimize: {opt['done']} photos at {args.size} px in {opt_s:.1f} s: "
                  f"{60 * opt['done'] / opt_s:.2f} photos/min")
            print(f"fast / optimize: {(fast['done'] / fast_s) / (opt['done'] / opt_s):.0f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
