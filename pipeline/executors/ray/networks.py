"""Trained networks by object reference: read and checked once on the driver, shipped once.

The driver finds a fast preset's network (:func:`pipeline.training.networks.find_network`),
reads the file once, checks it once (a damaged file is refused here, in one line,
rather than on every worker), and puts its bytes in Ray's object store once per network
digest (:class:`NetworkShipper`); tasks carry the digest and the reference.  A worker
fetches a reference once and keeps the decoded network (:class:`WorkerNetworks`), so a
cluster without a shared disk runs the very network the driver has.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pipeline.config.styles import Preset
from pipeline.errors import StylizeError, WeightsError
from pipeline.executors.ray.connect import ray
from pipeline.render.network_loader import network_config, still_the_presets
from pipeline.store import fsread
from pipeline.store.cache_dir import default_cache_dir
from pipeline.training.networks import bound_network

if TYPE_CHECKING:
    from pipeline.engine.network_file import LoadedNetwork

__all__ = ["NetworkShipper", "ShippedNetwork", "WorkerNetworks"]

#: ``(digest, ObjectRef of the file's bytes)``: what a task of a fast preset carries.
ShippedNetwork = tuple[str, Any]
#: Networks a worker keeps decoded (a few MB each).
WORKER_NETWORKS_KEPT = 8


def _expected(preset: Preset) -> Any:
    return network_config(preset.settings)


class NetworkShipper:
    """The driver's end: each network read, checked and put in Ray once."""

    def __init__(self, cache_root: Path | None) -> None:
        self.cache_root = cache_root  # None: the default cache, as it is when asked
        self.shipped = 0
        self._refs: dict[str, Any] = {}

    def ship(self, preset: Preset) -> ShippedNetwork:
        from pipeline.engine.network_file import MAX_NETWORK_BYTES, decode_network

        assert ray is not None
        if preset.network in self._refs:  # bound by the plan: shipped once, by digest
            return preset.network, self._refs[preset.network]
        ref = bound_network(preset, self.cache_root or default_cache_dir())  # or refused
        try:
            data = fsread.read_bounded(ref.path, MAX_NETWORK_BYTES, "a network file")
        except OSError as exc:
            raise WeightsError(f"{ref.path}: cannot read the network file "
                               f"({exc.strerror or exc})", category="network") from None
        loaded = still_the_presets(decode_network(data, str(ref.path), _expected(preset)),
                                   preset, ref.path)
        if loaded.digest not in self._refs:
            self._refs[loaded.digest] = ray.put(data)
            self.shipped += 1
        return loaded.digest, self._refs[loaded.digest]

    def clear(self) -> None:
        self._refs.clear()


class WorkerNetworks:
    """A worker's ``NetworkSource``: the network the driver shipped with the task at hand."""

    def __init__(self) -> None:
        self._current: ShippedNetwork | None = None
        self._kept: OrderedDict[str, LoadedNetwork] = OrderedDict()

    def use(self, network: ShippedNetwork | None) -> None:
        self._current = network

    def __call__(self, preset: Preset) -> LoadedNetwork:
        from pipeline.engine.network_file import decode_network

        assert ray is not None
        if self._current is None:
            raise StylizeError(f"style {preset.name!r}: no network was shipped with the task")
        digest, ref = self._current
        if digest not in self._kept:
            shipped = cast(bytes, ray.get(ref))
            loaded = decode_network(shipped, "the network shipped by the driver",
                                    _expected(preset))
            self._kept[digest] = loaded
            while len(self._kept) > WORKER_NETWORKS_KEPT:
                self._kept.popitem(last=False)
        self._kept.move_to_end(digest)
        return self._kept[digest]
