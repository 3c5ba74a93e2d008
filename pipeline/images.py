"""Reading and writing photos safely: one place that knows every odd file a user can hand us.

Everything that touches an input photo goes through :func:`check_path` (is this a
readable regular file we are allowed to use?), :func:`probe` (what does the header
say?) and :func:`load_image` (decode it into a plain 8-bit sRGB picture plus an
optional alpha mask).  Every refusal is an :class:`~pipeline.errors.InputError`
with a ``category`` and a one-line message that starts with the file's name; no
Pillow exception or traceback leaves this module.

Policies
--------
* **Formats.**  Only the formats in :data:`ALLOWED_FORMATS` are tried when a file is
  opened, so a file is never handed to an obscure Pillow plugin because of a lucky
  magic number.  HEIF is added when the optional ``pillow-heif`` package is
  installed (its opener is registered on first use, not at import); AVIF is
  added when Pillow itself was built with AVIF support or ``pillow-heif`` provides it.
* **Orientation.**  EXIF (or XMP) orientation is applied on load, and sizes reported
  by :func:`probe` are the oriented ones, so a portrait phone photo is portrait.
* **Colour.**  An embedded ICC profile that is not sRGB is converted to sRGB with
  LittleCMS; a profile that cannot be parsed or applied is ignored, not fatal.
  CMYK (Adobe's inverted JPEG flavour included, which Pillow already un-inverts),
  palette, grey, 1-bit, YCbCr and CIE L*a*b* sources all end up as ``RGB``.
* **Alpha.**  When the source has transparency (RGBA, LA, PA, a palette or a grey/RGB
  image with a transparent colour key) the mask is returned separately as mode
  ``L`` and the colour channels keep their stored values.  Writing PNG, WebP or
  TIFF puts the mask back; JPEG cannot store it and the mask is dropped.
* **Animations and multi-page files.**  Animated GIF, WebP and APNG files, MPO
  stereo/multi-picture JPEGs and multi-page TIFFs are styled as a still: the first
  frame (page) is used and the others are ignored.
* **High bit depth.**  16-bit grey (``I;16`` and friends) is scaled to 8 bits by its
  real range (``>> 8``), never clipped, so a full-range ramp keeps its whole
  gradient.  32-bit integer data whose values fit in 16 bits is treated the same
  way; anything wider, and float data outside 0..1 or 0..255, is stretched
  linearly from its minimum to its maximum.
* **Limits.**  Images whose header declares more than ``max_pixels`` pixels are
  refused before any pixel is decoded; ``Image.MAX_IMAGE_PIXELS`` is left as it
  is (so a limit above twice Pillow's own, about 179 megapixels, cannot be
  reached) and ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never touched: a truncated
  file is an error, not a grey stripe at the bottom of the picture.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import importlib.util
import io
import os
import re
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

import numpy as np
from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError, features

from pipeline.errors import InputError, UsageError
from pipeline.fsutil import atomic_path
from pipeline.naming import display_name

if TYPE_CHECKING:
    import torch

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "HEIF_EXTENSIONS",
    "ImageInfo",
    "LoadedImage",
    "check_path",
    "display_name",
    "load_image",
    "pil_to_tensor",
    "probe",
    "save_image",
    "tensor_to_pil",
]

#: A 24-megapixel camera has headroom four times over; beyond this a photo costs
#: gigabytes of RAM to decode for no visible gain once it is styled.
DEFAULT_MAX_PIXELS = 80_000_000

_BASE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "TIFF", "BMP", "GIF"})

# find_spec looks for the package without importing it: pillow-heif pulls in
# libheif, which is too heavy to load for every run that never meets a HEIC file.
_HAVE_PILLOW_HEIF = importlib.util.find_spec("pillow_heif") is not None
# Pillow >= 11.2 may ship its own AVIF decoder; prefer it when present.
_HAVE_NATIVE_AVIF = bool(features.check("avif"))


def _allowed_formats() -> frozenset[str]:
    formats = set(_BASE_FORMATS)
    if _HAVE_PILLOW_HEIF:
        formats.add("HEIF")
    if _HAVE_PILLOW_HEIF or _HAVE_NATIVE_AVIF:
        formats.add("AVIF")
    return frozenset(formats)


#: Pillow format names a file may be opened as.
ALLOWED_FORMATS: frozenset[str] = _allowed_formats()

#: Suffixes that mean "HEIF family"; refused with an install hint when no decoder exists.
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif", ".heics", ".heifs", ".avif", ".avifs"})
_AVIF_EXTENSIONS = frozenset({".avif", ".avifs"})
_HEIF_HINT = 'install the optional HEIF support with: pip install "stylize[heif]"'

# ISO base media "ftyp" brands of HEIF stills and sequences, and of AVIF.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})

_ORIENTATION_TAG = 0x0112
_SWAPPED_ORIENTATIONS = frozenset({5, 6, 7, 8})

_SAVE_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})

# A huge image is resized in two steps (integer box reduction, then Lanczos over the
# last factor of three); Pillow's docs show this is indistinguishable from a full
# Lanczos pass and many times faster.
_REDUCING_GAP = 3.0


@dataclass(frozen=True)
class ImageInfo:
    """What a file's header says, with the sides swapped when EXIF asks for a rotation."""

    width: int
    height: int
    format: str
    mode: str
    n_frames: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass
