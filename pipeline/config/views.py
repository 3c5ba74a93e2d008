"""Named views of the settings: every knob belongs to one, and every identity is made of them.

A key (a result's, a trained network's, a style target's) must hold what decides its
artifact and nothing else.  Rather than each key listing knobs by hand, the knobs are
sorted here, once, by what they are about; keys take whole views, or the few knobs of a
view they read.  A new knob is put into one view (``tests/test_views.py`` fails until it
is) and every key that holds that view follows.

* ``schedule``: how the optimizer works through a photo (sizes, steps, its own knobs);
* ``loss``: the objective, which both methods minimize;
* ``vgg``: the loss network (which weights, and how it is run);
* ``network`` and ``training``: the fast path's network and how it is trained;
* ``hardware``: where and in what tiles or batches the work is laid out, and in what
  precision the networks run;
* ``output``: the file written;
* ``limits``: what input is refused;
* ``video``: what only a video reads.
"""

from __future__ import annotations

from typing import Any

from pipeline.config.settings import SETTING_NAMES, Settings
from pipeline.store.hashing import digest_json

VIEWS: dict[str, frozenset[str]] = {
    "schedule": frozenset({"size", "min_side", "scale_ratio", "min_scales", "steps",
                           "optimizer", "learning_rate", "average", "warm_start", "sharpen",
                           "pyramid_scales", "stop_tolerance", "min_steps", "init", "seed",
                           "method"}),
    "loss": frozenset({"content_weight", "style_weight", "tv_weight", "content_layers",
                       "style_layers", "style_scale", "style_loss", "preserve_color"}),
    "vgg": frozenset({"weights", "pooling", "pad"}),
    "network": frozenset({"network_width", "network_noise", "network_paint_scale"}),
    "training": frozenset({"train_steps", "train_size", "train_batch", "train_learning_rate",
                           "network_style_ratio"}),
    "hardware": frozenset({"device", "precision", "tile_pixels", "tile_overlap",
                           "batch_size"}),
    "output": frozenset({"format", "quality", "strength", "metadata", "keep_mtime"}),
    "limits": frozenset({"max_pixels", "max_video_seconds"}),
    "video": frozenset({"steady", "video_quality", "segment_seconds", "temporal_weight",
                        "warm_steps"}),
}

#: Knobs that never change a result's pixels, left out of every result's key: where and
#: how the work is laid out (device, tiles and batches change last bits at most, never
#: the picture a person sees; a result is not redone because it would now be made on
#: another device), what is refused, and the output file's time.  Not precision: bf16
#: and float32 pictures differ visibly enough to be told apart.
UNKEYED = (VIEWS["hardware"] - {"precision"}) | VIEWS["limits"] | {"keep_mtime"}

#: Knobs added after results were first keyed, each with the value that gives the picture
#: made before it existed.  At that value a knob is left out of a result's key, so that
#: adding it did not make every finished photo due again (``min_steps`` only matters with
#: a ``stop_tolerance``).
NEUTRAL_KNOBS: dict[str, object] = {"style_loss": "gram", "pad": "zeros", "average": 0.0,
                                    "warm_start": False, "stop_tolerance": 0.0, "sharpen": 0.0,
                                    "pyramid_scales": 0, "min_scales": 1, "method": "optimize",
                                    "strength": 1.0, "network_paint_scale": 1.0,
                                    "temporal_weight": 0.0,
                                    "warm_steps": None}


def view(settings: Settings, name: str, *, prefix: str = "") -> dict[str, Any]:
    """The knobs of one view and their values (``prefix`` taken off their names)."""
    return {k.removeprefix(prefix): v for k, v in settings.model_dump(include=set(VIEWS[name]))
            .items()}


def knobs(*names: str) -> frozenset[str]:
    """The knobs of these views together."""
    return frozenset().union(*(VIEWS[n] for n in names))


def without_neutral(values: dict[str, Any]) -> dict[str, Any]:
    """Knobs at the value that gives the picture made before they existed stay out of a
    key, so that adding one made no finished photo due again."""
    return {k: v for k, v in values.items() if k not in NEUTRAL_KNOBS or v != NEUTRAL_KNOBS[k]}


def unsorted_knobs() -> list[str]:
    """Knobs in no view, or in more than one (a test keeps this empty)."""
    seen = [k for names in VIEWS.values() for k in names]
    return sorted({k for k in SETTING_NAMES if seen.count(k) != 1} | (set(seen)
                                                                        - set(SETTING_NAMES)))


def settings_digest(settings: Settings, *names: str) -> str:
    """The digest of these views of ``settings`` (all of them when none are named): how
    what is built once per settings in a process (engines, target makers, a measured
    batch size) is told apart."""
    return digest_json(settings.model_dump(include=set(knobs(*names)) if names else None))
