"""Tiny real videos made in a test with PyAV: a pan across a photo, with a sound track."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

from support.images import REPO

#: A real photo to pan across (a pattern would be too easy for optical flow and networks).
PAN_PHOTO = REPO / "examples" / "photos" / "chelsea.png"


def pan_frames(count: int, width: int, height: int, *, photo: Path = PAN_PHOTO,
               step: float = 1.5) -> list[np.ndarray]:
    """``count`` frames of a camera panning right (and slowly zooming) across ``photo``."""
    picture = Image.open(photo).convert("RGB")
    big = picture.resize((width * 2, round(width * 2 * picture.height / picture.width)))
    frames = []
    for i in range(count):
        zoom = 1.0 + 0.004 * i
        w, h = round(width * 1.3 / zoom), round(height * 1.3 / zoom)
        left = min(big.width - w, round(10 + step * i))
        top = max(0, min(big.height - h, (big.height - h) // 2))
        frames.append(np.asarray(big.crop((left, top, left + w, top + h)).resize(
            (width, height), Image.Resampling.BILINEAR)))
    return frames


def make_video(path: Path, *, frames: int = 36, fps: int = 12, size: tuple[int, int] = (128, 80),
               audio: str | None = "aac", codec: str = "libx264", rotate: int | None = None,
               metadata: dict[str, str] | None = None, keyframes: int | None = None) -> Path:
    """A video of a pan across a photo, at ``fps``, with a 440 Hz tone (``audio``: its
    codec, or None for no sound); ``keyframes``: frames between them (the encoder's own
    choice otherwise: the first only, for a clip this short)."""
    width, height = size
    path.parent.mkdir(parents=True, exist_ok=True)
    container_format = "matroska" if path.suffix in (".mkv", ".webm") else None
    with av.open(str(path), "w", format=container_format) as out:
        out.metadata.update(metadata or {})
        video = out.add_stream(codec, rate=fps,
                               options={"g": str(keyframes)} if keyframes else None)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if rotate is not None:
            video.set_display_rotation(rotate)
        sound = out.add_stream(audio, rate=48000) if audio else None
        for picture in pan_frames(frames, width, height):
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            _tone(out, sound, frames / fps)
    return path


def _tone(out: av.container.OutputContainer, sound: av.AudioStream, seconds: float) -> None:
    rate = 48000
    samples = (0.2 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate))
    chunk = sound.codec_context.frame_size or 1024
    fmt = sound.codec_context.format.name
    for start in range(0, len(samples), chunk):
        piece = samples[start:start + chunk].astype(np.float32)[None]
        if fmt.startswith("s16"):
            piece = (piece * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(piece, format=fmt, layout="mono")
        frame.sample_rate, frame.pts = rate, start
        for packet in sound.encode(frame):
            out.mux(packet)
    for packet in sound.encode():
        out.mux(packet)


def frame_times(path: Path) -> list[int]:
    """Every frame's timestamp, decoded."""
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def sound_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
