"""``stylize train STYLE --on DIR``: train (or resume training) a preset's fast-path network."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.cli.app import app
from pipeline.cli.common import (
    CacheDirOpt,
    DeviceOpt,
    QuietOpt,
    StopFlag,
    VerboseOpt,
    err,
    errors,
    guard_output,
    out,
    say,
    setup_logging,
)
from pipeline.errors import Cancelled, UsageError

if TYPE_CHECKING:
    from pipeline.config.styles import Preset
    from pipeline.training.job import TrainingPhoto


@app.command()
def train(
    style: Annotated[str, typer.Argument(help="The preset whose network is trained.",
                                         show_default=False)],
    on: Annotated[Path, typer.Option(
        "--on", help="The folder of photos to train on (your own collection; a few dozen "
        "photos or more).", show_default=False)],
    recursive: Annotated[bool, typer.Option(
        "--recursive", "-r", help="Also take the photos in its subfolders.")] = False,
    steps: Annotated[int | None, typer.Option(
        "--steps", min=1, max=1_000_000, help="Training iterations in all (default: the "
        "preset's train_steps); more than a trained network had goes on from its checkpoint.",
        show_default=False)] = None,
    size: Annotated[int | None, typer.Option(
        "--size", min=32, max=1024, help="The working size: the side of the square whose area "
        "photos are trained on and painted at (default: the "
        "preset's train_size). Fast jobs use this network only with the same train_size.",
        show_default=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Train anew: discard the trained network and its checkpoint.")] = False,
    checkpoint_every: Annotated[float, typer.Option(
        "--checkpoint-every", min=0, max=86_400, metavar="SECONDS",
        help="Seconds between checkpoints; a kill loses at most this much training.")] = 180.0,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Write a JSON summary to stdout (progress goes to stderr).")] = False,
    cache_dir: CacheDirOpt = None,
    device: DeviceOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Train a preset's network on your photos, for `method: fast` (or resume its training).

    The network is stored in the cache; a stopped or killed training goes on from its last
    checkpoint when the same command is run again.

    Exit status: 0 trained (or trained already), 1 a damaged checkpoint or network
    weights, 2 bad usage or too few usable photos, 73 cache not writable, 74 disk full
    (the last checkpoint is kept), 75 another trainer of the same network is running,
    130 stopped (after a checkpoint).
    """
    setup_logging(verbose)
    with errors():
        from pipeline.config.naming import json_bytes
        from pipeline.store.cache_dir import default_cache_dir
        from pipeline.ui.train_view import TrainView

        preset = _preset(style, size, device)
        photos = _photos(on, recursive)
        view = TrainView(err if json_out else out, quiet=quiet, verbose=verbose)
        root = cache_dir if cache_dir is not None else default_cache_dir()
        report = _train(preset, photos, root, view, force=force, steps=steps,
                        checkpoint_every=checkpoint_every)
        view.print_summary(report)
        if json_out:
            out.file.write(json_bytes(report.as_dict()).decode("utf-8") + "\n")
            out.file.flush()


def _preset(style: str, size: int | None, device: str | None) -> Preset:
    from pipeline.config.styles import Registry

    preset = Registry.discover().resolve(style)
    patch: dict[str, Any] = {}
    if size is not None and size != preset.settings.train_size:
        patch["train_size"] = size
        # Even with --quiet: train_size is part of the network's key (pipeline.training.networks),
        # so the preset's fast jobs will not find this network, and that surprises.
        say(err, f"note: fast jobs use this network only where train_size is {size} "
                 f"(the preset's is {preset.settings.train_size})")
    if device is not None:
        patch["device"] = device
    return preset.with_overrides(patch) if patch else preset


def _photos(folder: Path, recursive: bool) -> list[TrainingPhoto]:
    """The photos under ``folder``, found as a job's are (planning's discovery)."""
    from pipeline.config.manifest import Job
    from pipeline.config.naming import RECORD_DIR
    from pipeline.plan.planning import discover_inputs
    from pipeline.training.job import TrainingPhoto

    if not folder.is_dir():
        raise UsageError(f"--on {os.fsdecode(folder)}: not a folder of photos")
    folder = folder.absolute()
    # A job of this folder and nothing else: its "output" is a record folder, which is
    # never a photo anyway, so no photo is left out for being one of its results.
    job = Job(name="train", index=0, input=folder, pattern=None, recursive=recursive,
              styles=(), output=folder / RECORD_DIR, inbox=None, after="move",
              follow_symlinks=False)
    photos = discover_inputs(job)
    if not photos:
        deeper = "" if recursive else " (--recursive looks in its subfolders too)"
        raise UsageError(f"no photos in {os.fsdecode(folder)}{deeper}")
    # Inside --on only, as a run keeps a job's photos inside its input folder.
    return [TrainingPhoto(p, folder, follow_symlinks=False) for p in photos]


def _train(preset: Preset, photos: list[TrainingPhoto], root: Path, view: Any, *, force: bool,
           steps: int | None, checkpoint_every: float) -> Any:
    from pipeline.training.job import ensure_network

    stop = StopFlag()
    guard_output(stop)
    try:
        with stop.installed(), view.live():
            return ensure_network(preset, photos, root, force=force, steps=steps,
                                  on_step=view.on_step, on_start=view.on_start,
                                  should_stop=stop, checkpoint_every_s=checkpoint_every,
                                  accept_shipped=False)
    except Cancelled as exc:
        if not stop.reason:
            raise
        say(err, f"{stop.reason}: {exc.message}; the last checkpoint is kept, and the same "
                 "command goes on from it")
        raise typer.Exit(exc.exit_code) from None
