"""Before a run: train the network of each fast style that has none, and bind the plan to it.

A library step (no printing): ``stylize run`` hands it the plan and gets back the plan
whose fast tasks name the networks they will be made with, keys included, so nothing
after it (the runner, the writer) decides a network or a key again.  Each style's network
is trained once for the collection, on the photos of every job that uses it (not only
those due), each read under its own task's folder and link policy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.styles import Preset
from pipeline.plan.methods import needs_network
from pipeline.plan.planning import Plan, task_key
from pipeline.training.networks import bind, network_key
from pipeline.training.photos import TrainingPhoto

if TYPE_CHECKING:
    from pipeline.training.job import TrainReport

__all__ = ["Training", "TrainingSession", "missing_networks", "train_missing"]


@dataclass
class Training:
    """What a session gives the training of one network: where its progress goes."""

    on_step: Callable[[Any], None] | None = None
    on_start: Callable[[Any], None] | None = None
    report: TrainReport | None = None  # set when the training ends


#: ``session(preset)``: a context around one network's training (a live view, say),
#: yielding where its progress goes; its ``report`` is set before the context exits.
TrainingSession = Callable[[Preset], AbstractContextManager[Training]]


@contextlib.contextmanager
def _quiet(preset: Preset) -> Iterator[Training]:
    yield Training()


def missing_networks(plan: Plan) -> list[tuple[Preset, list[TrainingPhoto]]]:
    """Each fast style with a due task and no network, with every photo of its jobs."""
    wanted = {(t.job, t.style) for t in plan.due
              if needs_network(t.preset.settings) and not t.preset.network}
    found: dict[str, tuple[Preset, dict[Path, TrainingPhoto]]] = {}
    for task in plan.tasks:
        if (task.job, task.style) in wanted:
            entry = found.setdefault(network_key(task.preset), (task.preset, {}))
            entry[1].setdefault(task.input, TrainingPhoto(task.input, task.root,
                                                          task.follow_symlinks))
    return [(preset, [photos[p] for p in sorted(photos)]) for preset, photos in found.values()]


def train_missing(plan: Plan, cache_root: Path, *, session: TrainingSession = _quiet,
                  executor: object = None,
                  should_stop: Callable[[], bool] | None = None) -> Plan:
    """Train what :func:`missing_networks` finds (on one of ``executor``'s workers when it
    trains remotely), then return the plan bound to the networks."""
    from pipeline.executors.base import TrainsRemotely
    from pipeline.training.job import ensure_network

    missing = missing_networks(plan)
    for preset, photos in missing:
        with session(preset) as training:
            remote = (executor.remote_training(training.on_step, should_stop)
                      if isinstance(executor, TrainsRemotely) else None)
            training.report = ensure_network(preset, photos, cache_root,
                                             on_step=training.on_step,
                                             on_start=training.on_start,
                                             should_stop=should_stop, remote=remote)
    return bound(plan, cache_root) if missing else plan


def bound(plan: Plan, cache_root: Path) -> Plan:
    """The plan with each fast task naming its network, and its key made with it."""
    tasks = []
    for task in plan.tasks:
        if needs_network(task.preset.settings) and not task.preset.network:
            preset = bind(task.preset, cache_root)
            key = (task_key(task.input_digest, preset, task.fmt)
                   if task.input_digest is not None else task.key)
            task = replace(task, preset=preset, key=key)
        tasks.append(task)
    return replace(plan, tasks=tasks)
