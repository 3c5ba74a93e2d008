"""A trained network's file: safetensors (its tensors, and its config as JSON metadata),
never a pickle.

:func:`read_network` checks a file before anything of it is used: its size, that it is
safetensors and not a pickle, its digest, its recorded architecture, and every tensor's
name, shape and type against the network that architecture builds
(:mod:`pipeline.engine.network`).  The same bounded safetensors reader serves the
training checkpoint (:mod:`pipeline.engine.checkpoint`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import safetensors.torch
import torch
from safetensors import SafetensorError

from pipeline.engine.network import NetworkConfig, TransformNet
from pipeline.errors import WeightsError, clip
from pipeline.store import fsread, fsutil, jsonio
from pipeline.store.hashing import digest_json, digest_tensors

__all__ = ["FORMAT", "MAX_NETWORK_BYTES", "NETWORK_DTYPES", "LoadedNetwork", "check_network",
           "decode_network", "encode_network", "network_digest", "network_tensors",
           "read_network", "read_safetensors", "write_network"]

#: The file format, in every network file's metadata.
FORMAT = "stylize-network"
#: Largest network file read: the largest allowed network in float32, with room.
MAX_NETWORK_BYTES = 256 << 20


@dataclass(frozen=True)
class LoadedNetwork:
    """A network read from a file and checked: ready to run (in eval mode, on the CPU)."""

    net: TransformNet
    config: NetworkConfig
    digest: str  # :func:`network_digest`: what records name
    metadata: dict[str, str]  # everything the file recorded, its own fields included


def network_tensors(net: TransformNet) -> dict[str, torch.Tensor]:
    """The network's parameters by name, float32 on the CPU, contiguous: what is saved."""
    return {name: t.detach().to("cpu", torch.float32).contiguous()
            for name, t in net.state_dict().items()}


def network_digest(config: NetworkConfig, tensors: Mapping[str, torch.Tensor]) -> str:
    """The network's identity: its architecture and its tensors (not the file's bytes,
    which hold a creation time and whatever a caller added)."""
    return digest_json({"config": config.as_dict(), "tensors": digest_tensors(tensors)})


def encode_network(net: TransformNet, metadata: Mapping[str, str] | None = None) -> bytes:
    """The network as safetensors bytes; ``metadata`` (str to str) is kept beside its own."""
    tensors = network_tensors(net)
    header = {**dict(metadata or {}), "format": FORMAT,
              "config": json.dumps(net.config.as_dict(), sort_keys=True),
              "sha256": digest_tensors(tensors)}
    return safetensors.torch.save(tensors, metadata=header)


def write_network(path: Path, net: TransformNet,
                  metadata: Mapping[str, str] | None = None) -> str:
    """Write the network to ``path`` atomically (see :mod:`pipeline.store.fsutil`); its digest.

    Raises ``DiskFullError`` or ``OutputNotWritableError``; ``path`` is then untouched.
    """
    fsutil.atomic_write_bytes(Path(path), encode_network(net, metadata))
    return network_digest(net.config, network_tensors(net))


def read_network(path: Path, expected: NetworkConfig | None = None) -> LoadedNetwork:
    """The checked network of the file ``path`` (see :func:`decode_network`).

    Read once, whole and bounded (:func:`pipeline.store.fsread.read_bounded`): a FIFO, a
    folder or a file over :data:`MAX_NETWORK_BYTES` is refused unread.
    """
    path = Path(path)
    try:
        data = fsread.read_bounded(path, MAX_NETWORK_BYTES, "a network file")
    except FileNotFoundError:
        raise WeightsError(f"network file not found: {path}", category="network") from None
    except OSError as exc:
        raise WeightsError(f"{path.name}: cannot read the network file "
                           f"({exc.strerror or exc})", category="network") from None
    return decode_network(data, path.name, expected)


def decode_network(data: bytes, source: str,
                   expected: NetworkConfig | None = None) -> LoadedNetwork:
    """The checked network of a file's bytes; ``source`` names it in refusals.

    Every refusal is one :class:`~pipeline.errors.WeightsError` line (category
    ``network``) that says what is wrong and what to do; nothing of a refused file is used.
    """
    tensors, metadata = read_safetensors(data, source, what="network file")
    if metadata.get("format") != FORMAT:
        _refuse(source, "is not a stylize network file (no network format in its metadata)")
    config = check_network(tensors, metadata, source, expected)
    net = TransformNet(config)
    net.load_state_dict(tensors, strict=True)
    net.eval()
    return LoadedNetwork(net, config, network_digest(config, network_tensors(net)),
                         dict(metadata))


