"""XMP packets: checked on the way in; the few properties an output changes, edited.

A packet is RDF/XML.  It is kept only if it is UTF-8 (or UTF-16, re-encoded) and
well-formed XML without a DOCTYPE: no XMP writer emits one, and refusing it rules
out entity tricks before the parser ever sees them.  Anything else is dropped with
a note.  Edits are textual, on the two forms XMP writers use for a simple property
(an attribute, ``tiff:Orientation="6"``, or an element,
``<tiff:Orientation>6</tiff:Orientation>``), with the prefixes every writer uses
(``tiff:``, ``exif:``); the edited packet must be well-formed again or it is
dropped, so an edit can never hand a viewer a broken packet.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

# A simple property as an attribute ( name="value") or as an element (<name>value</name>).
_ATTRIBUTE = r"(\s{name}\s*=\s*)(?:\"[^\"]*\"|'[^']*')"
_ELEMENT = r"(<{name}(?:\s[^>]*)?>)[^<]*(</{name}\s*>)"

# exif:GPSLatitude, exif:GPSTimeStamp...: as attributes, empty elements, or elements.
_GPS_ATTRIBUTE = re.compile(r"\s+exif:GPS[A-Za-z]+\s*=\s*(?:\"[^\"]*\"|'[^']*')")
_GPS_EMPTY = re.compile(r"<exif:GPS[A-Za-z]+(?:\s[^>]*)?/>")
_GPS_ELEMENT = re.compile(r"<exif:(GPS[A-Za-z]+)(?:\s[^>]*)?(?<!/)>.*?</exif:\1\s*>", re.DOTALL)


def _well_formed(text: str) -> bool:
    try:
        ET.fromstring(text.encode("utf-8"))
    except ET.ParseError:
        return False
    return True


def read_xmp(raw: bytes | str) -> tuple[bytes | None, str | None]:
    """The packet as UTF-8 bytes, or None and a note saying why it was dropped."""
    if isinstance(raw, bytes):
        try:
            if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                text = raw.decode("utf-16")
            else:
                text = raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
        except UnicodeDecodeError:
            return None, "XMP dropped: not UTF-8 text"
    else:
        text = raw
    # JPEG writers pad the packet's segment with NULs; the padding is not XML.
    text = text.lstrip("\ufeff").rstrip("\x00 \t\r\n")
    if not text:
        return None, None
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        return None, "XMP dropped: it declares a DOCTYPE"
    if not _well_formed(text):
        return None, "XMP dropped: not well-formed XML"
    return text.encode("utf-8"), None


def _set(text: str, name: str, value: str) -> str:
    """Set the simple property ``name`` (e.g. ``tiff:Orientation``) wherever it is."""
    quoted = re.escape(name)
    text = re.sub(_ATTRIBUTE.format(name=quoted), lambda m: f'{m.group(1)}"{value}"', text)
    return re.sub(_ELEMENT.format(name=quoted), lambda m: m.group(1) + value + m.group(2), text)


def edit_xmp(packet: bytes, *, size: tuple[int, int], drop_gps: bool) -> bytes | None:
    """The packet for an output of ``size``: upright, its dimensions, GPS as asked.

    Properties are changed only where the packet has them; None if the edit left
    the packet malformed (it never should).
    """
    text = packet.decode("utf-8")
    width, height = (str(side) for side in size)
    for name, value in (("tiff:Orientation", "1"), ("tiff:ImageWidth", width),
                        ("tiff:ImageLength", height), ("exif:PixelXDimension", width),
                        ("exif:PixelYDimension", height)):
        text = _set(text, name, value)
    if drop_gps:
        for pattern in (_GPS_ATTRIBUTE, _GPS_EMPTY, _GPS_ELEMENT):
            text = pattern.sub("", text)
    return text.encode("utf-8") if _well_formed(text) else None
