"""Shared setup for the attacks: what each one is handed, the photos and preset it stylizes,
and how the installed ``stylize`` command is started (as child processes, never imported).

Everything random in an attack comes from the one ``random.Random(seed)`` in its
:class:`Context`: the photos (through :func:`photo_rng`), the order and pace of the drops and
every kill delay. Nothing reads the global ``random`` or chooses by the clock.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parent.parent.parent
PAINTING = REPO / "styles" / "starry-night" / "starry_night.jpg"
PRESET = {"size": 56, "steps": [6, 3], "precision": "fp32", "device": "cpu"}
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

Arg = str | os.PathLike[str]


# -- building inputs ---------------------------------------------------------------------


def photo_rng(rng: random.Random) -> np.random.Generator:
    """A numpy generator for the photos, seeded from the attack's one random source."""
    return np.random.default_rng(rng.getrandbits(64))


def make_photo(path: Path, rng: np.random.Generator) -> None:
    """A small photo-like picture: a smooth colour field with noise, 64-96 px a side."""
    w, h = (int(v) for v in rng.integers(64, 97, size=2))
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([np.sin(x * rng.uniform(2, 9) + rng.uniform(0, 6)),
                     np.cos(y * rng.uniform(2, 9) + rng.uniform(0, 6)),
                     np.sin((x + y) * rng.uniform(2, 9))], axis=-1)
    pixels = (base * 90 + 128 + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def make_photos(folder: Path, n: int, rng: np.random.Generator, prefix: str = "p") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    photos = [folder / f"{prefix}{i:03d}.png" for i in range(n)]
    for p in photos:
        make_photo(p, rng)
    return photos


def make_styles(folder: Path) -> Path:
    """A styles folder with the preset ``tiny`` (as tests/faults/helpers.py makes it)."""
    preset = folder / "tiny"
    preset.mkdir(parents=True, exist_ok=True)
    Image.open(PAINTING).convert("RGB").resize((96, 60)).save(preset / "paint.png")
    doc = {"description": "attack preset", "images": ["paint.png"], "settings": PRESET}
    (preset / "preset.yaml").write_text(yaml.safe_dump(doc))
    return folder


def write_manifest(path: Path, jobs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"styles_path": ["styles"], "jobs": jobs}))
    return path


# -- the command under attack ------------------------------------------------------------


def stylize_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("STYLIZE_STYLES_PATH", None)
    env.update(CHILD_ENV)
    return env


class Tool:
    """The ``stylize`` command. Every process started through it is remembered, so that none
    outlives its attack when that attack ends early (see :meth:`reap`)."""

    def __init__(self, stylize: str) -> None:
        self.stylize = stylize
        self.procs: list[subprocess.Popen[Any]] = []

    def cmd(self, *args: Arg) -> list[str]:
        return [self.stylize, *(os.fspath(a) for a in args)]

    def run(self, *args: Arg, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(*args), cwd=cwd, env=stylize_env(), capture_output=True,
                              text=True, timeout=timeout)

    def popen(self, *args: Arg, cwd: Path, **kwargs: Any) -> subprocess.Popen[Any]:
        proc: subprocess.Popen[Any] = subprocess.Popen(self.cmd(*args), cwd=cwd,
                                                       env=stylize_env(), **kwargs)
        self.procs.append(proc)
        return proc

    def reap(self) -> int:
        """Kills whatever this tool started that still runs; returns how many there were."""
        alive = [p for p in self.procs if p.poll() is None]
        for p in alive:
            p.kill()
            p.wait(timeout=60)
        self.procs.clear()
        return len(alive)

    def dry_run(self, manifest: Path, cwd: Path,
                job: str | None = None) -> tuple[int, set[str], str]:
        """(tasks to do, outputs reported as skipped, last line) from ``stylize run --dry-run``."""
        res = self.run("run", manifest, "--dry-run", *(["--job", job] if job else []), cwd=cwd)
        skipped = set()
        due = 0
        for line in res.stdout.splitlines():
            cols = line.split("\t")
            if len(cols) == 5 and cols[0] == "skipped":
                skipped.add(os.path.basename(cols[4]))
            elif len(cols) == 5:
                due += 1
        lines = res.stdout.strip().splitlines()
        return due, skipped, lines[-1] if lines else f"(no output; rc {res.returncode})"


# -- what an attack is handed ------------------------------------------------------------


@dataclass
class Context:
    """One attack's options, its own folder, the command, its one seeded random source, and
    where its checks and figures go."""

    args: argparse.Namespace
    top: Path
    tool: Tool
    rng: random.Random
    failures: list[str] = field(default_factory=list)
    held: int = 0
    row: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None

    def check(self, ok: bool, what: str) -> bool:
        print(f"  [{'held' if ok else 'FAILED'}] {what}", flush=True)
        if ok:
            self.held += 1
        else:
            self.failures.append(what)
        return ok

    def skip(self, reason: str) -> None:
        print(f"  skipped: {reason}", flush=True)
        self.skipped = reason
