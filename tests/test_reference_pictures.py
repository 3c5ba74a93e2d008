"""The engine makes the very pictures it made before its reshape, bit for bit.

``data/engine_reference.json`` holds the SHA-256 of each case's RGB bytes, recorded
with the engine as it was before the objective, the optimization loop and the style
targets were split out of it.  The cases cover the defaults and every option whose
code moved: W2, averaging, the old schedule (no warm start, no sharpening, pixels
only), more scales, Adam from noise in bfloat16, early stopping, colour keeping,
replicate padding with average pooling, tiles, and a batch of two photos.

Bits depend on the kernels torch picks, so the digests are for the torch version they
name on this kind of machine; elsewhere the test says why it cannot judge and skips.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from conftest import FAST, PHOTOS, REPO, SHARED_STYLE
from PIL import Image

from pipeline.engine.optimize import Engine
from pipeline.engine.style_targets import StyleTargetMaker
from pipeline.settings import NEUTRAL_KNOBS, Settings

REFERENCE = json.loads((REPO / "tests" / "data" / "engine_reference.json").read_text())

CASES: dict[str, dict[str, object]] = {
    "defaults": {},
    "w2": {"style_loss": "w2"},
    "average": {"average": 0.8},
    "no_warm_start": {"warm_start": False, "sharpen": 0.0, "pyramid_scales": 0},
    "three_scales": {"min_scales": 3, "steps": [8, 4, 3]},
    "adam_noise_bf16": {"optimizer": "adam", "init": "noise", "precision": "bf16", "seed": 3},
    "stopping": {"steps": [30, 20], "stop_tolerance": 0.05, "min_steps": 12},
    "luminance": {"preserve_color": "luminance"},
    "replicate_avgpool": {"pad": "replicate", "pooling": "avg"},
    "tiles": {"size": 160, "tile_pixels": 8000, "tile_overlap": 16},
}

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(torch.__version__.split("+")[0] != REFERENCE["torch"],
                       reason=f"the reference digests were made with torch {REFERENCE['torch']}"),
]


def _image(path: object, size: tuple[int, int]) -> Image.Image:
    return Image.open(path).convert("RGB").resize(size, Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def inputs() -> tuple[Image.Image, Image.Image, Image.Image]:
    return (_image(SHARED_STYLE, (128, 80)), _image(PHOTOS / "chelsea.png", (96, 64)),
            _image(PHOTOS / "coffee.png", (96, 64)))


def _digest(picture: Image.Image) -> str:
    return hashlib.sha256(picture.tobytes()).hexdigest()


def _engine_and_targets(settings: Settings, painting: Image.Image) -> tuple[Engine, dict]:
    engine = Engine(settings)
    targets = StyleTargetMaker(settings).compute([(painting, 1.0)], engine.style_sides(96, 64))
    return engine, targets


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_engine_makes_its_reference_picture(case: str, inputs: tuple, one_thread: None
                                                ) -> None:
    painting, photo, _ = inputs
    engine, targets = _engine_and_targets(Settings(**(FAST | CASES[case])), painting)
    assert _digest(engine.stylize(photo, targets)) == REFERENCE["pictures"][case]


def test_a_batch_makes_its_reference_pictures(inputs: tuple, one_thread: None) -> None:
    painting, photo, other = inputs
    engine, targets = _engine_and_targets(Settings(**FAST), painting)
    pictures = engine.stylize_batch([photo, other], targets)
    assert [_digest(p) for p in pictures] == REFERENCE["pictures"]["batch_of_two"]


@pytest.mark.parametrize("case,extra", [
    ("plain", {}), ("adam_noise_bf16", {"optimizer": "adam", "init": "noise",
                                        "precision": "bf16"})])
def test_neutral_options_make_the_pictures_of_before_the_options(
        case: str, extra: dict, inputs: tuple, one_thread: None) -> None:
    """Each option of issue 14 at its neutral value gives the picture made before it."""
    painting, _, _ = inputs
    photo = Image.open(PHOTOS / "chelsea.png").convert("RGB").resize((96, 64))
    settings = Settings(**(FAST | extra)).merged(NEUTRAL_KNOBS)
    engine, targets = _engine_and_targets(settings, painting)
    assert _digest(engine.stylize(photo, targets)) == REFERENCE["before_options"][case]
