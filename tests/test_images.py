"""Tests for pipeline.images: every input is built here, in tmp_path, with Pillow and numpy."""

from __future__ import annotations

import errno
import functools
import io
import os
import struct
import time
import unicodedata
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageFile, JpegImagePlugin
from support.colour import wide_gamut_profile

from pipeline import images
from pipeline.errors import DiskFullError, InputError, UsageError
from pipeline.images import (
    ImageInfo,
    check_path,
    decode_photo,
    display_name,
    encode_image,
    load_image,
    pil_to_tensor,
    probe,
    read_photo,
    save_image,
    tensor_to_pil,
)
from pipeline.images.paths import open_regular
from pipeline.store.fsutil import TEMP_PREFIX

pytestmark = pytest.mark.timeout(10)

RED = (220, 20, 20)
BLUE = (20, 20, 220)


# --------------------------------------------------------------------------------------
# Helpers


def noisy(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random pixels: they compress badly, so half a file really is half the data."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def rgb_at(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = img.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def level_at(img: Image.Image, xy: tuple[int, int]) -> int:
    value = img.getpixel(xy)
    assert isinstance(value, int)
    return value


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def expect_error(category: str, call: Callable[[], object], path: Path) -> InputError:
    """Run ``call``, check it fails as ``category`` with a proper one-line message."""
    with pytest.raises(InputError) as caught:
        call()
    err = caught.value
    assert err.category == category, err.message
    message = err.message
    assert "\n" not in message and "\r" not in message
    assert message.startswith(display_name(path) + ": "), message
    message.encode("utf-8")  # must not raise, whatever bytes the file name held
    assert "Traceback" not in message
    return err




# --------------------------------------------------------------------------------------
# Orientation, modes and colour


def test_exif_orientation_6_gives_portrait(tmp_path: Path) -> None:
    img = Image.new("RGB", (400, 300), BLUE)
    img.paste(RED, (0, 0, 40, 40))  # marks the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    img.save(path, quality=95, exif=exif.tobytes())

    info = probe(path)
    assert (info.width, info.height) == (300, 400)
    loaded = load_image(path)
    assert loaded.rgb.size == (300, 400)
    assert (loaded.info.width, loaded.info.height) == (300, 400)
    # Rotating clockwise carries the top-left corner to the top-right.
    r, g, b = rgb_at(loaded.rgb, (300 - 10, 10))
    assert r > 150 and b < 100
    assert loaded.rgb.getexif().get(0x0112, 1) == 1  # the rotation is not applied twice


def test_plain_rgb_comes_back_detached_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 6), RED).save(path)
    rgb = load_image(path).rgb
    assert type(rgb) is Image.Image  # not the plugin object holding the closed file
    assert rgb.getpixel((7, 5)) == RED


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(path, quality=95)  # pure red ink
    assert probe(path).mode == "CMYK"
    loaded = load_image(path)
    assert loaded.rgb.mode == "RGB" and loaded.alpha is None
    r, g, b = rgb_at(loaded.rgb, (10, 10))
    assert r > 200 and g < 50 and b < 50


def test_palette_without_transparency(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    Image.new("RGB", (32, 32), RED).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    loaded = load_image(path)
    assert loaded.info.mode == "P"
    assert loaded.rgb.mode == "RGB" and loaded.alpha is None
    assert loaded.rgb.getpixel((5, 5)) == RED


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (32, 32), 1)
    img.putpalette([0, 0, 0] + list(RED) + list(BLUE))
    img.paste(2, (0, 0, 16, 32))
    path = tmp_path / "sticker.png"
    img.save(path, transparency=2)  # palette index 2 (the blue half) is transparent
    loaded = load_image(path)
    assert loaded.rgb.mode == "RGB"
    assert loaded.alpha is not None and loaded.alpha.mode == "L"
    assert loaded.alpha.getpixel((4, 4)) == 0
    assert loaded.alpha.getpixel((28, 4)) == 255
    assert loaded.rgb.getpixel((28, 4)) == RED


