"""How a steady video's segment joins hold: the warping error of every frame of a clip made
in short segments through the runner, the worst frames against the median.

A video is made in segments apart (pipeline.video.segments); a steadying that depends on
where its segment started shows as a jump at each join.  With ``segment_seconds: 1`` a 3 s
clip at 24 fps has joins at frames 24 and 48.

    python -m bench.experiments.segment_joins --preset udnie --clip bridge-pan.mp4
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from bench.flicker import consistent, read_frames
from bench.video import run_job
from pipeline.video.steady import warp


def frame_errors(originals: list[np.ndarray], stylized: list[np.ndarray]) -> list[float]:
    """The warping error of each frame after the first (bench/flicker.py's, per frame)."""
    h, w = stylized[0].shape[:2]
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grays = [cv2.cvtColor(cv2.resize(o, (w, h), interpolation=cv2.INTER_AREA),
                          cv2.COLOR_RGB2GRAY) for o in originals]
    out = []
    for t in range(1, len(stylized)):
        back = dis.calc(grays[t], grays[t - 1], None)
        mask = consistent(back, dis.calc(grays[t - 1], grays[t], None))
        carried = warp(stylized[t - 1].astype(np.float32) / 255, back)
        diff = ((stylized[t].astype(np.float32) / 255 - carried) ** 2).sum(-1)
        out.append(float(diff[mask].mean()) if mask.any() else 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="udnie")
    ap.add_argument("--clip", type=Path, required=True, help="a clip (bench/video.py makes them)")
    ap.add_argument("--segment-seconds", type=float, default=1.0)
    ap.add_argument("--steady", type=float, default=0.8)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="segment-joins-"))
    clips = work / "clips"
    clips.mkdir()
    (clips / args.clip.name).write_bytes(args.clip.read_bytes())
    out, _ = run_job(work / "run", clips, args.preset,
                     {"method": "fast", "size": 384, "steady": args.steady,
                      "segment_seconds": args.segment_seconds})
    errors = np.array(frame_errors(read_frames(args.clip), read_frames(next(out.glob("*.mp4")))))
    worst = (np.argsort(errors)[::-1][:5] + 1).tolist()
    print(json.dumps({"preset": args.preset, "clip": args.clip.name,
                      "mean": round(float(errors.mean()), 5),
                      "median": round(float(np.median(errors)), 5), "worst_frames": worst,
                      "worst": [round(float(errors[i - 1]), 5) for i in worst]}))


if __name__ == "__main__":
    main()
