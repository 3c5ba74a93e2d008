"""The ``stylize`` command line: the only module that prints or exits.

Library code raises ``pipeline.errors.StylizeError``; ``_fail`` turns one into
a single line on stderr and the error's exit status.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

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


class Optimizer(StrEnum):
    lbfgs = "lbfgs"
    adam = "adam"


class Init(StrEnum):
    content = "content"
    noise = "noise"


class Precision(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Colour(StrEnum):
    none = "none"
    luminance = "luminance"


def _steps(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--steps takes comma-separated integers, got {value!r}") from None


def _settings_from_set(items: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs, each value read as YAML (so lists and maps work too)."""
    import yaml

    from pipeline.settings import SETTING_NAMES

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
            # A scale too large for memory runs tile after tile on the same bar.
            size = f"{p.width}×{p.height}" + (f" tile {p.tile}/{p.tiles}" if p.tiles > 1 else "")
            bar.update(tasks[p.scale], completed=p.step, loss=p.loss, size=size)

        yield on_progress


CacheDirOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", help="Folder of the style-target cache (default: the user cache folder, "
    "or $STYLIZE_CACHE_DIR).", show_default=False)]


@app.command()
def image(
    # readable=False: the loader's own one-line "permission denied" beats click's usage box.
    content: Annotated[Path, typer.Argument(help="The photo to stylize.", show_default=False,
                                            readable=False)],
    style: Annotated[str, typer.Option("--style", "-s",
                                       help="A preset name or the path of a painting.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write the result; its suffix picks the format "
        "(default: CONTENT-STYLE.jpg in the current folder).", show_default=False)] = None,
    size: Annotated[int | None, typer.Option(help="Long side of the output in pixels.")] = None,
    steps: Annotated[str | None, typer.Option(
        help="Optimizer steps per scale, coarsest first, e.g. 250,120,50.")] = None,
    style_weight: Annotated[float | None, typer.Option(help="Weight of the style loss.")] = None,
    content_weight: Annotated[float | None, typer.Option(
        help="Weight of the content loss.")] = None,
    tv_weight: Annotated[float | None, typer.Option(
        help="Weight of the total-variation (smoothness) loss.")] = None,
    preserve_color: Annotated[Colour | None, typer.Option(
        help="'luminance' keeps the photo's colours.")] = None,
    optimizer: Annotated[Optimizer | None, typer.Option(help="lbfgs or adam.")] = None,
    init: Annotated[Init | None, typer.Option(help="Start from the photo or from noise.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = None,
    precision: Annotated[Precision | None, typer.Option(help="Network precision.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    weights: Annotated[str | None, typer.Option(
        help="VGG-19 weights: caffe (bundled), torchvision, or a file.")] = None,
    quality: Annotated[int | None, typer.Option(help="JPEG/WebP quality (1-100).")] = None,
    tile_pixels: Annotated[int | None, typer.Option(
        help="Largest picture optimized in one pass, in pixels; larger scales are tiled "
        "(0: from free memory).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Any other setting, KEY=VALUE (repeatable), e.g. --set min_side=96 "
        "--set 'style_layers={relu1_1: 1, relu2_1: 2}'.", show_default=False)] = None,
    cache_dir: CacheDirOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False,
) -> None:
    """Stylize one photo with a preset or a painting."""
    _setup_logging(verbose)
    with _errors():
        from pipeline.cache import ArtifactCache
        from pipeline.render import format_of_path
        from pipeline.scheduler import check_writable
        from pipeline.styles import Registry
        from pipeline.targets import StyleTargetStore

        # A broken link or a link loop is there, just unusable: the loader says why.
        if not content.exists() and not content.is_symlink():
            raise UsageError(f"photo not found: {content}")
        registry = Registry.discover()
        preset = registry.resolve(style)
        # The named options win over --set for the same knob.
        preset = preset.with_overrides(_settings_from_set(set_) | _patch(
            size=size, steps=_steps(steps), style_weight=style_weight,
            content_weight=content_weight, tv_weight=tv_weight, preserve_color=preserve_color,
            optimizer=optimizer, init=init, device=device, precision=precision, seed=seed,
            weights=weights, quality=quality, tile_pixels=tile_pixels))
        if output is None:
            output = Path(f"{content.stem}-{preset.name}.jpg")
        fmt = format_of_path(output)
        if fmt is None:
            raise UsageError(f"cannot tell the format of {output}; use .jpg, .png or .webp")
        # realpath, unlike Path.resolve, never raises on a symbolic link loop.
        if os.path.realpath(output) == os.path.realpath(content):
            raise UsageError("the output would overwrite the photo; choose another --output")
        # Before any work: a result that cannot be written is not worth computing.
        check_writable(output.parent)
        store = StyleTargetStore(ArtifactCache(cache_dir))
        engine, result, note = _render_or_retry(content, preset, output, fmt, store,
                                                progress=not quiet)
        if note:  # even with --quiet: the result is smaller than asked for
            err.print(f"note: {note}", highlight=False)
        if not quiet:
            err.print(f"wrote {output} ({result.width}×{result.height}, style {preset.name}, "
                      f"{engine.device.type} {str(engine.dtype).removeprefix('torch.')})",
                      highlight=False)


def _render_or_retry(content: Path, preset: Any, output: Path, fmt: str, store: Any, *,
                     progress: bool) -> tuple[Any, Any, str | None]:
    """Render; after running out of memory, once more at a smaller size (as `run` does).

    The retry happens outside the ``except`` clause, so that the failed attempt's
    tensors, held by the traceback, are freed first; the first engine and photo are
    made here, so that no caller's variable keeps them alive during the retry.
    """
    import torch

    from pipeline.engine.optimize import MIN_SCALE_SIDE, Engine
    from pipeline.errors import OutOfMemoryError
    from pipeline.images import display_name
    from pipeline.render import load_content, render
    from pipeline.scheduler import OOM_RETRY_SCALE, free_memory

    engine: Any = Engine(preset.settings)
    device = engine.device
    # Loaded before the progress bar starts, so that a bad photo is one line.
    photo: Any = load_content(content, engine)
    size = preset.settings.size
    with _photo_progress(progress) as on_progress:
        for attempt, settings_size in enumerate((size, int(size * OOM_RETRY_SCALE))):
            if settings_size < MIN_SCALE_SIDE:
                break
            sized = preset.with_overrides({"size": settings_size})
            try:
                if attempt:  # a fresh engine, and the photo loaded again at the smaller size
                    # Inside the try, as in the batch runner: building the network can run
                    # out of memory too, on a GPU that another process shares.
                    engine = Engine(sized.settings)
                    photo = load_content(content, engine)
                result = render(engine, store, sized, photo, output, fmt=fmt,
                                on_progress=on_progress)
            except (torch.OutOfMemoryError, MemoryError):
                result = None
            if result is not None:
                note = (f"out of memory at size {size}; written at size {settings_size} "
                        "instead" if attempt else None)
                return engine, result, note
            engine = photo = None
            free_memory(device)
    raise OutOfMemoryError(f"{display_name(content)}: out of memory at size {size}"
                           + (f" and at size {int(size * OOM_RETRY_SCALE)}"
                              if int(size * OOM_RETRY_SCALE) >= MIN_SCALE_SIDE else "")
                           + "; try a smaller --size")


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


@app.command()
def gallery(
    manifest: Annotated[Path, typer.Argument(help="The job manifest.")] = Path("jobs.yaml"),
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Folder for index.html and its thumbnails "
        "(default: 'gallery' next to the manifest).", show_default=False)] = None,
    job: Annotated[list[str] | None, typer.Option(
        "--job", "-j", help="Show only this job (repeatable).")] = None,
    open_page: Annotated[bool, typer.Option(
        "--open", help="Open the page in the default browser.")] = False,
) -> None:
    """Write a static HTML page with before/after thumbnails of every job, to review a batch.

    The last line printed is the path of the page.
    """
    with _errors():
        from pipeline.gallery import build_gallery
        from pipeline.manifest import load_manifest

        parsed = load_manifest(manifest)
        folder = output if output is not None else parsed.path.parent / "gallery"
        result = build_gallery(parsed, folder, jobs=job)
        for problem in result.problems:
            err.print(f"[yellow]warning:[/] cannot show {problem}", highlight=False,
                      soft_wrap=True)
        outdated = f", {result.outdated} outdated" if result.outdated else ""
        err.print(f"{result.photos} photos in {result.jobs} jobs: {result.done} done{outdated}, "
                  f"{result.not_done} not done; thumbnails: {result.thumbs_written} new, "
                  f"{result.thumbs_reused} reused", highlight=False)
        out.print(str(result.index), markup=False, highlight=False, soft_wrap=True)
        if open_page:
            import webbrowser

            if not webbrowser.open(result.index.as_uri()):
                err.print("[yellow]warning:[/] no browser found; open the page above by hand",
                          highlight=False)