@pytest.mark.parametrize(
    ("mode", "colour", "has_alpha"),
    [("L", 128, False), ("LA", (128, 100), True), ("1", 1, False)],
)
def test_grey_modes(
    tmp_path: Path, mode: str, colour: int | tuple[int, int], has_alpha: bool
) -> None:
    path = tmp_path / f"grey-{mode}.png"
    Image.new(mode, (20, 10), colour).save(path)
    loaded = load_image(path)
    assert loaded.rgb.mode == "RGB" and loaded.rgb.size == (20, 10)
    r, g, b = rgb_at(loaded.rgb, (3, 3))
    assert r == g == b
    assert r == (255 if mode == "1" else 128)
    if has_alpha:
        assert loaded.alpha is not None and loaded.alpha.getpixel((3, 3)) == 100
    else:
        assert loaded.alpha is None


def test_16_bit_ramp_keeps_its_gradient(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 1024).round().astype(np.uint16)
    path = tmp_path / "ramp16.png"
    Image.fromarray(np.tile(ramp, (8, 1))).save(path)
    assert probe(path).mode.startswith("I;16")
    row = np.asarray(load_image(path).rgb)[4, :, 0].astype(int)
    assert np.all(np.diff(row) >= 0), "gradient must stay monotonic"
    assert row[0] <= 1 and row[-1] >= 254, "the full 16-bit range maps onto 0..255"
    assert len(np.unique(row)) >= 250, "no clipping: nearly every 8-bit level appears"


def test_float_tiff_scaled_to_8_bit(tmp_path: Path) -> None:
    data = np.tile(np.linspace(0.0, 1.0, 256, dtype=np.float32), (4, 1))
    path = tmp_path / "float.tif"
    Image.fromarray(data).save(path)
    row = np.asarray(load_image(path).rgb)[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) >= 0)


def test_rgba_alpha_survives_load_and_png_save_and_is_dropped_by_jpeg(tmp_path: Path) -> None:
    arr = np.zeros((40, 60, 4), dtype=np.uint8)
    arr[..., 0] = 200
    arr[..., 3] = np.linspace(0, 255, 60).astype(np.uint8)
    src = tmp_path / "logo.png"
    Image.fromarray(arr).save(src)

    loaded = load_image(src)
    assert loaded.rgb.mode == "RGB"
    assert loaded.alpha is not None and loaded.alpha.mode == "L"
    assert np.array_equal(np.asarray(loaded.alpha), arr[..., 3])

    as_png = tmp_path / "out.png"
    save_image(loaded.rgb, as_png, alpha=loaded.alpha)
    with Image.open(as_png) as back:
        assert back.mode == "RGBA"
        assert np.array_equal(np.asarray(back)[..., 3], arr[..., 3])

    as_jpeg = tmp_path / "out.jpg"
    save_image(loaded.rgb, as_jpeg, alpha=loaded.alpha)
    with Image.open(as_jpeg) as back:
        assert back.format == "JPEG" and back.mode == "RGB"


@pytest.mark.parametrize("suffix", [".webp", ".tif"])
def test_alpha_formats_keep_a_resized_mask(tmp_path: Path, suffix: str) -> None:
    mask = Image.new("L", (10, 5), 0)
    mask.paste(255, (5, 0, 10, 5))
    out = tmp_path / f"out{suffix}"
    save_image(Image.new("RGB", (40, 20), RED), out, alpha=mask)
    with Image.open(out) as back:
        assert back.mode == "RGBA" and back.size == (40, 20)
        alpha = back.getchannel("A")
        assert level_at(alpha, (2, 10)) < 10 and level_at(alpha, (38, 10)) > 245


def test_non_srgb_icc_profile_is_converted(tmp_path: Path) -> None:
    profile = wide_gamut_profile()
    img = Image.new("RGB", (20, 10), (200, 60, 60))
    img.paste((128, 128, 128), (10, 0, 20, 10))
    path = tmp_path / "adobe.jpg"
    img.save(path, quality=100, subsampling=0, icc_profile=profile)

    rgb = load_image(path).rgb
    assert "icc_profile" not in rgb.info, "the pixels are sRGB now; the old tag must go"
    red = np.array(rgb.getpixel((3, 5)), dtype=int)
    assert np.abs(red - np.array([200, 60, 60])).max() >= 10, "colour was not converted"
    assert red[0] > red[1], "still a red"
    grey = np.array(rgb.getpixel((15, 5)), dtype=int)
    assert np.ptp(grey) <= 3 and abs(int(grey.mean()) - 128) <= 4, "neutrals stay neutral"


