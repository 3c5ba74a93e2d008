"""Presets written for a test: one ``write_preset`` instead of hand-written preset.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml
from PIL import Image

from support.images import SHARED_STYLE

STARRY_NIGHT = SHARED_STYLE
#: Settings small enough for a test: tiny output, two scales, few steps.
#: ``min_scales: 1``: two scales of 12 and 6 steps (the default would add a third).
FAST = {"size": 64, "min_side": 32, "steps": [12, 6], "min_scales": 1, "precision": "fp32",
        "device": "cpu"}
#: A tiny fast preset: a network 8 channels wide, trained at the area of a 32 px square.
TINY_FAST = FAST | {"method": "fast", "network_width": 8, "train_size": 32, "train_steps": 3,
                    "train_batch": 2}


def write_preset(folder: Path, name: str, settings: Mapping[str, object] | None = None, *,
                 description: str = "a test preset", painting: Path = STARRY_NIGHT,
                 painting_size: tuple[int, int] = (96, 60),
                 painting_name: str = "p.png") -> Path:
    """A preset ``name`` in the styles folder ``folder`` (made if needed): its painting
    resized small, and ``settings``; the preset's folder."""
    here = Path(folder) / name
    here.mkdir(parents=True, exist_ok=True)
    Image.open(painting).convert("RGB").resize(painting_size).save(here / painting_name)
    doc = {"description": description, "images": [painting_name],
           "settings": dict(settings if settings is not None else FAST)}
    (here / "preset.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return here
