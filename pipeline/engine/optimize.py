"""Multiscale style transfer by optimization (Gatys, Ecker and Bethge).

The picture is optimized first at a small size (short side about
``min_side``), then upsampled (bicubic) and refined at larger sizes until the
requested one.  Most steps are spent at the small scales, where a step is
cheap and where the large brush strokes of a style are decided; the fine
scales only add detail.  Each scale has its own content target (the photo
resized to that scale) and its own style targets (the painting resized to a
matching pixel count), both computed once before the first step.

The ``Engine`` is a library object: it never prints and never exits; progress
goes out through a callback, and a ``should_stop`` callable lets a caller
abandon a photo between two steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.engine import geometry, memory, tiles
from pipeline.engine.device import resolve_device, resolve_precision
from pipeline.engine.geometry import (
    MIN_SCALE_SIDE,
    Scale,
    output_size,
    pyramid,
)
from pipeline.engine.lbfgs import BatchLBFGS
from pipeline.engine.losses import (
    W2Target,
    gram,
    relative_error,
    squared_norm,
    total_variation,
    w2_relative,
)
from pipeline.engine.pyramid import LaplacianPyramid, unsharp
from pipeline.engine.vgg import FeatureExtractor
from pipeline.engine.weights import load_network
from pipeline.errors import Cancelled
from pipeline.images import pil_to_tensor, tensor_to_pil
from pipeline.settings import Settings

StyleTargets = dict[int, dict[str, torch.Tensor]]
"""Style targets: style side in pixels -> name -> float32 tensor.

Per style layer, ``"relu3_1"`` is its ``C×C`` Gram matrix ``G = F Fᵀ/(H·W)``, which is
the second moment ``E[ffᵀ]`` of the features, and ``"relu3_1.mean"`` (see
:func:`mean_key`) its ``C`` feature means.  The Gram loss uses the first, the W2 loss
both (its covariance is ``E[ffᵀ] − μμᵀ``).  Both are averages over positions, so the
targets of several paintings blend linearly and one entry serves both losses.
"""

#: One scale's target at one style layer: a Gram matrix (``1×C×C``) or a W2Target.
StyleTarget = torch.Tensor | W2Target

#: Steps over which a scale's loss must improve by ``stop_tolerance`` to go on.
STOP_WINDOW = 10


def mean_key(layer: str) -> str:
    """The name of a layer's feature means in :data:`StyleTargets`."""
    return f"{layer}.mean"


@dataclass(frozen=True)
class Progress:
    """One optimizer step of one photo, as reported to the progress callback."""

    scale: int  # 1-based index of the current scale
    scales: int
    step: int  # 1-based step within the current scale (its tiles one after the other)
    steps: int
    loss: float
    elapsed: float  # seconds since this photo started
    width: int
    height: int
    tile: int = 1  # 1-based tile of the current scale (scales too large for one pass)
    tiles: int = 1


ProgressFn = Callable[[Progress], None]
SnapshotFn = Callable[[Progress, Image.Image], None]
_TensorSnapshotFn = Callable[[Progress, torch.Tensor], None]
#: (tile, tiles, step, loss, picture, last) -> None: one optimizer step done, within a
#: scale; ``last`` on the tile's final step (its step count, or where it stopped early).
_ReportFn = Callable[[int, int, int, torch.Tensor, torch.Tensor, bool], None]
#: (step, loss, picture, last) -> None: the same, within one optimization pass.
_StepFn = Callable[[int, torch.Tensor, torch.Tensor, bool], None]


def _normalized(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items() if w > 0}


def _resize(img: Image.Image, width: int, height: int) -> Image.Image:
    if img.size == (width, height):
        return img
    return img.resize((width, height), Image.Resampling.LANCZOS)


def _luminance(img: Image.Image) -> Image.Image:
    return img.convert("L").convert("RGB")


