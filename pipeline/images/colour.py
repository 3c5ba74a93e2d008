"""Any Pillow mode to 8-bit sRGB, with transparency split off as a mask.

* **Colour.**  An embedded ICC profile that is not sRGB is converted to sRGB with
  LittleCMS; a profile that cannot be parsed or applied is ignored, not fatal.
  CMYK (Adobe's inverted JPEG flavour included, which Pillow already un-inverts),
  palette, grey, 1-bit, YCbCr and CIE L*a*b* sources all end up as ``RGB``.
* **Alpha.**  When the source has transparency (RGBA, LA, PA, a palette or a grey/RGB
  image with a transparent colour key) the mask is returned separately as mode
  ``L`` and the colour channels keep their stored values.
* **High bit depth.**  16-bit grey (``I;16`` and friends) is scaled to 8 bits by its
  real range (``>> 8``), never clipped, so a full-range ramp keeps its whole
  gradient.  32-bit integer data whose values fit in 16 bits is treated the same
  way; anything wider, and float data outside 0..1 or 0..255, is stretched
  linearly from its minimum to its maximum.

Outputs are sRGB pixels, so :func:`srgb_icc` is the profile every output embeds.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading

import numpy as np
from PIL import Image, ImageCms


def source_bits(img: Image.Image) -> int | None:
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
    """Scale integer or float grey to mode L by its real range (see the module docstring)."""
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


def split_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
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
_srgb_bytes: bytes | None = None


def _srgb_profile() -> ImageCms.ImageCmsProfile:
    global _srgb
    with _srgb_lock:
        if _srgb is None:
            _srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        return _srgb


def srgb_icc() -> bytes:
    """The sRGB ICC profile that outputs embed, the same bytes on every run.

    LittleCMS stamps a profile with the time it was serialized; that would make
    two renders of one photo differ by a few bytes, so the header's date is pinned
    (the profile carries no ID checksum that the change would invalidate).
    """
    global _srgb_bytes
    if _srgb_bytes is None:
        data = bytearray(_srgb_profile().tobytes())
        struct.pack_into(">6H", data, 24, 2000, 1, 1, 0, 0, 0)
        if any(data[84:100]):  # an ID covers the header: recomputing it is not worth it
            data[84:100] = bytes(16)
        _srgb_bytes = bytes(data)
    return _srgb_bytes


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


def _lab_to_rgb(img: Image.Image) -> Image.Image:
    try:
        lab = ImageCms.profileToProfile(
            img, ImageCms.createProfile("LAB"), _srgb_profile(), outputMode="RGB"
        )
    except Exception as exc:  # reported as unreadable by the caller
        raise ValueError(f"cannot convert CIE L*a*b* colour: {exc}") from exc
    if lab is None:  # only an in-place transform returns nothing
        raise ValueError("cannot convert CIE L*a*b* colour")
    return lab


def colour_to_rgb(img: Image.Image, icc: bytes | None, bits: int | None) -> Image.Image:
    """Bring the colour part of any Pillow mode to 8-bit sRGB ``RGB``."""
    mode = img.mode
    if mode == "LAB":
        return _lab_to_rgb(img)
    if mode == "1":
        img = img.convert("L")
    elif mode.startswith("I") or mode == "F":
        img = _to_8bit(img, bits)
    elif mode == "P":
        img = img.convert("RGB")
    elif mode not in ("RGB", "L", "CMYK"):
        img = img.convert("RGB")  # YCbCr, RGBX, HSV...; ValueError if Pillow cannot
    converted = _apply_icc(img, icc)
    if converted is not None:
        img = converted
    return img if img.mode == "RGB" else img.convert("RGB")


# -- colour keeping (preserve_color: luminance) ------------------------------------------


def luminance(img: Image.Image) -> Image.Image:
    """The image's brightness as a grey RGB image (a painting seen without its colours)."""
    return img.convert("L").convert("RGB")


def keep_colours(result: Image.Image, content: Image.Image) -> Image.Image:
    """Brightness of the stylized result, colour (Cb, Cr) of the photo.

    This is the luminance-only transfer of Gatys et al., "Preserving Color in
    Neural Artistic Style Transfer" (2016), in YCbCr rather than YIQ.
    """
    y, _, _ = result.convert("YCbCr").split()
    _, cb, cr = content.convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")
