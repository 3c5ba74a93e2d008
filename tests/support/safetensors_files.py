"""Safetensors bytes rewritten to a chosen header length, as any writer may lay them out."""

from __future__ import annotations

import json


def with_header_length(data: bytes, length: int) -> bytes:
    """``data`` (a safetensors file) with its JSON header padded by trailing spaces to
    exactly ``length`` bytes: the same tensors and metadata, a valid file that begins with
    ``length`` as eight little-endian bytes."""
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + size]), separators=(",", ":"),
                        ensure_ascii=False).encode()
    if length < len(header):
        raise ValueError(f"the header needs at least {len(header)} bytes, not {length}")
    return length.to_bytes(8, "little") + header.ljust(length, b" ") + data[8 + size:]
