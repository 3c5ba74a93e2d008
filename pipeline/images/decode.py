"""Decoding a photo: bytes in, an upright 8-bit sRGB picture, its mask and metadata out.

:func:`decode_photo` is the one decode path; it works on bytes alone, so a worker
that never sees the photo's folder decodes exactly as the driver would, and
:func:`load_image` is :func:`~pipeline.images.read_photo` followed by it.

* **Orientation.**  EXIF (or XMP) orientation is applied, so a portrait phone
  photo is portrait; the metadata that travels with it says so (Orientation 1).
* **Animations and multi-page files.**  Animated GIF, WebP and APNG files, MPO
  stereo/multi-picture JPEGs and multi-page TIFFs are styled as a still: the first
  frame (page) is used and the others are ignored.
* **Damage.**  A PNG's pixel-data checksums, which Pillow does not verify, are
  checked, and a truncated file of any format is refused, never padded.
* **Size.**  With ``max_long_side`` a larger image is scaled down while decoding (a
  JPEG is decoded at a reduced size straight away); a smaller one is never enlarged.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

from pipeline.errors import InputError
from pipeline.images.colour import colour_to_rgb, source_bits, split_alpha
from pipeline.images.failures import fail
from pipeline.images.formats import refuse_heif_without_decoder
from pipeline.images.header import decode_error, frame_count, open_header, orientation
from pipeline.images.limits import DEFAULT_MAX_PIXELS, bomb_error, check_size, pillow_warnings
from pipeline.images.metadata import read_metadata
from pipeline.images.model import ImageInfo, LoadedImage, PhotoMetadata
from pipeline.images.paths import read_photo

# A huge image is resized in two steps (integer box reduction, then Lanczos over the
# last factor of three); Pillow's docs show this is indistinguishable from a full
# Lanczos pass and many times faster.
_REDUCING_GAP = 3.0

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def load_image(
    path: Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_long_side: int | None = None,
    min_side: int = 1,
    root: Path | None = None,
    follow_symlinks: bool = False,
) -> LoadedImage:
    """Read ``path`` (see :func:`~pipeline.images.read_photo`) and decode its first frame."""
    if max_long_side is not None and max_long_side < 1:
        raise ValueError("max_long_side must be at least 1")
    path = Path(path)
    data = read_photo(path, root=root, follow_symlinks=follow_symlinks)
    return decode_photo(data, path.name, max_pixels=max_pixels, max_long_side=max_long_side,
                        min_side=min_side)


def decode_photo(
    data: bytes,
    name: str,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_long_side: int | None = None,
    min_side: int = 1,
) -> LoadedImage:
    """Decode the first frame of a photo file's content ``data`` into 8-bit sRGB.

    ``name`` is the file's name: messages start with it, and its suffix says when a
    HEIF file needs a decoder this installation lacks.
    """
    if max_long_side is not None and max_long_side < 1:
        raise ValueError("max_long_side must be at least 1")
    if not data:
        raise fail(name, "not_an_image", "file is empty (0 bytes)")
    refuse_heif_without_decoder(name)
    fh = io.BytesIO(data)
    with open_header(fh, name, max_pixels) as img:
        return _decode(img, data, name, max_pixels, max_long_side, min_side)


def _decode(
    img: Image.Image,
    data: bytes,
    name: str,
    max_pixels: int,
    max_long_side: int | None,
    min_side: int,
) -> LoadedImage:
    width, height = img.size
    check_size(name, width, height, max_pixels=max_pixels, min_side=min_side)
    fmt = img.format or "image"
    header_mode = img.mode
    with pillow_warnings(max_pixels):  # counting GIF frames size-checks each one
        n_frames = frame_count(img)
    try:
        rgb, alpha, swapped, metadata = _pixels(img, data, name, fmt, max_long_side)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise bomb_error(name, exc, max_pixels) from None
    except MemoryError:
        raise fail(name, "too_large", "image is too large to decode (out of memory)") from None
    except Exception as exc:  # no Pillow traceback may escape
        raise decode_error(name, exc, fmt) from exc
    if rgb is img:
        # Nothing needed converting.  Hand back a plain image rather than the plugin
        # object, which still points at a buffer that is about to be closed.
        rgb = img.copy()
    # The pixels are upright sRGB now: a stale profile, colour key or EXIF must not
    # follow them (the metadata travels, brought up to date, in ``metadata``).
    rgb.info = {k: v for k, v in rgb.info.items() if k == "dpi"}
    if alpha is not None:
        alpha.info = {}
    if swapped:
        width, height = height, width
    info = ImageInfo(width=width, height=height, format=fmt, mode=header_mode, n_frames=n_frames)
    return LoadedImage(rgb=rgb, alpha=alpha, info=info, metadata=metadata)


def _pixels(
    img: Image.Image, data: bytes, name: str, fmt: str, max_long_side: int | None
) -> tuple[Image.Image, Image.Image | None, bool, PhotoMetadata]:
    """Decode, orient, convert and scale; any exception is the caller's to translate."""
    if fmt == "PNG":
        damage = _png_damage(data)
        if damage is not None:
            raise fail(name, *damage)
    width, height = img.size
    if max_long_side is not None and fmt in ("JPEG", "MPO") and max(width, height) > max_long_side:
        # libjpeg can decode at 1/2, 1/4 or 1/8 scale for almost nothing; Pillow
        # picks the strongest reduction that still leaves at least the target.
        img.draft("RGB", _target_size(width, height, max_long_side))
    img.load()
    bits = source_bits(img)
    icc = img.info.get("icc_profile")
    metadata = read_metadata(img, data)
    oriented = _upright(img)
    swapped = oriented.size != img.size
    colour, alpha = split_alpha(oriented)
    rgb = colour_to_rgb(colour, icc, bits)
    if max_long_side is not None and max(rgb.size) > max_long_side:
        rgb, alpha = _downscale(rgb, alpha, _target_size(*rgb.size, max_long_side))
    return rgb, alpha, swapped, metadata


