"""EXIF blocks as plain data: read a TIFF-structured block's directories, edit, write back.

An EXIF block is a small TIFF file: a main directory (IFD0) that points to an Exif
directory and a GPS directory, plus a second directory (IFD1) for a thumbnail.
This module reads IFD0, Exif and GPS entry by entry, keeping each entry's type,
count and raw value bytes exactly as stored, and writes them back in a fresh,
compact layout.  Pillow's own EXIF writer re-guesses every tag's type from its
Python value; copying the raw entries keeps a camera's tags as the camera wrote
them.  Damage is contained: an entry whose value lies outside the block is
dropped, a sub-directory that cannot be read is dropped, and only a block whose
header or main directory is unreadable fails as a whole (:class:`ExifError`).

:func:`add_to_tiff` puts a block into a TIFF file that Pillow has written, where the
block's main-directory tags join the file's own.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

ORIENTATION = 0x0112
X_RESOLUTION, Y_RESOLUTION, RESOLUTION_UNIT = 0x011A, 0x011B, 0x0128
SOFTWARE = 0x0131
EXIF_POINTER, GPS_POINTER, INTEROP_POINTER = 0x8769, 0x8825, 0xA005
EXIF_VERSION, COLOR_SPACE = 0x9000, 0xA001
PIXEL_X, PIXEL_Y = 0xA002, 0xA003
MAKER_NOTE, IMAGE_UNIQUE_ID = 0x927C, 0xA420

# TIFF field types and the bytes one value takes: BYTE ASCII SHORT LONG RATIONAL
# SBYTE UNDEFINED SSHORT SLONG SRATIONAL FLOAT DOUBLE IFD.
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED = 1, 2, 3, 4, 5, 7

# Real directories hold a few dozen entries; more means the count itself is garbage.
_MAX_ENTRIES = 1000


class ExifError(ValueError):
    """The block cannot be read at all (no TIFF header, or a broken main directory)."""


class Entry(NamedTuple):
    """One directory entry, its value bytes in the block's byte order."""

    tag: int
    type: int
    n_values: int
    data: bytes


@dataclass(frozen=True)
class ExifBlock:
    """The three directories of an EXIF block that describe a photo."""

    big_endian: bool = False
    ifd0: tuple[Entry, ...] = ()
    exif: tuple[Entry, ...] = ()
    gps: tuple[Entry, ...] = ()
    damaged: int = 0  # entries left out because their values were unreadable

    @property
    def order(self) -> str:
        return ">" if self.big_endian else "<"

    def __bool__(self) -> bool:
        return bool(self.ifd0 or self.exif or self.gps)


class _Reader:
    """Reads directories out of one block, counting what it had to leave out."""

    def __init__(self, data: bytes, order: str) -> None:
        self.data, self.order = data, order
        self.damaged = 0
        self.seen: set[int] = set()

    def directory(
        self, offset: int, skip: frozenset[int] = frozenset()
    ) -> tuple[list[Entry], dict[int, int]]:
        """The entries at ``offset`` and, apart, the sub-directory pointers among them."""
        if offset in self.seen or offset < 8 or offset + 2 > len(self.data):
            raise ExifError("a directory lies outside the block")
        self.seen.add(offset)
        (count,) = struct.unpack_from(self.order + "H", self.data, offset)
        if count > _MAX_ENTRIES or offset + 2 + 12 * count > len(self.data):
            raise ExifError("a directory is cut short")
        entries: list[Entry] = []
        pointers: dict[int, int] = {}
        for at in range(offset + 2, offset + 2 + 12 * count, 12):
            tag, kind, n = struct.unpack_from(self.order + "HHI", self.data, at)
            if tag in (EXIF_POINTER, GPS_POINTER, INTEROP_POINTER):
                if kind in (LONG, 13) and n == 1:
                    (pointers[tag],) = struct.unpack_from(self.order + "I", self.data, at + 8)
                else:
                    self.damaged += 1
                continue
            if tag in skip:
                continue
            value = self._value(kind, n, at + 8)
            if value is None:
                self.damaged += 1
            else:
                entries.append(Entry(tag, kind, n, value))
        return entries, pointers

    def _value(self, kind: int, count: int, field_at: int) -> bytes | None:
        if kind not in _TYPE_SIZES or count == 0:
            return None
        size = _TYPE_SIZES[kind] * count
        if size <= 4:
            return self.data[field_at : field_at + size]
        (offset,) = struct.unpack_from(self.order + "I", self.data, field_at)
        if offset + size > len(self.data):
            return None
        return self.data[offset : offset + size]

    def sub_directory(self, offset: int | None) -> list[Entry] | None:
        """A sub-directory's entries; None when it is absent or unreadable."""
        if offset is None:
            return None
        try:
            return self.directory(offset)[0]
        except ExifError:
            return None


