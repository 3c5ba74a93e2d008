"""``stylize watch``: the inboxes of a manifest, until stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import app
from pipeline.cli.common import (
    CacheDirOpt,
    DeviceOpt,
    ExecutorOpt,
    JobsOpt,
    ManifestArg,
    RayAddressOpt,
    StopFlag,
    VerboseOpt,
    WorkersOpt,
    err,
    errors,
    guard_output,
    make_executor,
    out,
    setup_logging,
)


@app.command()
def watch(
    manifest: ManifestArg = Path("jobs.yaml"),
    job: JobsOpt = None,
    # Bounded: a poll or rescan every microsecond is a busy loop over the inbox, and an
    # endless settle never takes a photo.
    poll: Annotated[float | None, typer.Option(
        metavar="SECONDS", min=0.1, max=86400,
        help="Look for new files every SECONDS instead of using the "
        "system's file events (for network shares).", show_default=False)] = None,
    settle: Annotated[float, typer.Option(
        metavar="SECONDS", min=0, max=86400,
        help="A file is taken once its size and time have not changed "
        "for this long (and it decodes fully).")] = 3.0,
    rescan: Annotated[float, typer.Option(
        metavar="SECONDS", min=1, max=86400,
        help="Scan each inbox this often whatever the events said, "
        "so a lost event never loses a file.")] = 30.0,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="First move the photos in <inbox>/failed back into the "
        "inbox.")] = False,
    json_log: Annotated[str | None, typer.Option(
        "--json-log", metavar="FILE", help="Append one JSON event per line to FILE "
        "('-' for stdout).", show_default=False)] = None,
    cache_dir: CacheDirOpt = None,
    device: DeviceOpt = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    workers: WorkersOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q",
                                        help="Only failures and warnings.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Stylize every photo dropped into a job's inbox, once it is complete, until stopped.

    Results go to <output>/inbox/.  Finished photos move to <inbox>/done (or are deleted:
    the job's `after`); photos that cannot be used move to <inbox>/failed with
    <name>.error.json.  SIGINT, SIGTERM, SIGHUP or a closed output stop it cleanly (the
    current photo is abandoned, nothing partial is kept) with status 0.  Exit status:
    2 bad manifest or usage, 73 output folder not writable, 74 disk full, 75 another
    watcher holds an inbox.
    """
    setup_logging(verbose)
    with errors():
        from pipeline.config.manifest import load_manifest
        from pipeline.store.cache import ArtifactCache
        from pipeline.ui.watch_view import JsonLog, WatchDisplay, fan_out
        from pipeline.watch import InboxWatcher, WatchOptions, watched_jobs

        options = WatchOptions(settle=settle, poll=poll, rescan=rescan,
                               retry_failed=retry_failed)
        from pipeline.training.networks import bind_networks

        parsed = load_manifest(manifest, cli_overrides={"device": device} if device else None)
        cache = ArtifactCache(cache_dir)
        # A fast job needs its trained network before the first photo: the watcher
        # refuses to start, in one line, for a style that has none (train it first).
        parsed = bind_networks(parsed, cache.root)
        jobs = watched_jobs(parsed, job)
        stop = StopFlag()
        guard_output(stop)
        with JsonLog.open(json_log, out.file) as log, stop.installed():
            display = WatchDisplay(err if json_log == "-" else out, quiet=quiet,
                                   verbose=verbose)
            engine_room = make_executor(parsed, cache, executor,
                                        ray_address, workers)
            try:
                watcher = InboxWatcher(jobs, executor=engine_room, cache=cache,
                                       options=options,
                                       on_event=fan_out(display.on_event,
                                                        log.on_event if log else None))
                # Installed again once the executor is up: starting Ray puts its own in.
                with stop.installed(), display.live(lambda: watcher.status):
                    watcher.run_until_stopped(stop, reason=lambda: stop.reason)
            finally:
                engine_room.close()
