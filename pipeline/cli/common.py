"""What every command shares: the consoles, turning errors into exit statuses, stopping.

Library code raises :class:`~pipeline.errors.StylizeError`; :func:`fail` turns one
into a single line on stderr and the error's exit status.  :class:`StopFlag` is
what SIGINT, SIGTERM, SIGHUP and a closed output all set: the work stops between
two optimizer steps, nothing partial is written, and the report is still written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from pipeline.config.naming import safe_text
from pipeline.config.validation import format_validation_error
from pipeline.errors import ConfigError, StylizeError
from pipeline.ui.console import plain


class StopFlag:
    """Set by SIGINT/SIGTERM/SIGHUP or a closed output; a second signal interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.reason = ""

    def __call__(self) -> bool:
        return bool(self.reason)

    def request(self, reason: str) -> None:
        self.reason = self.reason or reason

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        def handler(signum: int, frame: object) -> None:
            if self.reason:  # a second signal: the user really means it
                raise KeyboardInterrupt
            # SIGHUP: the terminal closed under a run started without nohup.
            self.request(f"stopped by {signal.Signals(signum).name}")

        previous = {sig: signal.signal(sig, handler) for sig in self.SIGNALS}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


class _GuardedStream:
    """stdout that, once its reader has gone (``| head``), stops the work instead of dying.

    The first write that meets a closed pipe sets the stop flag, as SIGTERM would, and
    points the descriptor at /dev/null, so that nothing later (nor Python's own flush at
    exit) fails on it again.
    """

    def __init__(self) -> None:
        self.stop: StopFlag | None = None
        self.closed_pipe = False

    @property
    def _stream(self) -> IO[str]:
        # Looked up at each write: tests and tools swap sys.stdout.  A Rich live view
        # swaps in a proxy that prints through this very console: writing to it would
        # recurse (and deadlock with the view's refresh thread), so go past it, as Rich's
        # own consoles do.
        return getattr(sys.stdout, "rich_proxied_file", sys.stdout)

    def write(self, text: str) -> int:
        if self.closed_pipe:
            return len(text)
        try:
            n = self._stream.write(text)
            self._stream.flush()
            return n
        except BrokenPipeError:
            self._closed()
            return len(text)

    def flush(self) -> None:
        if not self.closed_pipe:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._closed()

    def _closed(self) -> None:
        self.closed_pipe = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        if self.stop is not None:
            self.stop.request("stopped: the output was closed")

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", "utf-8")


stdout = _GuardedStream()
# Markup off: no text printed is read as Rich markup unless a caller asks for it (the live
# views, which escape every value).  Lines for people go through say() (safe_text).
out = Console(file=stdout, markup=False)  # type: ignore[arg-type]
err = Console(stderr=True, markup=False)


def say(console: Console, text: str | os.PathLike[str], *, label: str = "",
        style: str = "") -> None:
    """One line: ``label`` (ours) in ``style``, then ``text`` made safe and never markup."""
    console.print(plain(text, label, style), highlight=False, soft_wrap=True)


def guard_output(stop: StopFlag) -> None:
    """Let a closed stdout stop the work (see :class:`_GuardedStream`)."""
    stdout.stop = stop


def fail(exc: StylizeError) -> NoReturn:
    say(err, exc.message, label="error:", style="bold red")
    if isinstance(exc, ConfigError):
        for line in exc.problems[1:]:
            say(err, f"  {line}")
    raise typer.Exit(exc.exit_code)


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """Turn the tool's own errors into one line and an exit status."""
    try:
        yield
    except StylizeError as exc:
        fail(exc)
    except ValidationError as exc:
        problems = format_validation_error(exc)
        fail(ConfigError(f"invalid setting: {problems[0]}", problems))
    except KeyboardInterrupt:
        err.print("interrupted", highlight=False)
        raise typer.Exit(130) from None


class _SafeFormatter(logging.Formatter):
    """Log lines through the one sanitizer: library warnings name files (a photo that ran
    out of memory, a corrupt cache entry), and a name must not reach stderr raw."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return safe_text(super().formatMessage(record))


def setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


# -- options shared by several commands --------------------------------------------------

ManifestArg = Annotated[Path, typer.Argument(help="The job manifest.")]
CacheDirOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", help="Folder of the style-target cache (default: the user cache folder, "
    "or $STYLIZE_CACHE_DIR).", show_default=False)]
JobsOpt = Annotated[list[str] | None, typer.Option(
    "--job", "-j", help="Only this job (repeatable) (default: every job).",
    show_default=False)]
DeviceOpt = Annotated[str | None, typer.Option(help="Override every job's device.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only failures, warnings and "
                                        "the summary.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Per-scale progress and log details.")]
ExecutorOpt = Annotated[str | None, typer.Option(
    "--executor", metavar="local|ray", help="Where photos are stylized: in this process "
    "(local), or on a Ray cluster (ray) (default: the manifest's executor, else local).",
    show_default=False)]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", metavar="ADDRESS", help="The Ray cluster to use (auto, HOST:PORT, "
    "ray://HOST:PORT); without it --executor ray starts a local Ray for the run.",
    show_default=False)]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", min=1, max=1024,  # max: pipeline.config.manifest.MAX_WORKERS
    help="Ray workers to start (default: as many as the cluster holds).",
    show_default=False)]


def make_executor(manifest: Any, cache: Any, kind: str | None, address: str | None,
                  workers: int | None) -> Any:
    """The executor the command line asks for, else the manifest's (the command line wins)."""
    from pipeline.executors import make_executor as make

    chosen = manifest.executor
    kind = kind or chosen.kind
    if kind != chosen.kind:  # the manifest's options belong to the manifest's executor
        return make(kind, cache=cache, ray_address=address, workers=workers,
                    gpus_per_worker=gpus_per_worker(manifest, kind, None))
    return make(kind, cache=cache, ray_address=address or chosen.address,
                workers=workers or chosen.workers, cpus_per_worker=chosen.cpus_per_worker,
                gpus_per_worker=gpus_per_worker(manifest, kind, chosen.gpus_per_worker))


def gpus_per_worker(manifest: Any, kind: str, given: float | None) -> float | None:
    """The GPUs each Ray worker asks for: as given, else none if every style is on the CPU.

    By default a Ray worker takes one GPU where the cluster has them; for styles pinned
    to ``device: cpu`` it would hold that GPU idle all run, keeping it from others.
    """
    if given is not None or kind != "ray":
        return given
    cpu_only = all(preset.settings.device == "cpu"
                   for job in manifest.jobs for preset in job.styles)
    return 0.0 if cpu_only else None
