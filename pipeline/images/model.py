"""The plain data the package hands out: what a header says, a decoded photo, metadata.

Everything here is a frozen dataclass of bytes, strings, numbers and tuples (plus
Pillow images in :class:`LoadedImage`), so it pickles and can cross a process
boundary to a worker and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

#: What is written besides the pixels: everything, everything but GPS, or nothing.
MetadataPolicy = Literal["keep", "no-location", "strip"]
METADATA_POLICIES: tuple[MetadataPolicy, ...] = ("keep", "no-location", "strip")


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


@dataclass(frozen=True)
class PhotoMetadata:
    """What a photo says about itself, as found in its file, minus what does not parse.

    ``exif`` is a standard ``Exif\\0\\0`` block (byte order as in the photo) holding
    the photo's descriptive tags: the main, Exif and GPS directories, without the
    thumbnail or any tag that describes how the file's own pixel data is laid out.
    ``xmp`` is the XMP packet (UTF-8), ``iptc`` the IPTC-IIM records, ``dpi`` the
    resolution.  ``notes`` says, in a few words each, what was dropped and why.
    """

    exif: bytes | None = None
    xmp: bytes | None = None
    iptc: bytes | None = None
    dpi: tuple[float, float] | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutputMetadata:
    """What :func:`~pipeline.images.encode_image` writes besides the pixels.

    Built by :func:`~pipeline.images.output_metadata`; each part is already in the
    form a file stores it (an ``Exif\\0\\0`` block, an XMP packet, IPTC records,
    an ICC profile), so encoding only places the bytes.
    """

    exif: bytes | None = None
    xmp: bytes | None = None
    iptc: bytes | None = None
    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    notes: tuple[str, ...] = ()


@dataclass
class LoadedImage:
    """A decoded photo: 8-bit sRGB colour, an optional mask, and what the file declared.

    ``info`` describes the file (its oriented full size), so ``rgb.size`` is smaller
    than ``(info.width, info.height)`` when the decode was asked to downscale.
    ``metadata`` is the photo's EXIF, XMP, IPTC and dpi, read from the same bytes.
    """

    rgb: Image.Image
    alpha: Image.Image | None
    info: ImageInfo
    metadata: PhotoMetadata = field(default_factory=PhotoMetadata)

    @property
    def metadata_notes(self) -> tuple[str, ...]:
        """Metadata that was dropped because it did not parse, in a few words each."""
        return self.metadata.notes