def test_srgb_and_broken_profiles_leave_colours_alone(tmp_path: Path) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for name, profile in (("srgb.png", srgb), ("broken.png", b"not an ICC profile at all")):
        path = tmp_path / name
        Image.new("RGB", (8, 8), (200, 60, 60)).save(path, icc_profile=profile)
        assert load_image(path).rgb.getpixel((1, 1)) == (200, 60, 60)


def test_animated_gif_gives_the_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (30, 20), colour) for colour in (RED, BLUE, (20, 220, 20))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    info = probe(path)
    assert info.n_frames == 3 and info.format == "GIF"
    r, g, b = rgb_at(load_image(path).rgb, (5, 5))
    assert r > 150 and b < 100


def test_multipage_tiff_gives_the_first_page(tmp_path: Path) -> None:
    pages = [Image.new("RGB", (30, 20), RED), Image.new("RGB", (50, 40), BLUE)]
    path = tmp_path / "scan.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    assert probe(path).n_frames == 2
    loaded = load_image(path)
    assert loaded.rgb.size == (30, 20) and loaded.rgb.getpixel((5, 5)) == RED


# --------------------------------------------------------------------------------------
# Sizes: draft, downscale, limits


def test_large_jpeg_is_drafted_then_resized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), (90, 140, 200)).save(path, quality=85)
    calls: list[tuple[tuple[int, int], tuple[int, int]]] = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(
        self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None
    ) -> object:
        result = real_draft(self, mode, size)
        calls.append((size or (0, 0), self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    loaded = load_image(path, max_long_side=500)
    assert loaded.rgb.size == (500, 375)
    assert (loaded.info.width, loaded.info.height) == (4000, 3000)
    assert len(calls) == 1
    requested, decoded = calls[0]
    assert requested == (500, 375)
    assert decoded[0] >= 500 and decoded[0] < 1000, "draft picks the smallest big-enough scale"


def test_downscale_other_formats_and_never_upscale(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    arr = np.zeros((500, 1000, 4), dtype=np.uint8)
    arr[..., 1] = 200
    arr[..., 3] = 255
    arr[:, :500, 3] = 0
    Image.fromarray(arr).save(path)
    loaded = load_image(path, max_long_side=100)
    assert loaded.rgb.size == (100, 50)
    assert loaded.alpha is not None and loaded.alpha.size == (100, 50)
    assert loaded.alpha.getpixel((10, 25)) == 0 and loaded.alpha.getpixel((90, 25)) == 255
    assert load_image(path, max_long_side=5000).rgb.size == (1000, 500)


@pytest.mark.parametrize("then", [b"", struct.pack(">I", 1000) + b"IDAT"])
def test_header_declaring_20000_squared_is_refused_fast(tmp_path: Path, then: bytes) -> None:
    # Only the header (and, in the second case, the start of an IDAT chunk): a real
    # decode would need 1.2 GB, refusing must not even start one.
    path = tmp_path / "bomb.png"
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + then)
    limit_before = Image.MAX_IMAGE_PIXELS
    for call in (lambda: probe(path), lambda: load_image(path)):
        start = time.perf_counter()
        expect_error("too_large", call, path)
        assert time.perf_counter() - start < 1.0
    assert limit_before == Image.MAX_IMAGE_PIXELS


def test_max_pixels_is_the_callers_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "medium.png"
    Image.new("RGB", (150, 100), RED).save(path)
    expect_error("too_large", lambda: probe(path, max_pixels=10_000), path)
    expect_error("too_large", lambda: load_image(path, max_pixels=10_000), path)
    # Between Pillow's limit and twice it, Pillow only warns: the caller's limit rules,
    # and nothing is printed.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path, max_pixels=20_000).rgb.size == (150, 100)
        expect_error("too_large", lambda: load_image(path, max_pixels=5_000), path)


@pytest.mark.parametrize("size", [(1, 1), (1, 5000)])
def test_too_small(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / f"tiny-{size[0]}x{size[1]}.png"
    Image.new("RGB", size, RED).save(path)
    expect_error("too_small", lambda: load_image(path, min_side=3), path)
    assert load_image(path).rgb.size == size  # the default minimum is one pixel


# --------------------------------------------------------------------------------------
# Files that are not images, or not whole


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    expect_error("not_an_image", lambda: load_image(path), path)
    expect_error("not_an_image", lambda: probe(path), path)


@pytest.mark.parametrize(
    ("content", "word"),
    [
        (b"just some notes about the trip\n", "text"),
        (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "HTML"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
    ],
    ids=["text", "html", "svg"],
)
def test_non_images_named_jpg(tmp_path: Path, content: bytes, word: str) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    err = expect_error("not_an_image", lambda: load_image(path), path)
    assert word in err.message
    expect_error("not_an_image", lambda: probe(path), path)


def test_jpeg_truncated_halfway(tmp_path: Path) -> None:
    data = io.BytesIO()
    noisy(320, 240).save(data, "JPEG", quality=90)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    err = expect_error("truncated", lambda: load_image(path), path)
    assert err.message == "photo.jpg: file is truncated (JPEG data ends early)"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def _png_bytes() -> bytes:
    data = io.BytesIO()
    noisy(200, 150).save(data, "PNG")
    return data.getvalue()


@pytest.mark.parametrize("cut", [20, 100, 0.5])
def test_png_cut_short(tmp_path: Path, cut: float) -> None:
    data = _png_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: int(cut * len(data)) if cut < 1 else int(cut)])
    expect_error("truncated", lambda: load_image(path), path)


def test_png_with_bad_idat_crc(tmp_path: Path) -> None:
    data = bytearray(_png_bytes())
    at = data.index(b"IDAT")
    (length,) = struct.unpack_from(">I", data, at - 4)
    data[at + 4 + length] ^= 0xFF  # first byte of that chunk's CRC
    path = tmp_path / "crc.png"
    path.write_bytes(bytes(data))
    err = expect_error("truncated", lambda: load_image(path), path)
    assert "checksum" in err.message


def test_png_with_bad_header_crc(tmp_path: Path) -> None:
    data = bytearray(_png_bytes())
    data[29] ^= 0xFF  # inside IHDR's CRC
    path = tmp_path / "header.png"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as caught:
        load_image(path)
    assert caught.value.category in ("truncated", "unreadable")
    assert caught.value.message.startswith("header.png: ")


@pytest.mark.parametrize("fmt", ["PCX", "TGA"])
def test_a_format_outside_the_list_is_refused_even_though_pillow_reads_it(
        tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "picture.jpg"
    Image.new("RGB", (32, 24), RED).save(path, format=fmt)
    with Image.open(path) as img:  # unrestricted, Pillow would decode it
        assert img.format == fmt
    for call in (functools.partial(load_image, path), functools.partial(probe, path)):
        err = expect_error("not_an_image", call, path)
        assert "not an image in a supported format" in err.message


def test_heic_without_decoder(tmp_path: Path) -> None:
    if "HEIF" in images.ALLOWED_FORMATS:
        pytest.skip("pillow-heif is installed here")
    brand = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    for name in ("IMG_0001.HEIC", "exported.jpg"):
        path = tmp_path / name
        path.write_bytes(brand)
        err = expect_error("unsupported", functools.partial(load_image, path), path)
        assert 'pip install "stylize-photos[heif]"' in err.message


# --------------------------------------------------------------------------------------
# Paths


def test_directory_named_like_an_image(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    path.mkdir()
    expect_error("not_a_file", lambda: load_image(path), path)
    expect_error("not_a_file", lambda: probe(path), path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.timeout(5)
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    os.mkfifo(path)
    expect_error("not_a_file", lambda: load_image(path), path)
    expect_error("not_a_file", lambda: probe(path), path)


def test_fifo_swapped_in_after_the_check_does_not_block(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("needs FIFOs")
    path = tmp_path / "race.jpg"
    os.mkfifo(path)
    # Simulates the race the second check exists for: the stat said "file", then a
    # FIFO took its place before the open.
    with pytest.raises(InputError) as caught, open_regular(path, path):
        pass
    assert caught.value.category == "not_a_file"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.jpg"
    err = expect_error("unreadable", lambda: load_image(path), path)
    assert "not found" in err.message


def test_dangling_symlink(tmp_path: Path) -> None:
    path = tmp_path / "link.jpg"
    path.symlink_to(tmp_path / "nowhere.jpg")
    err = expect_error("unreadable", lambda: load_image(path), path)
    assert "broken symbolic link" in err.message


def test_symlink_loop(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.symlink_to(b)
    b.symlink_to(a)
    err = expect_error("unreadable", lambda: load_image(a), a)
    assert "loop" in err.message


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads anyway")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(path)
    path.chmod(0)
    try:
        expect_error("permission", lambda: load_image(path), path)
    finally:
        path.chmod(0o644)


def test_permission_mapping_even_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root passes every access check, so the mapping is also exercised by stubbing
    # the one call that answers "may I read this?".
    path = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(path)
    monkeypatch.setattr(os, "access", lambda *_args, **_kwargs: False)
    expect_error("permission", lambda: check_path(path), path)


def test_symlinks_and_the_input_root(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    root.mkdir()
    outside = tmp_path / "elsewhere.png"
    Image.new("RGB", (8, 8), RED).save(outside)
    inside = root / "real.png"
    Image.new("RGB", (8, 8), BLUE).save(inside)

    escaping = root / "escape.png"
    escaping.symlink_to(outside)
    expect_error("outside_input", lambda: load_image(escaping, root=root), escaping)
    loaded = load_image(escaping, root=root, follow_symlinks=True)
    assert loaded.rgb.getpixel((1, 1)) == RED

    linked_dir = root / "linked"
    linked_dir.symlink_to(tmp_path)  # a folder link leading out of the root
    through_dir = linked_dir / "elsewhere.png"
    expect_error("outside_input", lambda: check_path(through_dir, root=root), through_dir)

    local = root / "local.png"
    local.symlink_to(inside)  # staying inside the root is always fine
    assert check_path(local, root=root) == inside.resolve()
    assert check_path(inside, root=root) == inside.resolve()

    # A path that was never under the root is not a symlink question at all.
    expect_error(
        "outside_input", lambda: check_path(outside, root=root, follow_symlinks=True), outside
    )


@pytest.mark.parametrize(
    "name",
    [
        "holiday photo 1.png",
        unicodedata.normalize("NFC", "café-Ünïcødé.png"),
        unicodedata.normalize("NFD", "café-Ünïcødé.png"),
        "-rf.png",
        os.fsdecode(b"caf\xe9.png"),
    ],
)
def test_awkward_names_load(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    Image.new("RGB", (6, 4), RED).save(path, format="PNG")
    assert load_image(path).rgb.getpixel((1, 1)) == RED
    assert probe(path) == ImageInfo(width=6, height=4, format="PNG", mode="RGB", n_frames=1)


def test_undecodable_name_in_a_message(tmp_path: Path) -> None:
    path = tmp_path / os.fsdecode(b"caf\xe9.png")
    path.touch()
    err = expect_error("not_an_image", lambda: load_image(path), path)
    assert err.message.startswith("caf\\xe9.png: ")
    assert display_name(tmp_path / "new\nline.png") == "new\\nline.png"


def test_probe_reads_the_header_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8
    paths = []
    for name, fmt in (("h.jpg", "JPEG"), ("h.png", "PNG")):
        paths.append(tmp_path / name)
        noisy(40, 30).save(paths[-1], format=fmt, exif=exif.tobytes())
    loads: list[object] = []
    real_load = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> object:
        loads.append(self)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    for path in paths:
        info = probe(path)
        assert (info.width, info.height) == (30, 40)
    assert loads == []


# --------------------------------------------------------------------------------------
# Bytes in, bytes out


def test_load_image_is_read_photo_then_decode_photo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.images import decode as decode_module

    path = tmp_path / "photo.png"
    Image.new("RGB", (12, 8), RED).save(path)
    calls: list[tuple[str, object]] = []
    real_read, real_decode = decode_module.read_photo, decode_module.decode_photo

    def read_spy(p: Path, **kwargs: object) -> bytes:
        calls.append(("read", p))
        return real_read(p, **kwargs)  # type: ignore[arg-type]

    def decode_spy(data: bytes, name: str, **kwargs: object) -> object:
        calls.append(("decode", name))
        return real_decode(data, name, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(decode_module, "read_photo", read_spy)
    monkeypatch.setattr(decode_module, "decode_photo", decode_spy)
    loaded = load_image(path, max_long_side=6)
    assert calls == [("read", path), ("decode", "photo.png")]
    assert loaded.rgb.size == (6, 4)


def test_decode_photo_matches_load_image(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    noisy(64, 48).save(path, quality=90, exif=exif.tobytes())
    from_disk = load_image(path, max_long_side=32)
    from_bytes = decode_photo(read_photo(path), path.name, max_long_side=32)
    assert from_bytes.info == from_disk.info
    assert np.array_equal(np.asarray(from_bytes.rgb), np.asarray(from_disk.rgb))
    assert from_bytes.rgb.size == (24, 32)


def test_decode_photo_refuses_with_the_given_name() -> None:
    err = expect_error("not_an_image", lambda: decode_photo(b"", "empty.jpg"), Path("empty.jpg"))
    assert "empty" in err.message
    err = expect_error("not_an_image", lambda: decode_photo(b"notes\n", "a.png"), Path("a.png"))
    assert "text" in err.message
    with pytest.raises(ValueError):
        decode_photo(b"x", "a.png", max_long_side=0)
    if "HEIF" not in images.ALLOWED_FORMATS:
        expect_error("unsupported", lambda: decode_photo(b"x" * 64, "IMG_1.HEIC"),
                     Path("IMG_1.HEIC"))


def test_read_photo_checks_like_check_path_and_bounds_the_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.png"
    noisy(32, 32).save(path)
    data = path.read_bytes()
    assert read_photo(path) == data
    assert read_photo(path, max_bytes=len(data)) == data, "exactly the limit is fine"
    err = expect_error("too_large", lambda: read_photo(path, max_bytes=len(data) - 1), path)
    assert "limit" in err.message
    folder = tmp_path / "x.jpg"
    folder.mkdir()
    expect_error("not_a_file", lambda: read_photo(folder), folder)
    expect_error("unreadable", lambda: read_photo(tmp_path / "gone.jpg"), tmp_path / "gone.jpg")

    # A file that grows after its size was taken is stopped at the limit while read.
    real_stat, real_fstat = os.stat, os.fstat

    def small(st: os.stat_result) -> os.stat_result:
        return os.stat_result((st.st_mode, *st[1:6], 1, *st[7:]))

    monkeypatch.setattr(os, "stat", lambda *a, **k: small(real_stat(*a, **k)))
    monkeypatch.setattr(os, "fstat", lambda fd: small(real_fstat(fd)))
    err = expect_error("too_large", lambda: read_photo(path, max_bytes=100), path)
    assert "grew" in err.message


def test_encode_image_matches_save_image(tmp_path: Path) -> None:
    img = noisy(20, 10)
    for fmt, suffix in (("jpeg", ".jpg"), ("png", ".png"), ("webp", ".webp"), ("tiff", ".tif")):
        save_image(img, tmp_path / f"out{suffix}", quality=80)
        assert encode_image(img, fmt, quality=80) == (tmp_path / f"out{suffix}").read_bytes()
    with pytest.raises(UsageError):
        encode_image(img, "gif")


# --------------------------------------------------------------------------------------
# Saving and tensors


def test_save_is_atomic_when_the_disk_fills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "result.png"
    path.write_bytes(b"previous result")

    def full_disk(im: Image.Image, fp: io.BufferedWriter, filename: str | bytes) -> None:
        fp.write(b"\x89PNG\r\n\x1a\n half of an image")
        raise OSError(errno.ENOSPC, "No space left on device")

    Image.init()
    monkeypatch.setitem(Image.SAVE, "PNG", full_disk)
    with pytest.raises(DiskFullError):
        save_image(Image.new("RGB", (16, 16), RED), path)
    assert path.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)] == []


def test_save_jpeg_settings_and_replace(tmp_path: Path) -> None:
    path = tmp_path / "out.jpeg"
    path.write_bytes(b"old")
    save_image(noisy(64, 64), path, quality=95)
    with Image.open(path) as back:
        assert back.format == "JPEG"
        assert JpegImagePlugin.get_sampling(back) == 0  # 4:4:4 at high quality
    save_image(noisy(64, 64), path, quality=70)
    with Image.open(path) as back:
        assert JpegImagePlugin.get_sampling(back) == 2  # 4:2:0 below 90


def test_tensor_round_trip() -> None:
    img = noisy(7, 5)
    t = pil_to_tensor(img)
    assert t.shape == (1, 3, 5, 7) and t.dtype == torch.float32
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    assert np.array_equal(np.asarray(tensor_to_pil(t)), np.asarray(img))
    assert np.array_equal(np.asarray(tensor_to_pil(t[0])), np.asarray(img))

    wild = torch.tensor([[[-1.0, 0.5, 2.0]]]).expand(3, 1, 3)
    before = wild.clone()
    out = tensor_to_pil(wild)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((1, 0)) == (128, 128, 128) and out.getpixel((2, 0)) == (255, 255, 255)
    assert torch.equal(wild, before), "the caller's tensor is not clamped in place"
