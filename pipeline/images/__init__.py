"""Reading and writing photos safely: one place that knows every odd file a user can hand us.

A photo travels as bytes: :func:`read_photo` checks a path (:func:`check_path`: a
readable regular file we are allowed to use) and reads it; :func:`decode_photo`
turns the bytes into a plain 8-bit sRGB picture, an optional alpha mask and the
photo's metadata; :func:`output_metadata` and :func:`encode_image` turn a result
back into a file's bytes.  :func:`load_image` and :func:`save_image` are the
same steps for a caller that has the files at hand, and :func:`probe` reads only
a header.  Every refusal is an :class:`~pipeline.errors.InputError` with a
``category`` and a one-line message that starts with the file's name; no Pillow
exception or traceback leaves the package.

Modules, by what each owns:

``paths``     path checks, the non-blocking open, bounded whole-file reads
``formats``   which formats may be opened; what a file's first bytes say it is
``limits``    pixel limits and the process-wide Pillow warning state
``header``    opening headers, refusals that say what a file is, :func:`probe`
``decode``    the one decode path: orientation, first frame, damage, downscaling
``colour``    any Pillow mode to 8-bit sRGB, alpha split off; the sRGB profile
``metadata``  EXIF/XMP/IPTC/dpi read from a photo, rebuilt for an output
``exif``      EXIF directories as plain data (parse, edit, write)
``xmp``       XMP packets checked and edited
``encode``    JPEG/PNG/WebP/TIFF encoding and the atomic save
``tensors``   pictures as torch tensors (the only module that imports torch)
``model``     the plain data handed out: ImageInfo, LoadedImage, metadata
"""

from __future__ import annotations

from pipeline.config.naming import display_name, safe_text
from pipeline.images.decode import decode_photo, load_image
from pipeline.images.encode import encode_image, save_image
from pipeline.images.formats import ALLOWED_FORMATS, HEIF_EXTENSIONS
from pipeline.images.header import probe
from pipeline.images.limits import DEFAULT_MAX_PIXELS
from pipeline.images.metadata import output_metadata
from pipeline.images.model import (
    METADATA_POLICIES,
    ImageInfo,
    LoadedImage,
    MetadataPolicy,
    OutputMetadata,
    PhotoMetadata,
)
from pipeline.images.paths import DEFAULT_MAX_BYTES, check_path, read_photo
from pipeline.images.tensors import pil_to_tensor, resized, tensor_to_pil

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "HEIF_EXTENSIONS",
    "METADATA_POLICIES",
    "ImageInfo",
    "LoadedImage",
    "MetadataPolicy",
    "OutputMetadata",
    "PhotoMetadata",
    "check_path",
    "decode_photo",
    "display_name",
    "encode_image",
    "load_image",
    "output_metadata",
    "pil_to_tensor",
    "probe",
    "read_photo",
    "safe_text",
    "save_image",
    "tensor_to_pil",
    "resized",
]
