"""What a video is, read from its bytes before any frame is decoded: bounded, one line when not.

The driver probes each video once (PyAV: FFmpeg's demuxers, no decoder but the first
frame's): its frame size and rotation, every frame's timestamp (from the packets, so a
variable frame rate is kept exactly), its duration, and whether it has sound.  Every
cost is bounded before it is paid: the duration and frame size against the settings,
the number of frames against the duration.  Anything FFmpeg cannot read is an
``InputError`` with the file's name; a file whose container starts but cannot be read
through is ``truncated``, which the watcher takes for a file still being copied.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av

from pipeline.config.naming import display_name
from pipeline.config.settings import Settings
from pipeline.errors import InputError

__all__ = ["MAX_FPS", "MAX_VIDEO_BYTES", "VideoInfo", "open_video", "probe_video"]

#: The largest video file read (it is held in memory while its segments are made).
MAX_VIDEO_BYTES = 2 << 30
#: More frames a second than this is not footage but a file built to cost time.
MAX_FPS = 1000
#: Container signatures: ISO BMFF ('ftyp' at 4) and Matroska/WebM (EBML at 0).
_EBML = b"\x1a\x45\xdf\xa3"


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    frames: tuple[int, ...]  # every frame's timestamp, in presentation order
    end: int  # when the last frame ends (its timestamp plus its duration)
    time_base: Fraction
    rotation: int  # degrees, as the file's display matrix says
    audio: str  # the first sound stream's codec ("" when there is none)
    codec: str  # the video stream's codec

    @property
    def seconds(self) -> float:
        if len(self.frames) < 2:
            return 0.0
        step = (self.frames[-1] - self.frames[0]) / (len(self.frames) - 1)
        return float((self.frames[-1] - self.frames[0] + step) * self.time_base)

    @property
    def fps(self) -> float:
        return len(self.frames) / self.seconds if self.seconds else 0.0


def _refusal(name: str, data: bytes, exc: BaseException) -> InputError:
    shown = display_name(name)
    started = data[4:8] == b"ftyp" or data[:4] == _EBML
    if started:
        # A container that begins but cannot be read through: damaged, or (in an inbox)
        # still being copied; the watcher tries those again once the file settles.
        return InputError(f"{shown}: video file is damaged or incomplete ({_why(exc)})",
                          category="truncated")
    return InputError(f"{shown}: not a video this tool can read ({_why(exc)})",
                      category="not_a_video")


def _why(exc: BaseException) -> str:
    text = " ".join(str(getattr(exc, "strerror", "") or exc).split())
    return text[:120] or type(exc).__name__


def open_video(data: bytes, name: str) -> av.container.InputContainer:
    """The container of these bytes, or ``InputError``; never a traceback."""
    try:
        return av.open(io.BytesIO(data), "r", options={"probesize": str(8 << 20)})
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise _refusal(name, data, exc) from None


def probe_video(data: bytes, name: str, settings: Settings) -> VideoInfo:
    """Read a video's shape and timing, refusing (``InputError``) what is over a limit."""
    shown = display_name(name)
    with open_video(data, name) as container:
        if not container.streams.video:
            raise InputError(f"{shown}: has no video stream", category="not_a_video")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width < 1 or height < 1:
            raise InputError(f"{shown}: video frame size is unknown", category="not_a_video")
        if width * height > settings.max_pixels:
            raise InputError(f"{shown}: frames are {width}×{height}, over the limit of "
                             f"{settings.max_pixels:,} pixels (max_pixels)",
                             category="too_large")
        limit = settings.max_video_seconds
        if container.duration is not None and container.duration / 1e6 > limit * 1.01:
            raise InputError(f"{shown}: video is {container.duration / 1e6:.0f} s long, over "
                             f"the limit of {limit:g} s (max_video_seconds)", category="too_large")
        time_base = stream.time_base or Fraction(1, 90_000)
        frames, end = _timestamps(container, stream, shown, limit, time_base, data, name)
        rotation = _rotation(container, stream)
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else ""
        return VideoInfo(width, height, tuple(frames), end, time_base, rotation, audio,
                         stream.codec_context.name)


def _timestamps(container: av.container.InputContainer, stream: av.VideoStream, shown: str,
                limit: float, time_base: Fraction, data: bytes,
                name: str) -> tuple[list[int], int]:
    """Every frame's presentation time, from the packets (nothing decoded), bounded, and
    when the last one ends.  Frames an edit list cuts (discarded) are not the video's."""
    most = int(limit * MAX_FPS) + 1
    found: list[int] = []
    cut = 0
    ends = 0
    try:
        for packet in container.demux(stream):
            if packet.pts is None:
                continue  # the demuxer's final empty packet
            if packet.is_discard:
                cut += 1
                continue
            ends = max(ends, packet.pts + (packet.duration or 0))
            found.append(packet.pts)
            if len(found) > most:
                raise InputError(f"{shown}: more than {most:,} frames (over {MAX_FPS} a "
                                 f"second for {limit:g} s)", category="too_large")
    except (av.FFmpegError, OSError, EOFError) as exc:
        raise _refusal(name, data, exc) from None
    declared = stream.frames  # an index's count (mp4); 0 where the container has none
    if not found or (declared and len(found) + cut < declared):
        # A file whose index promises frames its data does not hold: cut short, or (in an
        # inbox) still being copied.
        raise InputError(f"{shown}: video is incomplete ({len(found) + cut} of "
                         f"{declared or '?'} frames are there)", category="truncated")
    found.sort()
    if float((found[-1] - found[0]) * time_base) > limit * 1.01:
        raise InputError(f"{shown}: video is {float((found[-1] - found[0]) * time_base):.0f} "
                         f"s long, over the limit of {limit:g} s (max_video_seconds)",
                         category="too_large")
    step = (found[-1] - found[0]) // (len(found) - 1) if len(found) > 1 else 1
    return found, ends if ends > found[-1] else found[-1] + max(1, step)


def _rotation(container: av.container.InputContainer, stream: av.VideoStream) -> int:
    """The display rotation (a phone held upright), from the first frame's side data."""
    container.seek(0, stream=stream, backward=True, any_frame=False)
    try:
        for frame in container.decode(stream):
            return int(round(frame.rotation)) % 360
    except (av.FFmpegError, OSError, EOFError):
        return 0  # the decoder says why when the segments are made
    return 0
