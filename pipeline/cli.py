"""The ``stylize`` command line: the only module that prints or exits.

Library code raises ``pipeline.errors.StylizeError``; ``_fail`` turns one into
a single line on stderr and the error's exit status.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from pipeline.errors import ConfigError, StylizeError, UsageError
from pipeline.validation import format_validation_error

app = typer.Typer(
    help="Neural style transfer for photos and photo collections.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
styles_app = typer.Typer(help="List and inspect style presets.", no_args_is_help=True)
app.add_typer(styles_app, name="styles")

out = Console()
err = Console(stderr=True)


def _fail(exc: StylizeError) -> NoReturn:
    err.print(f"[bold red]error:[/] {exc.message}", markup=True, highlight=False, soft_wrap=True)
    if isinstance(exc, ConfigError):
        for line in exc.problems[1:]:
            err.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn the tool's own errors into one line and an exit status."""
    try:
        yield
    except StylizeError as exc:
        _fail(exc)
    except ValidationError as exc:
        problems = format_validation_error(exc)
        _fail(ConfigError(f"invalid setting: {problems[0]}", problems))
    except KeyboardInterrupt:
        err.print("interrupted", highlight=False)
        raise typer.Exit(130) from None


class Optimizer(str, Enum):
    lbfgs = "lbfgs"
    adam = "adam"


class Init(str, Enum):
    content = "content"
    noise = "noise"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Colour(str, Enum):
    none = "none"
    luminance = "luminance"


def _steps(value: Optional[str]) -> Optional[list[int]]:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--steps takes comma-separated integers, got {value!r}") from None


def _patch(**values: Any) -> dict[str, Any]:
    """The knobs given on the command line (None means 'not given')."""
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in values.items() if v is not None}


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s", stream=sys.stderr)


@contextlib.contextmanager
def _photo_progress(enabled: bool) -> Iterator[Any]:
    """A per-scale progress bar with the loss and an ETA; yields a progress callback."""
    if not enabled:
        yield None
        return
    columns = (TextColumn("scale {task.fields[scale]} {task.fields[size]}"), BarColumn(),
               TaskProgressColumn(), TextColumn("loss {task.fields[loss]:.4g}"),
               TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        tasks: dict[int, Any] = {}

        def on_progress(p: Any) -> None:
            if p.scale not in tasks:
                tasks[p.scale] = bar.add_task("", total=p.steps, scale=f"{p.scale}/{p.scales}",
                                              size=f"{p.width}×{p.height}", loss=p.loss)
            bar.update(tasks[p.scale], completed=p.step, loss=p.loss)

        yield on_progress


CacheDirOpt = Annotated[Optional[Path], typer.Option(
    "--cache-dir", help="Folder of the style-target cache [default: the user cache folder, "
    "or $STYLIZE_CACHE_DIR].", show_default=False)]


@app.command()
def image(
    content: Annotated[Path, typer.Argument(help="The photo to stylize.", show_default=False)],
    style: Annotated[str, typer.Option("--style", "-s",
                                       help="A preset name or the path of a painting.")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Where to write the result; its suffix picks the format "
        "[default: CONTENT-STYLE.jpg in the current folder].", show_default=False)] = None,
    size: Annotated[Optional[int], typer.Option(help="Long side of the output in pixels.")] = None,
    steps: Annotated[Optional[str], typer.Option(
        help="Optimizer steps per scale, coarsest first, e.g. 250,120,50.")] = None,
    style_weight: Annotated[Optional[float], typer.Option(help="Weight of the style loss.")] = None,
    content_weight: Annotated[Optional[float], typer.Option(
        help="Weight of the content loss.")] = None,
    tv_weight: Annotated[Optional[float], typer.Option(
        help="Weight of the total-variation (smoothness) loss.")] = None,
    preserve_color: Annotated[Optional[Colour], typer.Option(
        help="'luminance' keeps the photo's colours.")] = None,
    optimizer: Annotated[Optional[Optimizer], typer.Option(help="lbfgs or adam.")] = None,
    init: Annotated[Optional[Init], typer.Option(help="Start from the photo or from noise.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = None,
    precision: Annotated[Optional[Precision], typer.Option(help="Network precision.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    weights: Annotated[Optional[str], typer.Option(
        help="VGG-19 weights: caffe (bundled), torchvision, or a file.")] = None,
    quality: Annotated[Optional[int], typer.Option(help="JPEG/WebP quality (1-100).")] = None,
    cache_dir: CacheDirOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False,
) -> None:
    """Stylize one photo with a preset or a painting."""
    _setup_logging(verbose)
    with _errors():
        from pipeline.cache import ArtifactCache
        from pipeline.engine.optimize import Engine
        from pipeline.render import format_of_path, load_content, render
        from pipeline.styles import Registry
        from pipeline.targets import StyleTargetStore

        if not content.exists():
            raise UsageError(f"photo not found: {content}")
        registry = Registry.discover()
        preset = registry.resolve(style)
        preset = preset.with_overrides(_patch(
            size=size, steps=_steps(steps), style_weight=style_weight,
            content_weight=content_weight, tv_weight=tv_weight, preserve_color=preserve_color,
            optimizer=optimizer, init=init, device=device, precision=precision, seed=seed,
            weights=weights, quality=quality))
        if output is None:
            output = Path(f"{content.stem}-{preset.name}.jpg")
        fmt = format_of_path(output)
        if fmt is None:
            raise UsageError(f"cannot tell the format of {output}; use .jpg, .png or .webp")
        if output.resolve() == content.resolve():
            raise UsageError("the output would overwrite the photo; choose another --output")
        engine = Engine(preset.settings)
        photo = load_content(content, engine)
        store = StyleTargetStore(ArtifactCache(cache_dir))
        with _photo_progress(not quiet) as on_progress:
            result = render(engine, store, preset, photo, output, fmt=fmt,
                            on_progress=on_progress)
        if not quiet:
            err.print(f"wrote {output} ({result.width}×{result.height}, style {preset.name}, "
                      f"{engine.device.type} {str(engine.dtype).removeprefix('torch.')})",
                      highlight=False)


@styles_app.command("list")
def styles_list(
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the style presets that can be used, and any that failed to load."""
    with _errors():
        from pipeline.styles import Registry

        registry = Registry.discover()
        if json_out:
            import json

            rows = [{"name": p.name, "source": p.source, "overrides": p.overrides,
                     "images": [str(i.path) for i in p.images], "description": p.description,
                     "path": str(p.path)} for p in registry.presets.values()]
            out.print_json(json.dumps({"styles": rows, "problems": registry.problems}))
        else:
            table = Table("name", "source", "images", "description", box=None)
            for name in registry.names():
                p = registry.presets[name]
                source = p.source + (f" (overrides {p.overrides})" if p.overrides else "")
                table.add_row(name, source, ", ".join(i.path.name for i in p.images),
                              p.description)
            out.print(table)
        for problem in registry.problems:
            err.print(f"[yellow]warning:[/] {problem}", highlight=False, soft_wrap=True)


@styles_app.command("show")
def styles_show(name: Annotated[str, typer.Argument(help="Preset name.")]) -> None:
    """Show every setting of a preset, resolved against the defaults."""
    with _errors():
        import yaml

        from pipeline.styles import Registry

        p = Registry.discover().resolve(name)
        doc = {"name": p.name, "source": p.source, "path": str(p.path),
               "description": p.description,
               "images": [{"path": str(i.path), "weight": i.weight} for i in p.images],
               "settings": p.settings.model_dump()}
        if p.overrides:
            doc["overrides"] = p.overrides
        out.print(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), end="",
                  markup=False, highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
