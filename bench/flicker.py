"""How much a stylized video flickers: the warping error of Lai et al. (2018).

For each pair of consecutive frames, the optical flow between the *original* frames
(OpenCV's DIS flow, its "medium" preset, both ways) carries the previous stylized frame
onto the current one; where the flow is consistent both ways (not occluded, not
wrong), the squared difference between the two (RGB in [0, 1], summed over channels)
is averaged.  The warping error is the mean over all pairs: 0 for a video whose
painting moves exactly with the footage.

    python -m bench.flicker ORIGINAL.mp4 STYLIZED.mp4 [STYLIZED2.mp4 ...]

prints each stylized video's warping error (frames are matched in order; a stylized
video of another size is compared at its own size, the originals resized to it).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import av
import cv2
import numpy as np

__all__ = ["consistent", "frame_errors", "read_frames", "warping_error"]


def read_frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        out = []
        for frame in c.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if limit is not None and len(out) >= limit:
                break
        return out


def _warp(picture: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    h, w = offsets.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(picture, gx + offsets[..., 0], gy + offsets[..., 1],
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def consistent(back: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Pixels whose flow back to the previous frame and forward again returns near them
    (the test of Sundaram et al., as Ruder et al. and Lai et al. use it)."""
    there = _warp(forward, back)
    total = back + there
    return (total ** 2).sum(-1) < 0.01 * ((back ** 2).sum(-1) + (there ** 2).sum(-1)) + 0.5


def frame_errors(originals: Sequence[np.ndarray],
                 stylized: Sequence[np.ndarray]) -> list[tuple[int, float]]:
    """Each frame's warping error against the one before, as (frame index, error), for the
    frames whose flow is consistent somewhere."""
    if len(originals) != len(stylized):
        raise ValueError(f"{len(originals)} original frames but {len(stylized)} stylized")
    h, w = stylized[0].shape[:2]
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grays = [cv2.cvtColor(cv2.resize(o, (w, h), interpolation=cv2.INTER_AREA),
                          cv2.COLOR_RGB2GRAY) for o in originals]
    errors = []
    for t in range(1, len(stylized)):
        back = dis.calc(grays[t], grays[t - 1], None)
        forward = dis.calc(grays[t - 1], grays[t], None)
        mask = consistent(back, forward)
        if not mask.any():
            continue
        carried = _warp(stylized[t - 1].astype(np.float32) / 255, back)
        diff = ((stylized[t].astype(np.float32) / 255 - carried) ** 2).sum(-1)
        errors.append((t, float(diff[mask].mean())))
    return errors


def warping_error(originals: Sequence[np.ndarray], stylized: Sequence[np.ndarray]) -> float:
    errors = [e for _, e in frame_errors(originals, stylized)]
    return float(np.mean(errors)) if errors else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("original", type=Path)
    ap.add_argument("stylized", type=Path, nargs="+")
    args = ap.parse_args()
    originals = read_frames(args.original)
    for path in args.stylized:
        frames = read_frames(path)
        n = min(len(frames), len(originals))
        print(f"{path}: warping error {warping_error(originals[:n], frames[:n]):.5f} "
              f"over {n} frames")


if __name__ == "__main__":
    main()
