"""Colour profiles built in a test: a wide-gamut one, to check colour is converted."""

from __future__ import annotations

import struct

from PIL import ImageCms


def wide_gamut_profile() -> bytes:
    """An Adobe-RGB-like profile: sRGB's tone curve with wider primaries and a new name."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    primaries = {  # Adobe RGB (1998) colorants, adapted to D50 as ICC profiles store them
        b"rXYZ": (0.6097, 0.3111, 0.0195),
        b"gXYZ": (0.2053, 0.6257, 0.0609),
        b"bXYZ": (0.1492, 0.0632, 0.7446),
    }
    (count,) = struct.unpack_from(">I", data, 128)
    for index in range(count):
        sig, offset, _size = struct.unpack_from(">4sII", data, 132 + 12 * index)
        if sig in primaries:
            values = (round(v * 65536) for v in primaries[sig])
            struct.pack_into(">iii", data, offset + 8, *values)
    data[84:100] = bytes(16)  # the stored profile ID no longer matches; zero means "none"
    return bytes(data).replace("sRGB".encode("utf-16-be"), "Wide".encode("utf-16-be"))
