"""The driver's side of a video: probe it, send the segments not yet on disk, keep each
finished one, and mux the final file once all are there.

A library for :mod:`pipeline.run.runner` (no printing): the runner reads the video's bytes
and sends the segments' work like photos; what comes back is kept here on disk
(:func:`pipeline.video.segments.write_segment`: the segment, then its record), so a
killed run loses at most the segments in progress.  The final file is written by the
runner's writer (the output, then its record) and the parts are removed after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline import __version__
from pipeline.config.naming import display_name
from pipeline.errors import InputError
from pipeline.executors.base import Finished, Work
from pipeline.plan.methods import Needs, needs
from pipeline.plan.planning import Task, task_key
from pipeline.video.camera import camera_track
from pipeline.video.probe import VideoInfo, probe_video
from pipeline.video.segment import frame_size
from pipeline.video.segments import (
    SEEK_MARGIN,
    Segment,
    SegmentJob,
    done_segment,
    plan_segments,
    remove_parts,
    segment_key,
    segment_path,
    write_segment,
)
from pipeline.video.steady import flow_fits

__all__ = ["Video", "start_video"]


@dataclass
class Video:
    """One video being made in one style."""

    task: Task
    data: bytes
    digest: str
    key: str
    info: VideoInfo
    segments: list[Segment]
    pending: set[int]  # segments not yet on disk
    failed: bool = False
    seconds: float = 0.0  # stylizing time of the segments made in this run
    details: dict[str, object] = field(default_factory=dict)
    workers: set[str] = field(default_factory=set)  # where this run's segments were made
    track: np.ndarray | None = None  # the camera's translation, frame by frame (fast, steady)

    @property
    def size(self) -> tuple[int, int]:
        return frame_size(self.info.width, self.info.height, self.task.preset.settings.size)

    def needs(self) -> Needs:
        """What its frames need of the executor (style targets for the optimizer)."""
        return needs(self.task.preset.settings, *self.size)

    def due(self) -> list[Segment]:
        return [s for s in self.segments if s.index in self.pending]

    def work(self, segment: Segment, work_id: int) -> Work:
        frames = self.info.frames
        origin = None
        if self.track is not None:
            x, y = self.track[segment.start]
            origin = (float(x), float(y))
        job = SegmentJob(segment, frames[segment.start:segment.end], self.info.time_base,
                         self.info.rotation, self.size,
                         frames[max(0, segment.start - SEEK_MARGIN)],
                         frames[segment.end] if segment.end < len(frames) else self.info.end,
                         origin)
        return Work(work_id, display_name(self.task.input), self.data, self.task.preset,
                    self.task.fmt, self.digest, software=f"stylize {__version__}",
                    segment=job)

    def keep(self, segment: Segment, finished: Finished) -> bool:
        """Write a finished segment (then its record); whether the video is now complete."""
        assert finished.data is not None
        write_segment(self.task.output, segment, self.task.fmt,
                      segment_key(self.key, segment), finished.data)
        self.pending.discard(segment.index)
        self.seconds += finished.seconds
        self.details = dict(finished.details)
        if finished.worker:
            self.workers.add(finished.worker)
        return not self.pending

    def finish(self, work_id: int) -> Finished:
        """The final file, muxed from the parts and the source's sound."""
        from pipeline.video.mux import mux

        s = self.task.preset.settings
        parts = [segment_path(self.task.output, seg, self.task.fmt) for seg in self.segments]
        data = mux(self.data, display_name(self.task.input), parts, self.task.fmt, s.metadata)
        width, height = self.size
        return Finished(work_id, data, width, height, size=s.size, seconds=self.seconds,
                        details={**self.details, "video": {
                            "frames": len(self.info.frames), "segments": len(self.segments),
                            "seconds": round(self.info.seconds, 3),
                            "fps": round(self.info.fps, 3), "sound": self.info.audio or None,
                            "rotation": self.info.rotation, "codec": "h264",
                            "workers": sorted(self.workers)}})

    def clean(self) -> None:
        remove_parts(self.task.output)


def start_video(task: Task, data: bytes, digest: str,
                should_stop: Callable[[], bool] | None = None) -> Video:
    """Probe a video (``InputError`` with its name if it cannot be made) and find which of
    its segments a killed run already left on disk."""
    s = task.preset.settings
    info = probe_video(data, display_name(task.input), s)
    key = task.key if digest == task.input_digest and task.key else \
        task_key(digest, task.preset, task.fmt)
    segments = plan_segments(info, s.segment_seconds, s.steady)
    pending = {seg.index for seg in segments
               if not done_segment(task.output, seg, task.fmt, segment_key(key, seg))}
    video = Video(task, data, digest, key, info, segments, pending)
    if s.steady > 0 and not flow_fits(*video.size):
        w, h = video.size
        raise InputError(f"{display_name(task.input)}: frames of {w}×{h} are too thin to be "
                         "held steady (the optical flow needs more); set steady: 0 or a "
                         "larger size", category="too_small")
    if pending and s.method == "fast" and s.steady > 0:
        # The lattice lock's track, so that the segments join locked (the fast path's),
        # as far as the last segment still to make starts; one segment has nothing to
        # join and starts from nothing.
        last = max(seg.start for seg in segments if seg.index in pending)
        video.track = (_track(data, digest, display_name(task.input),
                              info.frames[:last + 1], video.size, should_stop)
                       if last else np.zeros((1, 2)))
    return video


#: The last camera track made (video, frame size, track): a video in several styles (or
#: presets of one size) is decoded for it once.
_kept: list[tuple[str, tuple[int, int], np.ndarray]] = []


def _track(data: bytes, digest: str, name: str, frames: tuple[int, ...],
           size: tuple[int, int], should_stop: Callable[[], bool] | None) -> np.ndarray:
    for known, at, track in _kept:
        if (known, at) == (digest, size) and len(track) >= len(frames):
            return track
    track = camera_track(data, name, frames, size, should_stop)
    _kept[:] = [(digest, size, track)]
    return track
