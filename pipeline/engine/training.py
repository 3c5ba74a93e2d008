"""Training a preset's transformation network on the user's own photos (the fast path).

The network (:mod:`pipeline.engine.network`) is trained with Adam on the photos seen
whole at the working size (:mod:`pipeline.engine.train_samples`: why whole photos and
not crops), flipped at random, against the very objective the optimizer minimizes
(:class:`~pipeline.engine.objective.Objective`): content towards the VGG-19 features of
the photo itself, style towards the cached style targets of the picture's size, total
variation of the output.  Iterations, not epochs, decide the length: a collection of 20
photos and one of 20,000 train for the same number of steps.

The network used is an exponential moving average of the trained weights
(:attr:`TrainOptions.average`): at a constant learning rate Adam's weights wander around
the optimum from step to step, and their average sits nearer to it.

A :class:`Trainer` is a library object: it never prints and never exits.  Each step is
reported to an ``on_step`` callback as a :class:`TrainProgress`, a ``should_stop``
callable is asked between steps, and a checkpoint (network, its average, Adam's moments,
the step and the sample generator's state) is one safetensors file written atomically,
from which :meth:`Trainer.resume` continues exactly where it was: on the CPU in float32
a resumed run's losses are those of a run never interrupted.  Nothing is pickled.

Precision: the network's weights and Adam stay float32; its convolutions run under
autocast in bfloat16 on CPUs that have it natively and on GPUs (float16 with a gradient
scaler where bfloat16 is missing), and VGG-19 runs in the same precision as for the
optimizer (:func:`pipeline.engine.loss_network.loss_network`).  The losses are float32.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pipeline.config.geometry import style_side
from pipeline.config.settings import Settings
from pipeline.engine import checkpoint, train_samples
from pipeline.engine.device import resolve_device, resolve_precision
from pipeline.engine.loss_network import loss_network
from pipeline.engine.network import NetworkConfig, TransformNet
from pipeline.engine.objective import Objective, Term, layer_weights, style_terms
from pipeline.engine.preview import preview_sheet
from pipeline.engine.style_targets import StyleTargets
from pipeline.engine.train_samples import MIN_SAMPLE_SIDE
from pipeline.errors import (
    Cancelled,
    DiskFullError,
    DivergedError,
    OutputNotWritableError,
    UsageError,
)
from pipeline.store import fsutil

__all__ = ["TrainOptions", "TrainProgress", "TrainResult", "Trainer",
           "train", "training_sides"]

@dataclass(frozen=True)
class TrainOptions:
    """How a network is trained, besides the preset's settings (which decide the loss)."""

    # The working size: photos are seen whole at the area of a square this many pixels
    # a side, as the fast path paints them (pipeline.engine.fast).
    side: int = 256
    batch: int = 2  # photos per step
    steps: int = 10_000  # Adam steps in all (a resumed run counts the ones done before)
    learning_rate: float = 1e-3  # constant (a linear decay was measured and lost)
    seed: int = 0  # decides the photos drawn, their sizes and flips, and so the network
    # Each photo is seen at a side between these factors of the working size (in steps
    # of the style targets' sides): a little play, so that the network is not tied to
    # one exact scale (photos smaller than the output, outputs smaller than the side).
    zoom: tuple[float, float] = (0.8, 1.25)
    # Each photo is seen through a random window of at least this fraction of its area
    # (1: whole), a photo in its own right: more distinct pictures from a small
    # collection.  Half of the gap between held-out photos and photos trained on is the
    # network not carrying over; windows closed a quarter of it (docs/lab-log.md,
    # fourteenth round: 1.82 against 1.91 times the optimizer's objective).
    crop: float = 0.5
    # The decay of the weights' moving average (0: the network is the last step's).
    # Warmed up as (1 + t) / (10 + t), so early snapshots are not the random start's.
    average: float = 0.999
    config: NetworkConfig = field(default_factory=NetworkConfig)
    device: str | None = None  # None: the settings' device
    precision: str | None = None  # None: the settings' precision

    def __post_init__(self) -> None:
        lo, hi = self.zoom
        if self.side < MIN_SAMPLE_SIDE:
            raise ValueError(f"side must be at least {MIN_SAMPLE_SIDE} px, not {self.side}")
        if self.batch < 1 or self.steps < 0 or not self.learning_rate > 0:
            raise ValueError("batch must be at least 1, steps at least 0, learning_rate > 0")
        if not 0 < lo <= hi <= 4:
            raise ValueError(f"zoom must be 0 < low <= high <= 4, not {self.zoom}")
        if not 0 < self.crop <= 1:
            raise ValueError(f"crop must be in (0, 1], not {self.crop}")
        if not 0 <= self.average < 1:
            raise ValueError(f"average must be in [0, 1), not {self.average}")

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must share with the run that resumes it: everything that
        decides the network except the step count (a run may be extended) and the
        hardware."""
        out = asdict(self)
        for name in ("steps", "device", "precision"):
            del out[name]
        out["zoom"], out["config"] = list(self.zoom), self.config.as_dict()
        return out


@dataclass(frozen=True)
class TrainProgress:
    """One training step done, as reported to ``on_step``."""

    step: int  # steps done in all, this one included (1-based)
    steps: int  # steps the run aims at
    loss: float  # the step's objective, averaged over its photos
    photos_per_s: float  # photos per second since this run (or resumption) started
    elapsed: float  # seconds since this run (or resumption) started
    resumed_from: int = 0  # the step the run resumed from (0: started afresh)


@dataclass(frozen=True)
class TrainResult:
    net: TransformNet  # the trained network, in eval mode, on the training device
    steps: int  # steps done in all
    resumed_from: int
    seconds: float  # of this run (not of the runs it resumed)
    loss: float | None  # the last step's (None when no step ran)


StepFn = Callable[[TrainProgress], None]


def training_sides(settings: Settings, options: TrainOptions) -> list[int]:
    """The style sides whose targets training needs (:func:`train_samples.training_sides`)."""
    return train_samples.training_sides(options.side, options.zoom, settings.style_scale)


class Trainer:
    """A network, its optimizer and its sample generator, trained one step at a time.

    ``targets`` holds the style targets of :func:`training_sides` (more sides may be
    there).  ``photos`` may be any sequence (a lazy one for a large collection); each
    step draws :attr:`TrainOptions.batch` photos from it.  :attr:`learner` is the network
    Adam trains; :attr:`net` the one to use: the learner's moving average (or the
    learner itself when :attr:`TrainOptions.average` is 0).
    """

    def __init__(self, settings: Settings, targets: StyleTargets,
                 photos: Sequence[Image.Image], options: TrainOptions | None = None,
                 start: TransformNet | None = None) -> None:
        # The network's own loss (a lighter style term: Settings.network_style_ratio).
        settings = settings.for_training()
        self.settings, self.photos = settings, photos
        self.options = o = options or TrainOptions()
        if not photos:
            raise UsageError("training needs at least one photo")
        self.sides = training_sides(settings, o)
        missing = [side for side in self.sides if side not in targets]
        if missing:
            raise ValueError(f"style targets for sides {missing} (the working size's) "
                             "are missing")
        self.device = resolve_device(o.device or settings.device)
        self.dtype = resolve_precision(o.precision or settings.precision, self.device)
        content, style = layer_weights(settings)
        self.vgg, _ = loss_network(settings, [*content, *style], self.device, self.dtype)
        self.targets = targets
        self._style: dict[int, list[Term]] = {}
        with torch.random.fork_rng(devices=[]):  # the seed decides the initial weights,
            torch.manual_seed(o.seed)  # without resetting the process's generator
            self.learner = TransformNet(o.config).to(self.device).train()
        if start is not None:  # another network of this architecture: fine-tuning
            self.learner.load_state_dict(start.state_dict())
        self.net = self.learner
        if o.average:
            self.net = copy.deepcopy(self.learner).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.learner.parameters(), lr=o.learning_rate)
        # Float16 gradients underflow without scaling; bfloat16 has float32's range.
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.dtype == torch.float16)
        self.generator = torch.Generator().manual_seed(o.seed)
        self.step = 0

    def style(self, side: int) -> list[Term]:
        """The style terms of the targets of ``side``, built once."""
        if side not in self._style:
            if side not in self.targets:
                raise ValueError(f"style targets for side {side} are missing")
            self._style[side] = style_terms(self.settings, self.targets[side], self.device,
                                            self.vgg.feature_scale)
        return self._style[side]

    def train_step(self) -> float:
        """One Adam step on a fresh draw of photos; their mean objective.

        Photos of a step differ in size, so each goes through the network and VGG-19 on
        its own and its gradient is added, scaled by the batch: the same gradient as the
        mean objective of a batch run together.
        """
        o = self.options
        samples = train_samples.random_samples(self.photos, o.batch,
                                               self.sides, self.settings.style_scale,
                                               self.generator, o.crop)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for sample in samples:
            photo = sample.photo.to(self.device)
            loss, _ = self._objective(self.learner, photo, sample.style_side,
                                      self.generator)
            value = float(loss.detach())
            if not math.isfinite(value):
                # Before the step: the weights (and so every checkpoint) stay those of the
                # last finite step.  Adam would turn one NaN gradient into NaN weights.
                raise DivergedError(
                    f"the training diverged at step {self.step + 1}: its objective is "
                    f"{value} (not finite); no network was written and the last checkpoint "
                    "is kept; lower style_weight, content_weight or train_learning_rate")
            self.scaler.scale(loss / len(samples)).backward()
            total += value
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        if self.net is not self.learner:
            decay = min(o.average, (1 + self.step) / (10 + self.step))
            with torch.no_grad():
                for a, w in zip(self.net.parameters(), self.learner.parameters(), strict=True):
                    a.lerp_(w, 1 - decay)
        return total / len(samples)

    def _objective(self, net: TransformNet, photo: torch.Tensor, side: int,
                   noise: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean objective of ``net``'s pictures of ``photo`` against the style
        targets of ``side``, and the pictures; ``noise`` draws the network's noise
        channels (None: the fixed noise pictures are made with)."""
        with torch.no_grad():
            objective = Objective.build(self.settings, self.vgg(photo), self.style(side))
        with torch.autocast(self.device.type, dtype=self.dtype,
                            enabled=self.dtype != torch.float32):
            picture = net(photo, noise)  # float32: the output head runs in float32
        return objective(self.vgg(picture), picture).mean(), picture

    @torch.no_grad()
    def evaluate(self, photos: torch.Tensor) -> float:
        """The mean objective of :attr:`net`'s pictures of ``photos`` (``B×3×H×W``), against
        the style targets of their size, without training: a fixed yardstick, where the
        steps' losses move with their random draws."""
        side = style_side(photos.shape[-1], photos.shape[-2], self.settings.style_scale)
        return float(self._objective(self.net, photos.to(self.device), side)[0])

    def run(self, on_step: StepFn | None = None,
            should_stop: Callable[[], bool] | None = None,
            on_checkpoint: Callable[[], None] | None = None,
            checkpoint_every_s: float = math.inf) -> TrainResult:
        """Steps until :attr:`TrainOptions.steps` are done in all.

        ``on_checkpoint`` is called every ``checkpoint_every_s`` seconds, when the last
        step is done, and when ``should_stop`` says stop, before :class:`Cancelled` is
        raised: a stopped run loses nothing.
        """
        self.learner.train()
        start = time.perf_counter()
        resumed_from, loss = self.step, None
        last_save = time.monotonic()
        while self.step < self.options.steps:
            if should_stop is not None and should_stop():
                if on_checkpoint is not None:
                    on_checkpoint()
                raise Cancelled(f"training stopped on request at step {self.step}")
            loss = self.train_step()
            elapsed = time.perf_counter() - start
            if on_step is not None:
                done = (self.step - resumed_from) * self.options.batch
                on_step(TrainProgress(self.step, self.options.steps, loss,
                                      done / max(elapsed, 1e-9), elapsed, resumed_from))
            if on_checkpoint is not None and (self.step == self.options.steps or
                                              time.monotonic() - last_save >= checkpoint_every_s):
                on_checkpoint()
                last_save = time.monotonic()
        self.learner.eval()
        return TrainResult(self.net.eval(), self.step, resumed_from,
                           time.perf_counter() - start, loss)

    def preview(self) -> Image.Image:
        """A small sheet to watch the training by (:func:`preview.preview_sheet`)."""
        return preview_sheet(self.net, self.photos, self.device)

    def write_preview(self, path: Path) -> None:
        """:meth:`preview` as a JPEG at ``path``, written atomically."""
        import io

        buffer = io.BytesIO()
        self.preview().save(buffer, "JPEG", quality=85)
        fsutil.atomic_write_bytes(Path(path), buffer.getvalue())

    # -- checkpoints (the format: pipeline.engine.checkpoint) -------------------------------

    def checkpoint_bytes(self, key: str = "") -> bytes:
        """The whole training state as checkpoint bytes (:func:`checkpoint.encode`)."""
        return checkpoint.encode(self, key)

    def save_checkpoint(self, path: Path, key: str = "") -> None:
        """Write :meth:`checkpoint_bytes` to ``path`` atomically: a kill at any moment
        leaves the previous checkpoint or this one, whole.  Raises ``DiskFullError`` (the
        previous checkpoint is then intact) or ``OutputNotWritableError``."""
        fsutil.atomic_write_bytes(Path(path), self.checkpoint_bytes(key))

    def resume(self, path: Path, key: str = "") -> int:
        """Continue from the checkpoint at ``path``; the step it was taken at.

        Refused with one :class:`~pipeline.errors.WeightsError` line (category
        ``checkpoint``) when the file is damaged, not a checkpoint, or of another
        network (other options or another ``key``): nothing of it is used then.
        """
        return self.restore(*checkpoint.read(Path(path)), key)

    def restore(self, data: bytes, source: str, key: str = "") -> int:
        """:meth:`resume` from a checkpoint's bytes; ``source`` names them in refusals."""
        self.step = checkpoint.restore(self, data, source, key)
        return self.step


