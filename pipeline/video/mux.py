"""The final video: the segments' pictures joined, the source's sound copied, its metadata
as the ``metadata`` setting says.

The segments were encoded alike (same encoder, settings and size, no B-frames), so their
packets join into one stream without decoding; the sound's packets are copied as they
are (remuxed, not re-encoded) where the container takes their codec, and otherwise
encoded once to AAC.  Packets are interleaved by time as they are read, so nothing is
held whole but the output itself.  The container is written bit-exact (no library
version in it), so the same segments always give the same bytes.
"""

from __future__ import annotations

import heapq
import io
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av

from pipeline.video.probe import open_video
from pipeline.video.segment import CONTAINERS

__all__ = ["COPYABLE_AUDIO", "kept_metadata", "mux"]

#: Sound codecs each container takes as they are; others are encoded to AAC (mp4) once.
COPYABLE_AUDIO = {"mp4": frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}),
                  "mkv": None}  # None: Matroska takes any
#: The sample rates AAC is defined for.
AAC_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000,
                       11025, 8000, 7350})
#: Container tags that describe the file, not the footage: never copied.
_FILE_TAGS = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder",
                        "handler_name", "vendor_id", "duration"})


def kept_metadata(tags: dict[str, str], policy: str) -> dict[str, str]:
    """The source's tags an output keeps: all (``keep``), all but where it was taken
    (``no-location``), or none (``strip``)."""
    if policy == "strip":
        return {}
    kept = {k: v for k, v in tags.items() if k.lower() not in _FILE_TAGS}
    if policy == "no-location":
        kept = {k: v for k, v in kept.items()
                if "location" not in k.lower() and "xyz" not in k.lower()
                and "gps" not in k.lower()}
    return kept


def mux(source: bytes, name: str, parts: Sequence[Path], fmt: str, metadata: str) -> bytes:
    """The output file's bytes: ``parts`` (segment files, in order) and the source's sound."""
    out = io.BytesIO()
    containers = [av.open(str(p), "r") for p in parts]
    src = open_video(source, name)
    try:
        output = av.open(out, "w", format=CONTAINERS[fmt], options={"fflags": "+bitexact"})
        output.metadata.update(kept_metadata(dict(src.metadata), metadata))
        first = containers[0].streams.video[0]
        video = output.add_stream_from_template(first)
        video.time_base = first.time_base
        streams: list[Iterator[tuple[float, int, av.Packet]]] = [
            _timed(_joined(containers, video), 0)]
        if src.streams.audio:
            streams.append(_timed(_sound(src, output, fmt), 1))
        for _, _, packet in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
            output.mux(packet)
        output.close()
    finally:
        src.close()
        for c in containers:
            c.close()
    return out.getvalue()


def _joined(containers: list[av.container.InputContainer],
            video: av.VideoStream) -> Iterator[av.Packet]:
    for container in containers:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            packet.stream = video
            yield packet


def _sound(src: av.container.InputContainer, output: av.container.OutputContainer,
           fmt: str) -> Iterator[av.Packet]:
    stream = src.streams.audio[0]
    copyable = COPYABLE_AUDIO[fmt]
    if copyable is None or stream.codec_context.name in copyable:
        audio = output.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            packet.stream = audio
            yield packet
        return
    # PCM from a camera's .mov, for instance, which an .mp4 cannot hold: AAC, once, at
    # the source's rate where AAC has it (48 kHz otherwise: 192 kHz is over AAC's limit).
    rate = stream.codec_context.sample_rate
    rate = rate if rate in AAC_RATES else 48000
    encoded = output.add_stream("aac", rate=rate)
    resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout,
                                  rate=rate)
    for frame in src.decode(stream):
        frame.pts = None  # the encoder counts samples from the first
        for piece in resampler.resample(frame):
            yield from encoded.encode(piece)
    for piece in resampler.resample(None):
        yield from encoded.encode(piece)
    yield from encoded.encode(None)


def _timed(packets: Iterator[av.Packet], order: int) -> Iterator[tuple[float, int, av.Packet]]:
    """Each packet with its time in seconds, for interleaving (video first on a tie)."""
    for packet in packets:
        when = packet.dts if packet.dts is not None else packet.pts
        base = packet.time_base or Fraction(1, 1)
        yield (float((when or 0) * base), order, packet)
