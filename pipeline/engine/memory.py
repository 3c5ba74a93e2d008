"""How many pixels one optimization pass may hold, from the memory the device has free.

One optimizer step keeps every activation of VGG-19 up to the deepest layer
for the backward pass, so its memory grows with the pixel count and little
else.  Measured on the CPU (peak RSS of a forward plus input-gradient backward
through the network cut after relu5_1, content and five Gram layers, see
docs/lab-log.md): about 1.1–1.4 KB per pixel in bfloat16 and 1.7–2.1 KB in
float32.  The figures below add the optimizer's state (ten L-BFGS pairs of
float32 images, 240 B per pixel) and a margin.  On an H100 (peak allocated,
bench/batch.py) a pass took 2.3–2.5 KB per pixel in float32, 1.3 KB in
bfloat16 and 1.8 KB in float16 (whose Grams are taken in float32).
"""

from __future__ import annotations

import contextlib

import torch

from pipeline.config.settings import Settings

#: Bytes per pixel of one optimization pass, by the precision the network runs in.
BYTES_PER_PIXEL = {torch.float32: 2600, torch.bfloat16: 1800, torch.float16: 2400}
#: Share of the free memory a pass may take: the rest is for the process's other needs
#: (the weights, the photo, the allocator's slack) and for other programs.
USABLE_FRACTION = 0.6
#: Used where the free memory cannot be read (MPS, an unusual OS).
FALLBACK_FREE_BYTES = 8 * 1024**3
#: The largest batch the automatic choice makes.  On an H100 at 512×384, images per minute
#: were 14.5 (batch 1), 136 (16), 187 (32) and 204 (64): past 64 there is little to gain
#: and a batch's photos all wait for the slowest.
MAX_AUTO_BATCH = 64


def free_bytes(device: torch.device) -> int:
    """Memory free for tensors on ``device`` now: the GPU's, or the machine's available RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        with contextlib.suppress(OSError, ValueError), open("/proc/meminfo",
                                                             encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return FALLBACK_FREE_BYTES


def pass_pixels(device: torch.device, dtype: torch.dtype) -> int:
    """The largest picture (in pixels, summed over a batch) one pass should optimize."""
    return int(free_bytes(device) * USABLE_FRACTION / BYTES_PER_PIXEL[dtype])


def batch_size(settings: Settings, device: torch.device, dtype: torch.dtype,
               pixels: int) -> int:
    """How many photos of ``pixels`` each to optimize together: decided here and only here.

    ``batch_size: 0`` (the default) batches on a GPU as many photos as its free memory
    holds (up to :data:`MAX_AUTO_BATCH`) and none on a CPU, where a batch makes no step
    cheaper per photo (the cores are busy with one photo already).  A batch size that was
    asked for is honoured up to what one pass may hold, so that a batch never needs more
    memory than the tile limit allows.
    """
    if settings.batch_size == 1 or (settings.batch_size == 0 and device.type != "cuda"):
        return 1
    fits = max(1, (settings.tile_pixels or pass_pixels(device, dtype)) // max(1, pixels))
    return min(settings.batch_size or MAX_AUTO_BATCH, fits)
