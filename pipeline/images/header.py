"""Opening a file's header: what it declares, and why it cannot be opened when it cannot.

:func:`open_header` runs ``Image.open`` (which reads only the header) over a file
or an in-memory buffer, restricted to :data:`~pipeline.images.ALLOWED_FORMATS`,
and turns every failure into a refusal that says what the file really is (text,
HTML, SVG, a HEIC under a ``.jpg`` name, a damaged PNG...).  :func:`probe` is the
cheap look at a file on disk that a planner runs over a whole folder.  Sizes
are the oriented ones, so a portrait phone photo is portrait.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import IO

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from pipeline.errors import InputError
from pipeline.images.failures import Shown, describe, fail
from pipeline.images.formats import (
    ALLOWED_FORMATS,
    HEIF_HINT,
    open_formats,
    refuse_heif_without_decoder,
    sniff,
)
from pipeline.images.limits import (
    DEFAULT_MAX_PIXELS,
    bomb_error,
    check_size,
    pillow_warnings,
    too_large,
)
from pipeline.images.model import ImageInfo
from pipeline.images.paths import check_path, open_regular

ORIENTATION_TAG = 0x0112
_SWAPPED_ORIENTATIONS = frozenset({5, 6, 7, 8})


def open_header(fh: IO[bytes], shown: Shown, max_pixels: int) -> Image.Image:
    """``Image.open`` on an already opened file, with every failure translated."""
    formats = open_formats()
    try:
        with pillow_warnings(max_pixels):
            return Image.open(fh, formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise bomb_error(shown, exc, max_pixels) from None
    except UnidentifiedImageError:
        raise _unidentified(fh, shown, max_pixels) from None
    except MemoryError:
        raise fail(shown, "too_large", "image is too large to open (out of memory)") from None
    except Exception as exc:  # every Pillow failure becomes an InputError
        raise decode_error(shown, exc, sniff(fh)[0]) from exc


def _png_declared_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR, if the first chunk is an intact IHDR."""
    if len(head) < 33 or head[12:16] != b"IHDR" or head[8:12] != b"\x00\x00\x00\r":
        return None
    width, height = struct.unpack_from(">II", head, 16)
    (stored,) = struct.unpack_from(">I", head, 29)
    return (width, height) if zlib.crc32(head[12:29]) == stored else None


def _unidentified(fh: IO[bytes], shown: Shown, max_pixels: int) -> InputError:
    fmt, head = sniff(fh)
    declared = _png_declared_size(head) if fmt == "PNG" else None
    if declared is not None and declared[0] * declared[1] > max_pixels:
        # Pillow gives up on a PNG that stops after its header before checking the
        # size; the size is still the more useful (and the safer) thing to report.
        return too_large(shown, *declared, max_pixels)
    if fmt in ("HEIF", "AVIF") and fmt not in ALLOWED_FORMATS:
        # An iPhone photo exported under a .jpg name is the usual way to get here.
        return fail(
            shown, "unsupported", f"is a {fmt} image, which needs an extra decoder; {HEIF_HINT}"
        )
    if fmt is not None:
        return fail(shown, "truncated", f"file is damaged (its {fmt} header cannot be read)")
    return fail(shown, "not_an_image", _what_it_is(head))


def _what_it_is(head: bytes) -> str:
    """Words for a file that is no image at all, from its first bytes."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "not an image (it holds SVG vector graphics, which are not supported)"
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text[:200]:
        return "not an image (it holds HTML, perhaps a saved web page)"
    if head and b"\x00" not in head and _is_text(head):
        return "not an image (it holds plain text)"
    supported = ", ".join(sorted(ALLOWED_FORMATS - {"MPO"}))
    return f"not an image in a supported format ({supported})"


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The 512-byte sample may end in the middle of a multi-byte character.
        return exc.start >= len(head) - 3
    return True


def decode_error(shown: Shown, exc: BaseException, fmt: str | None) -> InputError:
    """Map an exception from Pillow's decoders onto a category and a plain message."""
    text = str(exc).lower()
    kind = fmt or "image"
    if isinstance(exc, EOFError) or "truncated" in text or "end of file" in text:
        return fail(shown, "truncated", f"file is truncated ({kind} data ends early)")
    if "crc" in text or "checksum" in text:
        return fail(shown, "truncated", f"file is damaged ({kind} checksum mismatch)")
    if "broken data stream" in text:
        return fail(shown, "truncated", f"file is damaged or truncated ({kind} data is corrupt)")
    if isinstance(exc, SyntaxError) or "broken" in text or "corrupt" in text:
        return fail(shown, "truncated", f"file is damaged ({describe(exc)})")
    if isinstance(exc, MemoryError):
        return fail(shown, "too_large", "image is too large to decode (out of memory)")
    return fail(shown, "unreadable", f"cannot decode the image ({describe(exc)})")


def orientation(img: Image.Image) -> int:
    """The EXIF (or XMP) orientation of an opened image, 1 when absent or unreadable."""
    try:
        with pillow_warnings():
            if isinstance(img, PngImagePlugin.PngImageFile) and "exif" not in img.info:
                # PNG's getexif() decodes the whole image to look for an eXIf chunk
                # after the pixel data; the base method reads only what the header held.
                exif = Image.Image.getexif(img)
            else:
                exif = img.getexif()
            value = exif.get(ORIENTATION_TAG, 1)
    except Exception:  # malformed EXIF only loses the rotation
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def frame_count(img: Image.Image) -> int:
    try:
        return max(1, int(getattr(img, "n_frames", 1)))
    except Exception:  # a damaged later frame does not hurt the first
        return 1


def _info_from_header(img: Image.Image, max_pixels: int) -> ImageInfo:
    width, height = img.size
    if orientation(img) in _SWAPPED_ORIENTATIONS:
        width, height = height, width
    with pillow_warnings(max_pixels):  # counting GIF frames size-checks each one
        n_frames = frame_count(img)
    return ImageInfo(
        width=width, height=height, format=img.format or "unknown", mode=img.mode,
        n_frames=n_frames,
    )


def probe(
    path: Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    root: Path | None = None,
    follow_symlinks: bool = False,
) -> ImageInfo:
    """Read only the header of ``path`` and refuse it early if it cannot be used.

    No pixel data is decoded, so this is cheap enough to run over a whole folder
    before any work starts.
    """
    path = Path(path)
    source = check_path(path, root=root, follow_symlinks=follow_symlinks)
    refuse_heif_without_decoder(path)
    with open_regular(source, path) as fh:
        return _probe_open(fh, path, max_pixels)


def probe_bytes(data: bytes, shown: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS
                ) -> ImageInfo:
    """:func:`probe` of a photo's bytes already read (``shown`` names it in messages)."""
    refuse_heif_without_decoder(shown)
    return _probe_open(io.BytesIO(data), shown, max_pixels)


def _probe_open(fh: IO[bytes], path: Path, max_pixels: int) -> ImageInfo:
    img = open_header(fh, path, max_pixels)
    with img:
        try:
            info = _info_from_header(img, max_pixels)
        except Image.DecompressionBombWarning as exc:
            raise bomb_error(path, exc, max_pixels) from None
    check_size(path, info.width, info.height, max_pixels=max_pixels, min_side=1)
    return info
