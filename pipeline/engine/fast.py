"""The fast path's stylization: one pass of a preset's trained network per photo.

Brush size.  The network learned to paint photos seen at a training size (the area of a
square ``train_size`` pixels a side), against the painting resized to that area
(:mod:`pipeline.engine.train_samples`): its strokes have a fixed size in pixels, and
they come out larger than the optimizer's there (it learns the painting's broad
shapes before its fine strokes).  The optimizer paints each photo against the painting
resized to the photo's own area, so its strokes keep their size relative to the picture
whatever the output size.  To give the same strokes, the network runs on the photo at a
working size, ``network_paint_scale`` times the training side (never above the output
size), where its strokes are the optimizer's size relative to the picture, and its
picture is upsampled to the output size; the photo's own fine
detail, which that upsampling cannot restore, is put back as its Laplacian band (the
detail lost between the working and the output size), as the optimizer's finest scales
keep the photo's edges.  Measured stroke sizes are in docs/lab-log.md ("The fast
path").
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.config.geometry import output_size
from pipeline.config.settings import Settings
from pipeline.engine.device import cpu_has_bf16, resolve_device, resolve_precision
from pipeline.engine.feature_carry import FeatureCarry, Motion
from pipeline.engine.network import MULTIPLE, inference_noise
from pipeline.engine.network_file import LoadedNetwork
from pipeline.engine.phase_lock import Locked, PhaseLock, shifted
from pipeline.images import pil_to_tensor, tensor_to_pil
from pipeline.images.colour import keep_colours
from pipeline.images.tensors import resized
from pipeline.progress import Progress, ProgressFn

#: Below this side the network is not run (its two 2× downsamplings leave too little).
MIN_WORKING_SIDE = 32


def working_size(width: int, height: int, side: float) -> tuple[int, int]:
    """The size the network paints a ``width``×``height`` output at: the output itself, or
    its shape at the area of a ``side``×``side`` square if that is smaller."""
    area = width * height
    if area <= side * side:
        return width, height
    f = side / math.sqrt(area)
    return (max(MIN_WORKING_SIDE, round(width * f)), max(MIN_WORKING_SIDE, round(height * f)))


class FastStylizer:
    """A loaded network, ready to stylize photos on one device with one preset's settings."""

    def __init__(self, settings: Settings, network: LoadedNetwork) -> None:
        self.settings = settings
        # The side of the square whose area the network paints at (see the module doc).
        self.working_side = settings.train_size * settings.network_paint_scale
        self.network = network
        self.device = resolve_device(settings.device)
        self.dtype = resolve_precision(settings.precision, self.device)
        # Wholly in bfloat16 where the hardware runs it natively: under autocast every
        # padding and normalization runs in float32 between two conversions, which cost
        # as much as the convolutions (measured: 79 against 61 ms a 512×288 frame on two
        # CPU threads; pixels within 4 levels of 255, 0.3 on average).
        self.whole_bf16 = self.dtype == torch.bfloat16 and (self.device.type == "cuda"
                                                             or cpu_has_bf16())
        # A copy on another device or dtype: the loaded network is shared (NetworkLoader
        # keeps it).
        net = network.net
        if self.device.type != "cpu" or self.whole_bf16:
            net = copy.deepcopy(net)
        self.net = net.to(self.device, torch.bfloat16 if self.whole_bf16 else None).eval()

    @property
    def digest(self) -> str:
        return self.network.digest

    def stylize(self, content: Image.Image, targets: object = None, *,
                on_progress: ProgressFn | None = None,
                should_stop: Callable[[], bool] | None = None) -> Image.Image:
        """One photo (``targets`` and ``should_stop``: as the optimizer's, unused: one
        pass is not interrupted)."""
        return self.stylize_batch([content], on_progress=on_progress)[0]

    @torch.no_grad()
    def stylize_batch(self, contents: Sequence[Image.Image], targets: object = None, *,
                      on_progress: ProgressFn | None = None,
                      should_stop: Callable[[], bool] | None = None,
                      noise: bool = True, carry: FeatureCarry | None = None,
                      lock: PhaseLock | None = None,
                      motions: Sequence[Motion | None] = ()) -> list[Image.Image]:
        """Photos of one output size, through the network together (``noise``: with the
        network's noise channels fixed on the screen, as a photo is painted).

        Consecutive frames of a video, with how each moved from the one before
        (``motions``, found on frames of the output size): ``carry`` mixes each one's
        features with the previous frame's carried along its motion
        (:class:`FeatureCarry`), ``lock`` paints each at the lattice phase of the scene
        it shows (:class:`PhaseLock`), its noise channels moving with the scene (in place
        of ``noise``); both remember the last frame for the next batch."""
        start = time.perf_counter()
        s = self.settings
        sizes = {output_size(c.width, c.height, s.size) for c in contents}
        if len(sizes) != 1:
            raise ValueError(f"a batch needs photos of one output size, not {sorted(sizes)}")
        out_w, out_h = sizes.pop()
        work_w, work_h = working_size(out_w, out_h, self.working_side)
        photos = [resized(c.convert("RGB"), out_w, out_h) for c in contents]
        full = torch.cat([pil_to_tensor(p) for p in photos]).to(self.device)
        small = torch.cat([pil_to_tensor(resized(p, work_w, work_h)) for p in photos]
                          ).to(self.device)
        if (carry is not None or lock is not None) and len(motions) != len(contents):
            raise ValueError(f"{len(contents)} frames but {len(motions)} motions")
        shifts, seen, scene_noise = None, list(motions), None
        if lock is not None:
            locked = [lock(m, (work_w / out_w, work_h / out_h)) for m in motions]
            shifts = torch.tensor(np.array([x.shift for x in locked]))
            seen = [x.motion for x in locked]
            scene_noise = self._scene_noise(locked, work_w, work_h)
        mix = None
        if carry is not None:

            def mix(features: torch.Tensor) -> torch.Tensor:
                return torch.cat([carry(f, m) for f, m in
                                  zip(features.split(1), seen, strict=True)])
        x = small if shifts is None else shifted(small, shifts)
        painted = self._run(x, 1.0 if noise else 0.0, mix, scene_noise)
        if shifts is not None:
            painted = shifted(painted, -shifts)
        if (work_w, work_h) != (out_w, out_h):
            painted = _up(painted, out_h, out_w) + full - _up(small, out_h, out_w)
        pictures = [tensor_to_pil(x.clamp(0, 1).cpu()) for x in painted.split(1)]
        if on_progress is not None:  # one step: the live views show the photo as done
            on_progress(Progress(1, 1, 1, 1, 0.0, time.perf_counter() - start, out_w, out_h))
        if s.preserve_color == "luminance":
            pictures = [keep_colours(p, c) for p, c in zip(pictures, photos, strict=True)]
        return pictures

    def _scene_noise(self, locked: Sequence[Locked], width: int,
                     height: int) -> torch.Tensor | None:
        """Locked frames' noise channels: the photo's, rolled with the scene by the lock's
        whole steps (so what the network paints from them stays on the scene), at the
        lock's noise strength (full in a segment that knows its origin; faded in and out
        at the ends of one that does not)."""
        channels = self.net.config.noise
        if not channels:
            return None
        base = inference_noise(channels, height + -height % MULTIPLE, width + -width % MULTIPLE)
        return torch.cat([torch.roll(base, (x.roll[1], x.roll[0]), dims=(-2, -1)) * x.noise
                          for x in locked])

    def _run(self, x: torch.Tensor, noise_scale: float,
             mix: Callable[[torch.Tensor], torch.Tensor] | None = None,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        # The picture is float32 either way.
        if self.whole_bf16:
            return self._pass(x.to(torch.bfloat16), noise_scale, mix, noise)
        if self.dtype == torch.float16 and self.device.type == "cuda":
            # Float16 under autocast: its normalizations stay in float32 (float16's
            # range is too short for their sums).
            with torch.autocast("cuda", dtype=torch.float16):
                return self._pass(x, noise_scale, mix, noise)
        return self._pass(x, noise_scale, mix, noise)

    def _pass(self, x: torch.Tensor, noise_scale: float,
              mix: Callable[[torch.Tensor], torch.Tensor] | None,
              noise: torch.Tensor | None) -> torch.Tensor:
        """The network's picture of ``x``; ``mix`` changes its features between halves;
        ``noise``: its noise channels, where not the photo's times ``noise_scale``."""
        features = self.net.features(x, noise_scale=noise_scale, noise=noise)
        if mix is not None:
            features = mix(features)
        return self.net.paint(features, *x.shape[-2:]).float()


def _up(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)
