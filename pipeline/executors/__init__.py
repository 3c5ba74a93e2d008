"""Where photos are stylized: in this process, or on Ray workers (see :mod:`.base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pipeline.errors import UsageError

if TYPE_CHECKING:
    from pipeline.executors.base import Executor
    from pipeline.store.cache import ArtifactCache

__all__ = ["EXECUTOR_KINDS", "make_executor"]

ExecutorKind = Literal["local", "ray"]
EXECUTOR_KINDS: tuple[str, ...] = ("local", "ray")


def make_executor(kind: str, *, cache: ArtifactCache | None,
                  ray_address: str | None = None, workers: int | None = None,
                  cpus_per_worker: int | None = None,
                  gpus_per_worker: float | None = None) -> Executor:
    """The executor named by ``--executor`` (or the manifest's ``executor``).

    ``local`` takes none of the other options; ``ray`` connects to (or starts) Ray and
    starts its workers here, so a missing Ray, an unreachable cluster or a cluster that
    cannot run a worker is a ``UsageError`` (exit 2) before any photo is read.
    """
    if kind == "local":
        given = [name for name, value in (("--ray-address", ray_address),
                                          ("--workers", workers),
                                          ("--cpus-per-worker", cpus_per_worker),
                                          ("--gpus-per-worker", gpus_per_worker))
                 if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only apply with --executor ray")
        from pipeline.executors.local import LocalExecutor

        return LocalExecutor(cache)
    if kind == "ray":
        from pipeline.executors.ray import RayExecutor

        return RayExecutor(ray_address, workers, cpus_per_worker, gpus_per_worker, cache)
    raise UsageError(f"unknown executor {kind!r}; known: {', '.join(EXECUTOR_KINDS)}")
