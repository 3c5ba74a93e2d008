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

import numpy as np

from bench.flicker import frame_errors, read_frames
from bench.video import run_job


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
    pairs = frame_errors(read_frames(args.clip), read_frames(next(out.glob("*.mp4"))))
    errors = np.array([e for _, e in pairs])
    worst = sorted(pairs, key=lambda p: -p[1])[:5]
    print(json.dumps({"preset": args.preset, "clip": args.clip.name,
                      "mean": round(float(errors.mean()), 5),
                      "median": round(float(np.median(errors)), 5),
                      "worst_frames": [t for t, _ in worst],
                      "worst": [round(e, 5) for _, e in worst]}))


if __name__ == "__main__":
    main()
