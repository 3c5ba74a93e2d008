"""Videos in a collection (issue 29): real tiny videos made with PyAV, the shipped udnie
network, the real runner, decoder, optical flow and encoder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from support.images import REPO
from support.videos import decoded_frames, frame_times, make_video, pan_frames, sound_packets

from bench.flicker import warping_error
from pipeline.config.manifest import load_manifest
from pipeline.engine.phase_lock import scene_step
from pipeline.plan.planning import plan
from pipeline.video.camera import camera_track
from pipeline.video.mux import kept_metadata
from pipeline.video.probe import probe_video
from pipeline.video.segment import decoded_frames as segment_frames
from pipeline.video.segments import parts_dir, plan_segments, warmup_frames
from pipeline.video.steady import Steadier

STYLIZE = [sys.executable, "-m", "pipeline"]
#: Small and quick: the shipped network at a 96 px output, segments of one second.
VIDEO_JOB = {"styles": ["udnie"], "method": "fast", "size": 96, "segment_seconds": 1.0,
             "precision": "fp32", "device": "cpu"}


def _manifest(folder: Path, **settings: object) -> Path:
    job = {"name": "clips", "input": "in", "output": "out", **VIDEO_JOB, **settings}
    path = folder / "jobs.yaml"
    path.write_text(yaml.safe_dump({"jobs": [job]}))
    return path


def _run(manifest: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STYLIZE, "run", str(manifest), "--quiet"], capture_output=True,
                          text=True, cwd=manifest.parent, timeout=300, **kwargs)


def test_a_video_keeps_its_frames_timing_sound_rotation_and_dates(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in" / "clip.mp4", frames=30, fps=12, rotate=90,
                     metadata={"creation_time": "2024-05-01T10:00:00.000000Z",
                               "location": "+48.8584+002.2945/"})
    done = _run(_manifest(tmp_path))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out" / "clip.mp4.udnie.mp4"
    assert frame_times(out) == frame_times(src)  # count, rate and timing
    assert sound_packets(out) == sound_packets(src)  # copied, not re-encoded
    with av.open(str(out)) as c:
        video = c.streams.video[0]
        assert video.codec_context.name == "h264"
        assert (video.codec_context.width, video.codec_context.height) == (96, 60)
        assert c.metadata["creation_time"].startswith("2024-05-01")
        assert "48.8584" in c.metadata["location"]
        assert float(c.duration) == pytest.approx(float(av.open(str(src)).duration), abs=2e4)
        assert next(c.decode(video)).rotation == 90
    assert not parts_dir(out).exists()  # the segments go once the video is written


def test_a_rerun_skips_a_finished_video_and_explain_names_it(tmp_path: Path) -> None:
    make_video(tmp_path / "in" / "clip.mp4", frames=20)
    manifest = _manifest(tmp_path)
    assert _run(manifest).returncode == 0
    again = subprocess.run([*STYLIZE, "run", str(manifest), "--json"], capture_output=True,
                           text=True, cwd=tmp_path, timeout=300)
    assert json.loads(again.stdout)["summary"]["skipped"] == 1
    told = subprocess.run([*STYLIZE, "explain", str(tmp_path / "out" / "clip.mp4.udnie.mp4")],
                          capture_output=True, text=True, timeout=60)
    assert told.returncode == 0, told.stderr
    assert "method:" in told.stdout and "fast" in told.stdout
    assert "network sha256:" in told.stdout
    assert "20 frames at 12.0 fps, 2 segments, sound aac" in told.stdout


def test_matroska_sound_is_copied_and_pcm_is_encoded_once(tmp_path: Path) -> None:
    webm = make_video(tmp_path / "in" / "a.webm", frames=12, audio="libopus",
                      codec="libvpx-vp9")
    mov = make_video(tmp_path / "in" / "b.mov", frames=12, audio="pcm_s16le")
    assert _run(_manifest(tmp_path)).returncode == 0
    assert sound_packets(tmp_path / "out" / "a.webm.udnie.mkv") == sound_packets(webm)
    with av.open(str(tmp_path / "out" / "b.mov.udnie.mp4")) as c:
        assert c.streams.audio[0].codec_context.name == "aac"  # mp4 cannot hold PCM
    assert len(frame_times(tmp_path / "out" / "b.mov.udnie.mp4")) == len(frame_times(mov))


def test_metadata_policies() -> None:
    tags = {"creation_time": "2024", "location": "+1+2/", "location-eng": "+1+2/",
            "com.apple.quicktime.location.ISO6709": "+1+2/", "encoder": "x", "title": "t"}
    assert kept_metadata(tags, "keep") == {k: v for k, v in tags.items() if k != "encoder"}
    assert kept_metadata(tags, "no-location") == {"creation_time": "2024", "title": "t"}
    assert kept_metadata(tags, "strip") == {}


def test_steady_frames_flicker_less_than_frame_by_frame(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in" / "pan.mp4", frames=24, fps=12, size=(192, 120))
    assert _run(_manifest(tmp_path, size=128)).returncode == 0
    steady = decoded_frames(tmp_path / "out" / "pan.mp4.udnie.mp4")
    alone_dir = tmp_path / "alone"
    alone_dir.mkdir()
    (alone_dir / "in").symlink_to(tmp_path / "in")
    assert _run(_manifest(alone_dir, size=128, steady=0)).returncode == 0
    alone = decoded_frames(alone_dir / "out" / "pan.mp4.udnie.mp4")
    originals = decoded_frames(src)
    steady_error, alone_error = warping_error(originals, steady), warping_error(originals, alone)
    assert steady_error < 0.6 * alone_error, (steady_error, alone_error)


def test_optimized_frames_held_to_the_previous_one_flicker_less(tmp_path: Path) -> None:
    """``method: optimize``: each frame after a segment's first starts from the previous
    one carried along the flow (``warm_steps`` at the finest scale, here more than its own
    4); Ruder et al.'s temporal term holds it there, against the start alone."""
    src = make_video(tmp_path / "in" / "pan.mp4", frames=12, fps=12, size=(96, 60))
    # A light steadying (it carries the frames, and blends little of them in after the
    # optimizer, so what holds them is the term).
    optimize = {"method": "optimize", "size": 64, "min_side": 32, "steps": [6, 4],
                "min_scales": 1, "warm_steps": 12, "steady": 0.05}
    made = {}
    for weight in (0, 1000):
        folder = tmp_path / f"w{weight}"
        folder.mkdir()
        (folder / "in").symlink_to(tmp_path / "in")
        assert _run(_manifest(folder, **optimize, temporal_weight=weight)).returncode == 0
        made[weight] = decoded_frames(folder / "out" / "pan.mp4.udnie.mp4")
    originals = decoded_frames(src)
    assert len(made[0]) == len(made[1000]) == len(originals) == 12
    started, held = (warping_error(originals, made[w]) for w in (0, 1000))
    assert held < 0.8 * started, (held, started)


