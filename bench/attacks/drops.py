"""Dropping photos into an inbox, as people and programs do: by copy, by ``os.rename`` from a
folder outside it (a move), by a slow write in chunks with pauses (some longer than the
settle time), and by writing ``NAME.part`` then renaming it.

The whole plan (which photo, how, the wait before it and every pause) is drawn up front from
the attack's random source, so the threads that carry it out draw nothing: which thread takes
which drop does not change what is drawn.
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

METHODS = ["copy", "move", "slow", "part"]
SLOW_CHUNKS = 5
PART_CHUNK = 4096


@dataclass(frozen=True)
class Drop:
    src: Path
    method: str
    wait: float  # seconds before it starts
    pauses: tuple[float, ...]  # after each chunk (slow and part)

    def key(self) -> tuple[str, str, float, tuple[float, ...]]:
        """What a seed fixes, without the folder it happens in."""
        return self.src.name, self.method, round(self.wait, 6), tuple(round(p, 6)
                                                                        for p in self.pauses)


def chunk_size(method: str, size: int) -> int:
    return max(1, -(-size // SLOW_CHUNKS)) if method == "slow" else PART_CHUNK


def plan_drops(rng: random.Random, sources: list[Path], gap: float) -> list[Drop]:
    """Every photo with a method (a quarter each), shuffled, each with its waits drawn."""
    plan = [(src, METHODS[i % len(METHODS)]) for i, src in enumerate(sources)]
    rng.shuffle(plan)
    drops = []
    for src, method in plan:
        wait = rng.uniform(0, 2 * gap)
        pauses: tuple[float, ...] = ()
        if method in ("slow", "part"):
            size = src.stat().st_size
            lo, hi = (0.1, 0.9) if method == "slow" else (0.0, 0.3)  # slow: past the settle time
            pauses = tuple(rng.uniform(lo, hi)
                           for _ in range(0, size, chunk_size(method, size)))
        drops.append(Drop(src, method, wait, pauses))
    return drops


def drop(d: Drop, inbox: Path, staging: Path) -> None:
    data = d.src.read_bytes()
    final = inbox / d.src.name
    if d.method == "copy":
        shutil.copyfile(d.src, final)
    elif d.method == "move":
        tmp = staging / d.src.name
        tmp.write_bytes(data)
        os.rename(tmp, final)
    else:
        target = final if d.method == "slow" else inbox / f"{d.src.name}.part"
        step = chunk_size(d.method, len(data))
        with open(target, "wb") as f:
            for k, pause in zip(range(0, len(data), step), d.pauses, strict=True):
                f.write(data[k:k + step])
                f.flush()
                time.sleep(pause)
        if target != final:
            os.rename(target, final)


@dataclass
class Droppers:
    """A few threads carrying out a drop plan; :meth:`stop` ends them after their current
    drop (an attack that ends early leaves nothing dropping)."""

    plan: list[Drop]
    inbox: Path
    staging: Path
    threads: int = 3
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._todo: queue.Queue[Drop] = queue.Queue()
        for d in self.plan:
            self._todo.put(d)
        self._stop = threading.Event()
        self._pool = [threading.Thread(target=self._work, daemon=True)
                      for _ in range(self.threads)]

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                d = self._todo.get_nowait()
            except queue.Empty:
                return
            if self._stop.wait(d.wait):
                return
            try:
                drop(d, self.inbox, self.staging)
            except OSError as exc:
                self.errors.append(f"{d.src.name}: {exc}")

    def start(self) -> None:
        for t in self._pool:
            t.start()

    def join(self) -> None:
        for t in self._pool:
            t.join()

    def stop(self) -> None:
        self._stop.set()
