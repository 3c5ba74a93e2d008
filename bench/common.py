"""What the benchmarks share: where the repository and the shared data are, and which
photos of the collection are held out (never trained on, the fast path is judged on them)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
COLLECTION = SHARED / "collection"
#: Never trained on: the photos the fast path's networks are judged on.
HELD_OUT = ("bridge.jpg", "dune.jpg", "garden.jpg", "kleiber.jpg")

#: The repository's sample photos, which the speed benchmarks make their batches from.
PHOTOS = sorted((REPO / "examples" / "photos").glob("*.png"))


def make_photos(folder: Path, count: int) -> None:
    """``count`` different 640×480 photos in ``folder``, cut and mirrored from the samples
    (so that no two are the same bytes, and none is done already)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = Image.open(PHOTOS[i % len(PHOTOS)]).convert("RGB")
        w, h = img.size
        dx = (i // len(PHOTOS)) * w // (4 * max(1, count // len(PHOTOS)))
        img = img.crop((dx, 0, w, h)).resize((640, 480), Image.Resampling.LANCZOS)
        if i % 2:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img.save(folder / f"photo-{i:03d}.png")
