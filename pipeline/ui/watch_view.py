"""How ``stylize watch`` looks: a Rich live view on a terminal, plain lines elsewhere, and
optionally one JSON object per line for other programs (``--json-log``).

The watcher calls ``on_event`` from its own threads, one call at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from pipeline.config.naming import json_bytes
from pipeline.errors import UsageError
from pipeline.ui.console import View, markup
from pipeline.watch.events import WatchEvent, WatchStatus


def _who(e: WatchEvent) -> str:
    return markup(f"{e.job}/{e.file}" if e.job else e.file)


class WatchDisplay(View):
    """How ``stylize watch`` looks; ``on_event`` takes the watcher's events."""

    def __init__(self, console: Console, *, quiet: bool = False, verbose: bool = False) -> None:
        super().__init__(console, quiet=quiet, verbose=verbose)
        self._status: Callable[[], WatchStatus] | None = None

    @contextlib.contextmanager
    def live(self, status: Callable[[], WatchStatus]) -> Iterator[None]:
        self._status = status
        if not self.live_view:
            yield
            return
        with Live(get_renderable=self._render, console=self.console, refresh_per_second=4,
                  transient=True):
            yield

    def _render(self) -> RenderableType:
        s = self._status() if self._status is not None else WatchStatus()
        head = Text.assemble(
            ("watching ", "bold"), f"{len(s.inboxes)} inbox{'es' if len(s.inboxes) != 1 else ''}"
            f" · queue {s.queued} · settling {s.pending} · ",
            (f"done {s.done}", "green"), " · ", (f"failed {s.failed}", "red" if s.failed else ""))
        now = (Text.assemble(("now ", "bold"), s.current, f" · {s.step}" if s.step else "")
               if s.current else Text("idle: waiting for photos", style="dim"))
        return Group(head, now)

    def on_event(self, e: WatchEvent) -> None:
        d = e.data
        if e.kind == "watching":
            how = "polling" if d.get("observer") == "polling" else "native events"
            extra = f", {d['retried']} moved back from failed/" if d.get("retried") else ""
            self.line(f"watching {markup(d['inbox'])} (job {markup(e.job)}, {how}, settle "
                       f"{d['settle']:g} s) -> {markup(d['output'])}{extra}")
        elif e.kind == "queued":
            if self.verbose:
                self.line(f"queued {_who(e)} ({d['size']} bytes)")
        elif e.kind == "started":
            if not self.quiet and not self.live_view:
                self.line(f"started {_who(e)} \\[{markup(', '.join(d['styles']))}]")
        elif e.kind == "step":
            if self.verbose and not self.live_view and d["step"] == d["steps"]:
                self.line(f"  {_who(e)} \\[{markup(d['style'])}] scale {d['scale']}/"
                           f"{d['scales']} loss {d['loss']:.4g}")
        elif e.kind == "done":
            if not self.quiet:
                where = ("deleted" if d.get("deleted") else
                         f"moved to {markup(d['moved_to'])}" if d.get("moved_to") else "kept")
                outs = ", ".join(markup(Path(o).name) for o in d["outputs"])
                self.line(f"[green]done[/] {_who(e)} -> {outs} ({d['seconds']:.1f} s; "
                           f"photo {where})")
        elif e.kind == "failed":
            where = f" -> {markup(d['moved_to'])}" if d.get("moved_to") else ""
            self.line(f"[red]failed[/] {_who(e)}: {markup(d['message'])} "
                       f"({markup(d['category'])}){where}")
        elif e.kind == "ignored":
            if not self.quiet:
                self.line(f"[dim]ignored {_who(e)}: {markup(d['reason'])}[/]")
        elif e.kind == "warning":
            self.line(f"[yellow]warning:[/] {markup(d['message'])}")
        elif e.kind == "stopped":
            abandoned = (f"; {markup(d['abandoned'])} was abandoned and stays in the inbox"
                         if d.get("abandoned") else "")
            self.line(f"stopped: {d['done']} done, {d['failed']} failed, {d['queued']} "
                       f"still queued{abandoned} ({markup(d['reason'])})")


class JsonLog:
    """One JSON object per line (``step`` events left out), flushed as it is written."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    @classmethod
    @contextlib.contextmanager
    def open(cls, target: str | None, stdout: IO[str]) -> Iterator[JsonLog | None]:
        if target is None:
            yield None
        elif target == "-":
            yield cls(stdout)
        else:
            try:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                fh = open(target, "a", encoding="utf-8")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise UsageError(f"cannot open the JSON log {target}: {exc.strerror}") from exc
            with fh:
                yield cls(fh)

    def on_event(self, e: WatchEvent) -> None:
        if e.kind == "step":
            return
        self.stream.write(json_bytes(e.as_dict(), indent=None).decode("utf-8") + "\n")
        self.stream.flush()


def fan_out(*sinks: Callable[[WatchEvent], Any] | None) -> Callable[[WatchEvent], None]:
    live = [s for s in sinks if s is not None]

    def on_event(e: WatchEvent) -> None:
        for sink in live:
            sink(e)

    return on_event