class _StopFlag:
    """Set by SIGINT/SIGTERM: the current photo is abandoned between two steps."""

    def __init__(self) -> None:
        self.stop = False

    def __call__(self) -> bool:
        return self.stop

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        import signal

        def handler(signum: int, frame: object) -> None:
            if self.stop:  # a second signal: the user really means it
                raise KeyboardInterrupt
            self.stop = True

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


@app.command()
def run(
    manifest: Annotated[Path, typer.Argument(help="The job manifest.")] = Path("jobs.yaml"),
    job: Annotated[list[str] | None, typer.Option(
        "--job", "-j", help="Run only this job (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n",
                                          help="Print the plan, process nothing.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Write the machine-readable report to stdout.")] = False,
    report: Annotated[Path | None, typer.Option(
        help="Also write the machine-readable report to this file.")] = None,
    cache_dir: CacheDirOpt = None,
    device: Annotated[str | None, typer.Option(help="Override every job's device.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q",
                                        help="Only errors and the summary line.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Per-scale progress and log details.")] = False,
) -> None:
    """Stylize every photo of every job in a manifest, skipping what is already done.

    Exit status: 0 all done or nothing to do, 2 bad manifest or usage, 3 some photos
    failed, 4 every photo failed, 73 output folder not writable, 74 disk full,
    75 another run holds the lock.
    """
    _setup_logging(verbose)
    with _errors():
        from pipeline.cache import ArtifactCache
        from pipeline.locking import RunLock, lock_path_for
        from pipeline.manifest import load_manifest
        from pipeline.progress import RunDisplay
        from pipeline.scheduler import plan as make_plan
        from pipeline.scheduler import run as run_plan

        overrides = _patch(device=device)
        parsed = load_manifest(manifest, cli_overrides=overrides)
        if dry_run:
            the_plan = make_plan(parsed, jobs=job)
            RunDisplay(out, quiet=quiet, verbose=verbose).print_plan(the_plan)
            return
        cache = ArtifactCache(cache_dir)
        stop = _StopFlag()
        with RunLock(lock_path_for(parsed.path, cache.root), what=str(manifest)), \
                stop.installed():
            cache.sweep()
            the_plan = make_plan(parsed, jobs=job)
            display = RunDisplay(err if json_out else out, quiet=quiet, verbose=verbose)
            with display.live(the_plan):
                result = run_plan(the_plan, cache=cache, on_event=display.on_event,
                                  should_stop=stop)
            display.print_summary(result)
        import json

        # Undecodable bytes in file names are lone surrogates here; backslashreplace
        # writes them as JSON \udcXX escapes, so the report is always valid UTF-8.
        payload = json.dumps(result.as_dict(), indent=1, ensure_ascii=False).encode(
            "utf-8", "backslashreplace")
        if report is not None:
            from pipeline.fsutil import atomic_write_bytes

            atomic_write_bytes(report, payload)
        if json_out:
            sys.stdout.write(payload.decode("utf-8") + "\n")
        if result.stopped is not None:
            _fail(result.stopped)
        if result.exit_code:
            raise typer.Exit(result.exit_code)


