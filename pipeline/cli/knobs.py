"""Command-line options made from :class:`~pipeline.config.settings.Settings`, not written again.

A knob's name, type, choices and help text live in ``Settings`` only; this module
turns the knobs named in :data:`IMAGE_KNOBS` into Typer options (``style_weight``
becomes ``--style-weight``, a ``Literal`` becomes a choice, a list of steps is
written ``250,120,50``), and ``--set KEY=VALUE`` reaches every other knob.
"""

from __future__ import annotations

import enum
import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

import typer

from pipeline.cli.common import errors
from pipeline.config.settings import SETTING_NAMES, Settings
from pipeline.errors import UsageError

#: The knobs ``stylize image`` takes as named options (the most used ones).
IMAGE_KNOBS = ("method", "size", "steps", "style_weight", "content_weight", "tv_weight",
               "preserve_color", "optimizer", "init", "device", "precision", "seed", "weights",
               "quality", "tile_pixels", "metadata", "style_loss", "strength")


def _inner(annotation: Any) -> Any:
    """``float | None`` -> ``float``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def knob_parameter(name: str) -> inspect.Parameter:
    """A keyword parameter whose default is the Typer option of the knob ``name``."""
    field = Settings.model_fields[name]
    kind = _inner(field.annotation)
    help_text = (field.description or name).rstrip(".")
    option_type: Any = kind if kind in (int, float, str) else str
    if typing.get_origin(kind) is Literal:
        # Typer shows an Enum's values as the choices; the values are the Literal's.
        choices = {str(c).replace("-", "_"): str(c) for c in typing.get_args(kind)}
        option_type = enum.StrEnum(name.title().replace("_", ""), choices)  # type: ignore[misc,no-redef]
    elif typing.get_origin(kind) is list:
        help_text += ", comma-separated, e.g. 250,120,50"
    flag = "--" + name.replace("_", "-")
    option = typer.Option(None, flag, help=help_text,
                          show_default=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=option_type | None)


def _value(name: str, raw: Any) -> Any:
    if raw is None:
        return None
    if isinstance(raw, enum.Enum):
        return raw.value
    if typing.get_origin(_inner(Settings.model_fields[name].annotation)) is list:
        try:
            return [int(v) for v in str(raw).split(",") if v.strip()]
        except ValueError:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} takes comma-separated integers, got {raw!r}") from None
    return raw


def with_knobs(names: tuple[str, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add an option per knob to a command; the command receives them as ``knobs=dict``.

    Only the knobs given on the command line are in the dict (None means 'not given').
    """
    names = tuple(n for n in names if n in Settings.model_fields)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(command, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "knobs"]
        params = own + [knob_parameter(n) for n in names]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            with errors():  # a malformed value is one line and status 2, as in the command
                given = {n: _value(n, kwargs.pop(n)) for n in names}
            return command(**kwargs, knobs={k: v for k, v in given.items() if v is not None})

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def settings_from_set(items: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs, each value read as YAML (so lists and maps work too)."""
    import yaml

    patch: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
        if key not in SETTING_NAMES:
            raise UsageError(f"--set: unknown setting {key!r}; see `stylize styles show NAME` "
                             "for every setting")
        try:
            patch[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UsageError(f"--set {key}: cannot read {raw!r}") from None
    return patch
