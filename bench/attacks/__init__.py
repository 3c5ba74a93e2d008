"""The attacks of ``bench/attack.py``, one module each, by the name ``--only`` takes.

Each module has a ``TITLE`` and ``attack(ctx)``: it is handed a :class:`setup.Context` (its
options, its own folder, the command, one ``random.Random(seed)`` for everything random) and
leaves its checks and its figures there. Shared setup is in :mod:`setup`, what is measured
about the result in :mod:`observe`, the summary in :mod:`report`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from . import disk, run, watch
from .setup import Context


class Attack(NamedTuple):
    title: str
    fn: Callable[[Context], None]


ATTACKS: dict[str, Attack] = {
    "run": Attack(run.TITLE, run.attack),
    "watch": Attack(watch.TITLE, watch.attack),
    "disk": Attack(disk.TITLE, disk.attack),
}
