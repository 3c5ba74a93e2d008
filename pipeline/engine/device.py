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


def _cpu_vendor() -> str:
    """The CPU's vendor string (GenuineIntel, AuthenticAMD), or "" where it cannot be read.

    MKL and oneDNN choose their kernels by vendor as well as by instruction set, so two
    CPUs with the same instructions may still round differently.
    """
    try:
        with open("/proc/cpuinfo", "rb") as fh:
            head = fh.read(4096).decode("ascii", "replace")
    except OSError:
        return ""
    for line in head.splitlines():
        if line.startswith("vendor_id"):
            return line.partition(":")[2].strip()[:32]
    return ""


def float_signature(device: torch.device) -> str:
    """What decides the last bits of a result here: the torch build and the kernels it runs.

    Two runs with the same signature make the same picture byte for byte; with different
    ones (another CPU family, another GPU, another torch) the float results differ in their
    last bits, and an optimization carries such differences into slightly different
    pixels.  The thread count is part of it on the CPU.  Written into every record so
    that ``explain`` can tell which case it is.
    """
    torch_build = f"torch {torch.__version__}"
    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(device)}, {torch_build}"
    if device.type != "cpu":
        return f"{device.type}, {torch_build}"
    features = [torch.backends.cpu.get_cpu_capability()]
    for name, probe in (("avx512-bf16", "_is_avx512_bf16_supported"),
                        ("amx", "_is_amx_tile_supported")):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            features.append(name)
    vendor = _cpu_vendor() or "unknown vendor"
    # The thread count splits reductions differently (measured: W2 and early stopping
    # pictures differ between one and two threads on the same CPU).
    threads = torch.get_num_threads()
    return (f"cpu {vendor} {'+'.join(features)}, {threads} thread{'s' if threads > 1 else ''}, "
            f"{torch_build}")