def parse(block: bytes, *, skip: frozenset[int] = frozenset()) -> tuple[ExifBlock, list[str]]:
    """Read ``block`` (with or without its ``Exif\\0\\0`` prefix, or a whole TIFF file).

    Main-directory entries whose tag is in ``skip`` are left out unread (a TIFF's
    own pixel layout, or its Photoshop layers, which can be larger than the
    picture).  Returns the directories and notes on what was left out; raises
    :class:`ExifError` when nothing can be read.
    """
    data = block
    while data.startswith(b"Exif\x00\x00"):
        data = data[6:]
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        raise ExifError("no TIFF header")
    order = "<" if data[:2] == b"II" else ">"
    magic, first = struct.unpack_from(order + "HI", data, 2)
    if magic != 42:
        raise ExifError("not a classic TIFF structure")
    reader = _Reader(data, order)
    ifd0, pointers = reader.directory(first, skip)
    exif_ifd = reader.sub_directory(pointers.get(EXIF_POINTER))
    gps_ifd = reader.sub_directory(pointers.get(GPS_POINTER))
    notes = []
    for name, tag, found in (("Exif", EXIF_POINTER, exif_ifd), ("GPS", GPS_POINTER, gps_ifd)):
        if tag in pointers and found is None:
            notes.append(f"EXIF: its damaged {name} directory was dropped")
    if reader.damaged:
        notes.append(f"EXIF: {reader.damaged} damaged tag(s) dropped")
    result = ExifBlock(order == ">", tuple(ifd0), tuple(exif_ifd or ()), tuple(gps_ifd or ()),
                       reader.damaged)
    return result, notes


def _directory_length(entries: tuple[Entry, ...]) -> int:
    values = sum(len(e.data) + len(e.data) % 2 for e in entries if len(e.data) > 4)
    return 2 + 12 * len(entries) + 4 + values


def _directory_bytes(entries: tuple[Entry, ...], start: int, order: str) -> bytes:
    # Values too big for the entry follow the directory, each on a word boundary.
    value_at = start + 2 + 12 * len(entries) + 4
    head = [struct.pack(order + "H", len(entries))]
    tail: list[bytes] = []
    for entry in sorted(entries, key=lambda e: e.tag):
        if len(entry.data) <= 4:
            field = entry.data.ljust(4, b"\x00")
        else:
            field = struct.pack(order + "I", value_at)
            padded = entry.data + b"\x00" * (len(entry.data) % 2)
            tail.append(padded)
            value_at += len(padded)
        head.append(struct.pack(order + "HHI", entry.tag, entry.type, entry.n_values) + field)
    head.append(struct.pack(order + "I", 0))  # no IFD1: the thumbnail is never written
    return b"".join(head + tail)


def directories(block: ExifBlock, start: int) -> bytes:
    """IFD0 at offset ``start`` of its file, then the Exif and GPS directories it points to."""
    order = block.order
    ifd0 = list(block.ifd0)
    # Placeholders first: the pointers' own entries count towards IFD0's length.
    if block.exif:
        ifd0.append(long_entry(order, EXIF_POINTER, 0))
    if block.gps:
        ifd0.append(long_entry(order, GPS_POINTER, 0))
    exif_at = start + _directory_length(tuple(ifd0))
    gps_at = exif_at + (_directory_length(block.exif) if block.exif else 0)
    pointers = {EXIF_POINTER: exif_at, GPS_POINTER: gps_at}
    ifd0 = [long_entry(order, e.tag, pointers[e.tag]) if e.tag in pointers else e for e in ifd0]
    parts = [_directory_bytes(tuple(ifd0), start, order)]
    if block.exif:
        parts.append(_directory_bytes(block.exif, exif_at, order))
    if block.gps:
        parts.append(_directory_bytes(block.gps, gps_at, order))
    return b"".join(parts)


