"""Metadata from photo to output: decode_photo -> output_metadata -> encode_image.

Every photo is made here with Pillow: a camera-like JPEG with EXIF (date, camera,
lens, GPS, orientation 6 and an embedded thumbnail), a wide-gamut ICC profile,
300 dpi, an XMP packet and IPTC records.  Outputs are read back with Pillow alone,
so the checks do not lean on the package's own EXIF reader.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, TiffImagePlugin
from support.colour import wide_gamut_profile

from pipeline.images import (
    LoadedImage,
    OutputMetadata,
    decode_photo,
    encode_image,
    load_image,
    output_metadata,
    save_image,
)

pytestmark = pytest.mark.timeout(20)

FORMATS = ["jpeg", "png", "webp", "tiff"]
DATE = "2023:05:06 07:08:09"
SOFTWARE = "stylize 0.1.0 (style: udnie)"
GPS_IFD, EXIF_IFD = ExifTags.IFD.GPSInfo, ExifTags.IFD.Exif
IPTC = b"\x1c\x02\x00\x00\x02\x00\x04" + b"\x1c\x02\x78\x00\x0bA fine cat."  # version, caption

XMP = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
    'xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'tiff:Orientation="6" exif:GPSLatitude="48,51.4N" exif:PixelXDimension="60">'
    "<exif:GPSLongitude>2,21.1E</exif:GPSLongitude>"
    "<dc:creator><rdf:Seq><rdf:li>Ann Example</rdf:li></rdf:Seq></dc:creator>"
    "</rdf:Description></rdf:RDF></x:xmpmeta>"
    '<?xpacket end="w"?>'
).encode("utf-8")


# --------------------------------------------------------------------------------------
# Building photos




def _thumbnail_ifd(tiff: bytearray, order: str) -> None:
    """Append an IFD1 holding a JPEG thumbnail, as cameras write (Pillow does not)."""
    (first,) = struct.unpack_from(order + "I", tiff, 4)
    (count,) = struct.unpack_from(order + "H", tiff, first)
    thumb = io.BytesIO()
    Image.new("RGB", (16, 12), (0, 255, 0)).save(thumb, "JPEG")
    if len(tiff) % 2:
        tiff += b"\x00"
    ifd1 = len(tiff)
    struct.pack_into(order + "I", tiff, first + 2 + 12 * count, ifd1)
    tiff += struct.pack(order + "H", 2)
    tiff += struct.pack(order + "HHII", 0x0201, 4, 1, ifd1 + 30)  # JPEGInterchangeFormat
    tiff += struct.pack(order + "HHII", 0x0202, 4, 1, len(thumb.getvalue()))
    tiff += struct.pack(order + "I", 0) + thumb.getvalue()


def camera_exif(orientation: int = 6, *, big_endian: bool = False) -> bytes:
    exif = Image.Exif()
    exif.endian = ">" if big_endian else "<"
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS R5"
    exif[0x0112] = orientation
    exif[0x013B] = "Ann Example"  # Artist
    exif[0x8298] = "(c) Ann Example"  # Copyright
    exif[0x0131] = "Firmware 1.8.1"
    exif[EXIF_IFD] = {
        0x9003: DATE,  # DateTimeOriginal
        0x829A: TiffImagePlugin.IFDRational(1, 250),  # ExposureTime
        0xA434: "RF24-105mm F4 L IS USM",  # LensModel
        0xA002: 6000,
        0xA003: 4000,
        0xA420: "0123456789abcdef0123456789abcdef",  # ImageUniqueID
        0x927C: b"maker note with a preview",
    }
    exif[GPS_IFD] = {
        0: b"\x02\x03\x00\x00",
        1: "N",
        2: (TiffImagePlugin.IFDRational(48), TiffImagePlugin.IFDRational(51),
            TiffImagePlugin.IFDRational(2406, 100)),
        3: "E",
        4: (TiffImagePlugin.IFDRational(2), TiffImagePlugin.IFDRational(21),
            TiffImagePlugin.IFDRational(0)),
    }
    blob = bytearray(exif.tobytes())
    tiff = blob[6:]
    _thumbnail_ifd(tiff, ">" if big_endian else "<")
    return b"Exif\x00\x00" + bytes(tiff)


def app13(iptc: bytes) -> bytes:
    payload = b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc))
    payload += iptc + b"\x00" * (len(iptc) % 2)
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def stored_landscape() -> Image.Image:
    """60x40 as stored; the red block marks the stored top-left corner."""
    img = Image.new("RGB", (60, 40), (20, 20, 220))
    img.paste((220, 20, 20), (0, 0, 10, 10))
    return img


def camera_jpeg(*, exif: bytes | None = None, xmp: bytes | None = XMP) -> bytes:
    buffer = io.BytesIO()
    params: dict[str, object] = {"exif": camera_exif() if exif is None else exif,
                                 "icc_profile": wide_gamut_profile(), "dpi": (300, 300),
                                 "quality": 95, "extra": app13(IPTC)}
    if xmp is not None:
        params["xmp"] = xmp
    stored_landscape().save(buffer, "JPEG", **params)
    return buffer.getvalue()


def output(fmt: str, data: bytes = b"", *, policy: str = "keep") -> tuple[Image.Image, bytes]:
    photo = decode_photo(data or camera_jpeg(), "IMG_0001.JPG")
    meta = output_metadata(photo, policy=policy, software=SOFTWARE,  # type: ignore[arg-type]
                           size=photo.rgb.size)
    encoded = encode_image(photo.rgb, fmt, quality=90, metadata=meta)
    img = Image.open(io.BytesIO(encoded))
    img.load()
    return img, encoded


def xmp_of(img: Image.Image) -> str:
    raw = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp") or b""
    return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)


def profile_name(img: Image.Image) -> str:
    icc = img.info.get("icc_profile")
    assert icc, "no ICC profile embedded"
    return str(ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.profile_description)


# --------------------------------------------------------------------------------------
# keep


@pytest.mark.parametrize("fmt", FORMATS)
def test_keep_carries_the_photos_exif_brought_up_to_date(fmt: str) -> None:
    img, _ = output(fmt)
    assert img.format == {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "tiff": "TIFF"}[fmt]
    assert img.size == (40, 60), "orientation 6: the stored landscape comes out portrait"
    exif = img.getexif()
    assert exif[0x010F] == "Canon" and exif[0x0110] == "EOS R5"
    assert exif[0x013B] == "Ann Example" and exif[0x8298] == "(c) Ann Example"
    assert exif[0x0112] == 1, "the pixels are upright: Orientation must say so"
    assert exif[0x0131] == SOFTWARE
    details = exif.get_ifd(EXIF_IFD)
    assert details[0x9003] == DATE
    assert details[0xA434] == "RF24-105mm F4 L IS USM"
    assert float(details[0x829A]) == pytest.approx(1 / 250)
    assert (details[0xA002], details[0xA003]) == (40, 60), "dimensions are the output's"
    assert details[0xA001] == 1, "ColorSpace: sRGB"
    assert 0xA420 not in details and 0x927C not in details
    gps = exif.get_ifd(GPS_IFD)
    assert gps[1] == "N" and gps[3] == "E"
    assert [float(v) for v in gps[2]] == pytest.approx([48, 51, 24.06])
    assert exif.get_ifd(ExifTags.IFD.IFD1) == {}, "the thumbnail shows the unstylized photo"
    assert 0x0201 not in exif and 0x0202 not in exif


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_output_is_srgb_with_the_photos_dpi(fmt: str) -> None:
    img, _ = output(fmt)
    assert "sRGB" in profile_name(img)
    exif = img.getexif()
    assert float(exif[0x011A]) == pytest.approx(300) and exif[0x0128] == 2
    if fmt != "webp":  # WebP has no resolution field of its own
        assert img.info["dpi"] == pytest.approx((300, 300), abs=0.01)


@pytest.mark.parametrize("fmt", FORMATS)
def test_keep_carries_xmp_upright_and_iptc_where_the_format_has_room(fmt: str) -> None:
    img, _ = output(fmt)
    xmp = xmp_of(img)
    assert 'tiff:Orientation="1"' in xmp and 'exif:PixelXDimension="40"' in xmp
    assert "Ann Example" in xmp and "GPSLongitude" in xmp
    if fmt == "jpeg":
        assert img.info["photoshop"][0x0404] == IPTC
    elif fmt == "tiff":
        assert img.tag_v2[0x83BB] == IPTC  # type: ignore[attr-defined]


def test_the_photo_without_metadata_still_gets_orientation_software_and_profile() -> None:
    buffer = io.BytesIO()
    stored_landscape().save(buffer, "PNG")
    photo = decode_photo(buffer.getvalue(), "plain.png")
    assert photo.metadata.exif is None and photo.metadata_notes == ()
    meta = output_metadata(photo, software=SOFTWARE, size=photo.rgb.size)
    img = Image.open(io.BytesIO(encode_image(photo.rgb, "jpeg", metadata=meta)))
    exif = img.getexif()
    assert exif[0x0112] == 1 and exif[0x0131] == SOFTWARE and GPS_IFD not in exif
    assert "sRGB" in profile_name(img)


def test_big_endian_exif_into_a_little_endian_tiff() -> None:
    img, _ = output("tiff", camera_jpeg(exif=camera_exif(big_endian=True)))
    exif = img.getexif()
    assert exif[0x010F] == "Canon" and exif[0x0112] == 1
    assert exif.get_ifd(EXIF_IFD)[0x9003] == DATE
    assert [float(v) for v in exif.get_ifd(GPS_IFD)[4]] == pytest.approx([2, 21, 0])


def test_tiff_output_pixels_are_intact() -> None:
    photo = decode_photo(camera_jpeg(), "IMG_0001.JPG")
    img, _ = output("tiff")
    assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(photo.rgb))


def test_tiff_photo_gives_its_descriptive_tags_not_its_layout() -> None:
    buffer = io.BytesIO()
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[0x010F], info[0x0110], info[0x013B] = "Nikon", "Z 8", "Scanner Person"
    stored_landscape().save(buffer, "TIFF", tiffinfo=info, dpi=(600, 600))
    photo = decode_photo(buffer.getvalue(), "scan.tif")
    meta = output_metadata(photo, software=SOFTWARE, size=photo.rgb.size)
    img = Image.open(io.BytesIO(encode_image(photo.rgb, "jpeg", metadata=meta)))
    exif = img.getexif()
    assert (exif[0x010F], exif[0x0110], exif[0x013B]) == ("Nikon", "Z 8", "Scanner Person")
    assert not {0x0100, 0x0111, 0x0117, 0x0103} & set(exif), "the TIFF's layout stays behind"
    assert img.info["dpi"] == pytest.approx((600, 600))


# --------------------------------------------------------------------------------------
# no-location and strip


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_location_drops_gps_and_keeps_the_rest(fmt: str) -> None:
    img, _ = output(fmt, policy="no-location")
    exif = img.getexif()
    assert GPS_IFD not in exif and exif.get_ifd(GPS_IFD) == {}
    assert exif.get_ifd(EXIF_IFD)[0x9003] == DATE and exif[0x0110] == "EOS R5"
    xmp = xmp_of(img)
    assert "GPS" not in xmp and "Ann Example" in xmp and 'tiff:Orientation="1"' in xmp


@pytest.mark.parametrize("fmt", FORMATS)
def test_strip_writes_no_metadata_but_the_profile(fmt: str) -> None:
    img, encoded = output(fmt, policy="strip")
    exif = img.getexif()
    assert 0x010F not in exif and 0x0112 not in exif and EXIF_IFD not in exif
    assert GPS_IFD not in exif
    assert xmp_of(img) == "" and "photoshop" not in img.info
    assert b"Canon" not in encoded and b"Ann Example" not in encoded and b"2023:05" not in encoded
    assert "sRGB" in profile_name(img)


def test_unknown_policy_is_refused() -> None:
    photo = decode_photo(camera_jpeg(), "IMG_0001.JPG")
    with pytest.raises(ValueError, match="policy"):
        output_metadata(photo, policy="some", size=(4, 4))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Damage is noted, never fatal


def test_a_broken_exif_block_still_gives_an_output_with_a_note() -> None:
    data = camera_jpeg(exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may be printed either
        photo = decode_photo(data, "broken.jpg")
    assert photo.metadata.exif is None
    assert any(note.startswith("EXIF dropped") for note in photo.metadata_notes)
    meta = output_metadata(photo, software=SOFTWARE, size=photo.rgb.size)
    img = Image.open(io.BytesIO(encode_image(photo.rgb, "jpeg", metadata=meta)))
    assert img.getexif()[0x0131] == SOFTWARE and "sRGB" in profile_name(img)
    assert 'tiff:Orientation="1"' in xmp_of(img)


def test_a_damaged_gps_directory_is_dropped_alone() -> None:
    blob = bytearray(camera_exif())
    tiff = memoryview(blob)[6:]
    (first,) = struct.unpack_from("<I", tiff, 4)
    (count,) = struct.unpack_from("<H", tiff, first)
    for at in range(first + 2, first + 2 + 12 * count, 12):
        if struct.unpack_from("<H", tiff, at)[0] == GPS_IFD:
            struct.pack_into("<I", tiff, at + 8, 0x7FFF0000)  # far past the block's end
    del tiff
    photo = decode_photo(camera_jpeg(exif=bytes(blob)), "gps.jpg")
    assert any("GPS" in note for note in photo.metadata_notes)
    img, _ = output("jpeg", camera_jpeg(exif=bytes(blob)))
    assert img.getexif().get_ifd(EXIF_IFD)[0x9003] == DATE and GPS_IFD not in img.getexif()


def test_broken_xmp_is_dropped_with_a_note() -> None:
    photo = decode_photo(camera_jpeg(xmp=b"<x:xmpmeta><rdf:RDF>unclosed"), "xmp.jpg")
    assert photo.metadata.xmp is None
    assert any(note.startswith("XMP dropped") for note in photo.metadata_notes)
    assert photo.metadata.exif is not None, "the rest of the metadata is kept"


def test_an_xmp_packet_with_a_doctype_is_refused() -> None:
    packet = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
    photo = decode_photo(camera_jpeg(xmp=packet), "entity.jpg")
    assert photo.metadata.xmp is None and "DOCTYPE" in " ".join(photo.metadata_notes)


def test_metadata_too_large_for_a_jpeg_segment_is_left_out_with_a_note() -> None:
    photo = decode_photo(camera_jpeg(), "IMG_0001.JPG")
    padded = XMP.replace(b"</rdf:RDF>", b" " * 70_000 + b"</rdf:RDF>")
    big = dataclasses.replace(photo.metadata, xmp=padded)
    meta = output_metadata(big, size=photo.rgb.size)
    assert meta.xmp is None and any(n.startswith("XMP not written") for n in meta.notes)
    assert meta.exif is not None


# --------------------------------------------------------------------------------------
# Plain data, one path, reproducible


def test_metadata_is_plain_data_that_pickles() -> None:
    photo = decode_photo(camera_jpeg(), "IMG_0001.JPG")
    meta = output_metadata(photo, software=SOFTWARE, size=photo.rgb.size)
    assert pickle.loads(pickle.dumps(meta)) == meta
    assert pickle.loads(pickle.dumps(photo.metadata)) == photo.metadata
    for value in (meta.exif, meta.xmp, meta.iptc, meta.icc_profile):
        assert isinstance(value, bytes)
    back = pickle.loads(pickle.dumps(photo))
    assert isinstance(back, LoadedImage) and back.metadata == photo.metadata


@pytest.mark.parametrize("fmt", FORMATS)
def test_encoding_is_reproducible(fmt: str) -> None:
    assert output(fmt)[1] == output(fmt)[1]


def test_load_and_save_carry_the_same_metadata(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0001.JPG"
    path.write_bytes(camera_jpeg())
    photo = load_image(path)
    assert photo.metadata == decode_photo(path.read_bytes(), path.name).metadata
    meta = output_metadata(photo, software=SOFTWARE, size=photo.rgb.size)
    save_image(photo.rgb, tmp_path / "out.webp", metadata=meta)
    assert (tmp_path / "out.webp").read_bytes() == encode_image(photo.rgb, "webp",
                                                                metadata=meta)
    with pytest.raises(ValueError):
        save_image(photo.rgb, tmp_path / "x.png", metadata=meta, exif=b"Exif\x00\x00")
    assert isinstance(meta, OutputMetadata)
