"""Photos of one preset gathered into batches of one output size, as they are read.

The driver reads each photo once and learns its size from the bytes it read, so batches
cannot be made before reading.  Each output size has a bucket; a bucket is sent as soon
as it holds a batch, and what is left is sent at the end.  The photos held back are
bounded: past :data:`MAX_HELD_BYTES` the fullest bucket goes at once, so a folder of
photos of a thousand different sizes never holds a thousand photos in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

#: Photo bytes held back waiting for their bucket to fill, at most.
MAX_HELD_BYTES = 512 << 20

T = TypeVar("T")


@dataclass
class _Bucket(Generic[T]):
    size: int  # the batch size of this output size
    items: list[T] = field(default_factory=list)
    bytes: int = 0


class Batcher(Generic[T]):
    """Buckets items (photos) by output size; ``add`` returns the batches ready to send."""

    def __init__(self, batch_size: Callable[[int, int], int],
                 max_held_bytes: int = MAX_HELD_BYTES) -> None:
        self.batch_size = batch_size  # (width, height) of the output -> photos per batch
        self.max_held_bytes = max_held_bytes
        self._buckets: dict[tuple[int, int], _Bucket[T]] = {}
        self._held = 0

    def add(self, item: T, out_size: tuple[int, int] | None, nbytes: int = 0) -> list[list[T]]:
        """Take one item; ``out_size`` None (its size is unknown) makes a batch of one."""
        if out_size is None:
            return [[item]]
        bucket = self._buckets.get(out_size)
        if bucket is None:
            bucket = self._buckets[out_size] = _Bucket(max(1, self.batch_size(*out_size)))
        bucket.items.append(item)
        bucket.bytes += nbytes
        self._held += nbytes
        ready: list[list[T]] = []
        if len(bucket.items) >= bucket.size:
            ready.append(self._take(out_size))
        while self._held > self.max_held_bytes and self._buckets:
            fullest = max(self._buckets, key=lambda k: self._buckets[k].bytes)
            ready.append(self._take(fullest))
        return ready

    def rest(self) -> list[list[T]]:
        """Every bucket still held, as a batch each (the end of the group)."""
        return [self._take(size) for size in list(self._buckets)]

    def _take(self, out_size: tuple[int, int]) -> list[T]:
        bucket = self._buckets.pop(out_size)
        self._held -= bucket.bytes
        return bucket.items
