"""Where a preset's trained network lives and what decides it, without torch.

A network is an artifact like a style target: its key holds everything that decides it
(the paintings and their blend, the VGG-19 weights and how they are used, the loss
settings, the architecture and the training settings but the step count, which only says
how far it goes) but not which photos it saw, so adding photos to a collection does not
retrain.  Two places are looked in, in order:

1. the cache, ``<cache>/network/<key[:2]>/<key>.safetensors`` (what ``stylize train``
   writes, and a fast job trains when it finds none): a user's own network wins;
2. the preset's folder, ``network.safetensors``, for presets that ship one; it is used
   only if it says it was trained with these very settings (its ``network_key``).

Planning needs the network's digest for the keys of fast results (a retrained network
makes them due again) and must not import torch, so this module reads only a file's
safetensors header; the tensors are checked against that digest when the network is
loaded (:mod:`pipeline.engine.network`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.config.manifest import Manifest
from pipeline.config.styles import Preset
from pipeline.config.views import view
from pipeline.config.weights_id import weights_digest
from pipeline.errors import NetworkMissingError
from pipeline.plan.methods import needs_network
from pipeline.store import fsread, jsonio
from pipeline.store.hashing import digest_json

#: A preset's own trained network, in its folder.
PRESET_NETWORK_FILE = "network.safetensors"
#: The cache's folder of networks (beside the style targets' kinds).
CACHE_KIND = "network"
#: The network's layout and output head (``engine.network`` builds it): in every key and
#: every file, so that a file of another architecture is refused and a change retrains.
ARCHITECTURE = "johnson-instancenorm-sigmoid-1"
#: Residual blocks of the network (Johnson et al.'s five).
BLOCKS = 5
#: A safetensors header is a few KB for a network; more is not one of ours.
MAX_HEADER_BYTES = 1 << 20
#: Bumped when the meaning of a network key changes.
KEY_VERSION = 2  # 2: crops framed at the working size, the weights averaged

#: Metadata a network file carries (besides the network module's own fields).
META_KEY, META_DIGEST, META_STYLE = "network_key", "network_digest", "style"


@dataclass(frozen=True)
class NetworkRef:
    """A trained network found for a preset: where, which (its digest), and from where."""

    path: Path
    digest: str
    source: str  # "cache" or "preset"
    metadata: dict[str, str]


def network_identity(preset: Preset) -> dict[str, Any]:
    """Everything that decides a preset's network (see the module docstring)."""
    s = preset.settings
    training = view(s, "training", prefix="train_")
    # Not the step count: more steps go on from the checkpoint (the same network, trained
    # further), as ``stylize train --steps`` does.  The style ratio is in the loss below.
    del training["steps"], training["network_style_ratio"]
    vgg = view(s, "vgg")
    network = view(s, "network", prefix="network_")
    del network["paint_scale"]  # where a trained network paints, not what it is
    return {
        "version": KEY_VERSION,
        "architecture": ARCHITECTURE,
        "network": {**network, "blocks": BLOCKS},
        "training": {**training, "seed": s.seed},
        "paintings": preset.paintings_identity(),
        "weights": weights_digest(vgg.pop("weights")),
        "vgg": vgg,
        # The loss the network is trained with (network_style_ratio applied).
        "loss": view(s.for_training(), "loss"),
    }


def network_key(preset: Preset) -> str:
    return digest_json(network_identity(preset))


def cache_paths(cache_root: Path, key: str) -> tuple[Path, Path, Path]:
    """The network file, its training checkpoint and its trainer's lock, in the cache."""
    folder = Path(cache_root) / CACHE_KIND / key[:2]
    return (folder / f"{key}.safetensors", folder / f"{key}.checkpoint.safetensors",
            folder / f"{key}.lock")


def read_header(path: Path) -> dict[str, str] | None:
    """A safetensors file's metadata, read from its header alone; None if it has none.

    Bounded and regular files only (a FIFO or a device in a network's place is no
    network); anything unreadable is ``None``: the caller trains or says it has none.
    """
    try:
        with fsread.open_regular(path, max_bytes=None, what="a network file") as fh:
            head = fh.read(8)
            size = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < size <= MAX_HEADER_BYTES:
                return None
            header = jsonio.loads(fh.read(size))
    except (OSError, ValueError):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        return None
    return {str(k): v for k, v in meta.items()}


def find_network(preset: Preset, cache_root: Path) -> NetworkRef | None:
    """The network a fast job of ``preset`` uses: the cache's, else the preset's own."""
    key = network_key(preset)
    candidates = [(cache_paths(cache_root, key)[0], "cache")]
    if preset.source != "image":  # a preset's path is its preset.yaml, in its folder
        candidates.append((Path(preset.path).parent / PRESET_NETWORK_FILE, "preset"))
    for path, source in candidates:
        if not os.path.lexists(path):
            continue
        meta = read_header(path)
        if meta is not None and meta.get(META_KEY) == key and meta.get(META_DIGEST):
            return NetworkRef(path, meta[META_DIGEST], source, meta)
    return None


def no_network(preset: Preset) -> NetworkMissingError:
    return NetworkMissingError(f"style {preset.name!r} has no trained network for these "
                               f"settings; train one with: stylize train {preset.name} --on "
                               "FOLDER (or run the manifest, whose fast jobs train theirs "
                               "first)")


def bound_network(preset: Preset, cache_root: Path) -> NetworkRef:
    """The network ``preset`` is bound to (:func:`bind`), as an executor loads it.

    Results are keyed by the bound network's digest before they are made, so a network
    found now that is not that one (trained again while a run was under way) is refused
    for this run rather than recorded under another network's key; the next run plans
    with the new one.
    """
    ref = find_network(preset, cache_root)
    if ref is None or not preset.network:
        raise no_network(preset)
    check_bound(preset, ref.digest)
    return ref


def check_bound(preset: Preset, digest: str) -> None:
    """Refuse a network other than the one ``preset`` is bound to (see above)."""
    if digest != preset.network:
        raise NetworkMissingError(
            f"style {preset.name!r}: its network was trained again while this run was "
            "under way; run again to make its photos with the new one")


def bind(preset: Preset, cache_root: Path) -> Preset:
    """``preset`` naming the network its fast results are made with (unchanged otherwise)."""
    if not needs_network(preset.settings):
        return preset
    ref = find_network(preset, cache_root)
    return replace(preset, network=ref.digest if ref is not None else "")


def bind_networks(manifest: Manifest, cache_root: Path) -> Manifest:
    """The manifest with each fast style bound to its network (see :func:`bind`), so that
    planning keys fast results by the network that makes them."""
    jobs = tuple(replace(job, styles=tuple(bind(p, cache_root) for p in job.styles))
                 for job in manifest.jobs)
    return replace(manifest, jobs=jobs)


def describe(ref: NetworkRef | None) -> dict[str, Any]:
    """What ``stylize styles list/show`` say of a preset's network."""
    if ref is None:
        return {"trained": False}
    state = ref.metadata.get("training")
    try:
        # Bounded: a shipped network's metadata is anyone's text (100,000 brackets
        # reached Python's recursion limit in ``styles list``).
        training = jsonio.loads(state.encode()) if state else {}
    except ValueError:
        training = {}
    if not isinstance(training, dict):
        training = {}
    return {"trained": True, "source": ref.source, "path": os.fsdecode(ref.path),
            "digest": ref.digest, **({"training": training} if training else {})}
