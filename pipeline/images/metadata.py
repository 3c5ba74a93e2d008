"""A photo's metadata: read from its file while decoding, rebuilt for every output.

Reading (:func:`read_metadata`) takes the EXIF, XMP and IPTC blocks and the dpi
from the very bytes being decoded.  Metadata never fails a photo: a block that
does not parse is left out and a short note says so (``LoadedImage.metadata_notes``).

Writing (:func:`output_metadata`) describes the *output*, under a policy:

``keep``
    Everything the photo said about itself (dates, camera, lens, exposure, GPS,
    copyright, artist...), brought up to date: the pixels are already upright, so
    Orientation is 1 (in EXIF and XMP); the pixel dimensions are the output's;
    ``Software`` names the tool and the style; ColorSpace says sRGB.  Left out:
    the embedded thumbnail and the maker note (both can hold a preview of the
    unstylized photo, which viewers would show in its place), the photo's unique
    ID (the output is another picture), and every tag describing how the photo's
    own file laid out or coloured its pixels.
``no-location``
    The same without the GPS directory and XMP's ``exif:GPS*`` properties.  Dates
    and the IPTC/XMP place names (city, country) stay: they are what people file by.
``strip``
    No EXIF, XMP or IPTC at all.

Every policy embeds an sRGB ICC profile, since that is what the pixels are, and
keeps the dpi.  A block too large for a JPEG segment (64 KiB) is left out of every
format with a note, so one photo's outputs never differ in what they carry.
"""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

from PIL import Image

from pipeline.images import exif
from pipeline.images.colour import srgb_icc
from pipeline.images.exif import ExifBlock, ExifError
from pipeline.images.model import (
    METADATA_POLICIES,
    LoadedImage,
    MetadataPolicy,
    OutputMetadata,
    PhotoMetadata,
)
from pipeline.images.xmp import edit_xmp, read_xmp

# Main-directory tags that describe the photo's file rather than the photo: how its
# pixels were stored and coloured, or blobs (XMP, IPTC, ICC) carried on their own.
_FILE_TAGS = frozenset({
    0x00FE, 0x00FF, 0x0100, 0x0101, 0x0102, 0x0103, 0x0106, 0x0107, 0x0108, 0x0109,
    0x010A, 0x0111, 0x0115, 0x0116, 0x0117, 0x0118, 0x0119, 0x011C, 0x0120, 0x0121,
    0x0122, 0x0123, 0x0124, 0x0125, 0x012D, 0x013D, 0x013E, 0x013F, 0x0140, 0x0141,
    0x0142, 0x0143, 0x0144, 0x0145, 0x014A, 0x014C, 0x014D, 0x014E, 0x0150, 0x0152,
    0x0153, 0x0154, 0x0155, 0x015B, *range(0x0200, 0x020A), 0x0211, 0x0212, 0x0214,
    0x02BC, 0x83BB, 0x8649, 0x8773, 0x935C,
})
# Exif-directory tags an output does not inherit (see the module docstring), or
# that no longer describe its pixels (gamma, the photo's compression ratio).
_NOT_INHERITED = frozenset({exif.MAKER_NOTE, exif.IMAGE_UNIQUE_ID, 0xA500, 0x9102})

_IPTC_RESOURCE = 0x0404  # Photoshop image resource holding IPTC-IIM records
_IPTC_TAG = 0x83BB  # TIFF's IPTC-NAA tag

# What one JPEG segment can carry (65533 bytes) less each block's own header.
MAX_EXIF_BYTES = 65533
MAX_XMP_BYTES = 65533 - 29
MAX_IPTC_BYTES = 65533 - 27


# -- reading -------------------------------------------------------------------------


def read_metadata(img: Image.Image, data: bytes) -> PhotoMetadata:
    """The metadata of an opened (and loaded) image whose file content is ``data``."""
    notes: list[str] = []
    found: dict[str, object] = {}
    for key, reader in (("exif", _read_exif), ("xmp", _read_xmp), ("iptc", _read_iptc)):
        try:
            found[key] = reader(img, data, notes)
        except Exception:  # metadata never fails a photo
            notes.append(f"{key.upper()} dropped: it cannot be read")
            found[key] = None
    return PhotoMetadata(
        exif=_bytes_or_none(found["exif"]),
        xmp=_bytes_or_none(found["xmp"]),
        iptc=_bytes_or_none(found["iptc"]),
        dpi=_read_dpi(img),
        notes=tuple(notes),
    )


def _bytes_or_none(value: object) -> bytes | None:
    return value if isinstance(value, bytes) and value else None


def _read_exif(img: Image.Image, data: bytes, notes: list[str]) -> bytes | None:
    if img.format == "TIFF":
        raw: object = data  # a TIFF's own main directory is its EXIF main directory
    else:
        raw = img.info.get("exif")
        hexed = img.info.get("Raw profile type exif")  # ImageMagick's PNG text chunk
        if raw is None and isinstance(hexed, str):
            raw = bytes.fromhex("".join(hexed.split("\n")[3:]))
    if not isinstance(raw, bytes) or not raw:
        return None
    try:
        block, damage = exif.parse(raw, skip=_FILE_TAGS)
    except ExifError as exc:
        notes.append(f"EXIF dropped: {exc}")
        return None
    notes.extend(damage)
    return exif.to_bytes(block) if block else None


def _read_xmp(img: Image.Image, data: bytes, notes: list[str]) -> bytes | None:
    raw = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
    if not isinstance(raw, bytes | str) or not raw:
        return None
    packet, note = read_xmp(raw)
    if note:
        notes.append(note)
    return packet


