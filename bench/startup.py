"""How long the light commands take to start, and whether they import torch.

    python -m bench.startup [--repeat 10]

Runs each command as a user would (a fresh ``stylize`` process), ``--repeat`` times, and
prints the median and the fastest wall time; then, once more under
``PYTHONPROFILEIMPORTTIME=1``, whether ``torch`` appears among its imports.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO


def _stylize() -> list[str]:
    found = shutil.which("stylize")
    return [found] if found else [sys.executable, "-m", "pipeline"]


def _time(args: list[str], cwd: Path, repeat: int) -> tuple[float, float, bool]:
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([*_stylize(), *args], cwd=cwd, capture_output=True, check=True)
        seconds.append(time.perf_counter() - start)
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    trace = subprocess.run([*_stylize(), *args], cwd=cwd, capture_output=True, text=True,
                           env=env, check=True).stderr
    torch = any(line.rstrip().endswith("| torch") for line in trace.splitlines())
    return statistics.median(seconds), min(seconds), torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "examples" / "photos", root / "photos")
        (root / "jobs.yaml").write_text(
            "jobs:\n  - {name: a, input: photos, styles: [udnie, great-wave], output: out}\n")
        commands = [["--help"], ["styles", "list"], ["styles", "show", "udnie"],
                    ["run", "--dry-run", "jobs.yaml"], ["gallery", "jobs.yaml"]]
        print(f"{'command':<34}{'median s':>10}{'best s':>9}  torch imported")
        for command in commands:
            median, best, torch = _time(command, root, args.repeat)
            print(f"{'stylize ' + ' '.join(command):<34}{median:>10.3f}{best:>9.3f}  "
                  f"{'yes' if torch else 'no'}")


if __name__ == "__main__":
    main()