def to_bytes(block: ExifBlock) -> bytes:
    """The block as an ``Exif\\0\\0`` APP1 payload: header, IFD0, Exif, then GPS."""
    header = (b"MM\x00\x2a" if block.big_endian else b"II\x2a\x00") + struct.pack(
        block.order + "I", 8
    )
    return b"Exif\x00\x00" + header + directories(block, 8)


def add_to_tiff(tiff: bytes, block: ExifBlock, extra: tuple[Entry, ...] = ()) -> bytes:
    """A single-page TIFF file with ``block``'s tags (and ``extra`` ones) in its IFD0.

    Pillow writes a compressed TIFF through libtiff, which cannot write the Exif and
    GPS directories; so the file is written without them, and a new main directory,
    the file's own entries merged with the block's, is appended and made the first.
    The pixel data does not move, so the file's strip offsets stay right; the old
    directory is left behind, unreferenced.
    """
    own, _ = parse(tiff)
    block = in_byte_order(block, own.big_endian)
    extra = tuple(_swapped(e) for e in extra) if own.big_endian else extra
    added = block.ifd0 + extra
    ifd0 = (*without(own.ifd0, {e.tag for e in added}), *added)
    start = len(tiff) + len(tiff) % 2
    header = tiff[:4] + struct.pack(own.order + "I", start)
    body = tiff[8:] + b"\x00" * (start - len(tiff))
    merged = ExifBlock(own.big_endian, ifd0, block.exif, block.gps)
    return header + body + directories(merged, start)


# Byte-order units of each type: rationals are two LONGs, bytes and text never swap.
_UNITS = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 1, 7: 1, 8: 2, 9: 4, 10: 4, 11: 4, 12: 8, 13: 4}


def _swapped(entry: Entry) -> Entry:
    unit = _UNITS[entry.type]
    if unit == 1:
        return entry
    data = entry.data
    flipped = b"".join(data[i : i + unit][::-1] for i in range(0, len(data), unit))
    return entry._replace(data=flipped)


def in_byte_order(block: ExifBlock, big_endian: bool) -> ExifBlock:
    """``block`` with every value rewritten in the other byte order, if it differs.

    UNDEFINED values are opaque and kept as they are (the maker note, whose inner
    layout only its maker knows, is never carried over).
    """
    if block.big_endian == big_endian:
        return block
    return ExifBlock(
        big_endian,
        tuple(map(_swapped, block.ifd0)),
        tuple(map(_swapped, block.exif)),
        tuple(map(_swapped, block.gps)),
        block.damaged,
    )


# -- editing -------------------------------------------------------------------------


def without(entries: tuple[Entry, ...], tags: frozenset[int] | set[int]) -> tuple[Entry, ...]:
    return tuple(e for e in entries if e.tag not in tags)


def with_entry(entries: tuple[Entry, ...], entry: Entry) -> tuple[Entry, ...]:
    """``entries`` with ``entry`` in place of any entry of the same tag."""
    return (*without(entries, {entry.tag}), entry)


def short_entry(order: str, tag: int, value: int) -> Entry:
    return Entry(tag, SHORT, 1, struct.pack(order + "H", value))


def long_entry(order: str, tag: int, value: int) -> Entry:
    return Entry(tag, LONG, 1, struct.pack(order + "I", value))


def rational_entry(order: str, tag: int, numerator: int, denominator: int) -> Entry:
    return Entry(tag, RATIONAL, 1, struct.pack(order + "II", numerator, denominator))


def ascii_entry(tag: int, text: str) -> Entry:
    # EXIF's ASCII type is 7-bit; other characters become "?" rather than mojibake.
    data = text.replace("\x00", "").encode("ascii", "replace") + b"\x00"
    return Entry(tag, ASCII, len(data), data)


def undefined_entry(tag: int, data: bytes) -> Entry:
    return Entry(tag, UNDEFINED, len(data), data)