def _read_iptc(img: Image.Image, data: bytes, notes: list[str]) -> bytes | None:
    raw = _iptc_source(img)
    if not raw:
        return None
    if not _iptc_ok(raw):
        notes.append("IPTC dropped: its records are damaged")
        return None
    return raw.rstrip(b"\x00")


def _iptc_source(img: Image.Image) -> bytes | None:
    photoshop = img.info.get("photoshop")
    if isinstance(photoshop, dict):  # JPEG's APP13 resources
        found = photoshop.get(_IPTC_RESOURCE)
        return found if isinstance(found, bytes) else None
    tags = getattr(img, "tag_v2", None)
    if tags is None or _IPTC_TAG not in tags:
        return None
    value = tags[_IPTC_TAG]
    if isinstance(value, bytes):
        return value
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        # Some writers store the records as LONGs, in the file's byte order.
        order = getattr(tags, "_endian", "<")
        return b"".join(v.to_bytes(4, "little" if order == "<" else "big") for v in value)
    return None


def _iptc_ok(data: bytes) -> bool:
    """Walk the IIM datasets: each is 0x1C, record, dataset, then a sized value."""
    at, end = 0, len(data.rstrip(b"\x00"))
    while at < end:
        if data[at] != 0x1C or at + 5 > end:
            return False
        size = int.from_bytes(data[at + 3 : at + 5], "big")
        at += 5
        if size & 0x8000:  # extended: the low bits say how many bytes hold the size
            width = size & 0x7FFF
            if width > 4 or at + width > end:
                return False
            size = int.from_bytes(data[at : at + width], "big")
            at += width
        at += size
    return at == end


def _read_dpi(img: Image.Image) -> tuple[float, float] | None:
    dpi = img.info.get("dpi")
    try:
        x, y = (float(v) for v in dpi)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) and 0 < v < 100_000 for v in (x, y)):
        return None
    return x, y


# -- writing -------------------------------------------------------------------------


def output_metadata(
    source: LoadedImage | PhotoMetadata,
    *,
    policy: MetadataPolicy = "keep",
    software: str | None = None,
    size: tuple[int, int],
) -> OutputMetadata:
    """What to write with an output of ``size`` pixels made from ``source``.

    ``software`` (e.g. ``"stylize 0.1.0, style starry-night"``) replaces the photo's
    Software tag; without it the photo's is left out, since it named what made the
    photo, not the output.
    """
    if policy not in METADATA_POLICIES:
        raise ValueError(f"unknown metadata policy {policy!r}; use keep, no-location or strip")
    if min(size) < 1:
        raise ValueError(f"an output has at least one pixel a side, not {size}")
    meta = source.metadata if isinstance(source, LoadedImage) else source
    if policy == "strip":
        return OutputMetadata(icc_profile=srgb_icc(), dpi=meta.dpi)
    notes: list[str] = []
    drop_gps = policy == "no-location"
    block = _output_exif(meta, size, software, drop_gps, notes)
    xmp = edit_xmp(meta.xmp, size=size, drop_gps=drop_gps) if meta.xmp else None
    if meta.xmp and xmp is None:
        notes.append("XMP not written: it could not be updated for the output")
    return OutputMetadata(
        exif=_fitting("EXIF", block, MAX_EXIF_BYTES, notes),
        xmp=_fitting("XMP", xmp, MAX_XMP_BYTES, notes),
        iptc=_fitting("IPTC", meta.iptc, MAX_IPTC_BYTES, notes),
        icc_profile=srgb_icc(),
        dpi=meta.dpi,
        notes=tuple(notes),
    )


def _fitting(name: str, data: bytes | None, limit: int, notes: list[str]) -> bytes | None:
    if data is not None and len(data) > limit:
        notes.append(f"{name} not written: {len(data) // 1024} KiB is more than a JPEG "
                     "segment holds")
        return None
    return data


def _output_exif(meta: PhotoMetadata, size: tuple[int, int], software: str | None,
                 drop_gps: bool, notes: list[str]) -> bytes:
    block = ExifBlock()
    if meta.exif:
        try:
            block = exif.parse(meta.exif)[0]
        except ExifError as exc:  # only a hand-made PhotoMetadata can get here
            notes.append(f"EXIF dropped: {exc}")
    order = block.order
    ifd0 = exif.without(block.ifd0, _FILE_TAGS | {exif.SOFTWARE})
    ifd0 = exif.with_entry(ifd0, exif.short_entry(order, exif.ORIENTATION, 1))
    if software:
        ifd0 = exif.with_entry(ifd0, exif.ascii_entry(exif.SOFTWARE, software))
    if meta.dpi is not None:
        for tag, value in zip((exif.X_RESOLUTION, exif.Y_RESOLUTION), meta.dpi, strict=True):
            ratio = Fraction(value).limit_denominator(1000)
            ifd0 = exif.with_entry(ifd0, exif.rational_entry(order, tag, ratio.numerator,
                                                             ratio.denominator))
        ifd0 = exif.with_entry(ifd0, exif.short_entry(order, exif.RESOLUTION_UNIT, 2))
    directory = exif.without(block.exif, _NOT_INHERITED)
    if not any(e.tag == exif.EXIF_VERSION for e in directory):
        directory = exif.with_entry(directory, exif.undefined_entry(exif.EXIF_VERSION, b"0232"))
    for entry in (exif.long_entry(order, exif.PIXEL_X, size[0]),
                  exif.long_entry(order, exif.PIXEL_Y, size[1]),
                  exif.short_entry(order, exif.COLOR_SPACE, 1)):  # 1: sRGB
        directory = exif.with_entry(directory, entry)
    gps = () if drop_gps else block.gps
    return exif.to_bytes(replace(block, ifd0=ifd0, exif=directory, gps=gps))