def _upright(img: Image.Image) -> Image.Image:
    # Rotated here rather than by ImageOps.exif_transpose, which copies the whole
    # image even when it is already upright and rewrites EXIF that is dropped anyway.
    method = _TRANSPOSE.get(orientation(img))
    return img if method is None else img.transpose(method)


def _png_damage(data: bytes) -> tuple[str, str] | None:
    """Walk a PNG's chunks and check the CRCs that Pillow does not verify (IDAT's).

    Returns (category, message) for the first critical chunk that is damaged or cut
    short, or None.  Ancillary chunks are skipped, as the PNG spec allows; the
    pixels are in the critical ones.
    """
    view = memoryview(data)
    at = 8
    while True:
        if at + 8 > len(data):
            # The pixel data was all there (Pillow decoded or will decode it);
            # only the closing IEND chunk is missing, which loses nothing.
            return None
        length, ctype = struct.unpack_from(">I4s", data, at)
        if length > 0x7FFFFFFF:
            return "truncated", "file is damaged (PNG chunk length is invalid)"
        body_end = at + 8 + length
        if body_end + 4 > len(data):
            return "truncated", "file is truncated (PNG data ends early)"
        critical = ctype[:1].isupper()
        if critical:
            crc = zlib.crc32(view[at + 4 : body_end])
            if struct.unpack_from(">I", data, body_end)[0] != crc:
                name = ctype.decode("latin-1")
                return "truncated", f"file is damaged (PNG checksum mismatch in its {name} chunk)"
        if ctype == b"IEND":
            return None
        at = body_end + 4


def _target_size(width: int, height: int, max_long_side: int) -> tuple[int, int]:
    scale = max_long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _downscale(
    rgb: Image.Image, alpha: Image.Image | None, size: tuple[int, int]
) -> tuple[Image.Image, Image.Image | None]:
    small = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
    if alpha is None:
        return small, None
    # Resizing colour and mask separately lets the hidden colour of transparent
    # pixels bleed into visible edges.  Pillow premultiplies RGBA while resizing,
    # which keeps edges clean; pixels left fully transparent keep the plain result.
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    rgba = rgba.resize(size, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
    small_alpha = rgba.getchannel("A")
    visible = small_alpha.point(lambda v: 255 if v else 0)
    return Image.composite(rgba.convert("RGB"), small, visible), small_alpha
