"""How a picture was made, from its record, and the command that makes it again.

A record's ``made`` part holds the fully resolved settings, the preset and the
digests of its paintings and weights, the device and the precision.  From those,
:func:`reproduce` writes a ``stylize image`` command: the preset (or painting) by
name, every setting that differs from what that preset gives today as ``--set``,
and the device and precision that were used, so that on the same kind of device
(the CPU: bit for bit) the command makes the same picture.  What has changed
since (a painting, the weights, the photo) is said, never silently ignored.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.settings import Settings
from pipeline.config.views import NEUTRAL_KNOBS, UNKEYED
from pipeline.errors import StylizeError, UsageError
from pipeline.store import records
from pipeline.store.fsread import FileTooLargeError

#: torch's dtype names, as the precision setting spells them.
_PRECISION = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
#: Left out of the ``--set`` list: they change no pixel, or get an option of their own.
_NOT_SET = UNKEYED | {"precision"}


@dataclass
class Explanation:
    record: records.Record
    made: dict[str, Any]
    command: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def command_line(self) -> str:
        """The command as one line to paste into a shell (bash, zsh, ksh): see
        :func:`shell_quote`; it holds no control character, so it is also safe to show."""
        return " ".join(shell_quote(arg) for arg in self.command)


def shell_quote(arg: str) -> str:
    """``arg`` as one shell word that gives back exactly ``arg``, and is safe to show.

    Printable text is quoted as :func:`shlex.quote` does (``'...'`` where needed), so
    ``$(...)``, backticks and ``;`` in a name run nothing when pasted.  Anything else (a
    newline, ESC, a bidi override, bytes that are not UTF-8) is written as ``$'...'``
    with escapes: a name that safe_text showed as a literal ``\n`` gave a command that
    said "photo not found" when pasted.
    """
    if arg.isprintable():  # surrogates (undecodable bytes) are not printable either
        return shlex.quote(arg)
    out = []
    for ch in arg:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, from os.fsdecode
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in "\\'":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        else:  # \u: the character's UTF-8 (a \x above 0x7f would be one raw byte)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return "$'" + "".join(out) + "'"


def _flow(value: Any) -> str:
    """A setting's value as ``--set`` reads it (YAML, on one line)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix(
        "\n...").strip()


def _style_and_base(made: dict[str, Any], warnings: list[str]) -> tuple[str, Settings]:
    """What to pass as --style, and the settings that style gives by itself today."""
    from pipeline.config.styles import Registry
    from pipeline.store.hashing import file_digest

    images = made.get("style_images") or []
    for image in images:
        try:
            same = file_digest(Path(image["path"])) == image["digest"]
        except OSError:
            same = False
        if not same:
            warnings.append(f"the painting {image['path']} has changed or is gone since; "
                            "the command will not make the same picture")
    if made.get("preset_source") != "image":
        try:
            preset = Registry.discover().resolve(made["preset"])
            return made["preset"], preset.settings
        except UsageError:
            warnings.append(f"the preset {made['preset']!r} is not installed here; the "
                            "command names its painting instead")
    if len(images) != 1:
        raise UsageError("the picture was made from a blend of paintings by a preset that is "
                         "not installed here; it cannot be made again with one command")
    return os.fsdecode(images[0]["path"]), Settings()


