"""The same photos stylized in-process and on Ray workers, in one run of this script.

Builds ``--photos`` different photos (crops and flips of the samples), warms the
style-target cache once, then runs the same plan, each time into a fresh output folder:

* in-process with ``--threads`` torch threads;
* Ray, one worker of ``--threads`` CPUs (the same thread count: the cost of Ray itself);
* Ray, one worker of one CPU, and two workers of one CPU each (how throughput scales).

It prints each run's wall time and photos per minute, and the two ratios the issue asks
for: Ray with one worker against in-process (at most 1.10×), and two one-thread workers
against one (at least 1.8× the throughput).  Workers are started before the clock starts
(their start-up is printed apart); they load the network at their first photo, inside the
timed run.  A local Ray instance with ``max(threads, 2)`` CPUs is started for the script.

Run:  python -m bench.scale_out [--photos 24] [--size 192] [--steps 40,20] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

from bench.common import make_photos
from pipeline.config.manifest import load_manifest
from pipeline.executors.base import Executor
from pipeline.executors.local import LocalExecutor
from pipeline.images import probe
from pipeline.plan.methods import needs
from pipeline.plan.planning import Plan, plan
from pipeline.run.runner import run
from pipeline.store.cache import ArtifactCache


def write_manifest(work: Path, name: str, args: argparse.Namespace) -> Path:
    manifest = work / f"jobs-{name}.yaml"
    manifest.write_text(
        f"defaults: {{size: {args.size}, steps: [{args.steps}], seed: 1, precision: fp32,"
        f" device: cpu}}\n"
        f"jobs:\n  - {{name: {name}, input: photos, styles: [{args.style}],"
        f" output: out-{name}}}\n")
    return manifest


def timed(label: str, the_plan: Plan, executor: Executor) -> float:
    start = time.perf_counter()
    report = run(the_plan, executor)
    seconds = time.perf_counter() - start
    done = report.count("done")
    if report.exit_code != 0 or done != len(the_plan.due):
        raise SystemExit(f"{label}: {done} of {len(the_plan.due)} done, exit "
                         f"{report.exit_code}")
    print(f"{label:28s} {seconds:8.1f} s  {60 * done / seconds:6.2f} photos/min", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--steps", default="40,20")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--style", default="starry-night")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    try:
        import ray
    except ImportError:
        raise SystemExit('this benchmark needs Ray: pip install -e ".[ray]"') from None
    from pipeline.executors.ray import RayExecutor

    work = args.work or Path(tempfile.mkdtemp(prefix="scale-out-"))
    make_photos(work / "photos", args.photos)
    cache = ArtifactCache(work / "cache")
    print(f"{args.photos} photos at size {args.size}, steps [{args.steps}], in {work}")

    import torch

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    plans = {name: plan(load_manifest(write_manifest(work, name, args)))
             for name in ("local", "ray-1xT", "ray-1x1", "ray-2x1")}
    local = LocalExecutor(cache)
    tasks = plans["local"].due
    infos = [probe(t.input) for t in tasks]
    for i in infos:  # the style targets made before the clock starts
        local.prepare(tasks[0].preset, needs(tasks[0].preset.settings, i.width, i.height))
    times = {"local": timed(f"in-process, {args.threads} thread(s)", plans["local"], local)}
    local.close()

    ray.init(num_cpus=max(args.threads, 2), include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    try:
        runs = [("ray-1xT", 1, args.threads), ("ray-1x1", 1, 1), ("ray-2x1", 2, 1)]
        for name, workers, cpus in runs:
            if name == "ray-1x1" and args.threads == 1:
                times[name] = times["ray-1xT"]  # the same configuration
                continue
            start = time.perf_counter()
            executor = RayExecutor(workers=workers, cpus_per_worker=cpus, gpus_per_worker=0,
                                   cache=cache)
            print(f"  ({workers} Ray worker(s) of {cpus} CPU(s) started in "
                  f"{time.perf_counter() - start:.1f} s)", flush=True)
            try:
                times[name] = timed(f"Ray, {workers} worker(s) x {cpus} thread(s)",
                                    plans[name], executor)
            finally:
                executor.close()
    finally:
        ray.shutdown()

    same = sum((work / "out-local" / p.name).read_bytes() == p.read_bytes()
               for p in (work / "out-ray-1xT").glob("*.jpg"))
    print(f"Ray 1 worker / in-process, wall time at {args.threads} thread(s): "
          f"{times['ray-1xT'] / times['local']:.2f}x (target <= 1.10)")
    print(f"2 one-thread workers / 1, throughput: "
          f"{times['ray-1x1'] / times['ray-2x1']:.2f}x (target >= 1.8)")
    print(f"outputs byte-identical to in-process: {same} of {args.photos}")


if __name__ == "__main__":
    main()