def check_network(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
                  source: str, expected: NetworkConfig | None = None) -> NetworkConfig:
    """The config a network's tensors and metadata hold, once both are checked.

    Checked: the content digest (``sha256``, as the cache writes it), the recorded
    config, that it is ``expected`` (when given), and that the tensors are exactly the
    parameters that config builds (names, shapes, floating dtypes, finite values).
    """
    if digest_tensors(tensors) != metadata.get("sha256"):
        _refuse(source, "is corrupt (its tensors do not match their recorded digest)")
    try:
        config = NetworkConfig.from_dict(jsonio.loads(metadata.get("config", "").encode()))
    except ValueError as exc:
        _refuse(source, f"cannot be used: {exc}")
    if expected is not None and config != expected:
        _refuse(source, f"was trained with {config.describe()}, but {expected.describe()} "
                        "is asked for; train it again with these settings", corrupt=False)
    with torch.device("meta"):  # shapes only: no memory, no initialization
        wanted = {n: tuple(t.shape) for n, t in TransformNet(config).state_dict().items()}
    got = {n: tuple(t.shape) for n, t in tensors.items()}
    if got != wanted:
        differ = sorted(set(got) ^ set(wanted)) or sorted(
            n for n in wanted if got[n] != wanted[n])
        _refuse(source, f"does not hold the network its config describes "
                        f"({config.describe()}; first difference at {differ[0]!r})")
    for name, t in tensors.items():
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            _refuse(source, f"is corrupt ({name!r} is not finite floating point)")
    return config


#: The tensor types stylize writes into a network (and so the only ones it reads back).
NETWORK_DTYPES = frozenset({torch.float32})


def read_safetensors(data: bytes, source: str, *, what: str, category: str = "network",
                     dtypes: frozenset[torch.dtype] = NETWORK_DTYPES,
                     ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of safetensors ``data``, from the same bytes; never a pickle.

    The file is read as safetensors' format defines it: eight bytes of little-endian header
    length, then that many bytes of JSON beginning with ``{``.  Only bytes that are not
    that are looked at again, to say what they are: a pickle (``torch.save``'s zip, or a
    raw pickle) is named as such and never opened, since unpickling runs whatever code the
    file holds.  (The first bytes of a valid file are its header length, which may well be
    ``0x80`` or ``PK``: a header 0x1280 bytes long begins with ``\x80``.)  A refusal is a
    :class:`~pipeline.errors.WeightsError` of ``category``.  Tensors of a type outside
    ``dtypes`` (what stylize writes) are refused in one line too: float8 has no arithmetic
    on the CPU, and float16 or float64 would only pass for a network by accident.
    """
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not (0 < size <= len(data) - 8 and data[8:9] == b"{"):
        if _pickled(data):
            _refuse(source, f"holds pickled Python objects (a torch.save file?), not a "
                            f"safetensors {what}; it was not opened", category=category)
        _refuse(source, f"is not a readable {what} (truncated or not safetensors)",
                category=category)
    try:
        header = jsonio.loads(data[8:8 + size])
        tensors = safetensors.torch.load(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        detail = " ".join(str(exc).split())[:120]
        _refuse(source, f"is not a readable {what} ({detail})", category=category)
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        _refuse(source, f"is not a readable {what} (no metadata)", category=category)
    for name, t in tensors.items():
        if t.dtype not in dtypes:
            kinds = ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes))
            _refuse(source, f"holds {clip(name, 80)!r} as {str(t.dtype).removeprefix('torch.')}"
                            f"; a {what} of stylize holds only {kinds}", category=category)
    return tensors, metadata


def _pickled(data: bytes) -> bool:
    """Whether bytes that are not safetensors are a zip archive (``torch.save``) or a
    pickle of protocol 2 or later (``\x80`` and the protocol number)."""
    return data[:4] == b"PK\x03\x04" or (data[:1] == b"\x80" and data[1:2] in
                                           (b"\x02", b"\x03", b"\x04", b"\x05"))


def _refuse(source: str, why: str, *, corrupt: bool = True,
            category: str = "network") -> NoReturn:
    """Raise the one line a refused file gets; a damaged file is best deleted and redone."""
    advice = "; delete it and train again" if corrupt else ""
    raise WeightsError(f"{source}: {why}{advice}", category=category)