def reproduce(output: Path, *, again: Path | None = None,
              cache_dir: Path | None = None) -> Explanation:
    """The record of ``output`` and a command that makes the picture again at ``again``.

    ``cache_dir``: where the run kept its cache (None: the default one), which is where a
    fast picture's network is looked for; the command then names it too.
    """
    record = records.read_record(output)
    if record is None:
        raise UsageError(f"{output} has no record (in {records.record_path(output).parent}): "
                         "it was not made by stylize, or its record was removed")
    if not record.made:
        raise UsageError(f"the record of {output} is from an earlier version of stylize and "
                         "does not say how the picture was made")
    made = record.made
    warnings: list[str] = []
    style, base = _style_and_base(made, warnings)
    # A knob a record does not name did not exist when it was made: the picture was made
    # as its neutral value makes it, not as today's default would.
    wanted = Settings.model_validate({**{k: v for k, v in NEUTRAL_KNOBS.items()
                                         if k not in made["settings"]}, **made["settings"]})
    # Absolute, so that the command works from any folder (a relative --again would be
    # relative to where explain was run, not to where the command is pasted).
    again = (again or output.with_name(f"{output.stem}.again{output.suffix}")).absolute()
    command = ["stylize", "image", "--style", style, "-o", os.fsdecode(again)]
    for name, value in wanted.model_dump().items():
        if name not in _NOT_SET and getattr(base, name) != getattr(wanted, name):
            command += ["--set", f"{name}={_flow(value)}"]
    device = str(made.get("device") or "cpu").split(":")[0]
    command += ["--device", device]
    if made.get("precision") in _PRECISION:
        command += ["--precision", _PRECISION[made["precision"]]]
    if cache_dir is not None and made.get("network"):
        command += ["--cache-dir", os.fsdecode(Path(cache_dir).absolute())]
    # The photo first, as a person writes it; after the options and "--" when it begins
    # with "-" (a record of an earlier version may hold "-ofoo.png", which is an option).
    photo = record.input
    command = (command + ["--", photo] if photo.startswith("-")
               else command[:2] + [photo] + command[2:])
    _check_photo(record, wanted, warnings)
    _check_machine(made, device, warnings)
    if made.get("network"):
        _check_network(made, style, wanted, cache_dir, warnings)
    return Explanation(record, made, command, warnings)


def _check_network(made: dict[str, Any], style: str, wanted: Settings,
                   cache_dir: Path | None, warnings: list[str]) -> None:
    """A fast picture is made again only by the very network that made it."""
    from pipeline.config.styles import Registry
    from pipeline.store.cache_dir import default_cache_dir
    from pipeline.training.networks import find_network

    try:
        preset = Registry.discover().resolve(style).with_overrides(wanted.model_dump())
        ref = find_network(preset, cache_dir or default_cache_dir())
    except StylizeError:
        ref = None
    if ref is None:
        warnings.append(f"the network that made it ({made['network'][:12]}) is not here: "
                        "the command refuses until one is trained, and a new one paints "
                        "differently")
    elif ref.digest != made["network"]:
        warnings.append(f"the network that made it ({made['network'][:12]}) was retrained "
                        f"since (now {ref.digest[:12]}): the picture will differ")


def _check_machine(made: dict[str, Any], device: str, warnings: list[str]) -> None:
    """Byte for byte only where the same kernels run: say so when this machine differs."""
    recorded = made.get("machine")
    if not recorded:
        return
    import torch

    from pipeline.engine.device import float_signature

    try:
        here = float_signature(torch.device(device))
    except (RuntimeError, AssertionError):  # no such device here (a record from a GPU)
        here = f"no {device} device"
    if here != recorded:
        warnings.append(f"it was made on {recorded}; here it runs on {here}: float results "
                        "differ in their last bits between the two, so the picture may "
                        "differ slightly")


def _check_photo(record: records.Record, wanted: Settings, warnings: list[str]) -> None:
    from pipeline.images.limits import max_photo_bytes
    from pipeline.store.hashing import file_digest

    try:
        # A run's bound: a record (anyone's file) naming an 8 GiB file is not hashed.
        same = file_digest(Path(record.input), max_bytes=max_photo_bytes(wanted.max_pixels),
                           what="a photo") == record.input_digest
    except FileTooLargeError:
        warnings.append(f"the photo {record.input} is larger than a photo may be; it was "
                        "not read")
        return
    except OSError:
        warnings.append(f"the photo {record.input} is gone")
        return
    if not same:
        warnings.append(f"the photo {record.input} has changed since")
