"""A video's bytes by object reference: put in Ray once per video, not once per segment.

A video's segments are separate tasks, each of which decodes its frames from the whole
file (a segment depends only on the video and the settings).  Sent inside every task, a
100 MB video of 30 segments would cross to the object store 30 times; instead the driver
puts it once (:class:`VideoShipper`), the segments' ``Work`` travel without it, and a
worker fetches the reference when it makes a segment (:func:`with_video`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import Any

from pipeline.executors.base import Work
from pipeline.executors.ray.connect import ray

__all__ = ["VideoShipper", "with_video"]

#: Videos whose references the driver keeps (their segments are sent together, so the
#: last one or two are all that can still be asked for; an older one is put again).
KEPT = 2


class VideoShipper:
    """The driver's end: each video's bytes put in Ray once, segments sent without them."""

    def __init__(self) -> None:
        self.shipped = 0
        self._refs: OrderedDict[str, Any] = OrderedDict()

    def pack(self, works: list[Work]) -> tuple[list[Work], dict[str, Any]]:
        """``works`` with each segment's video bytes taken out, and the references (by
        the video's digest) the worker puts them back from."""
        assert ray is not None
        out, refs = [], {}
        for work in works:
            if work.segment is not None and work.digest:
                if work.digest not in self._refs:
                    self._refs[work.digest] = ray.put(work.photo)
                    self.shipped += 1
                    while len(self._refs) > KEPT:
                        self._refs.popitem(last=False)  # in-flight tasks hold their own
                self._refs.move_to_end(work.digest)
                refs[work.digest] = self._refs[work.digest]
                work = replace(work, photo=b"")
            out.append(work)
        return out, refs

    def clear(self) -> None:
        self._refs.clear()


def with_video(works: list[Work], refs: dict[str, Any]) -> list[Work]:
    """The worker's end: each segment's video bytes back in its ``Work``.  (References
    nested in an argument are not fetched by Ray itself: they are fetched here.)"""
    assert ray is not None
    fetched = {digest: ray.get(ref) for digest, ref in refs.items()}
    return [replace(w, photo=fetched[w.digest]) if w.segment is not None and w.digest in fetched
            else w for w in works]