class LoadedImage:
    """A decoded photo: 8-bit sRGB colour, an optional mask, and what the file declared.

    ``info`` describes the file (its oriented full size), so ``rgb.size`` is smaller
    than ``(info.width, info.height)`` when ``load_image`` was asked to downscale.
    """

    rgb: Image.Image
    alpha: Image.Image | None
    info: ImageInfo


# --------------------------------------------------------------------------------------
# Names in messages


def _fail(path: Path, category: str, what: str) -> InputError:
    return InputError(f"{display_name(path)}: {what}", category=category)


def _one_line(text: str, limit: int = 120) -> str:
    line = " ".join(text.split())
    if len(line) > limit:
        line = line[: limit - 3].rstrip() + "..."
    # Pillow messages can quote paths with undecodable bytes.
    return line.encode("utf-8", "backslashreplace").decode("utf-8")


def _describe(exc: BaseException) -> str:
    return _one_line(str(exc)) or type(exc).__name__


# --------------------------------------------------------------------------------------
# Path checks


def _is_within(path: Path, folder: Path) -> bool:
    return path.is_relative_to(folder)


def check_path(path: Path, *, root: Path | None = None, follow_symlinks: bool = False) -> Path:
    """Refuse ``path`` unless it is a non-empty, readable regular file we may use.

    Nothing is opened: a FIFO would block the whole run on ``open``.  When ``root``
    is given, a path whose real location lies outside it (reached through a symbolic
    link in the path or in one of its folders) is refused with ``outside_input``
    unless ``follow_symlinks`` is true.  Returns the resolved path, which is what
    should be opened, so the link chain is not walked a second time.
    """
    path = Path(path)
    try:
        link_st = os.lstat(path)
    except FileNotFoundError:
        raise _fail(path, "unreadable", "file not found") from None
    except PermissionError:
        raise _fail(
            path, "permission", "permission denied (a folder on its path cannot be read)"
        ) from None
    except OSError as exc:
        raise _fail(path, "unreadable", _path_problem(exc)) from None

    st = link_st
    if stat.S_ISLNK(link_st.st_mode):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise _fail(
                path, "unreadable", "broken symbolic link (its target does not exist)"
            ) from None
        except PermissionError:
            raise _fail(
                path, "permission", "permission denied (the link's target is not reachable)"
            ) from None
        except OSError as exc:
            raise _fail(path, "unreadable", _path_problem(exc)) from None

    if stat.S_ISDIR(st.st_mode):
        raise _fail(path, "not_a_file", "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(path, "not_a_file", "is not a regular file (a pipe, socket or device)")

    try:
        resolved = path.resolve(strict=True)
    except OSError as exc:  # the tree changed under us since the stat
        raise _fail(path, "unreadable", _path_problem(exc)) from None

    if root is not None:
        root_abs = Path(os.path.abspath(root))
        root_real = Path(root).resolve()
        if not _is_within(resolved, root_real):
            # Only a symbolic link can make a path under the root land outside it;
            # a path that was never under the root is not ours to read at all.
            via_link = _is_within(Path(os.path.abspath(path)), root_abs)
            if not (follow_symlinks and via_link):
                raise _fail(
                    path,
                    "outside_input",
                    "points outside the input folder (following links out of it is turned off)",
                )

    if not os.access(resolved, os.R_OK):
        raise _fail(path, "permission", "permission denied (the file cannot be read)")
    if st.st_size == 0:
        raise _fail(path, "not_an_image", "file is empty (0 bytes)")
    return resolved


def _path_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (the link leads back to itself)"
    if exc.errno == errno.ENOTDIR:
        return "file not found (a part of its path is not a folder)"
    if exc.errno == errno.ENAMETOOLONG:
        return "the file name is too long"
    return f"cannot be read ({_one_line(exc.strerror or str(exc))})"


@contextlib.contextmanager
def _open_regular(resolved: Path, shown: Path) -> Iterator[IO[bytes]]:
    """Open for reading without ever blocking, and re-check that it is a regular file.

    ``check_path`` already looked, but the file can be swapped for a FIFO or a link
    between that look and this open; O_NONBLOCK makes opening a FIFO return at once
    (regular files ignore the flag) and O_NOFOLLOW refuses a freshly planted link.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(resolved, flags)
    except PermissionError:
        raise _fail(shown, "permission", "permission denied (the file cannot be read)") from None
    except IsADirectoryError:
        raise _fail(shown, "not_a_file", "is a folder, not an image file") from None
    except FileNotFoundError:
        raise _fail(
            shown, "unreadable", "file not found (it disappeared while being read)"
        ) from None
    except OSError as exc:
        raise _fail(shown, "unreadable", _path_problem(exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _fail(shown, "not_a_file", "is not a regular file (a pipe, socket or device)")
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh


# --------------------------------------------------------------------------------------
# Opening headers


_heif_lock = threading.Lock()
_heif_registered = False


def _register_heif() -> None:
    """Register pillow-heif's openers the first time a file is opened."""
    global _heif_registered
    if not _HAVE_PILLOW_HEIF or _heif_registered:
        return
    with _heif_lock:
        if _heif_registered:
            return
        try:
            heif = importlib.import_module("pillow_heif")
            heif.register_heif_opener()
            if not _HAVE_NATIVE_AVIF and hasattr(heif, "register_avif_opener"):
                heif.register_avif_opener()
        except Exception:  # a broken optional plugin must not stop JPEGs
            pass
        _heif_registered = True


def _open_formats() -> list[str]:
    _register_heif()
    # Image.open raises KeyError for a format no plugin registered (an optional
    # decoder missing from this Pillow build), so offer only those that exist.
    if any(f not in Image.OPEN for f in ALLOWED_FORMATS):
        Image.init()
    return sorted(f for f in ALLOWED_FORMATS if f in Image.OPEN)


def _heif_decoder_missing(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix not in HEIF_EXTENSIONS:
        return False
    fmt = "AVIF" if suffix in _AVIF_EXTENSIONS else "HEIF"
    return fmt not in ALLOWED_FORMATS


def _refuse_heif_without_decoder(path: Path) -> None:
    if _heif_decoder_missing(path):
        kind = path.suffix.lstrip(".").upper()
        raise _fail(path, "unsupported", f"{kind} images need an extra decoder; {_HEIF_HINT}")


# Guards the process-wide warnings filter while Image.open runs (see _open_header).
_warnings_lock = threading.Lock()

_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def _pixels(count: int) -> str:
    return f"{count / 1e6:.1f} megapixels" if count >= 100_000 else f"{count} pixels"


def _too_large(path: Path, width: int, height: int, max_pixels: int) -> InputError:
    return _fail(
        path,
        "too_large",
        f"image is too large ({width}x{height} = {_pixels(width * height)}; "
        f"the limit is {_pixels(max_pixels)})",
    )


def _bomb_error(path: Path, exc: BaseException, max_pixels: int) -> InputError:
    found = _BOMB_PIXELS.search(str(exc))
    declared = _pixels(int(found.group(1))) if found else "too many pixels"
    return _fail(
        path,
        "too_large",
        f"image is too large (its header declares {declared}; the limit is {_pixels(max_pixels)})",
    )


@contextlib.contextmanager
def _bomb_warnings(max_pixels: int) -> Iterator[None]:
    """Turn Pillow's decompression-bomb warning into an error, or silence it.

    Pillow warns, rather than raises, between MAX_IMAGE_PIXELS and twice that; a
    library must not print, and the warning would otherwise reach stderr.  When our
    own limit is the smaller one the warning can only mean "over our limit", so it
    becomes an error; otherwise our own header check decides.  The filter list is
    process-wide, hence the lock around it.
    """
    limit = Image.MAX_IMAGE_PIXELS
    action: Literal["error", "ignore"] = (
        "error" if limit is not None and max_pixels <= limit else "ignore"
    )
    with _warnings_lock, warnings.catch_warnings():
        warnings.simplefilter(action, Image.DecompressionBombWarning)
        yield


def _open_header(fh: IO[bytes], path: Path, max_pixels: int) -> Image.Image:
    """``Image.open`` on an already opened file, with every failure translated."""
    formats = _open_formats()
    try:
        with _bomb_warnings(max_pixels):
            return Image.open(fh, formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_error(path, exc, max_pixels) from None
    except UnidentifiedImageError:
        raise _unidentified(fh, path, max_pixels) from None
    except MemoryError:
        raise _fail(path, "too_large", "image is too large to open (out of memory)") from None
    except Exception as exc:  # every Pillow failure becomes an InputError
        raise _decode_error(path, exc, _sniff(fh)[0]) from exc


def _sniff(fh: IO[bytes]) -> tuple[str | None, bytes]:
    """Guess what a file is from its first bytes: (image format or None, the bytes)."""
    try:
        fh.seek(0)
        head = fh.read(512)
    except OSError:
        return None, b""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG", head
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG", head
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF", head
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP", head
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF", head
    # "BM" alone is too common at the start of text; the DIB header size pins it.
    if (
        head[:2] == b"BM"
        and len(head) >= 18
        and struct.unpack_from("<I", head, 14)[0] in (12, 40, 52, 56, 64, 108, 124)
    ):
        return "BMP", head
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AVIF_BRANDS:
            return "AVIF", head
        if brand in _HEIF_BRANDS:
            return "HEIF", head
    return None, head


def _png_declared_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR, if the first chunk is an intact IHDR."""
    if len(head) < 33 or head[12:16] != b"IHDR" or head[8:12] != b"\x00\x00\x00\r":
        return None
    width, height = struct.unpack_from(">II", head, 16)
    (stored,) = struct.unpack_from(">I", head, 29)
    return (width, height) if zlib.crc32(head[12:29]) == stored else None


def _unidentified(fh: IO[bytes], path: Path, max_pixels: int) -> InputError:
    fmt, head = _sniff(fh)
    declared = _png_declared_size(head) if fmt == "PNG" else None
    if declared is not None and declared[0] * declared[1] > max_pixels:
        # Pillow gives up on a PNG that stops after its header before checking the
        # size; the size is still the more useful (and the safer) thing to report.
        return _too_large(path, *declared, max_pixels)
    if fmt in ("HEIF", "AVIF") and fmt not in ALLOWED_FORMATS:
        # An iPhone photo exported under a .jpg name is the usual way to get here.
        return _fail(
            path, "unsupported", f"is a {fmt} image, which needs an extra decoder; {_HEIF_HINT}"
        )
    if fmt is not None:
        return _fail(path, "truncated", f"file is damaged (its {fmt} header cannot be read)")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        what = "not an image (it holds SVG vector graphics, which are not supported)"
    elif text.startswith((b"<!doctype html", b"<html")) or b"<html" in text[:200]:
        what = "not an image (it holds HTML, perhaps a saved web page)"
    elif head and b"\x00" not in head and _is_text(head):
        what = "not an image (it holds plain text)"
    else:
        supported = ", ".join(sorted(ALLOWED_FORMATS - {"MPO"}))
        what = f"not an image in a supported format ({supported})"
    return _fail(path, "not_an_image", what)


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The 512-byte sample may end in the middle of a multi-byte character.
        return exc.start >= len(head) - 3
    return True


def _decode_error(path: Path, exc: BaseException, fmt: str | None) -> InputError:
    """Map an exception from Pillow's decoders onto a category and a plain message."""
    text = str(exc).lower()
    kind = fmt or "image"
    if isinstance(exc, EOFError) or "truncated" in text or "end of file" in text:
        return _fail(path, "truncated", f"file is truncated ({kind} data ends early)")
    if "crc" in text or "checksum" in text:
        return _fail(path, "truncated", f"file is damaged ({kind} checksum mismatch)")
    if "broken data stream" in text:
        return _fail(path, "truncated", f"file is damaged or truncated ({kind} data is corrupt)")
    if isinstance(exc, SyntaxError) or "broken" in text or "corrupt" in text:
        return _fail(path, "truncated", f"file is damaged ({_describe(exc)})")
    if isinstance(exc, MemoryError):
        return _fail(path, "too_large", "image is too large to decode (out of memory)")
    return _fail(path, "unreadable", f"cannot decode the image ({_describe(exc)})")


def _header_orientation(img: Image.Image) -> int:
    try:
        if isinstance(img, PngImagePlugin.PngImageFile) and "exif" not in img.info:
            # PNG's getexif() decodes the whole image to look for an eXIf chunk after
            # the pixel data; the base method reads only what the header held.
            exif = Image.Image.getexif(img)
        else:
            exif = img.getexif()
        value = exif.get(_ORIENTATION_TAG, 1)
        return value if isinstance(value, int) else 1
    except Exception:  # malformed EXIF only loses the rotation
        return 1


def _frame_count(img: Image.Image) -> int:
    try:
        return max(1, int(getattr(img, "n_frames", 1)))
    except Exception:  # a damaged later frame does not hurt the first
        return 1


def _info_from_header(img: Image.Image, orientation: int) -> ImageInfo:
    width, height = img.size
    if orientation in _SWAPPED_ORIENTATIONS:
        width, height = height, width
    return ImageInfo(
        width=width,
        height=height,
        format=img.format or "unknown",
        mode=img.mode,
        n_frames=_frame_count(img),
    )


def _check_size(path: Path, width: int, height: int, *, max_pixels: int, min_side: int) -> None:
    if width * height > max_pixels:
        raise _too_large(path, width, height, max_pixels)
    if min(width, height) < max(1, min_side):
        raise _fail(
            path,
            "too_small",
            f"image is too small ({width}x{height}; each side must be at least "
            f"{max(1, min_side)} pixels)",
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
    _refuse_heif_without_decoder(path)
    with _open_regular(source, path) as fh:
        img = _open_header(fh, path, max_pixels)
        with img:
            try:
                with _bomb_warnings(max_pixels):  # counting GIF frames checks each one
                    info = _info_from_header(img, _header_orientation(img))
            except Image.DecompressionBombWarning as exc:
                raise _bomb_error(path, exc, max_pixels) from None
    _check_size(path, info.width, info.height, max_pixels=max_pixels, min_side=1)
    return info


# --------------------------------------------------------------------------------------
# Decoding


def _png_damage(fh: IO[bytes]) -> tuple[str, str] | None:
    """Walk a PNG's chunks and check the CRCs that Pillow does not verify (IDAT's).

    Returns (category, message) for the first critical chunk that is damaged or cut
    short, or None.  Ancillary chunks are skipped, as the PNG spec allows; the
    pixels are in the critical ones.
    """
    start = fh.tell()
    try:
        fh.seek(8)
        while True:
            head = fh.read(8)
            if len(head) < 8:
                # The pixel data was all there (Pillow decoded or will decode it);
                # only the closing IEND chunk is missing, which loses nothing.
                return None
            length, ctype = struct.unpack(">I4s", head)
            if length > 0x7FFFFFFF:
                return "truncated", "file is damaged (PNG chunk length is invalid)"
            crc = zlib.crc32(ctype)
            remaining = length
            while remaining:
                block = fh.read(min(remaining, 1 << 20))
                if not block:
                    return "truncated", "file is truncated (PNG data ends early)"
                crc = zlib.crc32(block, crc)
                remaining -= len(block)
            stored = fh.read(4)
            if len(stored) < 4:
                return "truncated", "file is truncated (PNG data ends early)"
            critical = ctype[:1].isupper()
            if critical and struct.unpack(">I", stored)[0] != crc & 0xFFFFFFFF:
                name = ctype.decode("latin-1")
                return "truncated", f"file is damaged (PNG checksum mismatch in its {name} chunk)"
            if ctype == b"IEND":
                return None
    finally:
        fh.seek(start)


def _exif_transposed(img: Image.Image) -> Image.Image:
    try:
        # Asked first because exif_transpose copies the whole image even when the
        # orientation is already upright, which doubles memory for nothing.
        if img.getexif().get(_ORIENTATION_TAG, 1) not in range(2, 9):
            return img
        out = ImageOps.exif_transpose(img)
    except Exception:  # malformed EXIF only loses the rotation
        return img
    return out if out is not None else img


def _source_bits(img: Image.Image) -> int | None:
    """Bits per sample that the file declares, where the plugin exposes it."""
    if img.mode.startswith("I;16"):
        return 16
    tags = getattr(img, "tag_v2", None)
    if tags is not None:
        with contextlib.suppress(Exception):
            bits = tags.get(258)
            if isinstance(bits, tuple):
                bits = bits[0] if bits else None
            if isinstance(bits, int):
                return bits
    return None


def _to_8bit(img: Image.Image, bits: int | None) -> Image.Image:
    """Scale integer or float grey to mode L by its real range (see module docstring)."""
    arr = np.asarray(img)
    if img.mode == "F":
        data = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
        if lo >= 0.0 and hi <= 1.0:
            scaled = data * 255.0
        elif lo >= 0.0 and hi <= 255.0:
            scaled = data
        else:
            scaled = _stretch(data, lo, hi)
        return Image.fromarray(np.rint(scaled).clip(0, 255).astype(np.uint8))
    wide = arr.astype(np.int64)
    lo, hi = (int(wide.min()), int(wide.max())) if wide.size else (0, 0)
    if bits is not None and 8 < bits <= 16:
        out = wide >> (bits - 8)
    elif bits is not None and bits <= 8:
        out = wide
    elif lo >= 0 and hi <= 0xFFFF:
        out = wide >> 8
    else:
        out = np.rint(_stretch(wide.astype(np.float64), float(lo), float(hi)))
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def _stretch(data: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros_like(data)
    return (data - lo) * (255.0 / (hi - lo))


def _colour_key_alpha(img: Image.Image) -> Image.Image | None:
    """Alpha from a PNG tRNS colour key on a grey or RGB image (one transparent colour)."""
    key = img.info.get("transparency")
    if key is None or img.mode not in ("L", "RGB", "I", "I;16", "I;16B", "I;16L", "I;16N"):
        return None
    arr = np.asarray(img)
    try:
        if img.mode == "RGB":
            if not isinstance(key, tuple) or len(key) != 3:
                return None
            opaque = (arr != np.asarray(key, dtype=arr.dtype)).any(axis=2)
        else:
            if not isinstance(key, int):
                return None
            opaque = arr != key
    except (TypeError, ValueError, OverflowError):
        return None
    return Image.fromarray(np.where(opaque, 255, 0).astype(np.uint8))


def _split_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Separate the colour channels from any transparency."""
    mode = img.mode
    if mode in ("RGBa", "La"):  # premultiplied: undo it so the colours are true
        img = img.convert(mode.upper())
        mode = img.mode
    if mode == "RGBA":
        return img.convert("RGB"), img.getchannel("A")
    if mode == "LA":
        return img.getchannel("L"), img.getchannel("A")
    if mode == "PA" or (mode == "P" and img.info.get("transparency") is not None):
        rgba = img.convert("RGBA")
        return rgba.convert("RGB"), rgba.getchannel("A")
    return img, _colour_key_alpha(img)


_srgb_lock = threading.Lock()
_srgb: ImageCms.ImageCmsProfile | None = None


def _srgb_profile() -> ImageCms.ImageCmsProfile:
    global _srgb
    with _srgb_lock:
        if _srgb is None:
            _srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        return _srgb


_PROFILE_SPACE = {"RGB": "RGB", "L": "GRAY", "CMYK": "CMYK", "LAB": "LAB"}


def _apply_icc(img: Image.Image, icc: bytes | None) -> Image.Image | None:
    """Convert ``img`` (RGB, L or CMYK) to sRGB through its profile; None if not possible."""
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = (profile.profile.xcolor_space or "").strip().upper()
        description = profile.profile.profile_description or ""
        if space != _PROFILE_SPACE.get(img.mode):
            return None  # a profile for another colour space says nothing about these values
        if img.mode == "RGB" and "srgb" in description.lower():
            return img  # already sRGB: a transform would only add rounding
        return ImageCms.profileToProfile(
            img,
            profile,
            _srgb_profile(),
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            outputMode="RGB",
        )
    except Exception:  # a broken profile is ignored, as browsers do
        return None


def _colour_to_rgb(img: Image.Image, icc: bytes | None, bits: int | None) -> Image.Image:
    """Bring the colour part of any Pillow mode to 8-bit sRGB ``RGB``."""
    mode = img.mode
    if mode == "1":
        img = img.convert("L")
    elif mode.startswith("I") or mode == "F":
        img = _to_8bit(img, bits)
    elif mode == "P":
        img = img.convert("RGB")
    elif mode == "LAB":
        try:
            lab = ImageCms.profileToProfile(
                img, ImageCms.createProfile("LAB"), _srgb_profile(), outputMode="RGB"
            )
        except Exception as exc:  # reported as unreadable by the caller
            raise ValueError(f"cannot convert CIE L*a*b* colour: {exc}") from exc
        if lab is None:  # only an in-place transform returns nothing
            raise ValueError("cannot convert CIE L*a*b* colour")
        return lab
    elif mode not in ("RGB", "L", "CMYK"):
        img = img.convert("RGB")  # YCbCr, RGBX, HSV...; ValueError if Pillow cannot
    converted = _apply_icc(img, icc)
    if converted is not None:
        img = converted
    return img if img.mode == "RGB" else img.convert("RGB")


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


def load_image(
    path: Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_long_side: int | None = None,
    min_side: int = 1,
    root: Path | None = None,
    follow_symlinks: bool = False,
) -> LoadedImage:
    """Decode the first frame of ``path`` into 8-bit sRGB (see the module docstring).

    With ``max_long_side`` a larger image is scaled down while loading (a JPEG is
    decoded at a reduced size straight away); a smaller one is never enlarged.
    """
    if max_long_side is not None and max_long_side < 1:
        raise ValueError("max_long_side must be at least 1")
    path = Path(path)
    source = check_path(path, root=root, follow_symlinks=follow_symlinks)
    _refuse_heif_without_decoder(path)
    with _open_regular(source, path) as fh:
        img = _open_header(fh, path, max_pixels)
        with img:
            return _decode(img, fh, path, max_pixels, max_long_side, min_side)


def _decode(
    img: Image.Image,
    fh: IO[bytes],
    path: Path,
    max_pixels: int,
    max_long_side: int | None,
    min_side: int,
) -> LoadedImage:
    width, height = img.size
    _check_size(path, width, height, max_pixels=max_pixels, min_side=min_side)
    fmt = img.format or "image"
    header_mode = img.mode
    with _bomb_warnings(max_pixels):  # counting GIF frames size-checks each one
        n_frames = _frame_count(img)
    try:
        if fmt == "PNG":
            damage = _png_damage(fh)
            if damage is not None:
                raise _fail(path, *damage)
        if (
            max_long_side is not None
            and fmt in ("JPEG", "MPO")
            and max(width, height) > max_long_side
        ):
            # libjpeg can decode at 1/2, 1/4 or 1/8 scale for almost nothing; Pillow
            # picks the strongest reduction that still leaves at least the target.
            img.draft("RGB", _target_size(width, height, max_long_side))
        img.load()
        bits = _source_bits(img)
        icc = img.info.get("icc_profile")
        oriented = _exif_transposed(img)
        swapped = oriented.size != img.size
        colour, alpha = _split_alpha(oriented)
        rgb = _colour_to_rgb(colour, icc, bits)
        if max_long_side is not None and max(rgb.size) > max_long_side:
            rgb, alpha = _downscale(rgb, alpha, _target_size(*rgb.size, max_long_side))
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_error(path, exc, max_pixels) from None
    except MemoryError:
        raise _fail(path, "too_large", "image is too large to decode (out of memory)") from None
    except Exception as exc:  # no Pillow traceback may escape
        raise _decode_error(path, exc, fmt) from exc

    if rgb is img:
        # Nothing needed converting.  Hand back a plain image rather than the plugin
        # object, which still points at a file that is about to be closed.
        rgb = img.copy()
    # The pixels are sRGB now: a stale profile or colour key must not follow them.
    rgb.info = {k: v for k, v in rgb.info.items() if k in ("exif", "dpi")}
    if alpha is not None:
        alpha.info = {}
    if swapped:
        width, height = height, width
    info = ImageInfo(width=width, height=height, format=fmt, mode=header_mode, n_frames=n_frames)
    return LoadedImage(rgb=rgb, alpha=alpha, info=info)


# --------------------------------------------------------------------------------------
# Writing


def _save_format(path: Path, format: str | None) -> str:
    if format is not None:
        name = format.upper()
        name = {"JPG": "JPEG", "TIF": "TIFF"}.get(name, name)
        if name not in set(_SAVE_FORMATS.values()):
            raise UsageError(f"{display_name(path)}: cannot write {format} images")
        return name
    found = _SAVE_FORMATS.get(path.suffix.lower())
    if found is None:
        raise UsageError(
            f"{display_name(path)}: unknown output type {path.suffix or '(no suffix)'!s}; "
            "use .jpg, .png, .webp or .tif"
        )
    return found


def save_image(
    img: Image.Image,
    path: Path,
    *,
    format: str | None = None,
    quality: int = 92,
    alpha: Image.Image | None = None,
    exif: bytes | None = None,
    icc_profile: bytes | None = None,
) -> None:
    """Write ``img`` to ``path`` atomically: readers see the old file or the whole new one.

    The format comes from the suffix unless given.  ``alpha`` is put back for PNG,
    WebP and TIFF (resized to the image when needed); JPEG has no alpha channel and
    drops it.  ``icc_profile`` must describe the pixels as they are (normally sRGB).
    Disk-full and permission problems raise the errors of :mod:`pipeline.fsutil`.
    """
    path = Path(path)
    fmt = _save_format(path, format)
    if not 1 <= quality <= 100:
        raise ValueError("quality must be between 1 and 100")

    keeps_alpha = fmt in _ALPHA_FORMATS
    if keeps_alpha and alpha is not None:
        mask = alpha if alpha.mode == "L" else alpha.convert("L")
        if mask.size != img.size:
            mask = mask.resize(img.size, Image.Resampling.LANCZOS)
        out = img.convert("RGB")
        out.putalpha(mask)
    elif img.mode in ("RGB", "L") or (keeps_alpha and img.mode in ("RGBA", "LA")):
        out = img
    else:
        out = img.convert("RGB")

    params: dict[str, object] = {}
    if fmt == "JPEG":
        # Chroma subsampling visibly smears the fine colour texture of a style;
        # at high quality settings the caller is asking for it to be kept.
        params.update(quality=quality, subsampling=0 if quality >= 90 else 2, optimize=True)
    elif fmt == "WEBP":
        params.update(quality=quality, method=4)
    elif fmt == "TIFF" and features.check_codec("libtiff"):
        params.update(compression="tiff_lzw")
    if exif:
        params["exif"] = exif
    if icc_profile:
        params["icc_profile"] = icc_profile

    with atomic_path(path) as tmp:
        out.save(tmp, format=fmt, **params)


# --------------------------------------------------------------------------------------
# Tensors


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An image as a float32 ``1x3xHxW`` tensor in [0, 1] (converted to RGB first)."""
    import torch  # deferred: probing a folder should not pay for importing torch

    rgb = img if img.mode == "RGB" else img.convert("RGB")
    arr = np.array(rgb, dtype=np.uint8, copy=True)  # writable, so torch shares no Pillow memory
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).float().div_(255.0).contiguous()


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """A ``1x3xHxW`` or ``3xHxW`` float tensor in [0, 1] as an RGB image (clamped, rounded)."""
    import torch

    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {t.shape[0]}")
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected a 3xHxW or 1x3xHxW tensor, got shape {tuple(t.shape)}")
    # Out-of-place ops only: .to() may hand back the caller's own tensor.
    data = t.detach().to(device="cpu", dtype=torch.float32)
    data = torch.nan_to_num(data, nan=0.0).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return Image.fromarray(data.permute(1, 2, 0).contiguous().numpy())
