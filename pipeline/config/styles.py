"""Style presets: what one is, and where they are found.

A preset is a YAML file (``<name>.yaml``) or a folder holding ``preset.yaml``,
plus the painting(s) it names, with paths relative to the YAML file::

    description: one line shown by `stylize styles list`
    images:                    # one or more; weights blend their style targets
      - starry_night.jpg
      - {path: other.jpg, weight: 0.5}
    settings:                  # any knob of pipeline.config.settings.Settings
      style_weight: 30

Sources, from lowest to highest precedence:

1. ``builtin``: the repository's ``styles/`` folder (installed as package data);
2. ``plugin:<dist>``: folders that installed packages register under the
   entry-point group ``stylize.styles`` (the entry point loads to a folder path,
   a ``Traversable``, or a callable returning one);
3. ``user``: folders listed in ``$STYLIZE_STYLES_PATH`` (``os.pathsep``-separated)
   and in a manifest's ``styles_path``.

A preset from a higher source with the name of a lower one *overrides* it, and
the override is shown by ``stylize styles list`` (never silent).  Two presets
of the same name from the same level are a conflict: both are reported and
neither is used.  A preset that does not validate is reported with its path
and does not affect the others.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.config import yamlio
from pipeline.config.naming import display_name, safe_text
from pipeline.config.settings import (
    MAX_WEIGHTS_BYTES,
    NAMED_WEIGHTS,
    Settings,
    SettingsPatch,
    resolve_weights,
)
from pipeline.config.validation import format_validation_error
from pipeline.errors import ConfigError, InputError, UsageError
from pipeline.images import DEFAULT_MAX_BYTES, check_path, probe
from pipeline.images.failures import mebibytes
from pipeline.store.hashing import file_digest

ENTRY_POINT_GROUP = "stylize.styles"
STYLES_PATH_ENV = "STYLIZE_STYLES_PATH"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"})
# Used with fullmatch: ``$`` would also match before a trailing newline.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


class StyleImageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    weight: float = Field(1.0, gt=0)


class PresetFile(BaseModel):
    """The schema of a preset's YAML."""

    model_config = ConfigDict(extra="forbid")
    description: str = ""
    images: list[str | StyleImageSpec] = Field(min_length=1)
    settings: SettingsPatch = Field(default_factory=SettingsPatch)  # type: ignore[valid-type]


@dataclass(frozen=True)
class StyleImage:
    path: Path
    weight: float


@dataclass(frozen=True)
class Preset:
    """A validated preset with absolute image paths and fully resolved settings."""

    name: str
    description: str
    images: tuple[StyleImage, ...]
    settings: Settings
    source: str  # builtin, plugin:<dist>, user, or "image" for an ad-hoc painting
    path: Path
    overrides: str | None = None  # the source this preset shadows, if any
    #: With ``method: fast``, the digest of the trained network its results are made with
    #: (:func:`pipeline.training.networks.bind_networks`); "" while it has none.
    network: str = ""

    def with_overrides(self, *patches: Any) -> Preset:
        return Preset(self.name, self.description, self.images, self.settings.merged(*patches),
                      self.source, self.path, self.overrides, self.network)

    def paintings_identity(self) -> list[list[object]]:
        """The paintings by content and weight: what every key of this style holds of
        them (a painting's name or folder is not what it looks like)."""
        return [[file_digest(i.path), i.weight] for i in self.images]


def check_style_image(path: Path, shown: str | Path | None = None) -> Path:
    """The resolved path of a painting, refused unless it is an image file we can use.

    The same checks as a photo's (:func:`pipeline.images.check_path`), done before
    anything is opened: a FIFO, a device such as ``/dev/zero``, a folder, an empty or
    unreadable file or a link loop is refused here, when the manifest or the preset is
    read, instead of blocking or spinning later while the run lock is held.  Then its
    size in bytes and the pixel count its header declares, against the limits a painting
    is loaded with: a painting is hashed in full to key its style targets, and a 20 GiB
    one took up to a minute to hash before being refused at its decode.
    """
    resolved = Path(path)
    try:
        resolved = check_path(resolved)
        size = resolved.stat().st_size
        if size > DEFAULT_MAX_BYTES:
            raise InputError(f"{display_name(path)}: file is too large ({mebibytes(size)}; "
                             f"the limit is {mebibytes(DEFAULT_MAX_BYTES)})",
                             category="too_large")
        probe(resolved)  # the header only: format and pixel count (DEFAULT_MAX_PIXELS)
        return resolved
    except OSError as exc:  # the file changed since check_path looked
        raise UsageError(f"style image {safe_text(shown if shown is not None else path)}: "
                         f"cannot be read ({exc.strerror or exc})") from None
    except InputError as exc:
        what = exc.message.removeprefix(f"{display_name(path)}: ").removeprefix(
            f"{display_name(resolved)}: ")
        raise UsageError(f"style image {safe_text(shown if shown is not None else path)}: "
                         f"{what}") from None


