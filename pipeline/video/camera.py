"""The camera's translation over a whole video, found once by the driver before its
segments are made, so that each segment's lattice lock starts where the one before it left
the lattice (:class:`pipeline.engine.phase_lock.PhaseLock`'s ``origin``).

A video's segments are made apart (on other workers, resumed in any order); without this,
each segment would paint its joins unlocked and without noise, and a join would cost its
few frames half to three quarters of frame by frame's flicker (docs/lab-log.md).  The
track is the same sum the segments' locks add up: the same frames, decoded and resized the
same way, the same flow (:func:`pipeline.video.steady.flow`), the same
:func:`pipeline.engine.phase_lock.scene_step`, in the same order, so a segment that starts
from its entry continues it bit for bit.  Frames are streamed; the track is two numbers a
frame.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from pipeline.engine.phase_lock import scene_step
from pipeline.errors import Cancelled
from pipeline.video.segment import decoded_frames
from pipeline.video.steady import flow, flow_engine

__all__ = ["camera_track"]


def camera_track(data: bytes, name: str, frames: tuple[int, ...], size: tuple[int, int],
                 should_stop: Callable[[], bool] | None = None) -> np.ndarray:
    """For each of ``frames`` (timestamps, in order), the scene's translation since the
    first (x, y, in pixels of frames of ``size``, which the flow must fit:
    :func:`pipeline.video.steady.flow_fits`): F×2, float64.  ``InputError`` where the
    video cannot be decoded that far; ``Cancelled`` once ``should_stop`` says so."""
    w, h = size
    engine = flow_engine()
    track = np.zeros((len(frames), 2))
    moved, before = np.zeros(2), None
    for i, frame in enumerate(decoded_frames(data, name, frames, frames[0], "the video")):
        if should_stop is not None and should_stop():
            raise Cancelled("stopped")
        gray = cv2.cvtColor(frame.to_ndarray(format="rgb24", width=w, height=h,
                                             interpolation="AREA"), cv2.COLOR_RGB2GRAY)
        if before is not None:
            moved += scene_step(flow(engine, gray, before))
        track[i], before = moved, gray
    return track
