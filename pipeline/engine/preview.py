"""The preview sheet a training writes at each checkpoint, so a person can watch it learn."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from pipeline.engine.network import TransformNet
from pipeline.engine.train_samples import MIN_SAMPLE_SIDE
from pipeline.images.tensors import pil_to_tensor, tensor_to_pil

#: Photos on the sheet, their long side, and the gap between them.
PREVIEW_PHOTOS, PREVIEW_SIDE, PREVIEW_GAP = 4, 192, 6


@torch.no_grad()
def preview_sheet(net: TransformNet, photos: Sequence[Image.Image], device: torch.device,
                  count: int = PREVIEW_PHOTOS, side: int = PREVIEW_SIDE) -> Image.Image:
    """``count`` of the training photos (always the same ones, spread over the collection)
    in the top row, and under each what ``net`` paints of it now, at a long side of
    ``side``."""
    picks = sorted({round(i * (len(photos) - 1) / max(1, count - 1))
                    for i in range(min(count, len(photos)))})
    cells = []
    for index in picks:
        photo = photos[index].convert("RGB")
        scale = side / max(photo.size)
        small = photo.resize((max(MIN_SAMPLE_SIDE, round(photo.width * scale)),
                              max(MIN_SAMPLE_SIDE, round(photo.height * scale))),
                             Image.Resampling.LANCZOS)
        painted = net(pil_to_tensor(small).to(device)).float().cpu()
        cells.append((small, tensor_to_pil(painted.clamp(0, 1))))
    row = max(a.height for a, _ in cells) + PREVIEW_GAP
    width = sum(a.width for a, _ in cells) + PREVIEW_GAP * (len(cells) + 1)
    sheet = Image.new("RGB", (width, 2 * row + PREVIEW_GAP), (24, 24, 24))
    x = PREVIEW_GAP
    for photo, painted in cells:
        sheet.paste(photo, (x, PREVIEW_GAP))
        sheet.paste(painted, (x, PREVIEW_GAP + row))
        x += photo.width + PREVIEW_GAP
    return sheet
