"""Encoding outputs: pixels, mask and metadata into JPEG, PNG, WebP or TIFF bytes.

:func:`encode_image` returns the file's bytes, for a worker that hands them to a
driver; :func:`save_image` streams the same encoding into an atomic write
(readers see the old file or the whole new one).  ``alpha`` is put back for PNG,
WebP and TIFF; JPEG cannot store it and the mask is dropped.  The metadata
(:class:`~pipeline.images.OutputMetadata`) goes where each format keeps it:

=======  =====================  ======================  ==========  ================
format   EXIF                   XMP                     IPTC        ICC profile, dpi
=======  =====================  ======================  ==========  ================
JPEG     APP1                   APP1 (Adobe XMP)        APP13       APP2, JFIF
PNG      eXIf chunk             iTXt XML:com.adobe.xmp  (none)      iCCP, pHYs
WebP     EXIF chunk             XMP chunk               (none)      ICCP, (EXIF)
TIFF     main directory tags    tag 700                 tag 33723   tag 34675, tags
=======  =====================  ======================  ==========  ================

PNG and WebP have no place for IPTC records; the IPTC core fields of a modern
photo are in its XMP as well, which both carry.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import IO, Any

from PIL import Image, ImageFile, PngImagePlugin, features

from pipeline.config.naming import display_name
from pipeline.errors import UsageError
from pipeline.images import exif
from pipeline.images.model import OutputMetadata
from pipeline.store.fsutil import atomic_path

_FORMAT_NAMES = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "webp": "WEBP",
                 "tiff": "TIFF", "tif": "TIFF"}
_SUFFIX_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP",
                   ".tif": "TIFF", ".tiff": "TIFF"}
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})

_XMP_TAG, _IPTC_TAG = 700, 0x83BB


def _format_name(fmt: str) -> str | None:
    return _FORMAT_NAMES.get(fmt.lower())


def encode_image(
    img: Image.Image,
    fmt: str,
    *,
    quality: int = 92,
    alpha: Image.Image | None = None,
    metadata: OutputMetadata | None = None,
) -> bytes:
    """``img`` as the bytes of a ``fmt`` file (jpeg, png, webp or tiff)."""
    name = _format_name(fmt)
    if name is None:
        raise UsageError(f"cannot write {fmt} images; use jpeg, png, webp or tiff")
    buffer = io.BytesIO()
    _write(img, buffer, name, quality=quality, alpha=alpha, metadata=metadata)
    return buffer.getvalue()


def _save_format(path: Path, format: str | None) -> str:
    if format is not None:
        name = _format_name(format)
        if name is None:
            raise UsageError(f"{display_name(path)}: cannot write {format} images")
        return name
    found = _SUFFIX_FORMATS.get(path.suffix.lower())
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
    metadata: OutputMetadata | None = None,
) -> None:
    """Write ``img`` to ``path`` atomically, encoded as :func:`encode_image` does.

    The format comes from the suffix unless given.  ``exif`` and ``icc_profile`` are
    the older way to pass what ``metadata`` holds; ``icc_profile`` must describe the
    pixels as they are (normally sRGB).  Disk-full and permission problems raise the
    errors of :mod:`pipeline.store.fsutil`.
    """
    path = Path(path)
    fmt = _save_format(path, format)
    if not 1 <= quality <= 100:
        raise ValueError("quality must be between 1 and 100")
    if exif or icc_profile:
        if metadata is not None:
            raise ValueError("pass metadata, or exif and icc_profile, not both")
        metadata = OutputMetadata(exif=exif or None, icc_profile=icc_profile or None)
    # Streamed into the temporary file: an output is never held twice in memory, and
    # a write that fails (a full disk) fails inside the atomic write, which cleans up.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        _write(img, fh, fmt, quality=quality, alpha=alpha, metadata=metadata)


def _write(img: Image.Image, fh: IO[bytes], fmt: str, *, quality: int,
           alpha: Image.Image | None, metadata: OutputMetadata | None) -> None:
    if not 1 <= quality <= 100:
        raise ValueError("quality must be between 1 and 100")
    out = _with_alpha(img, alpha, fmt in _ALPHA_FORMATS)
    params = _format_params(fmt, quality)
    if metadata is not None:
        params.update(_metadata_params(fmt, metadata))
    if fmt == "TIFF" and metadata is not None and (metadata.exif or metadata.xmp or metadata.iptc):
        buffer = io.BytesIO()
        out.save(buffer, format=fmt, **params)
        fh.write(_tiff_with_metadata(buffer.getvalue(), metadata))
    elif fmt == "JPEG" and params.get("optimize"):
        fh.write(_optimized_jpeg(out, params))
    else:
        out.save(fh, format=fmt, **params)


def _optimized_jpeg(img: Image.Image, params: dict[str, Any]) -> bytes:
    """The JPEG with optimized Huffman tables when it fits Pillow's encoder buffer, else the
    same JPEG with the standard tables.

    With ``optimize`` libjpeg writes the whole file in one go into a buffer Pillow sizes
    from the picture's area (``w × h`` bytes, twice that at quality 95 or more, at least
    64 KiB), and fails ("Suspension not allowed here") when the file is larger: small
    pictures of fine texture at high quality, thin strips.  The plain encoding streams and
    always works, and an optimized file is never larger than it, so the plain file's size
    tells beforehand whether the optimized one fits.  Deterministic: the same picture and
    settings always take the same branch.
    """
    plain = io.BytesIO()
    img.save(plain, format="JPEG", **{**params, "optimize": False})
    width, height = img.size
    room = max(ImageFile.MAXBLOCK, width * 4,
               width * height * (2 if params.get("quality", 75) >= 95 else 1))
    if plain.tell() > room * 0.9:
        return plain.getvalue()
    optimized = io.BytesIO()
    img.save(optimized, format="JPEG", **params)
    return optimized.getvalue()


def _with_alpha(img: Image.Image, alpha: Image.Image | None, keeps_alpha: bool) -> Image.Image:
    if keeps_alpha and alpha is not None:
        mask = alpha if alpha.mode == "L" else alpha.convert("L")
        if mask.size != img.size:
            mask = mask.resize(img.size, Image.Resampling.LANCZOS)
        out = img.convert("RGB")
        out.putalpha(mask)
        return out
    if img.mode in ("RGB", "L") or (keeps_alpha and img.mode in ("RGBA", "LA")):
        return img
    return img.convert("RGB")


def _format_params(fmt: str, quality: int) -> dict[str, Any]:
    if fmt == "JPEG":
        # Chroma subsampling visibly smears the fine colour texture of a style;
        # at high quality settings the caller is asking for it to be kept.
        return {"quality": quality, "subsampling": 0 if quality >= 90 else 2, "optimize": True}
    if fmt == "WEBP":
        return {"quality": quality, "method": 4}
    if fmt == "TIFF" and features.check_codec("libtiff"):
        return {"compression": "tiff_lzw"}
    return {}


def _metadata_params(fmt: str, meta: OutputMetadata) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if meta.icc_profile:
        params["icc_profile"] = meta.icc_profile
    if meta.dpi is not None and fmt != "WEBP":  # WebP keeps dpi only in its EXIF
        params["dpi"] = meta.dpi
    if fmt == "TIFF":
        return params  # the rest is added to the written file (see _tiff_with_metadata)
    if meta.exif:
        params["exif"] = meta.exif
    if fmt == "PNG":
        if meta.xmp:
            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", meta.xmp.decode("utf-8"))
            params["pnginfo"] = info
        return params
    if meta.xmp:
        params["xmp"] = meta.xmp
    if fmt == "JPEG" and meta.iptc:
        params["extra"] = _app13(meta.iptc)
    return params


def _tiff_with_metadata(tiff: bytes, meta: OutputMetadata) -> bytes:
    """EXIF, XMP and IPTC as tags of a written TIFF's own main directory."""
    block = exif.parse(meta.exif)[0] if meta.exif else exif.ExifBlock()
    extra = []
    if meta.xmp:
        extra.append(exif.Entry(_XMP_TAG, exif.BYTE, len(meta.xmp), meta.xmp))
    if meta.iptc:
        extra.append(exif.undefined_entry(_IPTC_TAG, meta.iptc))
    return exif.add_to_tiff(tiff, block, tuple(extra))


def _app13(iptc: bytes) -> bytes:
    """A JPEG APP13 segment holding IPTC records as Photoshop image resource 0x0404."""
    padded = iptc + b"\x00" * (len(iptc) % 2)
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iptc))
    payload = b"Photoshop 3.0\x00" + resource + padded
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload
