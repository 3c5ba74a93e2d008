"""The objective both methods minimize: content, style and smoothness, as small terms.

A term is built once from its target (a photo's features, one style side's statistics)
and then called on the features of a batch of pictures; it returns one loss per picture
(shape ``B``).  The objective is the weighted sum of its terms.  The optimizer builds one
per scale and calls it on the picture it moves; the network trainer builds the style
terms once and the content terms per batch of photos, and calls them on the network's
outputs.  Either way the numbers are the same functions of the same VGG-19 features
against the same cached style targets, so the two methods aim at the same picture.

The weights: ``content_weight``, ``style_weight`` and ``tv_weight`` scale the three
kinds of term, and within a kind the layer weights are normalized to sum to one (see
:func:`layer_weights`), so a preset's layer list and its overall balance are separate
knobs.  The terms themselves are defined in :mod:`pipeline.engine.losses`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch

from pipeline.config.settings import Settings
from pipeline.engine.losses import (
    W2Target,
    gram,
    relative_error,
    squared_norm,
    total_variation,
    w2_relative,
)
from pipeline.engine.style_targets import SideTargets, mean_key

Features = Mapping[str, torch.Tensor]


class Term(Protocol):
    """One weighted term: features and pictures of a batch in, a loss per picture out."""

    def __call__(self, features: Features, pictures: torch.Tensor) -> torch.Tensor: ...


def normalized(weights: Mapping[str, float]) -> dict[str, float]:
    """Layer weights scaled to sum to one, zero weights dropped."""
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items() if w > 0}


def layer_weights(settings: Settings) -> tuple[dict[str, float], dict[str, float]]:
    """The normalized content and style layer weights of these settings."""
    return normalized(settings.content_layers), normalized(settings.style_layers)


class ContentTerm:
    """``‖F(x) − F(photo)‖² / ‖F(photo)‖²`` at one layer, one photo per picture."""

    def __init__(self, layer: str, weight: float, target: torch.Tensor) -> None:
        self.layer, self.weight = layer, weight
        # In float32 once, with its norm: not converted and measured at every step.
        self.target = target.float()
        self.norm = squared_norm(self.target)

    def __call__(self, features: Features, pictures: torch.Tensor) -> torch.Tensor:
        return self.weight * relative_error(features[self.layer], self.target, self.norm)


class GramTerm:
    """``‖G(x) − G(painting)‖² / ‖G(painting)‖²`` at one layer (Gatys et al.)."""

    def __init__(self, layer: str, weight: float, target: torch.Tensor) -> None:
        self.layer, self.weight = layer, weight
        self.target = target  # 1×C×C: every picture of a batch has the same style
        self.norm = squared_norm(target)

    def __call__(self, features: Features, pictures: torch.Tensor) -> torch.Tensor:
        return self.weight * relative_error(gram(features[self.layer]), self.target, self.norm)


class W2Term:
    """The Wasserstein-2 distance between Gaussian fits of the features, at one layer."""

    def __init__(self, layer: str, weight: float, target: W2Target) -> None:
        self.layer, self.weight, self.target = layer, weight, target

    def __call__(self, features: Features, pictures: torch.Tensor) -> torch.Tensor:
        return self.weight * w2_relative(features[self.layer], self.target)


class SmoothnessTerm:
    """Total variation of the pictures themselves: against noise and ringing."""

    def __init__(self, weight: float) -> None:
        self.weight = weight

    def __call__(self, features: Features, pictures: torch.Tensor) -> torch.Tensor:
        return self.weight * total_variation(pictures)


class TemporalTerm:
    """Ruder et al.'s temporal term: the mean squared difference (RGB in [0, 1]) from the
    previous frame carried to this one, counted where the carrying is trusted (``trust``,
    0-1 per pixel: not occluded, not newly revealed)."""

    def __init__(self, weight: float, target: torch.Tensor, trust: torch.Tensor) -> None:
        self.weight = weight
        self.target, self.trust = target.float(), trust.float()  # B×3×H×W, B×1×H×W
        self.count = target[0].numel()

    def __call__(self, features: Features, pictures: torch.Tensor) -> torch.Tensor:
        held = (pictures.float() - self.target).pow(2) * self.trust
        return self.weight * held.sum((1, 2, 3)) / self.count


def content_terms(settings: Settings, features: Features) -> list[Term]:
    """Content terms towards these photos' features (``B`` photos, one per picture)."""
    layers, _ = layer_weights(settings)
    return [ContentTerm(name, settings.content_weight * w, features[name])
            for name, w in layers.items()]


def style_terms(settings: Settings, side: SideTargets, device: torch.device,
                feature_scale: float = 1.0) -> list[Term]:
    """Style terms towards one style side's cached statistics, on ``device``.

    ``feature_scale`` is the factor a float16 network's activations carry (see
    ``vgg.FP16_FEATURE_SCALE``): targets are statistics of the true activations, so
    means are scaled by it and second moments by its square.
    """
    _, layers = layer_weights(settings)
    terms: list[Term] = []
    for name, w in layers.items():
        weight = settings.style_weight * w
        if settings.style_loss == "w2":
            if mean_key(name) not in side:
                raise ValueError("style targets without feature means (made by an older "
                                 "version) cannot serve style_loss w2")
            target = W2Target(side[mean_key(name)] * feature_scale,
                              side[name] * feature_scale**2).to(device)
            terms.append(W2Term(name, weight, target))
        else:
            terms.append(GramTerm(name, weight,
                                  side[name].to(device).unsqueeze(0) * feature_scale**2))
    return terms


def smoothness_terms(settings: Settings) -> list[Term]:
    return [SmoothnessTerm(settings.tv_weight)] if settings.tv_weight else []


class Objective:
    """The weighted sum of terms; ``objective(features, pictures)`` is a loss per picture."""

    def __init__(self, terms: Sequence[Term]) -> None:
        self.terms = list(terms)

    @classmethod
    def build(cls, settings: Settings, content: Features, style: Sequence[Term],
              extra: Sequence[Term] = ()) -> Objective:
        """Content towards ``content`` (features of the photos), the given style terms,
        smoothness, then any ``extra`` (a video frame's temporal term): in this order, the
        order the sum is taken in."""
        return cls([*content_terms(settings, content), *style, *smoothness_terms(settings),
                    *extra])

    def __call__(self, features: Features, pictures: torch.Tensor) -> torch.Tensor:
        loss = torch.zeros(pictures.shape[0], device=pictures.device)
        for term in self.terms:
            loss = loss + term(features, pictures)
        return loss
