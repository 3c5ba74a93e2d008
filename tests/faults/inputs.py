"""Builders for every odd or hostile input the fault suite feeds the tool.

Nothing here is a binary fixture: each file is made on the spot with Pillow,
numpy and a few bytes of hand-written headers, in a folder the test owns.

``GOOD`` lists inputs that must be stylized (however odd they are), ``BAD`` the
ones that must be refused, each with the category the report must give.
"""

from __future__ import annotations

import io
import os
import struct
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from support.colour import wide_gamut_profile

from pipeline.images import ALLOWED_FORMATS

HEIF_DECODER = "HEIF" in ALLOWED_FORMATS

RED = (220, 20, 20)
BLUE = (20, 20, 220)


def noisy(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random pixels: they compress badly, so half a file really is half the data."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def scene(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth picture with some structure: a disc on a gradient, light noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = ((xx - width * 0.6) ** 2 + (yy - height * 0.5) ** 2) < (min(width, height) * 0.3) ** 2
    rgb = np.stack([xx / width, yy / height, np.where(disc, 0.9, 0.2)], axis=-1) * 255
    rgb += rng.normal(0, 3, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))




# --------------------------------------------------------------------------------------
# Good inputs: odd, but each must come out stylized.


def exif_portrait(path: Path) -> None:
    """Stored landscape 60x40, EXIF orientation 6: displayed as a 40x60 portrait."""
    exif = Image.Exif()
    exif[0x0112] = 6
    scene(60, 40).save(path, "JPEG", quality=95, exif=exif.tobytes())


def icc_wide(path: Path) -> None:
    scene(40, 30, 1).save(path, "JPEG", quality=95, icc_profile=wide_gamut_profile())


def cmyk(path: Path) -> None:
    """Red ink (magenta + yellow) with a paper-white square: must come out red, not cyan."""
    img = Image.new("CMYK", (40, 30), (0, 230, 230, 0))
    img.paste((0, 0, 0, 0), (25, 5, 35, 15))
    img.save(path, "JPEG", quality=95)


def palette(path: Path) -> None:
    scene(40, 30, 3).convert("P", palette=Image.Palette.ADAPTIVE).save(path)


def palette_transparent(path: Path) -> None:
    img = Image.new("P", (40, 30), 1)
    img.putpalette([0, 0, 0, *RED, *BLUE])
    img.paste(2, (0, 0, 20, 30))
    img.save(path, transparency=2)  # the left (blue) half is transparent


def grey(path: Path) -> None:
    scene(40, 30, 4).convert("L").save(path)


def grey_alpha(path: Path) -> None:
    img = scene(40, 30, 5).convert("LA")
    img.putalpha(Image.linear_gradient("L").resize((40, 30)))
    img.save(path)


def bilevel(path: Path) -> None:
    scene(40, 30, 6).convert("1").save(path)


def ramp16(path: Path) -> None:
    """A horizontal 16-bit ramp over the whole range: dark left, bright right."""
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16)
    Image.fromarray(np.tile(ramp, (32, 1))).save(path)


def _rgba() -> Image.Image:
    img = scene(40, 30, 7).convert("RGBA")
    alpha = Image.new("L", (40, 30), 255)
    alpha.paste(0, (0, 0, 20, 30))  # the left half is fully transparent
    img.putalpha(alpha)
    return img


def rgba_png(path: Path) -> None:
    _rgba().save(path)


def rgba_webp(path: Path) -> None:
    _rgba().save(path, "WEBP", lossless=True)


def animated_gif(path: Path) -> None:
    frames = [Image.new("RGB", (40, 30), c) for c in (RED, BLUE, (20, 220, 20))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def animated_webp(path: Path) -> None:
    frames = [Image.new("RGB", (40, 30), c) for c in (RED, BLUE)]
    frames[0].save(path, "WEBP", save_all=True, append_images=frames[1:], duration=100,
                   lossless=True)


def multipage_tiff(path: Path) -> None:
    pages = [Image.new("RGB", (40, 30), c) for c in (RED, BLUE)]
    pages[0].save(path, "TIFF", save_all=True, append_images=pages[1:])


def plain_webp(path: Path) -> None:
    scene(40, 30, 8).save(path, "WEBP", quality=90)


def plain_tiff(path: Path) -> None:
    scene(40, 30, 9).save(path, "TIFF")


def plain_bmp(path: Path) -> None:
    scene(40, 30, 10).save(path, "BMP")


def large_jpeg(path: Path) -> None:
    """Far above the requested size: decoded in JPEG draft mode, then resized."""
    scene(1600, 1200, 11).save(path, "JPEG", quality=85)


def one_pixel(path: Path) -> None:
    Image.new("RGB", (1, 1), RED).save(path)


def three_pixels(path: Path) -> None:
    scene(3, 3, 12).save(path)


def plain_png(path: Path) -> None:
    scene(48, 32, 13).save(path)


def plain_jpeg(path: Path) -> None:
    scene(48, 32, 14).save(path, "JPEG", quality=92)


# --------------------------------------------------------------------------------------
# Bad inputs: each must be refused with its category, without hurting the others.


def empty(path: Path) -> None:
    path.write_bytes(b"")


def text(path: Path) -> None:
    path.write_bytes(b"just some notes about the trip\n")


def html(path: Path) -> None:
    path.write_bytes(b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n")


def svg(path: Path) -> None:
    path.write_bytes(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>\n')


def jpeg_half(path: Path) -> None:
    data = io.BytesIO()
    noisy(320, 240).save(data, "JPEG", quality=90)
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])


def _png_bytes() -> bytes:
    data = io.BytesIO()
    noisy(200, 150).save(data, "PNG")
    return data.getvalue()


def png_bad_crc(path: Path) -> None:
    data = bytearray(_png_bytes())
    at = data.index(b"IDAT")
    (length,) = struct.unpack_from(">I", data, at - 4)
    data[at + 4 + length] ^= 0xFF  # the first byte of that chunk's CRC
    path.write_bytes(bytes(data))


def png_cut(path: Path) -> None:
    data = _png_bytes()
    path.write_bytes(data[: len(data) // 2])


def png_huge_header(path: Path) -> None:
    """Declares 20000x20000 (1.2 GB of RGB): only the header exists."""
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
                     + struct.pack(">I", 1000) + b"IDAT")


def jpeg_huge_header(path: Path) -> None:
    """A real 16x16 JPEG whose frame header is rewritten to claim 20000x20000."""
    data = io.BytesIO()
    noisy(16, 16).save(data, "JPEG", quality=90)
    raw = bytearray(data.getvalue())
    at = raw.index(b"\xff\xc0")  # baseline SOF0: length(2) precision(1) height(2) width(2)
    struct.pack_into(">HH", raw, at + 5, 20000, 20000)
    path.write_bytes(bytes(raw))


def thin(path: Path) -> None:
    """1x5000: at any sensible size the short side rounds to one pixel."""
    Image.new("RGB", (1, 5000), RED).save(path)


def pcx_as_jpg(path: Path) -> None:
    """A real picture in a format Pillow reads but the tool does not accept (PCX)."""
    Image.new("RGB", (32, 24), (200, 30, 30)).save(path, format="PCX")


def heic(path: Path) -> None:
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))