def check_weights(spec: str) -> None:
    """Refuse a weights file that cannot be weights, before any work (named weights pass).

    A missing file, a folder or ``/dev/zero`` as ``--weights`` was a traceback from the
    hashing, even with ``--dry-run``; now it is one line when the settings are resolved.
    Nothing is opened: a FIFO would block.  What the file holds is checked when it is
    loaded (:mod:`pipeline.engine.weights`).
    """
    if spec in NAMED_WEIGHTS:
        return
    try:
        st = os.stat(spec)
    except FileNotFoundError:
        raise UsageError(f"weights file not found: {spec}") from None
    except OSError as exc:
        raise UsageError(f"weights file {spec}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        why = "is a folder; weights are a .pth or .safetensors file"
    elif not stat.S_ISREG(st.st_mode):
        why = "is not a regular file (a pipe, socket or device)"
    elif not os.access(spec, os.R_OK):
        why = "permission denied (the file cannot be read)"
    elif st.st_size == 0:
        why = "file is empty (0 bytes)"
    elif st.st_size > MAX_WEIGHTS_BYTES:
        why = (f"too large for VGG-19 weights ({st.st_size / (1 << 30):.1f} GiB; at most "
               f"{MAX_WEIGHTS_BYTES >> 30} GiB)")
    else:
        return
    raise UsageError(f"weights file {spec}: {why}")


def load_preset(path: Path, *, name: str | None = None, source: str = "user",
                base: Settings | None = None) -> Preset:
    """Load and validate one preset file (``x.yaml`` or a folder with ``preset.yaml``)."""
    path = Path(path)
    yaml_path = path / "preset.yaml" if path.is_dir() else path
    name = name or (path.name if path.is_dir() else path.stem)
    try:
        # Bounded like a manifest: a regular file, at most 1 MiB, aliases limited.
        raw = yamlio.load(yaml_path, "preset")
    except FileNotFoundError:
        raise ConfigError(f"{yaml_path}: cannot read the preset (not found)") from None
    try:
        model = PresetFile.model_validate(raw if raw is not None else {})
        patch = model.settings.model_dump(exclude_unset=True, exclude_none=True)
        if isinstance(patch.get("weights"), str):  # a file beside the preset, as its images
            patch["weights"] = resolve_weights(patch["weights"], yaml_path.parent)
        settings = (base or Settings()).merged(patch)
    except ValidationError as exc:
        problems = format_validation_error(exc)
        raise ConfigError(f"{yaml_path}: invalid preset: {problems[0]}", problems) from exc
    images = []
    for item in model.images:
        spec = StyleImageSpec(path=item) if isinstance(item, str) else item
        image_path = yaml_path.parent / spec.path
        if not os.path.lexists(image_path):
            raise ConfigError(f"{yaml_path}: style image not found: {spec.path}")
        try:
            resolved = check_style_image(image_path, spec.path)
        except UsageError as exc:
            raise ConfigError(f"{yaml_path}: {exc.message}") from None
        images.append(StyleImage(resolved, spec.weight))
    try:
        check_weights(settings.weights)
    except UsageError as exc:
        raise ConfigError(f"{yaml_path}: {exc.message}") from None
    return Preset(name, model.description.strip(), tuple(images), settings, source, yaml_path)


def image_preset(path: Path, base: Settings | None = None) -> Preset:
    """An ad-hoc preset for a painting given by path instead of a preset name."""
    resolved = check_style_image(path)
    return Preset(resolved.stem, f"style image {resolved.name}", (StyleImage(resolved, 1.0),),
                  base or Settings(), "image", resolved)


def _candidates(folder: Path) -> Iterable[tuple[str, Path]]:
    """Preset files and folders directly inside ``folder``, by name."""
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_dir() and (entry / "preset.yaml").is_file():
            yield entry.name, entry
        elif entry.is_file() and entry.suffix in (".yaml", ".yml"):
            yield entry.stem, entry


def builtin_styles_dir() -> Path:
    """The shipped presets: package data in an install, ``styles/`` in a checkout."""
    try:
        return Path(str(importlib.resources.files("pipeline._builtin_styles")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "styles"


def user_style_dirs(extra: Iterable[Path] = ()) -> list[Path]:
    env = os.environ.get(STYLES_PATH_ENV, "")
    return [Path(p) for p in env.split(os.pathsep) if p] + [Path(p) for p in extra]


def plugin_style_dirs() -> list[tuple[str, Path]]:
    """Folders registered by installed distributions under ``stylize.styles``."""
    found: list[tuple[str, Path]] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ep.name
        try:
            target = ep.load()
            if callable(target):
                target = target()
            found.append((f"plugin:{dist}", Path(str(target))))
        except Exception as exc:  # a broken plugin must not break the others
            found.append((f"plugin:{dist}", Path(f"<entry point {ep.value}: {exc}>")))
    return found


@dataclass
class Registry:
    """Every preset that loaded, and a line for every one that did not."""

    presets: dict[str, Preset] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: Why a name that was found is not among the presets (it failed to load, or clashed).
    unusable: dict[str, str] = field(default_factory=dict)

    @classmethod
    def discover(cls, extra_dirs: Iterable[Path] = (), *, include_builtin: bool = True) -> Registry:
        levels: list[list[tuple[str, Path]]] = []
        if include_builtin:
            levels.append([("builtin", builtin_styles_dir())])
        levels.append(plugin_style_dirs())
        levels.append([("user", d) for d in user_style_dirs(extra_dirs)])
        registry = cls()
        for level in levels:
            registry._add_level(level)
        return registry

    def _add_level(self, folders: list[tuple[str, Path]]) -> None:
        seen: dict[str, Preset] = {}
        clashes: set[str] = set()
        for source, folder in folders:
            if folder.name.startswith("<entry point"):
                self.problems.append(f"{source}: cannot load: {folder.name[1:-1]}")
                continue
            for name, path in _candidates(folder):
                if not _NAME.fullmatch(name):
                    self.problems.append(f"{path}: preset names use a-z, 0-9, '-' and '_'")
                    continue
                try:
                    preset = load_preset(path, name=name, source=source)
                except ConfigError as exc:
                    self.problems.append(str(exc))
                    self.unusable.setdefault(name, str(exc))
                    continue
                if name in seen and seen[name].path != preset.path:
                    clashes.add(name)
                    self.problems.append(
                        f"style {name!r} is defined twice ({seen[name].path} and {preset.path}); "
                        "rename one of them"
                    )
                    self.unusable[name] = self.problems[-1]
                seen[name] = preset
        for name, preset in seen.items():
            if name in clashes:
                self.presets.pop(name, None)
                continue
            lower = self.presets.get(name)
            if lower is not None:
                preset = Preset(preset.name, preset.description, preset.images, preset.settings,
                                preset.source, preset.path, overrides=lower.source)
            self.presets[name] = preset

    def names(self) -> list[str]:
        return sorted(self.presets)

    def resolve(self, name_or_path: str, *, relative_to: Path | None = None) -> Preset:
        """A preset by name, or an ad-hoc one for a path to a painting or a preset file."""
        if name_or_path in self.presets:
            return self.presets[name_or_path]
        candidate = Path(name_or_path).expanduser()
        if relative_to is not None and not candidate.is_absolute():
            candidate = relative_to / candidate
        looks_like_path = os.sep in name_or_path or candidate.suffix.lower() in (
            IMAGE_SUFFIXES | {".yaml", ".yml"})
        # lexists: a broken link or a link loop is explained by check_style_image,
        # not reported as missing.
        if looks_like_path and os.path.lexists(candidate):
            if candidate.suffix.lower() in (".yaml", ".yml") or candidate.is_dir():
                return load_preset(candidate)
            return image_preset(candidate)
        if looks_like_path:
            raise UsageError(f"style image not found: {candidate}")
        if name_or_path in self.unusable:
            # A preset of that name exists but could not be used: say why, not "unknown".
            raise UsageError(f"style {name_or_path!r} cannot be used: "
                             f"{self.unusable[name_or_path]}")
        known = ", ".join(self.names()) or "none"
        raise UsageError(f"unknown style {name_or_path!r}; known: {known}")
