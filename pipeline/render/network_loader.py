"""Trained networks as an executor uses them: found, read once, checked, then kept.

The lookup is :func:`pipeline.training.networks.find_network` (the cache, then the preset's own
file); the reading and every check are :func:`pipeline.engine.network_file.read_network`'s.
A network is kept by digest, so a watcher that runs for days reads each once; a watcher
binds each photo's presets anew, so a network retrained meanwhile (a new digest) is read
then, while a run refuses one trained again after it was planned (its results' keys name
the network they were planned with).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from pipeline.config.settings import Settings
from pipeline.config.styles import Preset
from pipeline.engine.network import NetworkConfig
from pipeline.engine.network_file import LoadedNetwork, read_network
from pipeline.errors import WeightsError
from pipeline.training.networks import BLOCKS, META_KEY, bound_network, check_bound, network_key

#: Networks kept in memory (a few MB each).
KEPT = 8


def network_config(settings: Settings) -> NetworkConfig:
    """The network's architecture a preset's settings ask for."""
    return NetworkConfig(width=settings.network_width, blocks=BLOCKS,
                         noise=settings.network_noise)


def still_the_presets(loaded: LoadedNetwork, preset: Preset, path: Path) -> LoadedNetwork:
    """``loaded``, if it is still the network of ``preset``'s settings.

    What was read decides, not the header looked at before: the file may have been
    replaced, atomically, by a newer training in between, which is fine if it is still
    this preset's (its digest is then the one recorded).
    """
    if loaded.metadata.get(META_KEY) != network_key(preset):
        raise WeightsError(f"{path}: not the network of style {preset.name!r} with these "
                           "settings (replaced while it was read?); run again",
                           category="network")
    check_bound(preset, loaded.digest)
    return loaded


class NetworkLoader:
    """``loader(preset)``: the checked network a fast job of ``preset`` uses."""

    def __init__(self, cache_root: Path) -> None:
        self.cache_root = cache_root
        self._kept: OrderedDict[str, LoadedNetwork] = OrderedDict()

    def __call__(self, preset: Preset) -> LoadedNetwork:
        if preset.network in self._kept:
            # Bound by the plan (its key names this digest): no file is looked at again.
            self._kept.move_to_end(preset.network)
            return self._kept[preset.network]
        ref = bound_network(preset, self.cache_root)  # the bound one, or refused
        expected = network_config(preset.settings)
        loaded = still_the_presets(read_network(ref.path, expected), preset, ref.path)
        self._kept[loaded.digest] = loaded
        while len(self._kept) > KEPT:
            self._kept.popitem(last=False)
        return loaded
