"""Which formats a file may be opened as, and what a file's first bytes say it is.

Only the formats in :data:`ALLOWED_FORMATS` are tried when a file is opened, so a
file is never handed to an obscure Pillow plugin because of a lucky magic number.
HEIF is added when the optional ``pillow-heif`` package is installed (its opener
is registered on first use, not at import); AVIF is added when Pillow itself was
built with AVIF support or ``pillow-heif`` provides it.
"""

from __future__ import annotations

import importlib
import importlib.util
import struct
import threading
from pathlib import PurePath
from typing import IO

from PIL import Image, features

from pipeline import DISTRIBUTION
from pipeline.images.failures import Shown, fail

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
HEIF_HINT = f'install the optional HEIF support with: pip install "{DISTRIBUTION}[heif]"'

# ISO base media "ftyp" brands of HEIF stills and sequences, and of AVIF.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})

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


def open_formats() -> list[str]:
    """The Pillow format names to offer ``Image.open``."""
    _register_heif()
    # Image.open raises KeyError for a format no plugin registered (an optional
    # decoder missing from this Pillow build), so offer only those that exist.
    if any(f not in Image.OPEN for f in ALLOWED_FORMATS):
        Image.init()
    return sorted(f for f in ALLOWED_FORMATS if f in Image.OPEN)


def refuse_heif_without_decoder(name: Shown) -> None:
    """Refuse a HEIF-family name up front, with an install hint, when nothing decodes it."""
    suffix = PurePath(name).suffix.lower()
    if suffix not in HEIF_EXTENSIONS:
        return
    if ("AVIF" if suffix in _AVIF_EXTENSIONS else "HEIF") in ALLOWED_FORMATS:
        return
    kind = suffix.lstrip(".").upper()
    raise fail(name, "unsupported", f"{kind} images need an extra decoder; {HEIF_HINT}")


def sniff(fh: IO[bytes]) -> tuple[str | None, bytes]:
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
