"""One photo, start to finish: load, fetch style targets, optimize, write atomically.

Shared by ``stylize image``, the batch scheduler and the watched inbox, so a
photo is stylized the same way whichever way it arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.engine.optimize import Engine, ProgressFn
from pipeline.errors import InputError
from pipeline.images import LoadedImage, display_name, load_image, save_image
from pipeline.styles import Preset
from pipeline.targets import StyleTargetStore

#: File suffix written for each ``format`` setting.
SUFFIXES = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}
_FORMAT_OF_SUFFIX = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp"}


def output_format(setting: str, input_path: Path) -> str:
    """The format to write: the setting, or for ``same`` the input's when writable."""
    if setting != "same":
        return setting
    return _FORMAT_OF_SUFFIX.get(input_path.suffix.lower(), "png")


def format_of_path(path: Path) -> str | None:
    return _FORMAT_OF_SUFFIX.get(path.suffix.lower())


@dataclass(frozen=True)
class Rendered:
    width: int
    height: int
    input_width: int
    input_height: int


def load_content(path: Path, engine: Engine, *, root: Path | None = None,
                 follow_symlinks: bool = False) -> LoadedImage:
    s = engine.settings
    # Decoding above the output size would only cost memory: JPEGs are even
    # decoded at a reduced size directly (draft mode).
    photo = load_image(path, max_pixels=s.max_pixels, max_long_side=s.size, root=root,
                       follow_symlinks=follow_symlinks)
    try:
        # Refuse now, with the file's name, a shape that has no usable scale at
        # this size (1×5000 at size 64 is 1×64): too_small, never a traceback.
        engine.style_sides(photo.rgb.width, photo.rgb.height)
    except InputError as exc:
        raise InputError(f"{display_name(path)}: {exc.message}", category=exc.category) from None
    return photo


def render(engine: Engine, store: StyleTargetStore, preset: Preset, photo: LoadedImage,
           output: Path, *, fmt: str, on_progress: ProgressFn | None = None,
           should_stop: Callable[[], bool] | None = None) -> Rendered:
    """Stylize an already loaded photo and write it to ``output`` atomically."""
    targets = store.get(engine, preset, engine.style_sides(photo.rgb.width, photo.rgb.height))
    result = engine.stylize(photo.rgb, targets, on_progress=on_progress, should_stop=should_stop)
    return save_result(engine, photo, result, output, fmt=fmt)


def save_result(engine: Engine, photo: LoadedImage, result: Image.Image, output: Path, *,
                fmt: str) -> Rendered:
    """Write a stylized picture atomically, with the photo's alpha channel where it had one."""
    save_image(result, output, format=fmt.upper(), quality=engine.settings.quality,
               alpha=photo.alpha)
    return Rendered(result.width, result.height, photo.info.width, photo.info.height)
