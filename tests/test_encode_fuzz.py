"""Every valid picture can be written in every format, at every quality (issue 27).

Pillow's JPEG encoder with ``optimize`` needs the whole file to fit a buffer sized from
the picture's area, and failed ("Suspension not allowed here") on pictures small in area
and large in bytes: Starry Night at 250 px and quality 100, an 8×2000 strip, noise.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from support.images import SHARED_STYLE

from pipeline.images.encode import encode_image

FUZZ = settings(max_examples=80, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

#: From 1×1 to strips a pixel wide; few pixels in all, so each case is quick.
shapes = st.one_of(
    st.tuples(st.integers(1, 64), st.integers(1, 64)),
    st.tuples(st.integers(1, 12), st.integers(500, 4000)),
    st.tuples(st.integers(500, 4000), st.integers(1, 12)))


def _picture(width: int, height: int, kind: str, mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if kind == "noise":  # the worst case for a JPEG's size
        a = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        a = np.zeros((height, width, 3), dtype=np.uint8) + rng.integers(0, 256, 3,
                                                                        dtype=np.uint8)
    return Image.fromarray(a).convert(mode)


def _decodes(data: bytes, size: tuple[int, int]) -> None:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        assert img.size == size


@FUZZ
@given(shape=shapes, quality=st.integers(1, 100), kind=st.sampled_from(["noise", "flat"]),
       mode=st.sampled_from(["RGB", "L", "RGBA"]), fmt=st.sampled_from(["jpeg", "png", "webp"]),
       seed=st.integers(0, 2**16))
def test_any_picture_encodes_at_any_quality(shape: tuple[int, int], quality: int, kind: str,
                                            mode: str, fmt: str, seed: int) -> None:
    if fmt == "webp" and max(shape) > 16383:
        return  # WebP's own limit; sizes are bounded far below it
    picture = _picture(*shape, kind, mode, seed)
    alpha = picture.getchannel("A") if mode == "RGBA" else None
    _decodes(encode_image(picture, fmt, quality=quality, alpha=alpha), shape)


@pytest.mark.parametrize("quality", [95, 100])
@pytest.mark.parametrize("size", [(250, 198), (8, 2000), (3000, 12)])
def test_the_reported_pictures_encode_as_jpeg(size: tuple[int, int], quality: int) -> None:
    """Starry Night at 250 px (a picture of fine strokes) and the thin strips of the
    report, at the qualities that failed."""
    painting = Image.open(SHARED_STYLE).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    noise = _picture(*size, "noise", "RGB", 0)
    for picture in (painting, noise):
        data = encode_image(picture, "jpeg", quality=quality)
        _decodes(data, size)


def test_jpeg_still_optimizes_where_the_file_fits() -> None:
    """The fallback is only for files that cannot fit: an ordinary picture keeps its
    optimized (smaller) tables."""
    picture = Image.open(SHARED_STYLE).convert("RGB").resize((512, 405))
    plain = io.BytesIO()
    picture.save(plain, "JPEG", quality=92, subsampling=0)
    assert len(encode_image(picture, "jpeg", quality=92)) < plain.tell()
