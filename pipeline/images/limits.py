"""Pixel limits, and the process-wide Pillow state that checking them touches.

A caller's ``max_pixels`` is checked against what a header declares before any
pixel is decoded.  Pillow's own decompression-bomb check (``Image.MAX_IMAGE_PIXELS``)
is only ever read, never changed, and ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never
touched: a truncated file is an error, not a grey stripe at the bottom of a picture.
"""

from __future__ import annotations

import contextlib
import re
import threading
import warnings
from collections.abc import Iterator
from typing import Literal

from PIL import Image

from pipeline.errors import InputError
from pipeline.images.failures import Shown, fail, pixels

#: A 24-megapixel camera has headroom four times over; beyond this a photo costs
#: gigabytes of RAM to decode for no visible gain once it is styled.
DEFAULT_MAX_PIXELS = 80_000_000

# Guards the process-wide warnings filter list while Pillow parses (see pillow_warnings).
_warnings_lock = threading.Lock()

_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def max_photo_bytes(max_pixels: int) -> int:
    """A photo's file is never larger than its pixels stored uncompressed, with headroom:
    what a run reads (and hashes) at most for a photo, and so does ``explain``."""
    return max(64 << 20, max_pixels * 8)


def too_large(shown: Shown, width: int, height: int, max_pixels: int) -> InputError:
    return fail(
        shown,
        "too_large",
        f"image is too large ({width}x{height} = {pixels(width * height)}; "
        f"the limit is {pixels(max_pixels)})",
    )


def bomb_error(shown: Shown, exc: BaseException, max_pixels: int) -> InputError:
    found = _BOMB_PIXELS.search(str(exc))
    declared = pixels(int(found.group(1))) if found else "too many pixels"
    return fail(
        shown,
        "too_large",
        f"image is too large (its header declares {declared}; the limit is {pixels(max_pixels)})",
    )


def check_size(shown: Shown, width: int, height: int, *, max_pixels: int, min_side: int) -> None:
    if width * height > max_pixels:
        raise too_large(shown, width, height, max_pixels)
    if min(width, height) < max(1, min_side):
        raise fail(
            shown,
            "too_small",
            f"image is too small ({width}x{height}; each side must be at least "
            f"{max(1, min_side)} pixels)",
        )


@contextlib.contextmanager
def pillow_warnings(max_pixels: int | None = None) -> Iterator[None]:
    """Keep Pillow's warnings off stderr while it parses a header or its EXIF.

    Pillow warns, rather than raises, between MAX_IMAGE_PIXELS and twice that.  When
    ``max_pixels`` is given and our limit is the smaller one, the warning can only
    mean "over our limit", so it becomes an error; otherwise our own header check
    decides and the warning is dropped.  Pillow also warns about damaged EXIF: a
    library must not print, and the package reads EXIF with its own parser, which
    notes the damage instead.  The filter list is process-wide, hence the lock;
    callers hold it only around parsing, never around decoding the pixels.
    """
    with _warnings_lock, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")
        if max_pixels is not None:
            limit = Image.MAX_IMAGE_PIXELS
            action: Literal["error", "ignore"] = (
                "error" if limit is not None and max_pixels <= limit else "ignore"
            )
            warnings.simplefilter(action, Image.DecompressionBombWarning)
        yield