def fifo(path: Path) -> None:
    os.mkfifo(path)


def folder(path: Path) -> None:
    path.mkdir()
    plain_png(path / "inside.png")


def dangling(path: Path) -> None:
    path.symlink_to(path.parent / "nowhere-to-be-found.jpg")


def loop(path: Path) -> None:
    other = path.with_name(path.stem + "-other.jpg.lnk")  # not picked up: not an image name
    path.symlink_to(other.name)
    other.symlink_to(path.name)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], None]
    category: str | None  # None: must be stylized


GOOD: tuple[Case, ...] = (
    Case("exif-portrait.jpg", exif_portrait, None),
    Case("icc-wide.jpg", icc_wide, None),
    Case("cmyk.jpg", cmyk, None),
    Case("palette.png", palette, None),
    Case("palette-transparent.png", palette_transparent, None),
    Case("grey.png", grey, None),
    Case("grey-alpha.png", grey_alpha, None),
    Case("bilevel.png", bilevel, None),
    Case("ramp16.png", ramp16, None),
    Case("rgba.png", rgba_png, None),
    Case("rgba.webp", rgba_webp, None),
    Case("animated.gif", animated_gif, None),
    Case("animated.webp", animated_webp, None),
    Case("pages.tif", multipage_tiff, None),
    Case("plain.webp", plain_webp, None),
    Case("plain.tiff", plain_tiff, None),
    Case("plain.bmp", plain_bmp, None),
    Case("large.jpg", large_jpeg, None),
    Case("one-pixel.png", one_pixel, None),
    Case("three-pixels.png", three_pixels, None),
)

#: Awkward names, all good PNGs: one output each, whatever the bytes.
NAMES: tuple[str | bytes, ...] = (
    "with some spaces.png",
    unicodedata.normalize("NFC", "café.png"),  # é as one code point
    unicodedata.normalize("NFD", "café.png"),  # e + combining acute: a different file name
    "-leading-dash.png",
    "ünïcødé 写真.png",
    b"bad-\xff\xfe-bytes.png",  # not UTF-8 at all
)

BAD: tuple[Case, ...] = (
    Case("empty.jpg", empty, "not_an_image"),
    Case("notes.jpg", text, "not_an_image"),
    Case("saved-page.png", html, "not_an_image"),
    Case("vector.jpg", svg, "not_an_image"),
    Case("half.jpg", jpeg_half, "truncated"),
    Case("bad-crc.png", png_bad_crc, "truncated"),
    Case("cut-short.png", png_cut, "truncated"),
    Case("huge-header.png", png_huge_header, "too_large"),
    Case("huge-header.jpg", jpeg_huge_header, "too_large"),
    Case("thin.png", thin, "too_small"),
    # A HEIC header with no picture behind it: refused with an install hint where no HEIF
    # decoder is installed, and as a damaged HEIF file where pillow-heif is (checked by
    # hand with pillow-heif 1.8.1: "file is damaged (its HEIF header cannot be read)").
    Case("iphone.heic", heic, "truncated" if HEIF_DECODER else "unsupported"),
    Case("pcx-named.jpg", pcx_as_jpg, "not_an_image"),
    Case("pipe.jpg", fifo, "not_a_file"),
    Case("folder.jpg", folder, "not_a_file"),
    Case("dangling.jpg", dangling, "unreadable"),
    Case("loop.jpg", loop, "unreadable"),
)


def fs_name(name: str | bytes) -> str:
    """A file name as pathlib wants it (undecodable bytes as surrogate escapes)."""
    return os.fsdecode(name)


def build_all(folder: Path, cases: tuple[Case, ...]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for case in cases:
        path = folder / case.name
        case.build(path)
        made[case.name] = path
    return made


def build_names(folder: Path) -> dict[str | bytes, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str | bytes, Path] = {}
    for i, name in enumerate(NAMES):
        path = folder / fs_name(name)
        scene(36, 24, 100 + i).save(path, "PNG")
        made[name] = path
    return made