def test_strength_mixes_the_original_frames_in_after_the_steadying(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in" / "pan.mp4", frames=12, fps=12, size=(96, 60))
    for strength in (0.0, 0.5):
        folder = tmp_path / f"s{strength}"
        folder.mkdir()
        (folder / "in").symlink_to(tmp_path / "in")
        assert _run(_manifest(folder, strength=strength)).returncode == 0
    originals = np.asarray(decoded_frames(src), np.float32)
    photo = np.asarray(decoded_frames(tmp_path / "s0.0" / "out" / "pan.mp4.udnie.mp4"),
                       np.float32)
    half = np.asarray(decoded_frames(tmp_path / "s0.5" / "out" / "pan.mp4.udnie.mp4"),
                      np.float32)
    assert np.abs(photo - originals).mean() < 3  # the footage back, within the encoding
    # Half the painting in every frame, the last as the first: it does not fade towards
    # the footage along the carried frames.
    away = np.abs(half - originals).mean(axis=(1, 2, 3))
    assert away.min() > 10 and away[-1] > 0.7 * away[0], away


def test_kill_mid_video_then_rerun_gives_the_same_bytes(tmp_path: Path) -> None:
    make_video(tmp_path / "in" / "long.mp4", frames=72, fps=12)
    manifest = _manifest(tmp_path)
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "in").symlink_to(tmp_path / "in")
    assert _run(_manifest(whole)).returncode == 0
    expected = (whole / "out" / "long.mp4.udnie.mp4").read_bytes()

    out = tmp_path / "out" / "long.mp4.udnie.mp4"
    proc = subprocess.Popen([*STYLIZE, "run", str(manifest), "--quiet"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    parts = parts_dir(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (parts / "00001.json").exists():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = sorted(p.name for p in parts.glob("*.json"))
    assert kept and "00005.json" not in kept and not out.exists()  # killed mid-video

    rerun = subprocess.run([*STYLIZE, "run", str(manifest), "--json"], capture_output=True,
                           text=True, cwd=tmp_path, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert out.read_bytes() == expected
    assert not parts.exists()


def test_bad_videos_are_one_line_each_and_the_rest_still_runs(tmp_path: Path) -> None:
    good = make_video(tmp_path / "in" / "good.mp4", frames=12)
    data = good.read_bytes()
    (tmp_path / "in" / "cut.mp4").write_bytes(data[: len(data) // 3])
    (tmp_path / "in" / "noise.mkv").write_bytes(os.urandom(5000))
    make_video(tmp_path / "in" / "silent.mp4", frames=6, audio=None)
    with av.open(str(tmp_path / "in" / "sound-only.mp4"), "w") as c:
        stream = c.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            c.mux(packet)
    done = subprocess.run([*STYLIZE, "run", str(_manifest(tmp_path)), "--json"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    tasks = {Path(t["input"]).name: t for t in json.loads(done.stdout)["tasks"]}
    assert tasks["good.mp4"]["status"] == tasks["silent.mp4"]["status"] == "done"
    assert tasks["cut.mp4"]["category"] == "truncated"
    assert tasks["noise.mkv"]["category"] in ("not_a_video", "truncated")
    assert tasks["sound-only.mp4"]["category"] == "not_a_video"
    for name in ("cut.mp4", "noise.mkv", "sound-only.mp4"):
        assert "\n" not in tasks[name]["reason"] and name in tasks[name]["reason"]
    assert sound_packets(tmp_path / "out" / "silent.mp4.udnie.mp4") == []


def test_limits_refuse_long_and_large_videos(tmp_path: Path) -> None:
    from pipeline.config.settings import Settings
    from pipeline.errors import InputError

    data = make_video(tmp_path / "c.mp4", frames=24, fps=12).read_bytes()
    with pytest.raises(InputError, match="max_video_seconds") as err:
        probe_video(data, "c.mp4", Settings(max_video_seconds=1))
    assert err.value.category == "too_large"
    with pytest.raises(InputError, match="max_pixels"):
        probe_video(data, "c.mp4", Settings(max_pixels=100 * 60))
    info = probe_video(data, "c.mp4", Settings())
    assert (info.width, info.height, len(info.frames), info.fps) == (128, 80, 24, 12.0)


def test_segments_cover_every_frame_once_with_a_warmup() -> None:

    from pipeline.video.probe import VideoInfo

    info = VideoInfo(64, 48, tuple(range(0, 100 * 512, 512)), 100 * 512, Fraction(1, 12288), 0,
                     "", "h264")
    segments = plan_segments(info, 1.0, 0.7)
    assert [(s.first, s.end) for s in segments] == [(0, 24), (24, 48), (48, 72), (72, 96),
                                                   (96, 100)]
    assert segments[0].warmup == 0 and segments[1].warmup == warmup_frames(0.7) == 11
    assert all(s.count == 5 for s in segments)
    assert plan_segments(info, 1.0, 0.0)[1].warmup == 0


def test_videos_are_planned_beside_photos(tmp_path: Path) -> None:
    make_video(tmp_path / "in" / "clip.MOV", frames=6)
    (tmp_path / "in" / "pic.png").write_bytes((REPO / "examples/photos/coffee.png").read_bytes())
    the_plan = plan(load_manifest(_manifest(tmp_path)))
    outputs = sorted(t.output.name for t in the_plan.due)
    assert outputs == ["clip.MOV.udnie.mp4", "pic.png.udnie.jpg"]


def test_pan_frames_move(tmp_path: Path) -> None:
    frames = pan_frames(3, 64, 40)
    assert not np.array_equal(frames[0], frames[2])


def test_the_inbox_waits_for_a_video_still_being_copied(tmp_path: Path) -> None:
    """The first half lies still for longer than the settle delay (a copy that stalls):
    the watcher must not fail it, and makes it once when the rest arrives."""
    import threading

    from pipeline.watch import InboxWatcher, WatchEvent, WatchOptions

    data = make_video(tmp_path / "clip.mp4", frames=24).read_bytes()
    job = {"name": "box", "input": "photos", "output": "out", "inbox": "inbox", **VIDEO_JOB}
    (tmp_path / "photos").mkdir()
    (tmp_path / "inbox").mkdir()
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump({"jobs": [job]}))
    events: list[WatchEvent] = []
    finished = threading.Event()

    def on_event(event: WatchEvent) -> None:
        events.append(event)
        if event.kind in ("done", "failed"):
            finished.set()

    watcher = InboxWatcher(load_manifest(tmp_path / "jobs.yaml").jobs,
                           options=WatchOptions(settle=0.3, poll=None, rescan=30.0,
                                                incomplete_grace=5.0, tick=0.05),
                           on_event=on_event)
    watcher.start()
    try:
        target = tmp_path / "inbox" / "clip.mp4"
        target.write_bytes(data[: len(data) // 2])  # closed, settled, and truncated
        time.sleep(1.5)
        with open(target, "ab") as fh:  # the copy goes on
            fh.write(data[len(data) // 2:])
        appended = time.time()
        assert finished.wait(120)
    finally:
        watcher.stop()
    kinds = [e.kind for e in events if e.file == "clip.mp4"]
    assert "failed" not in kinds and kinds.count("done") == 1, kinds
    done = next(e for e in events if e.kind == "done")
    assert done.time >= appended
    # What the watcher saw while it waited: a video that reads as truncated.
    from pipeline.config.settings import Settings
    from pipeline.errors import InputError

    with pytest.raises(InputError) as err:
        probe_video(data[: len(data) // 2], "clip.mp4", Settings())
    assert err.value.category == "truncated"
    out = tmp_path / "out" / "inbox" / "clip.mp4.udnie.mp4"
    assert len(frame_times(out)) == 24


# -- what an attack found (each failed before its fix) ------------------------------------


def _encode(path: Path, times: list[int], *, time_base: Fraction, rate: int = 25,
            options: dict[str, str] | None = None, size: tuple[int, int] = (96, 64)) -> Path:
    """H.264 frames of a pan at these timestamps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate, options=options or {})
        video.width, video.height, video.pix_fmt = *size, "yuv420p"
        video.time_base = video.codec_context.time_base = time_base
        for t, picture in zip(times, pan_frames(len(times), *size), strict=True):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = t
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    return path


def _image(src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STYLIZE, "image", str(src), "--style", "udnie", "--method", "fast",
                           "-o", str(out), "--set", "size=96", "-q", *extra],
                          capture_output=True, text=True, timeout=300)


def test_a_faststart_mp4_cut_short_is_truncated_not_a_shorter_video(tmp_path: Path) -> None:
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "+faststart"}) as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        for picture in pan_frames(48, 96, 64):
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    data = whole.read_bytes()
    from pipeline.config.settings import Settings
    from pipeline.errors import InputError

    for cut in (0.5, 0.8):
        with pytest.raises(InputError) as err:
            probe_video(data[: int(len(data) * cut)], "cut.mp4", Settings())
        assert err.value.category == "truncated"


def test_frames_an_edit_list_cuts_are_not_the_videos(tmp_path: Path) -> None:
    src = _encode(tmp_path / "trimmed.mp4", list(range(-5, 10)), time_base=Fraction(1, 25))
    done = _image(src, tmp_path / "out.mp4")
    assert done.returncode == 0, done.stderr
    assert frame_times(tmp_path / "out.mp4") == frame_times(src)  # the 10 shown frames


def test_an_open_gop_is_decoded_whatever_the_segment_boundaries(tmp_path: Path) -> None:
    src = _encode(tmp_path / "open.mp4", list(range(60)), time_base=Fraction(1, 12), rate=12,
                  options={"x264-params": "open-gop=1:keyint=10:min-keyint=10:bframes=3:"
                                          "b-pyramid=2:scenecut=0"})
    done = _image(src, tmp_path / "out.mp4", "--set", "segment_seconds=0.75")
    assert done.returncode == 0, done.stderr
    assert frame_times(tmp_path / "out.mp4") == frame_times(src)


def test_frames_that_change_size_midway_come_out_one_size(tmp_path: Path) -> None:
    src = tmp_path / "resize.mkv"
    with av.open(str(src), "w") as out:
        video = out.add_stream("mjpeg", rate=12)
        video.width, video.height, video.pix_fmt = 96, 64, "yuvj420p"
        turned = av.CodecContext.create("mjpeg", "w")
        turned.width, turned.height, turned.pix_fmt = 64, 96, "yuvj420p"
        turned.time_base = Fraction(1, 12)
        turned.open()
        for i, picture in enumerate(pan_frames(12, 96, 64)):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(
                format="yuvj420p")
            if i >= 6:
                frame = frame.reformat(width=64, height=96)
            frame.pts, frame.time_base = i, Fraction(1, 12)
            for packet in (video.encode(frame) if i < 6 else turned.encode(frame)):
                packet.stream = video
                packet.pts = packet.dts = i
                packet.time_base = Fraction(1, 12)
                out.mux(packet)
    for extra in ((), ("--set", "segment_seconds=0.5", "--set", "steady=0")):
        done = _image(src, tmp_path / "out.mkv", *extra)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        frames = decoded_frames(tmp_path / "out.mkv")
        assert len(frames) == 12 and {f.shape for f in frames} == {(64, 96, 3)}


def test_pcm_sound_at_192_khz_is_resampled_for_aac(tmp_path: Path) -> None:
    src = tmp_path / "loud.mov"
    with av.open(str(src), "w") as out:
        video = out.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        sound = out.add_stream("pcm_s16le", rate=192000, layout="stereo")
        for picture in pan_frames(12, 96, 64):
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        samples = np.zeros((1, 2 * 4096), np.int16)
        for start in range(0, 192000, 4096):
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 192000, start
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)
    done = _image(src, tmp_path / "out.mp4")
    assert done.returncode == 0, done.stderr
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.audio[0].codec_context.sample_rate == 48000


@pytest.mark.parametrize(("name", "codec", "decoder"), [("hevc.mp4", "libx265", "hevc"),
                                                       ("av1.mkv", "libsvtav1", "libdav1d")])
def test_hevc_and_av1_videos_are_read_frame_for_frame(tmp_path: Path, name: str,
                                                      codec: str, decoder: str) -> None:
    """Phones record HEVC, and AV1 is what browsers and new cameras save: both decode
    with PyAV's own FFmpeg, with every frame's time kept and the sound copied."""
    src = make_video(tmp_path / "in" / name, frames=24, codec=codec,
                     audio="aac" if name.endswith(".mp4") else "libopus")
    with av.open(str(src)) as c:
        assert c.streams.video[0].codec_context.name == decoder
    assert _run(_manifest(tmp_path)).returncode == 0
    out = tmp_path / "out" / f"{name}.udnie.{'mp4' if name.endswith('.mp4') else 'mkv'}"
    assert frame_times(out) == frame_times(src)
    assert sound_packets(out) == sound_packets(src)


def test_a_steady_videos_segments_join_locked(tmp_path: Path) -> None:
    """The fast path's segments start their lattice lock (and the noise rolled with the
    scene) where the segment before left it (the driver's camera track): made in 1 s
    segments, a pan's frames at the joins are as near the same pan made in one segment as
    its other frames are.  (Unlocked and without noise at the joins, as segments that
    cannot know each other must be, they were 8 levels apart there against 3 elsewhere.)"""
    make_video(tmp_path / "in" / "pan.mp4", frames=36, fps=12, size=(192, 120))
    made = {}
    for seconds in (1.0, 10.0):
        folder = tmp_path / f"s{seconds}"
        folder.mkdir()
        (folder / "in").symlink_to(tmp_path / "in")
        job = _manifest(folder, styles=["great-wave"], size=128, segment_seconds=seconds)
        assert _run(job).returncode == 0
        made[seconds] = decoded_frames(folder / "out" / "pan.mp4.great-wave.mp4")
    apart = [float(np.abs(a.astype(np.float32) - b).mean())
             for a, b in zip(made[1.0], made[10.0], strict=True)]
    joins = [apart[i] for i in (11, 12, 13, 23, 24, 25)]  # segments start at 12 and 24
    assert max(apart) < 5.0 and max(joins) < 1.4 * float(np.median(apart)), apart


def test_the_camera_track_is_what_a_segments_lock_adds_up(tmp_path: Path) -> None:
    """A segment decoded from the middle of the video and locked from the track's entry
    at its first frame adds up the same translations as the track, bit for bit."""
    src = make_video(tmp_path / "pan.mp4", frames=30, fps=12, size=(160, 96), keyframes=6)
    data = src.read_bytes()
    from pipeline.config.settings import Settings

    info = probe_video(data, "pan.mp4", Settings())
    track = camera_track(data, "pan.mp4", info.frames, (128, 76))
    assert track[0].tolist() == [0.0, 0.0] and abs(track[-1][0]) > 5  # it pans
    first, steadier = 17, Steadier(0.8)
    moved = track[first].copy()
    for i, frame in enumerate(segment_frames(data, "pan.mp4", info.frames[first:],
                                             info.frames[first - 12]), start=first):
        motion = steadier.motion(frame.to_ndarray(format="rgb24", width=128, height=76,
                                                  interpolation="AREA"))
        if motion is not None:
            moved += scene_step(motion.offsets)
        assert np.array_equal(moved, track[i]), i


def test_the_camera_track_stops_when_asked(tmp_path: Path) -> None:
    """The driver makes the track before any segment; a stop asked meanwhile ends it
    within a frame."""
    from pipeline.config.settings import Settings
    from pipeline.errors import Cancelled

    data = make_video(tmp_path / "pan.mp4", frames=30, fps=12, size=(160, 96)).read_bytes()
    info = probe_video(data, "pan.mp4", Settings())
    asked = iter([False] * 5 + [True])
    with pytest.raises(Cancelled):
        camera_track(data, "pan.mp4", info.frames, (128, 76), lambda: next(asked))
    assert next(asked, None) is None  # asked six times: stopped at the sixth frame


def test_a_video_too_thin_for_the_flow_fails_alone(tmp_path: Path) -> None:
    """A steady video whose frames come out under the optical flow's 8 px (1024×12 at 512
    px: 512×6) fails with one line; the photo beside it is still made."""
    make_video(tmp_path / "in" / "thin.mp4", frames=30, fps=12, size=(1024, 12))
    (tmp_path / "in" / "pic.png").write_bytes((REPO / "examples/photos/coffee.png").read_bytes())
    done = _run(_manifest(tmp_path, size=512))
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "512×6 are too thin to be held steady" in done.stderr + done.stdout
    assert (tmp_path / "out" / "pic.png.udnie.jpg").exists()
    assert not (tmp_path / "out" / "thin.mp4.udnie.mp4").exists()
