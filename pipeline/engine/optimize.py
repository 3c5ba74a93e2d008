"""Multiscale style transfer by optimization (Gatys, Ecker and Bethge).

The picture is optimized first at a small size (short side about ``min_side``), then
upsampled (bicubic) and refined at larger sizes until the requested one.  Most steps are
spent at the small scales, where a step is cheap and where the large brush strokes of a
style are decided; the fine scales only add detail.  Each scale has its own content
target (the photo resized to that scale) and its own style targets (the painting resized
to a matching pixel count), both turned into an :class:`Objective` once per scale.

This module owns the schedule: the scales, how each starts from the one before, and
tiles for scales too large for one pass.  One pass of the optimizer is
:func:`pipeline.engine.loop.optimize`; what is minimized is
:mod:`pipeline.engine.objective`.  The ``Engine`` is a library object: it never prints
and never exits; progress goes out through callbacks, and a ``should_stop`` callable
lets a caller abandon a photo between two steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.config import geometry
from pipeline.config.geometry import Scale, output_size
from pipeline.config.settings import Settings
from pipeline.engine import memory, tiles
from pipeline.engine.device import resolve_device, resolve_precision
from pipeline.engine.loop import Carry, PassOptions, optimize
from pipeline.engine.loss_network import loss_network
from pipeline.engine.loss_scale import LossScaler
from pipeline.engine.network_file import LoadedNetwork
from pipeline.engine.objective import (
    Objective,
    TemporalTerm,
    Term,
    layer_weights,
    style_terms,
)
from pipeline.engine.pyramid import unsharp
from pipeline.engine.style_targets import StyleTargets
from pipeline.images import pil_to_tensor, tensor_to_pil
from pipeline.images.colour import keep_colours
from pipeline.images.tensors import resized
from pipeline.progress import Progress, ProgressFn


@dataclass(frozen=True)
class PassInfo:
    """One optimization pass (a scale, or a tile of one), as reported to ``on_pass``."""

    scale: int  # 0-based index of the scale
    tile: int  # 0-based tile of the scale
    start: torch.Tensor  # the pictures the pass started from
    result: torch.Tensor  # the pictures it ended with
    carried: torch.Tensor | None  # the L-BFGS scale handed in by the previous pass
    loss_scale: float  # the float16 loss scale at the pass's start (1 when unscaled)
    bands: bool  # whether the optimizer moved Laplacian-pyramid bands, not pixels


@dataclass(frozen=True)
class Start:
    """A picture to start from instead of the photo (a video's previous frame, carried
    along the footage's motion to this one).  Only the finest scale is then optimized,
    for ``warm_steps``; with a ``temporal_weight`` the picture is held to the start where
    ``trust`` (H×W, 0-1: where the carrying can be believed) says so (Ruder et al.)."""

    picture: Image.Image
    trust: np.ndarray | None = None


SnapshotFn = Callable[[Progress, Image.Image], None]
PassFn = Callable[[PassInfo], None]
_TensorSnapshotFn = Callable[[Progress, torch.Tensor], None]


@dataclass
class _Callbacks:
    """What a caller listens with, for one photo (or batch)."""

    on_progress: ProgressFn | None = None
    should_stop: Callable[[], bool] | None = None
    on_snapshot: _TensorSnapshotFn | None = None
    snapshot_every: int = 0
    on_pass: PassFn | None = None


class Engine:
    """The network and the settings of one stylization, ready to run on one device.

    Building an Engine is cheap after the first: the weights and the network are
    loaded once per process and device and shared.  An engine holds no state from one
    photo to the next, so a photo's picture does not depend on which came before it.
    """

    #: The pictures are optimized in this dtype (tests raise it to float64, where
    #: rounding cannot hide whether the photos of a batch interact).
    picture_dtype = torch.float32

    def __init__(self, settings: Settings, network: LoadedNetwork | None = None) -> None:
        self.settings = settings
        self.network = network  # the preset's trained network, for ``init: fast``
        if settings.init == "fast" and network is None:
            raise ValueError("init fast needs the preset's trained network")
        self.device = resolve_device(settings.device)
        self.dtype = resolve_precision(settings.precision, self.device)
        content, style = layer_weights(settings)
        self.net, self.weights = loss_network(settings, [*content, *style], self.device,
                                              self.dtype)

    def style_sides(self, width: int, height: int) -> list[int]:
        """The style target sizes a photo of this size needs (after resizing to ``size``)."""
        return geometry.style_sides(width, height, self.settings)

    def pass_pixels(self) -> int:
        """The most pixels one optimization pass may hold (the tile limit, batch included)."""
        return self.settings.tile_pixels or memory.pass_pixels(self.device, self.dtype)

    def stylize(self, content: Image.Image, targets: StyleTargets, *,
                on_progress: ProgressFn | None = None,
                should_stop: Callable[[], bool] | None = None,
                on_snapshot: SnapshotFn | None = None, snapshot_every: int = 0,
                on_pass: PassFn | None = None, start: Start | None = None) -> Image.Image:
        """Optimize one RGB photo towards the style; returns the stylized RGB image.

        ``on_snapshot`` receives the current picture (at the current scale's size) every
        ``snapshot_every`` steps, at the end of each tile and of each scale; it is meant
        for previews and benchmarks, and costs a device-to-host copy each time.
        ``on_pass`` sees each optimization pass's start and result (tests, benchmarks).
        ``start``: a picture to start from (see :class:`Start`).
        """
        snap = None
        if on_snapshot is not None:
            def snap(progress: Progress, x: torch.Tensor) -> None:
                on_snapshot(progress, tensor_to_pil(x[:1].detach().clamp(0, 1).cpu()))
        calls = _Callbacks(on_progress, should_stop, snap, snapshot_every, on_pass)
        return self._stylize([content], targets, calls,
                             None if start is None else [start])[0]

    def stylize_batch(self, contents: Sequence[Image.Image], targets: StyleTargets, *,
                      on_progress: ProgressFn | None = None,
                      should_stop: Callable[[], bool] | None = None,
                      on_pass: PassFn | None = None) -> list[Image.Image]:
        """Optimize several photos of the same output size together (one pass per step).

        Each photo has its own content targets and its own L-BFGS history, so each
        result equals the photo's own ``stylize`` up to floating-point rounding; a batch
        only makes better use of a GPU.  How many photos make a batch is decided by the
        executor (:func:`pipeline.engine.memory.batch_size`).  Progress reports the
        batch's summed loss.
        """
        return self._stylize(list(contents), targets,
                             _Callbacks(on_progress, should_stop, on_pass=on_pass))

    def _stylize(self, contents: list[Image.Image], targets: StyleTargets,
                 calls: _Callbacks,
                 starts: list[Start] | None = None) -> list[Image.Image]:
        sizes = {output_size(c.width, c.height, self.settings.size) for c in contents}
        if len(sizes) != 1:
            raise ValueError(f"a batch needs photos of one output size, not {sorted(sizes)}")
        out_w, out_h = sizes.pop()
        scales = geometry.pyramid(out_w, out_h, self.settings)
        if starts is not None:  # a start holds what the coarser scales would have painted
            scales = [replace(scales[-1], steps=self.settings.warm_steps or scales[-1].steps)]
        missing = {sc.style_side for sc in scales} - set(targets)
        if missing:
            raise ValueError(f"style targets missing for sides {sorted(missing)}")
        run = _PhotoRun(self, scales, calls)
        if starts is not None:
            run.first = torch.cat([pil_to_tensor(resized(s.picture.convert("RGB"), out_w, out_h))
                                   for s in starts]).to(self.device, self.picture_dtype)
            run.started = True
            run.held = self._held(starts, run.first)
        elif self.settings.init == "fast":
            from pipeline.engine.fast import FastStylizer

            assert self.network is not None
            painted = FastStylizer(self.settings, self.network).stylize_batch(contents)
            run.first = torch.cat([pil_to_tensor(p) for p in painted]).to(
                self.device, self.picture_dtype)
        x: torch.Tensor | None = None
        for k, scale in enumerate(scales):
            x = run.scale(k, x, [resized(c, scale.width, scale.height) for c in contents],
                          targets)
        assert x is not None
        pictures = [tensor_to_pil(item.clamp(0, 1).cpu()) for item in x.detach().split(1)]
        if self.settings.preserve_color == "luminance":
            pictures = [keep_colours(p, resized(c, out_w, out_h))
                        for p, c in zip(pictures, contents, strict=True)]
        return pictures

    def _held(self, starts: list[Start], pictures: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """What a temporal term holds the pictures to, and where: the starts, and their
        trust at the pictures' size (None when there is no term)."""
        if not self.settings.temporal_weight or any(s.trust is None for s in starts):
            return None
        trust = torch.cat([torch.from_numpy(np.asarray(s.trust, dtype=np.float32)
                                            .reshape(1, 1, *np.shape(s.trust)[:2]))
                           for s in starts if s.trust is not None])
        trust = F.interpolate(trust, size=pictures.shape[-2:], mode="bilinear",
                              align_corners=False).clamp_(0, 1)
        return pictures.detach().clone(), trust.to(self.device)


class _PhotoRun:
    """One photo's (or batch's) walk up the scales: the state that lives as long as it.

    Everything that one scale hands the next lives here and nowhere else: the picture,
    the photo at the previous scale (for the warm start), the L-BFGS step size and the
    float16 loss scale.  A new photo gets a new run, so none of it leaks between photos.
    """

    def __init__(self, engine: Engine, scales: list[Scale], calls: _Callbacks) -> None:
        self.engine, self.scales, self.calls = engine, scales, calls
        self.settings = engine.settings
        self.limit = engine.pass_pixels()
        self.carry = Carry()
        self.scaler = LossScaler.for_dtype(engine.dtype)
        self.previous: torch.Tensor | None = None  # the photos at the previous scale
        self.first: torch.Tensor | None = None  # the first scale's start, if not from init
        self.started = False  # whether ``first`` is a finished picture (a warm start)
        self.held: tuple[torch.Tensor, torch.Tensor] | None = None  # a temporal term's aim
        self.start = time.perf_counter()

    def scale(self, k: int, x: torch.Tensor | None, contents: list[Image.Image],
              targets: StyleTargets) -> torch.Tensor:
        """Scale ``k``: its start from the coarser result ``x``, then its passes."""
        e = self.engine
        content = torch.cat([pil_to_tensor(c) for c in contents]).to(e.device, e.picture_dtype)
        if x is None:
            x = self.first if self.first is not None else _initial(e, content)
        else:
            x = self._upsampled(x, content)
        self.previous = content
        scale = self.scales[k]
        style = style_terms(self.settings, targets[scale.style_side], e.device,
                            e.net.feature_scale)
        layout = tiles.grid(x.shape[-1], x.shape[-2], self.limit, self.settings.tile_overlap)
        if len(layout) == 1:
            return self._pass(k, 0, 1, x, content, style, held=self.held)
        for t, tile in enumerate(layout):
            held = None if self.held is None else (tiles.crop(self.held[0], tile),
                                                   tiles.crop(self.held[1], tile))
            part = self._pass(k, t, len(layout), tiles.crop(x, tile).clone(),
                              tiles.crop(content, tile), style, canvas=x, held=held)
            tiles.paste(x, part, tile)
        return x

    def _upsampled(self, x: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        """The coarser scale's result at this scale's size, ready to optimize further."""
        s = self.settings
        size = content.shape[-2:]
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
        if s.sharpen:
            # Upsampling blurs the brush strokes the coarser scale drew; the finer
            # scale's first steps would spend themselves redrawing them.
            x = unsharp(x, s.sharpen)
        if s.warm_start and self.previous is not None:
            # The photo's detail that upsampling loses (its band of a Laplacian pyramid)
            # is put back: the finer scale then starts from the photo's edges rather than
            # a blur, which its first steps would redraw.  After the sharpening: that
            # detail is exact, not blurred.
            x = x + content - F.interpolate(self.previous, size=size, mode="bicubic",
                                            align_corners=False)
        return x.clamp_(0, 1)

    def _pass(self, k: int, tile: int, tiles_: int, x: torch.Tensor, content: torch.Tensor,
              style: list[Term], canvas: torch.Tensor | None = None,
              held: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """One optimization pass of ``x`` (a whole scale, or one tile of it); ``held``:
        the temporal term's target and trust, cropped as ``x`` is."""
        net = self.engine.net
        temporal = [] if held is None else [TemporalTerm(self.settings.temporal_weight, *held)]
        with torch.no_grad():
            objective = Objective.build(self.settings, net(content), style, temporal)
        carried = None if self.carry.scale is None else self.carry.scale.clone()
        loss_scale = self.scaler.scale
        # The optimizer moves ``x`` in place: a listener gets a copy of where it started.
        start = x.detach().clone() if self.calls.on_pass is not None else x
        # ``init: fast`` or a start keeps the finest scale alone, which moves pixels.
        bands = (k < self.settings.pyramid_scales and self.settings.init != "fast"
                 and not self.started)
        options = PassOptions(self.scales[k].steps, bands, self.calls.should_stop)
        report = _Reporter(self, k, tile, tiles_, canvas)
        result = optimize(x, lambda pic: objective(net(pic), pic), self.settings, options,
                          self.carry, self.scaler, report)
        if self.calls.on_pass is not None:
            self.calls.on_pass(PassInfo(k, tile, start, result, carried, loss_scale, bands))
        return result


def _initial(engine: Engine, content: torch.Tensor) -> torch.Tensor:
    """The first scale's starting pictures: the photos, or seeded noise."""
    if engine.settings.init != "noise":
        return content.clone()
    # Every photo of a batch gets the noise it would get alone: a batch must not change
    # a result.
    noise = [torch.rand(content.shape[1:], generator=torch.Generator().manual_seed(
        engine.settings.seed)) for _ in range(content.shape[0])]
    return torch.stack(noise).to(engine.device)


class _Reporter:
    """Turns one pass's steps into :class:`Progress` reports and snapshots."""

    def __init__(self, run: _PhotoRun, k: int, tile: int, tiles_: int,
                 canvas: torch.Tensor | None) -> None:
        self.run, self.k, self.tile, self.tiles = run, k, tile, tiles_
        self.canvas = canvas  # a snapshot of a tiled scale is the whole canvas as it stands

    def __call__(self, step: int, loss: torch.Tensor, picture: torch.Tensor,
                 last: bool) -> None:
        calls = self.run.calls
        if calls.on_progress is None and calls.on_snapshot is None:
            return
        scale = self.run.scales[self.k]
        done = self.tile * scale.steps + step
        # A scale that stopped early reports its last step as the last of its steps.
        total = done if last and self.tile + 1 == self.tiles else scale.steps * self.tiles
        progress = Progress(self.k + 1, len(self.run.scales), done, total,
                            float(loss.detach()), time.perf_counter() - self.run.start,
                            scale.width, scale.height, self.tile + 1, self.tiles)
        if calls.on_progress is not None:
            calls.on_progress(progress)
        if calls.on_snapshot is not None and (last or (
                calls.snapshot_every and step % calls.snapshot_every == 0)):
            calls.on_snapshot(progress, picture if self.canvas is None else self.canvas)
