"""Choosing the device and the precision the network runs in."""

from __future__ import annotations

import torch

from pipeline.errors import UsageError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # settings refuse such names; this is for callers that skip them
        raise UsageError(f"unknown device {name!r}; expected auto, cpu, cuda, cuda:N or mps"
                         ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} asked for, but no CUDA device is available")
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if not 0 <= device.index < count:
            raise UsageError(f"device {name!r} asked for, but this machine has {count} CUDA "
                             f"device{'s' if count != 1 else ''} (cuda:0 to cuda:{count - 1})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"device {name!r} asked for, but MPS is not available")
    return device


def cpu_has_bf16() -> bool:
    """True where oneDNN runs bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """The dtype the network's convolutions run in; losses stay float32 regardless."""
    if name == "fp32":
        return torch.float32
    if name == "fp16":
        if device.type == "cpu":
            raise UsageError("precision fp16 needs a GPU; use bf16 or fp32 on the CPU")
        return torch.float16
    if name == "bf16":
        return torch.bfloat16
    # auto
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return torch.float32