def train(settings: Settings, targets: StyleTargets,
          photos: Sequence[Image.Image], options: TrainOptions | None = None, *,
          checkpoint: Path | None = None, key: str = "", checkpoint_every_s: float = 300.0,
          on_step: StepFn | None = None,
          should_stop: Callable[[], bool] | None = None,
          preview: Path | None = None, start: TransformNet | None = None) -> TrainResult:
    """Train (or, from an existing ``checkpoint``, go on training) a network.

    ``targets`` must hold the sides of :func:`training_sides`.  With
    ``checkpoint``, the state is written there every ``checkpoint_every_s`` seconds, at
    the end, and when ``should_stop`` stops the run (then
    :class:`~pipeline.errors.Cancelled` is raised);
    ``key`` names what is trained, and a checkpoint of anything else is refused.  With
    ``preview``, a sheet of a few photos through the network (:meth:`Trainer.preview`) is
    written there at each checkpoint, so a person can watch it learn.  ``start``: the
    weights a training that begins afresh starts from (a checkpoint's win when resuming).
    """
    trainer = Trainer(settings, targets, photos, options, start=start)
    save = None
    if checkpoint is not None:
        if checkpoint.exists():
            trainer.resume(checkpoint, key)

        def save() -> None:
            trainer.save_checkpoint(checkpoint, key)
            if preview is not None:
                # A convenience: a full disk or an unwritable file stops the training at
                # the next checkpoint, which names its own path, not at a picture.
                with contextlib.suppress(DiskFullError, OutputNotWritableError):
                    trainer.write_preview(preview)

    return trainer.run(on_step, should_stop, save, checkpoint_every_s)
