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
from pipeline.engine.losses import gram, relative_error, total_variation
from pipeline.engine.vgg import FeatureExtractor
from pipeline.engine.weights import load_network
from pipeline.errors import Cancelled
from pipeline.images import pil_to_tensor, tensor_to_pil
from pipeline.settings import Settings

StyleTargets = dict[int, dict[str, torch.Tensor]]
"""Style Gram targets: style side in pixels -> layer name -> ``C×C`` float32 Gram."""


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
#: (tile, tiles, step, loss, picture) -> None: one optimizer step done, within a scale.
_ReportFn = Callable[[int, int, int, torch.Tensor, torch.Tensor], None]


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
                                    [*self.content_layers, *self.style_layers])
        self.style_net = FeatureExtractor(features32, preprocess, self.style_layers)
        self._loss_scale = 2.0**12  # float16 only (see _optimize)

    # -- style targets ------------------------------------------------------

    def style_identity(self) -> dict[str, object]:
        """What, besides the style images and sizes, decides the style targets."""
        return {
            "weights": self.weights.digest,
            "preprocessing": self.weights.preprocessing,
            "pooling": self.settings.pooling,
            "layers": sorted(self.style_layers),
            "luminance": self.settings.preserve_color == "luminance",
        }

    def style_sides(self, width: int, height: int) -> list[int]:
        """The style target sizes a photo of this size needs (after resizing to ``size``)."""
        return geometry.style_sides(width, height, self.settings)

    @torch.no_grad()
    def compute_style_targets(self, styles: Sequence[tuple[Image.Image, float]],
                              sides: Iterable[int]) -> StyleTargets:
        """Blended Gram targets of the style images at each side, on the CPU.

        Several images are blended by averaging their Gram matrices with the
        given weights.  Targets are always computed in float32: it costs one
        forward pass per size, and keeps them independent of the precision
        setting (so one cache entry serves every precision).
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
                    g = gram(feats[name])[0] * (weight / total)
                    acc[name] = acc[name] + g if name in acc else g
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
        limit = self.pass_pixels()
        if len(contents) > 1 and len(contents) * out_w * out_h > limit:
            half = len(contents) // 2
            return [*self._stylize(contents[:half], targets, on_progress, should_stop, None, 0),
                    *self._stylize(contents[half:], targets, on_progress, should_stop, None, 0)]
        start = time.perf_counter()
        x: torch.Tensor | None = None
        for k, scale in enumerate(scales):
            content_k = torch.cat([pil_to_tensor(_resize(c, scale.width, scale.height))
                                   for c in contents]).to(self.device)
            if x is None:
                x = self._initial(content_k)
            else:
                x = F.interpolate(x, size=(scale.height, scale.width), mode="bicubic",
                                  align_corners=False).clamp_(0, 1)
            # Targets are float32 Grams of the true activations; a float16 network's
            # activations are scaled (see vgg.FP16_FEATURE_SCALE), its Grams by the square.
            g_scale = self.net.feature_scale ** 2
            style_t = {name: targets[scale.style_side][name].to(self.device).unsqueeze(0)
                       * g_scale for name in self.style_layers}

            def report(tile: int, n_tiles: int, step: int, loss: torch.Tensor,
                       picture: torch.Tensor, k: int = k, scale: Scale = scale) -> None:
                if on_progress is None and on_snapshot is None:
                    return
                progress = Progress(k + 1, len(scales), (tile - 1) * scale.steps + step,
                                    scale.steps * n_tiles, float(loss.detach()),
                                    time.perf_counter() - start, scale.width, scale.height,
                                    tile, n_tiles)
                if on_progress is not None:
                    on_progress(progress)
                if on_snapshot is not None and (step == scale.steps or (
                        snapshot_every and step % snapshot_every == 0)):
                    on_snapshot(progress, picture)

            x = self._optimize_scale(x, content_k, style_t, scale.steps, limit, should_stop,
                                     report)
        assert x is not None
        pictures = [tensor_to_pil(item.clamp(0, 1).cpu()) for item in x.detach().split(1)]
        if s.preserve_color == "luminance":
            pictures = [_keep_colours(p, _resize(c, out_w, out_h))
                        for p, c in zip(pictures, contents, strict=True)]
        return pictures

    def _optimize_scale(self, x: torch.Tensor, content: torch.Tensor,
                        style_t: Mapping[str, torch.Tensor], steps: int, limit: int,
                        should_stop: Callable[[], bool] | None,
                        report: _ReportFn) -> torch.Tensor:
        """One scale: in one pass if it fits in ``limit`` pixels, else tile by tile."""
        layout = tiles.grid(x.shape[-1], x.shape[-2], limit, self.settings.tile_overlap)
        if len(layout) == 1:
            return self._optimize(x, content, style_t, steps, should_stop,
                                  lambda i, loss, part: report(1, 1, i, loss, part))
        for t, tile in enumerate(layout, start=1):

            def on_step(i: int, loss: torch.Tensor, part: torch.Tensor, t: int = t) -> None:
                # A snapshot of a tiled scale is the whole canvas as it stands.
                report(t, len(layout), i, loss, x)

            result = self._optimize(tiles.crop(x, tile).clone(), tiles.crop(content, tile),
                                    style_t, steps, should_stop, on_step)
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
                  style_t: Mapping[str, torch.Tensor], steps: int,
                  should_stop: Callable[[], bool] | None,
                  report: Callable[[int, torch.Tensor, torch.Tensor], None]) -> torch.Tensor:
        """``steps`` optimizer steps of the pictures ``x`` (``B×3×H×W``) at one size."""
        s = self.settings
        with torch.no_grad():
            feats = self.net(content)
            content_t = {name: feats[name] for name in self.content_layers}
        del feats

        x = x.detach().requires_grad_(True)
        optimizer: BatchLBFGS | torch.optim.Adam
        if s.optimizer == "lbfgs":
            # One function evaluation per step, a short history (memory at large scales).
            optimizer = BatchLBFGS(x, lr=s.learning_rate or 1.0, history_size=10)
        else:
            optimizer = torch.optim.Adam([x], lr=s.learning_rate or 0.02)

        def closure() -> torch.Tensor:
            x.grad = None
            f = self.net(x)
            loss = torch.zeros(x.shape[0], device=x.device)  # one loss per photo
            for name, w in self.content_layers.items():
                loss = loss + (s.content_weight * w) * relative_error(f[name], content_t[name])
            for name, w in self.style_layers.items():
                loss = loss + (s.style_weight * w) * relative_error(gram(f[name]), style_t[name])
            if s.tv_weight:
                loss = loss + s.tv_weight * total_variation(x)
            total = loss.sum()
            if self.dtype != torch.float16:
                total.backward()
                return total
            # float16 gradients of these losses are mostly below float16's smallest
            # normal number: scale the loss up for the backward pass, and halve the
            # scale whenever that overflows (as torch.amp.GradScaler does).
            while True:
                total.backward(torch.tensor(self._loss_scale, device=x.device),
                               retain_graph=True)
                assert x.grad is not None
                if bool(torch.isfinite(x.grad).all()) or self._loss_scale <= 1.0:
                    break
                x.grad = None
                self._loss_scale /= 2
            x.grad.div_(self._loss_scale)
            return total

        for step in range(steps):
            if should_stop is not None and should_stop():
                raise Cancelled("stopped on request")
            loss = optimizer.step(closure)
            if s.optimizer == "adam":
                with torch.no_grad():
                    x.clamp_(0, 1)
            report(step + 1, loss, x)
        return x.detach()


def _keep_colours(result: Image.Image, content: Image.Image) -> Image.Image:
    """Brightness of the stylized result, colour (Cb, Cr) of the photo.

    This is the luminance-only transfer of Gatys et al., "Preserving Color in
    Neural Artistic Style Transfer" (2016), in YCbCr rather than YIQ.
    """
    y, _, _ = result.convert("YCbCr").split()
    _, cb, cr = content.convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")