@app.command()
def watch(
    manifest: Annotated[Path, typer.Argument(help="The job manifest.")] = Path("jobs.yaml"),
    job: Annotated[list[str] | None, typer.Option(
        "--job", "-j", help="Watch only this job's inbox (repeatable) (default: every job "
        "with an inbox).", show_default=False)] = None,
    poll: Annotated[float | None, typer.Option(
        metavar="SECONDS", help="Look for new files every SECONDS instead of using the "
        "system's file events (for network shares).", show_default=False)] = None,
    settle: Annotated[float, typer.Option(
        metavar="SECONDS", help="A file is taken once its size and time have not changed "
        "for this long (and it decodes fully).")] = 3.0,
    rescan: Annotated[float, typer.Option(
        metavar="SECONDS", help="Scan each inbox this often whatever the events said, "
        "so a lost event never loses a file.")] = 30.0,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="First move the photos in <inbox>/failed back into the "
        "inbox.")] = False,
    json_log: Annotated[str | None, typer.Option(
        "--json-log", metavar="FILE", help="Append one JSON event per line to FILE "
        "('-' for stdout).", show_default=False)] = None,
    cache_dir: CacheDirOpt = None,
    device: Annotated[str | None, typer.Option(help="Override every job's device.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q",
                                        help="Only failures and warnings.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Every queued file, every scale.")] = False,
) -> None:
    """Stylize every photo dropped into a job's inbox, once it is complete, until stopped.

    Finished photos move to <inbox>/done (or are deleted: the job's `after`); photos that
    cannot be used move to <inbox>/failed with <name>.error.json.  SIGINT/SIGTERM stop it
    cleanly (the current photo is abandoned, nothing partial is kept) with status 0.
    Exit status: 2 bad manifest or usage, 73 output folder not writable, 74 disk full,
    75 another watcher holds an inbox.
    """
    _setup_logging(verbose)
    with _errors():
        from pipeline.cache import ArtifactCache
        from pipeline.manifest import load_manifest
        from pipeline.watch import InboxWatcher, WatchOptions, watched_jobs
        from pipeline.watch_display import JsonLog, WatchDisplay, fan_out

        options = WatchOptions(settle=settle, poll=poll, rescan=rescan,
                               retry_failed=retry_failed)
        parsed = load_manifest(manifest, cli_overrides=_patch(device=device))
        jobs = watched_jobs(parsed, job)
        stop = _StopFlag()
        with JsonLog.open(json_log) as log, stop.installed():
            display = WatchDisplay(err if json_log == "-" else out, quiet=quiet,
                                   verbose=verbose)
            watcher = InboxWatcher(jobs, cache=ArtifactCache(cache_dir), options=options,
                                   on_event=fan_out(display.on_event,
                                                    log.on_event if log else None))
            with display.live(lambda: watcher.status):
                watcher.run_until_stopped(stop)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
