"""One segment of a video, where the engine is: its frames decoded, stylized, steadied and
encoded (H.264), bytes in and bytes out like a photo.

Frames are streamed: decoded from the video's bytes (seeking to the keyframe before the
segment's warm-up), a few at a time through the engine, steadied in order, and encoded
as they come; a segment never holds more than :data:`FRAMES_AT_ONCE` frames.  Each keeps
its original timestamp, so the final file has the original timing, variable frame rates
included.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator

import av
import cv2
import numpy as np
from PIL import Image

from pipeline.config.geometry import output_size
from pipeline.config.naming import display_name
from pipeline.config.settings import Settings
from pipeline.errors import Cancelled, InputError
from pipeline.images.tensors import with_strength
from pipeline.progress import Progress, ProgressFn
from pipeline.video.probe import open_video
from pipeline.video.segments import SegmentJob
from pipeline.video.steady import Carried, Motion, Steadier

__all__ = ["FRAMES_AT_ONCE", "decoded_frames", "frame_size", "make_segment"]

#: Frames stylized together (one batch through the network).
FRAMES_AT_ONCE = 4
#: The container a segment is written in, for each output format.
CONTAINERS = {"mp4": "mp4", "mkv": "matroska"}
#: x264 settings that never change: no B-frames (so a segment's packets are in
#: presentation order and segments join without edit lists), one thread (the same bytes on
#: every machine that makes the same frames).
X264_OPTIONS = {"preset": "faster", "bf": "0", "threads": "1"}

#: ``stylize(frames, motions, starts)``: the stylized frames (same sizes); ``motions``:
#: how each frame moved from the one before (None for a first frame); ``starts`` (one
#: frame at a time, when the maker is ``sequential``): each frame's previous output carried
#: to it, with its trust, or None.
StylizeFn = Callable[[list[Image.Image], list[Motion | None], list[Carried | None]],
                     list[Image.Image]]


def frame_size(width: int, height: int, size: int) -> tuple[int, int]:
    """A video's output frame size: the photo rule (long side ``size``), each side even
    (4:2:0 video has one colour sample per 2×2 pixels)."""
    w, h = output_size(width, height, size)
    return max(2, w - w % 2), max(2, h - h % 2)


def decoded_frames(data: bytes, name: str, wanted: tuple[int, ...], seek: int,
                   what: str = "a segment") -> Iterator[av.VideoFrame]:
    """The frames with these timestamps, in order, decoded from the keyframe before
    ``seek``; ``InputError`` if any is missing (``what``: whose frames, for its message)."""
    container = open_video(data, name)
    got = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        container.seek(seek, stream=stream, backward=True, any_frame=False)
        want = set(wanted)
        for frame in container.decode(stream):
            if frame.pts is None or frame.pts not in want:
                if frame.pts is not None and frame.pts > wanted[-1]:
                    break
                continue
            got += 1
            yield frame
            if got == len(wanted):
                break
    except av.FFmpegError as exc:
        raise InputError(f"{display_name(name)}: video is damaged at frame {got + 1} of "
                         f"{what} ({exc})", category="truncated") from None
    finally:
        container.close()
    if got < len(wanted):
        raise InputError(f"{display_name(name)}: video ends early ({got} of {len(wanted)} "
                         f"frames of {what} could be decoded)", category="truncated")


def make_segment(data: bytes, name: str, job: SegmentJob, settings: Settings, fmt: str,
                 stylize: StylizeFn, *, sequential: bool = False,
                 on_progress: ProgressFn | None = None,
                 should_stop: Callable[[], bool] | None = None) -> bytes:
    """The segment's video (no sound), encoded, as the bytes of a file of ``fmt``: each
    frame stylized, steadied, then mixed with the original frame (``strength``; after
    the steadying, so that the next frame is carried, and by the optimizer held, from the
    painting alone and the photo is not mixed in again and again along the flow).

    ``sequential``: frames one at a time, each started from the previous steady frame
    carried to it (the optimizer's warm start); otherwise a few at a time, each alone.
    """
    start = time.perf_counter()
    out = io.BytesIO()
    container = av.open(out, "w", format=CONTAINERS[fmt],
                        options={"fflags": "+bitexact"})
    encoder: av.VideoStream | None = None
    steadier = Steadier(settings.steady)
    warm = job.segment.warmup
    total = len(job.frames)
    pending: list[tuple[int, np.ndarray]] = []
    done = 0

    def flush() -> None:
        nonlocal encoder, done
        if not pending:
            return
        originals = [p[1] for p in pending]
        motions = [steadier.motion(o) for o in originals]
        # The optimizer's frames (one at a time) start from the previous one, carried.
        starts = [steadier.carry(motions[0]) if sequential else None] * len(originals)
        pictures = stylize([Image.fromarray(o) for o in originals], motions, starts)
        for (pts, original), picture, motion, carried in zip(pending, pictures, motions, starts,
                                                             strict=True):
            styled = np.asarray(picture.convert("RGB"))
            if styled.shape != original.shape:
                styled = cv2.resize(styled, original.shape[1::-1], interpolation=cv2.INTER_AREA)
            steady = np.asarray(with_strength(
                Image.fromarray(steadier(styled, motion, carried)),
                Image.fromarray(original), settings.strength))
            done += 1
            if done <= warm:
                continue  # stylized only to start the steadying where it would be
            if encoder is None:
                encoder = _encoder(container, job, settings, original.shape[1],
                                   original.shape[0])
            frame = av.VideoFrame.from_ndarray(steady, format="rgb24")
            frame.pts, frame.duration = pts, ends[pts] - pts  # the last frame's too
            for packet in encoder.encode(frame.reformat(format="yuv420p")):
                container.mux(packet)
        pending.clear()
        if on_progress is not None:
            w, h = originals[0].shape[1], originals[0].shape[0]
            on_progress(Progress(1, 1, done, total, 0.0, time.perf_counter() - start, w, h,
                                 frames=True))

    ends = dict(zip(job.frames, (*job.frames[1:], job.after), strict=True))
    for frame in decoded_frames(data, name, job.frames, job.seek):
        if should_stop is not None and should_stop():
            raise Cancelled("stopped")
        w, h = job.size
        assert frame.pts is not None  # decoded_frames yields only timestamped frames
        pending.append((frame.pts, frame.to_ndarray(format="rgb24", width=w, height=h,
                                                    interpolation="AREA")))
        if len(pending) == (1 if sequential else FRAMES_AT_ONCE):
            flush()
    flush()
    if encoder is not None:
        for packet in encoder.encode():
            container.mux(packet)
    container.close()
    return out.getvalue()


def _encoder(container: av.container.OutputContainer, job: SegmentJob, settings: Settings,
             width: int, height: int) -> av.VideoStream:
    stream = container.add_stream("libx264", options={**X264_OPTIONS,
                                                      "crf": str(settings.video_quality)})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    # Timestamps are the source's own (in its time base): the timing is kept exactly.
    stream.time_base = stream.codec_context.time_base = job.time_base
    if job.rotation:
        stream.set_display_rotation(job.rotation)
    return stream
