"""``stylize image``: one photo, through the same plan, executor and writer as ``run``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from pipeline.cli.app import app
from pipeline.cli.common import CacheDirOpt, StopFlag, err, errors, fail, say, setup_logging
from pipeline.cli.knobs import IMAGE_KNOBS, settings_from_set, with_knobs
from pipeline.config.naming import OUTPUT_SUFFIXES, format_of_path, is_video_name, output_format
from pipeline.errors import UsageError


class _PhotoProgress:
    """Per-scale progress bars with the loss and an ETA, started at the first step.

    Started lazily, so that a photo refused before any work is one line and nothing else.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Progress | None = None
        self._tasks: dict[tuple[int, int], Any] = {}

    def on_event(self, event: Any) -> None:
        from pipeline.run.report import TaskStep

        if not self.enabled or not isinstance(event, TaskStep):
            return
        if self._bar is None:
            self._bar = Progress(
                TextColumn("{task.fields[label]}"), BarColumn(), TaskProgressColumn(),
                TimeRemainingColumn(), console=err, transient=False)
            self._bar.start()
        p = event.progress
        key = (p.scale, p.width)  # a retry at a smaller size starts its scales on new bars
        if key not in self._tasks:
            self._tasks[key] = self._bar.add_task("", total=p.steps, label=p.label())
        # A scale too large for memory runs tile after tile on the same bar; total again on
        # each step: a scale that stops early reports its last step as its total.
        self._bar.update(self._tasks[key], completed=p.step, total=p.steps, label=p.label())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@app.command()
@with_knobs(IMAGE_KNOBS)
def image(
    # readable=False: the loader's own one-line "permission denied" beats click's usage box.
    content: Annotated[Path, typer.Argument(help="The photo to stylize.", show_default=False,
                                            readable=False)],
    style: Annotated[str, typer.Option("--style", "-s",
                                       help="A preset name or the path of a painting.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write the result; its suffix picks the format "
        "(default: CONTENT-STYLE.jpg in the current folder).", show_default=False)] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Any other setting, KEY=VALUE (repeatable), e.g. --set min_side=96 "
        "--set 'style_layers={relu1_1: 1, relu2_1: 2}'.", show_default=False)] = None,
    cache_dir: CacheDirOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False,
    *,
    knobs: dict[str, Any],
) -> None:
    """Stylize one photo with a preset or a painting."""
    setup_logging(verbose)
    with errors():
        from pipeline.config.settings import resolve_weights
        from pipeline.config.styles import Registry, check_weights

        # A broken link or a link loop is there, just unusable: the loader says why.
        if not content.exists() and not content.is_symlink():
            raise UsageError(f"photo not found: {content}")
        # Recorded absolute (not resolved: a link keeps its name), so that `explain` run
        # from another folder finds it, and "./-x.png" does not become the option "-x.png".
        content = content.absolute()
        # The named options win over --set for the same knob.
        overrides = settings_from_set(set_)
        for patch in (overrides, knobs):
            if isinstance(patch.get("weights"), str):  # recorded absolute, for `explain`
                patch["weights"] = resolve_weights(patch["weights"], Path.cwd())
        preset = Registry.discover().resolve(style).with_overrides(overrides, knobs)
        check_weights(preset.settings.weights)
        fmt = _output_format(content, output)
        if output is None:
            output = Path(f"{content.stem}-{preset.name}{OUTPUT_SUFFIXES[fmt]}")
        # realpath, unlike Path.resolve, never raises on a symbolic link loop.
        if os.path.realpath(output) == os.path.realpath(content):
            raise UsageError("the output would overwrite the photo; choose another --output")
        _render_one(content, preset, output, fmt, cache_dir, quiet)


def _output_format(content: Path, output: Path | None) -> str:
    """The format an output's name asks for; a video's is a video's own container family."""
    if is_video_name(content):
        fmt = output_format("same", content)
        if output is not None and os.path.splitext(output)[1].lower() != OUTPUT_SUFFIXES[fmt]:
            raise UsageError(f"a video is written as a video of its own family: name the "
                             f"output {OUTPUT_SUFFIXES[fmt]}")
        return fmt
    if output is None:
        return "jpeg"
    found = format_of_path(output)
    if found is None:
        raise UsageError(f"cannot tell the format of {output}; use .jpg, .png, .webp or .tif")
    return found


def _render_one(content: Path, preset: Any, output: Path, fmt: str, cache_dir: Path | None,
                quiet: bool) -> None:
    from dataclasses import replace

    from pipeline.executors.local import LocalExecutor
    from pipeline.plan.planning import Plan, make_task
    from pipeline.run.runner import run
    from pipeline.store.cache import ArtifactCache
    from pipeline.store.fsutil import check_writable
    from pipeline.training.networks import bind

    # Before any work: a result that cannot be written is not worth computing.
    check_writable(output.parent)
    cache = ArtifactCache(cache_dir)
    preset = bind(preset, cache.root)  # method fast: the network it is made with
    # An explicit command always renders, even when an identical result is there.
    task = replace(make_task("image", content, preset, output, root=None, fmt=fmt),
                   status="due")
    executor = LocalExecutor(cache)
    stop = StopFlag()
    progress = _PhotoProgress(not quiet)
    try:
        with stop.installed():
            report = run(Plan([task]), executor, on_event=progress.on_event,
                         should_stop=stop)
    finally:
        progress.close()
        executor.close()
    if report.stopped is not None:
        fail(report.stopped)
    result = report.results[0]
    if result.status != "done":
        say(err, result.reason, label="error:", style="bold red")
        raise typer.Exit(1)
    if result.reason:  # even with --quiet: the result is smaller than asked for
        say(err, f"note: {result.reason}")
    if not quiet:
        d = result.details
        say(err, f"wrote {os.fsdecode(output)} ({d['width']}×{d['height']}, style "
                 f"{preset.name}, {d['device']} {d['precision']})")
