"""Finding Ray and the cluster: the optional import, joining or starting Ray, and the
reachability probe, each failure said in one line (a ``UsageError``, exit 2).

The rest of the package takes ``ray`` from here, so that a missing extra is noticed in
one place (:func:`require_ray`) and the package still imports without it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import re
import socket
from typing import Any

from pipeline.errors import UsageError

try:
    import ray
    import ray.exceptions
except ImportError:  # the optional extra is not installed: require_ray says so
    ray = None  # type: ignore[assignment]

__all__ = ["CONNECT_TIMEOUT_S", "connect", "one_line", "probe", "ray", "ray_available",
           "require_ray"]

RAY_MIN_VERSION = (2, 40)
#: How long connecting to a cluster may take before it is called unreachable.
CONNECT_TIMEOUT_S = 30.0


def ray_available() -> bool:
    return ray is not None


def _distribution() -> str:
    """The name this package is installed under, for the install hint."""
    with contextlib.suppress(Exception):
        names = importlib.metadata.packages_distributions().get("pipeline")
        if names:
            return names[0]
    return "stylize"


def require_ray() -> None:
    """Refuse, naming the extra to install, when Ray is missing or too old."""
    if ray is None:
        raise UsageError(f'--executor ray needs Ray, which is not installed: '
                         f'pip install "{_distribution()}[ray]" (the [ray] extra)')
    found = tuple(int(p) for p in re.findall(r"\d+", ray.__version__)[:2])
    if found < RAY_MIN_VERSION:
        raise UsageError(f"--executor ray needs ray>=2.40, found {ray.__version__}: "
                         f'pip install -U "{_distribution()}[ray]"')


def one_line(exc: BaseException) -> str:
    """The innermost ``SomeError: message`` line of an exception's text (Ray's are long)."""
    text = str(exc)
    found = re.findall(r"^(\w+(?:Error|Exception): .+)$", text, flags=re.MULTILINE)
    line = found[-1] if found else " ".join(text.split())
    return line if len(line) <= 200 else line[:197] + "..."


def connect(address: str | None, timeout: float, runtime_env: dict[str, Any] | None) -> bool:
    """Join (or start) Ray; True when this process started it and must shut it down."""
    assert ray is not None
    if ray.is_initialized():
        return False  # an embedding program (or the tests) already connected
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                               "logging_level": logging.ERROR}
    if runtime_env:
        options["runtime_env"] = runtime_env
    if address is None:
        ray.init(**options)
        return True
    probe(address, timeout)
    try:
        ray.init(address=address, **options)
    except Exception as exc:  # ConnectionError, RuntimeError, a missing ray[client], ...
        raise UsageError(f"cannot connect to the Ray cluster at {address}: "
                         f"{one_line(exc)}") from None
    return False


def probe(address: str, timeout: float) -> None:
    """Fail within ``timeout`` if nothing listens at the cluster's address.

    ``ray.init`` itself may wait a minute, and then end the process, on an address
    where nothing answers; a plain TCP connection tells in seconds.
    """
    assert ray is not None
    target: str | None = address.removeprefix("ray://")
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address("auto")
        except Exception:  # a private helper: if it moved, let ray.init tell
            return
        if target is None:
            raise UsageError("no running Ray cluster found for --ray-address auto; start one "
                             "with `ray start --head`, or leave --ray-address out to start "
                             "one for this run")
    assert target is not None
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"Ray address {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UsageError(f"cannot reach the Ray cluster at {address} within {timeout:.0f} s "
                         f"({why}); is `ray start --head` running there?") from None
