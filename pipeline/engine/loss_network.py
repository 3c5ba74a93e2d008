"""The VGG-19 a loss is measured with: set up here, once, for the optimizer, the trainer and
the style-target maker alike (the same weights, pooling and padding for all three, so the
statistics they compare come from one network)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from pipeline.config.settings import Settings
from pipeline.engine.vgg import FeatureExtractor
from pipeline.engine.weights import Weights, load_network

__all__ = ["loss_network"]


def loss_network(settings: Settings, layers: Iterable[str], device: torch.device,
                 dtype: torch.dtype = torch.float32) -> tuple[FeatureExtractor, Weights]:
    """VGG-19 with the settings' weights, pooling and padding, in ``dtype``, cut after the
    deepest of ``layers`` (deeper ones would cost time in every step and add nothing);
    and the weights it was built from.  The stack is shared by the whole process
    (``weights.load_network``), so this is cheap after the first call."""
    features, preprocess, weights = load_network(settings.weights, settings.pooling, device,
                                                 dtype)
    return FeatureExtractor(features, preprocess, layers, pad=settings.pad), weights
