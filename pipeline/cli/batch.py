"""``stylize run`` and ``stylize gallery``: a whole manifest, done or reviewed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli.app import app
from pipeline.cli.common import (
    CacheDirOpt,
    DeviceOpt,
    ExecutorOpt,
    JobsOpt,
    ManifestArg,
    QuietOpt,
    RayAddressOpt,
    StopFlag,
    VerboseOpt,
    WorkersOpt,
    err,
    errors,
    fail,
    guard_output,
    make_executor,
    out,
    say,
    setup_logging,
)
from pipeline.errors import Cancelled


@app.command()
def run(
    manifest: ManifestArg = Path("jobs.yaml"),
    job: JobsOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n",
                                          help="Print the plan, process nothing.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Write the machine-readable report to stdout.")] = False,
    report: Annotated[Path | None, typer.Option(
        help="Also write the machine-readable report to this file.")] = None,
    cache_dir: CacheDirOpt = None,
    device: DeviceOpt = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Stylize every photo of every job in a manifest, skipping what is already done.

    Exit status: 0 all done or nothing to do, 2 bad manifest or usage, 3 some photos
    failed, 4 every photo failed, 73 output folder not writable, 74 disk full,
    75 another run is writing the same outputs, 130 stopped (a signal, or the output
    was closed).
    """
    setup_logging(verbose)
    with errors():
        from pipeline.config.manifest import load_manifest
        from pipeline.plan.planning import plan, select_jobs
        from pipeline.store.cache_dir import default_cache_dir
        from pipeline.training.networks import bind_networks
        from pipeline.ui.run_view import RunDisplay

        parsed = load_manifest(manifest, cli_overrides={"device": device} if device else None)
        # Fast styles are keyed by the network that makes them: found before planning.
        parsed = bind_networks(parsed, cache_dir or default_cache_dir())
        if report is not None:
            from pipeline.store.fsutil import check_named

            check_named(report)  # a folder is refused before the run, not after it
        if dry_run:
            RunDisplay(out, quiet=quiet, verbose=verbose).print_plan(plan(parsed, jobs=job))
            return
        from pipeline.store.fsutil import check_writable
        from pipeline.store.locking import output_locks, refuse_overlapping_runs

        stop = StopFlag()
        guard_output(stop)
        # Planned once, before the lock, so that a collision (a manifest error) is refused
        # before anything is written; a photo that a run before this one finished while
        # this one waited for the lock is skipped when its turn comes (runner).
        the_plan = plan(parsed, jobs=job)
        outputs = [j.output for j in select_jobs(parsed, job)]
        for folder in outputs:
            check_writable(folder)  # one clear line (73, 74) before the lock is made there
        with output_locks(outputs, what=str(manifest)), stop.installed():
            # Nested output folders of two manifests write the same files: 75 as well.
            refuse_overlapping_runs(outputs, {t.output.parent for t in the_plan.tasks},
                                    what=str(manifest))
            result = _run(parsed, the_plan, outputs, cache_dir, stop,
                          RunDisplay(err if json_out else out, quiet=quiet, verbose=verbose),
                          (executor, ray_address, workers))
        _report(result, report, json_out)
        if isinstance(result.stopped, Cancelled) and stop.reason:
            err.print(f"{stop.reason}; nothing partial was written, and the next run does "
                      "the rest", highlight=False, soft_wrap=True)
            raise typer.Exit(result.stopped.exit_code)
        if result.stopped is not None:
            fail(result.stopped)
        if result.exit_code:
            raise typer.Exit(result.exit_code)


def _run(parsed: Any, the_plan: Any, outputs: list[Path], cache_dir: Path | None,
         stop: StopFlag, display: Any, where: tuple[str | None, str | None, int | None]) -> Any:
    from pipeline.run.runner import run as run_plan
    from pipeline.store.cache import ArtifactCache

    cache = ArtifactCache(cache_dir)
    cache.sweep()
    executor = make_executor(parsed, cache, *where)
    try:
        the_plan = _train_missing(the_plan, cache.root, stop, display, executor)
        # Installed again once the executor is up: starting Ray puts its own handlers in.
        with stop.installed(), display.live(the_plan):
            result = run_plan(the_plan, executor, on_event=display.on_event, should_stop=stop,
                              checked=outputs)
    finally:
        executor.close()
    display.print_summary(result)
    return result


def _train_missing(the_plan: Any, cache_root: Path, stop: StopFlag, display: Any,
                   executor: Any) -> Any:
    """The plan bound to the networks of its fast styles, each trained first if missing
    (:mod:`pipeline.training.missing`), each training shown live."""
    from pipeline.training.missing import Training, train_missing
    from pipeline.ui.train_view import TrainView

    @contextlib.contextmanager
    def session(preset: Any) -> Iterator[Training]:
        view = TrainView(display.console, quiet=display.quiet, verbose=display.verbose)
        training = Training(on_step=view.on_step, on_start=view.on_start)
        with stop.installed(), view.live():
            yield training
        if training.report is not None:
            view.print_summary(training.report)

    return train_missing(the_plan, cache_root, session=session, executor=executor,
                         should_stop=stop)


def _report(result: Any, report: Path | None, json_out: bool) -> None:
    """The machine-readable report: to a file (atomically) and/or to stdout."""
    from pipeline.config.naming import json_bytes

    payload = json_bytes(result.as_dict())
    if report is not None:
        from pipeline.store.fsutil import write_named

        write_named(report, payload)  # a FIFO or a device is written to, never replaced
    if json_out:
        out.file.write(payload.decode("utf-8") + "\n")
        out.file.flush()


@app.command()
def gallery(
    manifest: ManifestArg = Path("jobs.yaml"),
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Folder for index.html and its thumbnails "
        "(default: 'gallery' next to the manifest).", show_default=False)] = None,
    job: Annotated[list[str] | None, typer.Option(
        "--job", "-j", help="Show only this job (repeatable).")] = None,
    open_page: Annotated[bool, typer.Option(
        "--open", help="Open the page in the default browser.")] = False,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Write a static HTML page with before/after thumbnails of every job, to review a batch.

    The last line printed is the path of the page.
    """
    with errors():
        from pipeline.config.manifest import load_manifest
        from pipeline.review.gallery import build_gallery

        parsed = load_manifest(manifest)
        folder = output if output is not None else parsed.path.parent / "gallery"
        result = build_gallery(parsed, folder, jobs=job, cache_dir=cache_dir)
        for problem in result.problems:
            say(err, f"cannot show {problem}", label="warning:", style="yellow")
        outdated = f", {result.outdated} outdated" if result.outdated else ""
        err.print(f"{result.photos} photos in {result.jobs} jobs: {result.done} done{outdated}, "
                  f"{result.not_done} not done; thumbnails: {result.thumbs_written} new, "
                  f"{result.thumbs_reused} reused", highlight=False)
        say(out, result.index)
        if open_page:
            import webbrowser

            if not webbrowser.open(result.index.as_uri()):
                say(err, "no browser found; open the page above by hand", label="warning:",
                    style="yellow")