class Engine:
    """The network and the settings of one stylization, ready to run on one device.

    Building an Engine is cheap after the first: the weights and the network
    are loaded once per process and device and shared.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = resolve_precision(settings.precision, self.device)
        features, preprocess, weights = load_network(settings.weights, settings.pooling,
                                                     self.device, self.dtype)
        # Style targets are always float32 (see compute_style_targets).
        features32, _, _ = load_network(settings.weights, settings.pooling, self.device)
        self.weights = weights
        self.content_layers = _normalized(settings.content_layers)
        self.style_layers = _normalized(settings.style_layers)
        # Cut after the deepest layer this preset uses: deeper layers would cost
        # time in every step and contribute nothing.
        self.net = FeatureExtractor(features, preprocess,
                                    [*self.content_layers, *self.style_layers],
                                    pad=settings.pad)
        # The painting is seen through the same padding as the picture: the statistics
        # compared must come from one network.
        self.style_net = FeatureExtractor(features32, preprocess, self.style_layers,
                                          pad=settings.pad)
        self._loss_scale = 2.0**12  # float16 only (see _optimize)

    # -- style targets ------------------------------------------------------

    def style_identity(self) -> dict[str, object]:
        """What, besides the style images and sizes, decides the style targets.

        Not the style loss: the targets hold what both losses need.
        """
        identity: dict[str, object] = {
            "weights": self.weights.digest,
            "preprocessing": self.weights.preprocessing,
            "pooling": self.settings.pooling,
            "layers": sorted(self.style_layers),
            "luminance": self.settings.preserve_color == "luminance",
        }
        if self.settings.pad != "zeros":  # absent otherwise: older cache keys stay valid
            identity["pad"] = self.settings.pad
        return identity

    def style_sides(self, width: int, height: int) -> list[int]:
        """The style target sizes a photo of this size needs (after resizing to ``size``)."""
        return geometry.style_sides(width, height, self.settings)

    @torch.no_grad()
    def compute_style_targets(self, styles: Sequence[tuple[Image.Image, float]],
                              sides: Iterable[int]) -> StyleTargets:
        """Blended style targets of the style images at each side (see StyleTargets).

        Several images are blended by averaging their Gram matrices (second
        moments) and their feature means with the given weights.  Targets are
        always computed in float32: it costs one forward pass per size, and keeps
        them independent of the precision setting (so one cache entry serves every
        precision).
        """
        total = sum(weight for _, weight in styles)
        if not styles or total <= 0:
            raise ValueError("at least one style image with a positive weight is needed")
        targets: StyleTargets = {}
        for side in sorted(set(sides)):
            acc: dict[str, torch.Tensor] = {}
            for img, weight in styles:
                scale = side / math.sqrt(img.width * img.height)
                w = max(MIN_SCALE_SIDE, round(img.width * scale))
                h = max(MIN_SCALE_SIDE, round(img.height * scale))
                sized = _resize(img.convert("RGB"), w, h)
                if self.settings.preserve_color == "luminance":
                    sized = _luminance(sized)
                feats = self.style_net(pil_to_tensor(sized).to(self.device))
                for name in self.style_layers:
                    f = feats[name]
                    for key, value in ((name, gram(f)[0]), (mean_key(name), f.mean((0, 2, 3)))):
                        value = value * (weight / total)
                        acc[key] = acc[key] + value if key in acc else value
            targets[side] = {name: g.cpu() for name, g in acc.items()}
        return targets

    # -- photos ----------------------------------------------------------------

    def pass_pixels(self) -> int:
        """The most pixels one optimization pass may hold (the tile limit, batch included)."""
        return self.settings.tile_pixels or memory.pass_pixels(self.device, self.dtype)

    def stylize(self, content: Image.Image, targets: StyleTargets, *,
                on_progress: ProgressFn | None = None,
                should_stop: Callable[[], bool] | None = None,
                on_snapshot: SnapshotFn | None = None,
                snapshot_every: int = 0) -> Image.Image:
        """Optimize one RGB photo towards the style; returns the stylized RGB image.

        ``on_snapshot`` receives the current picture (at the current scale's size)
        every ``snapshot_every`` steps, at the end of each tile and of each scale; it
        is meant for previews and benchmarks, and costs a device-to-host copy each time.
        """
        snap = None
        if on_snapshot is not None:
            def snap(progress: Progress, x: torch.Tensor) -> None:
                on_snapshot(progress, tensor_to_pil(x[:1].detach().clamp(0, 1).cpu()))
        return self._stylize([content], targets, on_progress, should_stop, snap,
                             snapshot_every)[0]

    def stylize_batch(self, contents: Sequence[Image.Image], targets: StyleTargets, *,
                      on_progress: ProgressFn | None = None,
                      should_stop: Callable[[], bool] | None = None) -> list[Image.Image]:
        """Optimize several photos of the same output size together (one pass per step).

        Each photo has its own content targets and its own L-BFGS history, so each
        result equals the photo's own ``stylize`` up to floating-point rounding; a
        batch only makes better use of a GPU.  A batch too large for the free memory
        is split in halves.  Progress reports the batch's summed loss.
        """
        return self._stylize(list(contents), targets, on_progress, should_stop, None, 0)

    def _stylize(self, contents: list[Image.Image], targets: StyleTargets,
                 on_progress: ProgressFn | None, should_stop: Callable[[], bool] | None,
                 on_snapshot: _TensorSnapshotFn | None,
                 snapshot_every: int) -> list[Image.Image]:
        s = self.settings
        sizes = {output_size(c.width, c.height, s.size) for c in contents}
        if len(sizes) != 1:
            raise ValueError(f"a batch needs photos of one output size, not {sorted(sizes)}")
        out_w, out_h = sizes.pop()
        scales = pyramid(out_w, out_h, s)
        missing = {sc.style_side for sc in scales} - set(targets)
        if missing:
            raise ValueError(f"style targets missing for sides {sorted(missing)}")
        if s.style_loss == "w2" and any(mean_key(name) not in targets[sc.style_side]
                                        for sc in scales for name in self.style_layers):
            raise ValueError("style targets without feature means (made by an older version) "
                             "cannot serve style_loss w2")
        limit = self.pass_pixels()
        if len(contents) > 1 and len(contents) * out_w * out_h > limit:
            half = len(contents) // 2
            return [*self._stylize(contents[:half], targets, on_progress, should_stop, None, 0),
                    *self._stylize(contents[half:], targets, on_progress, should_stop, None, 0)]
        start = time.perf_counter()
        x: torch.Tensor | None = None
        previous: torch.Tensor | None = None  # the photos at the previous scale
        carry = _Carry()
        for k, scale in enumerate(scales):
            content_k = torch.cat([pil_to_tensor(_resize(c, scale.width, scale.height))
                                   for c in contents]).to(self.device)
            if x is None:
                x = self._initial(content_k)
            else:
                x = F.interpolate(x, size=(scale.height, scale.width), mode="bicubic",
                                  align_corners=False)
                if s.sharpen:
                    # Upsampling blurs the brush strokes the coarser scale drew; the
                    # finer scale's first steps would spend themselves redrawing them.
                    x = unsharp(x, s.sharpen)
                if s.warm_start and previous is not None:
                    # The photo's detail that upsampling loses (its band of a Laplacian
                    # pyramid) is put back: the finer scale then starts from the photo's
                    # edges rather than a blur, which its first steps would redraw.  After
                    # the sharpening: that detail is exact, not blurred.
                    x = x + content_k - F.interpolate(previous, size=(scale.height, scale.width),
                                                      mode="bicubic", align_corners=False)
                x = x.clamp_(0, 1)
            previous = content_k
            style_t = self._style_targets(targets[scale.style_side])

            def report(tile: int, n_tiles: int, step: int, loss: torch.Tensor,
                       picture: torch.Tensor, last: bool, k: int = k,
                       scale: Scale = scale) -> None:
                if on_progress is None and on_snapshot is None:
                    return
                done = (tile - 1) * scale.steps + step
                # A scale that stopped early reports its last step as the last of its steps.
                total = done if last and tile == n_tiles else scale.steps * n_tiles
                progress = Progress(k + 1, len(scales), done, total, float(loss.detach()),
                                    time.perf_counter() - start, scale.width, scale.height,
                                    tile, n_tiles)
                if on_progress is not None:
                    on_progress(progress)
                if on_snapshot is not None and (last or (
                        snapshot_every and step % snapshot_every == 0)):
                    on_snapshot(progress, picture)

            x = self._optimize_scale(x, content_k, style_t, scale.steps, limit, should_stop,
                                     report, carry, pyramid=k < s.pyramid_scales)
        assert x is not None
        pictures = [tensor_to_pil(item.clamp(0, 1).cpu()) for item in x.detach().split(1)]
        if s.preserve_color == "luminance":
            pictures = [_keep_colours(p, _resize(c, out_w, out_h))
                        for p, c in zip(pictures, contents, strict=True)]
        return pictures

    def _style_targets(self, side: Mapping[str, torch.Tensor]) -> dict[str, StyleTarget]:
        """One scale's style targets on the device, as the style loss uses them."""
        # Targets are float32 statistics of the true activations; a float16 network's
        # activations are scaled (see vgg.FP16_FEATURE_SCALE), its Grams by the square.
        scale = self.net.feature_scale
        if self.settings.style_loss == "w2":
            return {name: W2Target(side[mean_key(name)] * scale, side[name] * scale**2
                                   ).to(self.device) for name in self.style_layers}
        return {name: side[name].to(self.device).unsqueeze(0) * scale**2
                for name in self.style_layers}

    def _optimize_scale(self, x: torch.Tensor, content: torch.Tensor,
                        style_t: Mapping[str, StyleTarget], steps: int, limit: int,
                        should_stop: Callable[[], bool] | None,
                        report: _ReportFn, carry: _Carry, pyramid: bool) -> torch.Tensor:
        """One scale: in one pass if it fits in ``limit`` pixels, else tile by tile."""
        layout = tiles.grid(x.shape[-1], x.shape[-2], limit, self.settings.tile_overlap)
        if len(layout) == 1:
            return self._optimize(x, content, style_t, steps, should_stop,
                                  lambda i, loss, part, last: report(1, 1, i, loss, part, last),
                                  carry, pyramid)
        for t, tile in enumerate(layout, start=1):

            def on_step(i: int, loss: torch.Tensor, part: torch.Tensor, last: bool,
                        t: int = t) -> None:
                # A snapshot of a tiled scale is the whole canvas as it stands.
                report(t, len(layout), i, loss, x, last)

            result = self._optimize(tiles.crop(x, tile).clone(), tiles.crop(content, tile),
                                    style_t, steps, should_stop, on_step, carry, pyramid)
            tiles.paste(x, result, tile)
        return x

    def _initial(self, content: torch.Tensor) -> torch.Tensor:
        if self.settings.init != "noise":
            return content.clone()
        # Every photo of a batch gets the noise it would get alone: a batch must not
        # change a result.
        noise = [torch.rand(content.shape[1:], generator=torch.Generator().manual_seed(
            self.settings.seed)) for _ in range(content.shape[0])]
        return torch.stack(noise).to(self.device)

    def _optimize(self, x: torch.Tensor, content: torch.Tensor,
                  style_t: Mapping[str, StyleTarget], steps: int,
                  should_stop: Callable[[], bool] | None, report: _StepFn,
                  carry: _Carry, pyramid: bool) -> torch.Tensor:
        """Up to ``steps`` optimizer steps of the pictures ``x`` (``B×3×H×W``) at one size.

        Returns the last iterate, or with ``average`` its moving average; with a
        ``stop_tolerance``, each photo's picture as it was when its loss stopped improving.
        With ``pyramid`` the optimizer moves the bands of a Laplacian pyramid of the
        pictures (see :mod:`pipeline.engine.pyramid`), not their pixels.
        """
        s = self.settings
        with torch.no_grad():
            feats = self.net(content)
            # In float32 once per scale, with their norms: not converted at every step.
            content_t = {name: feats[name].float() for name in self.content_layers}
            content_n = {name: squared_norm(t) for name, t in content_t.items()}
            style_n = {name: squared_norm(t) for name, t in style_t.items()
                       if isinstance(t, torch.Tensor)}
        del feats

        # ``z`` is what the optimizer moves: the pictures themselves, or their bands.
        bands = LaplacianPyramid(x.shape) if pyramid else None
        z = (x.detach() if bands is None else bands.pack(x.detach())).requires_grad_(True)
        optimizer = self._optimizer(z, carry, x.shape[-1] * x.shape[-2])
        per_photo: list[torch.Tensor] = []  # the last closure's loss of each photo

        def closure() -> torch.Tensor:
            z.grad = None
            x = z if bands is None else bands.unpack(z)
            loss = self._loss(x, content_t, content_n, style_t, style_n)
            per_photo[:] = [loss.detach()]
            total = loss.sum()
            self._backward(total, z)
            return total

        x = z if bands is None else bands.unpack(z).detach()
        average = _Average(x, s.average) if s.average else None
        stopping = _Stopping(x.shape[0], s.stop_tolerance, s.min_steps) \
            if s.stop_tolerance else None
        for step in range(steps):
            if should_stop is not None and should_stop():
                raise Cancelled("stopped on request")
            loss = optimizer.step(closure)
            with torch.no_grad():
                if bands is not None:
                    x = bands.unpack(z)
                elif s.optimizer == "adam":
                    x.clamp_(0, 1)
            picture = x if average is None else average.update(x)
            last = step + 1 == steps
            if stopping is not None:
                last = stopping.update(step + 1, per_photo[0], picture) or last
            report(step + 1, loss, picture, last)
            if last:
                break
        if isinstance(optimizer, BatchLBFGS):
            # Measured on the bands when the scale moved them; the finest band enters the
            # picture at gain 1, so the scale is carried as it is (what was benchmarked).
            carry.scale, carry.pixels = optimizer.scale.clone(), x.shape[-1] * x.shape[-2]
        picture = x.detach() if average is None else average.value()
        return picture if stopping is None else stopping.pictures(picture)

    def _optimizer(self, z: torch.Tensor, carry: _Carry,
                   pixels: int) -> BatchLBFGS | torch.optim.Adam:
        """The optimizer of ``z`` (pixels or bands) for a pass of ``pixels`` pixels a photo."""
        s = self.settings
        if s.optimizer == "adam":
            return torch.optim.Adam([z], lr=s.learning_rate or 0.02)
        # One function evaluation per step, a short history (memory at large scales).
        warm = None
        if s.warm_start and carry.scale is not None:
            # Every term of the loss is an average over positions, so its curvature per
            # pixel falls, and the inverse-Hessian scale grows, with the pixel count.
            warm = carry.scale * (pixels / carry.pixels)
        return BatchLBFGS(z, lr=s.learning_rate or 1.0, history_size=10, initial_scale=warm)

    def _loss(self, x: torch.Tensor, content_t: Mapping[str, torch.Tensor],
              content_n: Mapping[str, torch.Tensor], style_t: Mapping[str, StyleTarget],
              style_n: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss of each picture of ``x`` (shape ``B``): content, style and smoothness."""
        s = self.settings
        f = self.net(x)
        loss = torch.zeros(x.shape[0], device=x.device)
        for name, w in self.content_layers.items():
            loss = loss + (s.content_weight * w) * relative_error(f[name], content_t[name],
                                                                  content_n[name])
        for name, w in self.style_layers.items():
            loss = loss + (s.style_weight * w) * self._style_loss(f[name], style_t[name],
                                                                  style_n.get(name))
        if s.tv_weight:
            loss = loss + s.tv_weight * total_variation(x)
        return loss

    def _backward(self, total: torch.Tensor, x: torch.Tensor) -> None:
        """Fill ``x.grad`` with the gradient of ``total``."""
        if self.dtype != torch.float16:
            total.backward()
            return
        # float16 gradients of these losses are mostly below float16's smallest normal
        # number: scale the loss up for the backward pass, and halve the scale whenever
        # that overflows (as torch.amp.GradScaler does).
        while True:
            total.backward(torch.tensor(self._loss_scale, device=x.device), retain_graph=True)
            assert x.grad is not None
            if bool(torch.isfinite(x.grad).all()) or self._loss_scale <= 1.0:
                break
            x.grad = None
            self._loss_scale /= 2
        x.grad.div_(self._loss_scale)

    def _style_loss(self, features: torch.Tensor, target: StyleTarget,
                    norm: torch.Tensor | None) -> torch.Tensor:
        if isinstance(target, W2Target):
            return w2_relative(features, target)
        return relative_error(gram(features), target, norm)


@dataclass
class _Carry:
    """What one scale's optimization hands the next (besides the picture)."""

    scale: torch.Tensor | None = None  # L-BFGS inverse-Hessian scale per photo
    pixels: int = 0  # pixels of the pass it was measured on


class _Average:
    """A bias-corrected exponential moving average of the pictures (as Adam's moments).

    Starts at the first picture, so that after ``k`` updates the weights of the pictures
    seen sum to one; ``decay`` 0.9 averages over about the last ten steps.  Averaging
    smooths the step-to-step jitter of the iterate (Polyak and Juditsky 1992, in the
    exponential form crowsonkb/style-transfer-pytorch uses), at the price of lagging it.
    """

    def __init__(self, x: torch.Tensor, decay: float) -> None:
        self.decay = decay
        self.total = x.detach() * (1 - decay)
        self.weight = 1 - decay  # sum of the weights in ``total``

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> torch.Tensor:
        self.total.mul_(self.decay).add_(x.detach(), alpha=1 - self.decay)
        self.weight = self.weight * self.decay + (1 - self.decay)
        return self.value()

    def value(self) -> torch.Tensor:
        return self.total / self.weight


class _Stopping:
    """The per-scale stopping rule, one decision per photo of a batch.

    A photo is done once ``min_steps`` steps have run and its best loss so far improved
    by less than ``tolerance`` (relative) over the last :data:`STOP_WINDOW` steps.  The
    best loss, not the last one: L-BFGS without line search has occasional uphill steps,
    which must neither stop a photo nor keep it going.  A photo that is done keeps the
    picture it had then, while the others of its batch go on, so that a batch gives each
    photo what it would get alone.  The scale ends when every photo is done.
    """

    def __init__(self, photos: int, tolerance: float, min_steps: int) -> None:
        self.tolerance = tolerance
        self.min_steps = max(min_steps, STOP_WINDOW + 1)
        self.best: list[torch.Tensor] = []  # best loss so far of each photo, after each step
        self.done: list[torch.Tensor | None] = [None] * photos

    @torch.no_grad()
    def update(self, step: int, loss: torch.Tensor, picture: torch.Tensor) -> bool:
        """Record step ``step``'s losses; whether every photo is now done."""
        loss = loss.float()
        self.best.append(loss if not self.best else torch.minimum(self.best[-1], loss))
        if step < self.min_steps:
            return False
        before, now = self.best[-1 - STOP_WINDOW], self.best[-1]
        stalled = ((before - now) <= self.tolerance * before.abs()).tolist()
        for i, stop in enumerate(stalled):
            if stop and self.done[i] is None:
                self.done[i] = picture[i:i + 1].detach().clone()
        return all(d is not None for d in self.done)

    def pictures(self, last: torch.Tensor) -> torch.Tensor:
        """The pictures to keep: each done photo's from when it was done, else ``last``."""
        if all(d is None for d in self.done):
            return last
        return torch.cat([last[i:i + 1] if d is None else d for i, d in enumerate(self.done)])


def _keep_colours(result: Image.Image, content: Image.Image) -> Image.Image:
    """Brightness of the stylized result, colour (Cb, Cr) of the photo.

    This is the luminance-only transfer of Gatys et al., "Preserving Color in
    Neural Artistic Style Transfer" (2016), in YCbCr rather than YIQ.
    """
    y, _, _ = result.convert("YCbCr").split()
    _, cb, cr = content.convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")
