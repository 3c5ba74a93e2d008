"""What the benchmarks share: where the repository and the shared data are, and which
photos of the collection are held out (never trained on, the fast path is judged on them)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
COLLECTION = SHARED / "collection"
#: Never trained on: the photos the fast path's networks are judged on.
HELD_OUT = ("bridge.jpg", "dune.jpg", "garden.jpg", "kleiber.jpg")
