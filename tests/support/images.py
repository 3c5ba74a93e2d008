"""The test suite's pictures: where the shipped sample photos and paintings are, and a
synthetic photo made in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED_STYLE = REPO / "styles" / "starry-night" / "starry_night.jpg"
PHOTOS = REPO / "examples" / "photos"


def gradient_photo(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A smooth synthetic photo with some structure (a disc on a gradient)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = xx / width
    g = yy / height
    disc = ((xx - width * 0.6) ** 2 + (yy - height * 0.5) ** 2) < (min(width, height) * 0.3) ** 2
    b = np.where(disc, 0.9, 0.2)
    img = np.stack([r, g, b], axis=-1) * 255 + rng.normal(0, 3, (height, width, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
