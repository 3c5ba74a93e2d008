"""A video cut into segments, and where finished segments wait for the final mux.

A segment is a run of frames written together: a few seconds (``segment_seconds``),
plus, before its first frame, a few frames stylized only to start the steadying where
the previous segment would have it (:func:`warmup_frames`).  Each
segment depends only on the video and the settings, never on which segments ran before
or where: a run killed and resumed writes the same bytes as one that was not, and a
cluster may make segments of one video on different workers.

Finished segments are kept in the output folder's record folder, as
``.stylize/<output name>.parts/<index>.<fmt>`` beside ``<index>.json`` (the key of what
made it, written after it), and removed once the final file and its record are written.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.naming import RECORD_DIR, json_bytes
from pipeline.store.fsutil import atomic_write_bytes, open_private_dir
from pipeline.store.hashing import digest_json
from pipeline.store.jsonio import read_json

if TYPE_CHECKING:
    from pipeline.video.probe import VideoInfo

__all__ = ["SEEK_MARGIN", "Segment", "SegmentJob", "done_segment", "parts_dir",
           "plan_segments", "remove_parts", "segment_key", "segment_path", "warmup_frames",
           "write_segment"]

#: Frames stylized before a segment's first only to steady it: enough that what the
#: recursion remembers from before them weighs under this.
FORGOTTEN = 0.02
MAX_WARMUP = 24
#: Decoding a segment starts this many frames before its first: a seek finds the keyframe
#: before a time by its decoding order in some containers, and an open GOP's leading
#: frames are decoded after the keyframe that follows them.
SEEK_MARGIN = 16
#: Bumped when the bytes a segment is made into change: parts left by an earlier version
#: are made again, never joined with new ones.
SEGMENT_VERSION = 5
#: A segment's record is a few hundred bytes.
MAX_SEGMENT_RECORD_BYTES = 4096


@dataclass(frozen=True)
class Segment:
    index: int
    count: int  # segments of the video
    first: int  # the first frame written (an index into the video's frames)
    end: int  # one past the last frame written
    warmup: int  # frames before ``first`` stylized only to steady it

    @property
    def start(self) -> int:
        return self.first - self.warmup


@dataclass(frozen=True)
class SegmentJob:
    """What the driver sends for one segment (carried on the Work)."""

    segment: Segment
    frames: tuple[int, ...]  # the timestamps of the segment's frames, warm-up first
    time_base: Fraction  # of those timestamps
    rotation: int  # the display rotation, kept in the output
    size: tuple[int, int]  # every output frame's (a stream whose frames change size too)
    seek: int  # decoding starts at the keyframe before this timestamp (see SEEK_MARGIN)
    after: int  # when the segment's last frame ends: its duration is kept
    # The scene's translation at the warm-up's first frame since the video's first (the
    # fast path's lattice lock starts there: pipeline.video.camera), or None.
    origin: tuple[float, float] | None = None


def warmup_frames(steady: float) -> int:
    """Frames before a segment to start steadying at, so that where it starts matters
    less than :data:`FORGOTTEN` (0 when nothing is carried)."""
    if steady <= 0:
        return 0
    return min(MAX_WARMUP, math.ceil(math.log(FORGOTTEN) / math.log(steady)))


def plan_segments(info: VideoInfo, segment_seconds: float, steady: float) -> list[Segment]:
    n = len(info.frames)
    per = max(1, round(segment_seconds * info.fps)) if info.fps else n
    firsts = list(range(0, n, per))
    warm = warmup_frames(steady)
    return [Segment(i, len(firsts), first, min(n, first + per), min(first, warm))
            for i, first in enumerate(firsts)]


def parts_dir(output: Path) -> Path:
    return output.parent / RECORD_DIR / f"{output.name}.parts"


def segment_path(output: Path, segment: Segment, fmt: str) -> Path:
    return parts_dir(output) / f"{segment.index:05d}.{fmt}"


def segment_key(task_key: str, segment: Segment) -> str:
    return digest_json({"v": SEGMENT_VERSION, "task": task_key,
                        "segment": [segment.index, segment.count,
                                                      segment.first, segment.end,
                                                      segment.warmup]})


def done_segment(output: Path, segment: Segment, fmt: str, key: str) -> bool:
    """Whether this segment is on disk, whole, and made for this key."""
    path = segment_path(output, segment, fmt)
    record = path.with_suffix(".json")
    try:
        data = read_json(record, MAX_SEGMENT_RECORD_BYTES, "segment record")
        size = os.stat(path, follow_symlinks=False).st_size
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("key") == key and data.get("size") == size


def write_segment(output: Path, segment: Segment, fmt: str, key: str, data: bytes) -> None:
    """The segment, atomically, then its record (what makes it done)."""
    path = segment_path(output, segment, fmt)
    os.close(open_private_dir(output.parent / RECORD_DIR))  # never through a link
    atomic_write_bytes(path, data, private_dir=True)
    atomic_write_bytes(path.with_suffix(".json"),
                       json_bytes({"key": key, "size": len(data)}), private_dir=True)


def remove_parts(output: Path) -> None:
    """Best effort: the parts of a finished (or abandoned) video."""
    folder = parts_dir(output)
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)
