"""How a run looks: a Rich live view on a terminal, plain lines elsewhere.

Cron mails and log files get one line per finished photo (and, with
``--verbose``, per scale), never cursor movements or bars.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from pipeline.config.naming import safe_text
from pipeline.plan.planning import Plan
from pipeline.run.report import Event, Report, TargetsReady, TaskFinished, TaskStarted, TaskStep
from pipeline.ui.console import View, markup, plain, shown, shown_path

_STATUS_STYLE = {"done": "green", "skipped": "dim", "failed": "red", "not_run": "yellow"}


class RunDisplay(View):
    """How ``stylize run`` looks; ``on_event`` takes the runner's events."""

    def __init__(self, console: Console, *, quiet: bool = False, verbose: bool = False) -> None:
        super().__init__(console, quiet=quiet, verbose=verbose)
        self._bar: Progress | None = None
        self._overall: TaskID | None = None
        self._photos: dict[str, TaskID] = {}  # worker -> its line

    # -- plan -----------------------------------------------------------------

    def print_plan(self, plan: Plan) -> None:
        table = Table("status", "job", "input", "style", "output", box=None)
        for t in plan.tasks:
            # Text cells: never read as markup, whatever the console's setting.
            table.add_row(t.status, t.job, plain(shown_path(t.input)), plain(t.style),
                          plain(shown_path(t.output)))
        if not self.console.is_terminal:
            # Tab-separated for scripts, written as is: Rich would expand the tabs to spaces.
            for t in plan.tasks:
                self.console.file.write("\t".join((t.status, t.job, shown_path(t.input),
                                                   safe_text(t.style), shown_path(t.output)))
                                        + "\n")
            self.console.file.flush()
        else:
            self.console.print(table)
        self.line(f"{len(plan.due)} to do, {len(plan.skipped)} already done")

    # -- live -----------------------------------------------------------------

    @contextlib.contextmanager
    def live(self, plan: Plan) -> Iterator[None]:
        if not self.quiet:
            self.line(f"{len(plan.due)} to do, {len(plan.skipped)} already done")
        if not self.live_view or not plan.due:
            yield
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=self.console) as bar:
            self._bar = bar
            self._overall = bar.add_task("photos", total=len(plan.due), detail="")
            try:
                yield
            finally:
                self._bar = None

    def on_event(self, event: Event) -> None:
        if isinstance(event, TargetsReady):
            if self.verbose or (not self.quiet and event.computed):
                self.line(f"style {markup(event.style)}: {event.computed} style target(s) "
                           f"computed, {event.cached} from the cache")
        elif isinstance(event, TaskStarted):
            if self._bar is not None:
                # One line per worker: its current photo, and (below) its step.
                remote = event.worker and not event.worker.startswith("local:")
                who = f" · {event.worker}" if remote else ""
                self._bar.update(self._worker_bar(event.worker), visible=True, completed=0,
                                 total=1, description=markup(f"{event.task.input.name} · "
                                                             f"{event.task.style}{who}"),
                                 detail="")
        elif isinstance(event, TaskStep):
            self._step(event)
        elif isinstance(event, TaskFinished):
            self._finished(event)

    def _step(self, event: TaskStep) -> None:
        p = event.progress
        if self._bar is not None:
            self._bar.update(self._worker_bar(event.worker), completed=p.step, total=p.steps,
                             detail=p.label())
        elif self.verbose and p.step == p.steps:
            self.line(f"  {shown(event.task.input)} \\[{markup(event.task.style)}] "
                      f"{p.label()} ({p.elapsed:.1f} s)")

    def _worker_bar(self, worker: str) -> TaskID:
        assert self._bar is not None
        if worker not in self._photos:
            self._photos[worker] = self._bar.add_task("", total=1, detail="", visible=False)
        return self._photos[worker]

    def _finished(self, event: TaskFinished) -> None:
        r = event.result
        if self._bar is not None and self._overall is not None:
            self._bar.advance(self._overall)
        if r.status == "failed":
            self.line(f"[red]failed[/] {shown(r.task.input)} \\[{markup(r.task.style)}]: "
                       f"{markup(r.reason)}")
        elif not self.quiet:
            self.line(f"{r.status} {shown(r.task.input)} \\[{markup(r.task.style)}] -> "
                       f"{shown(r.task.output)} ({r.seconds:.1f} s)")

    # -- summary ----------------------------------------------------------------

    def print_summary(self, report: Report) -> None:
        counts: dict[str, Any] = {s: report.count(s)  # type: ignore[arg-type]
                                  for s in ("done", "skipped", "failed", "not_run")}
        if self.console.is_terminal and not self.quiet:
            table = Table("done", "skipped", "failed", "not run", "time",
                          "style targets computed", "from cache", title="summary")
            table.add_row(str(counts["done"]), str(counts["skipped"]), str(counts["failed"]),
                          str(counts["not_run"]), f"{report.seconds:.1f} s",
                          str(report.targets_computed), str(report.targets_cached))
            self.console.print(table)
        else:
            self.line(f"summary: {counts['done']} done, {counts['skipped']} skipped, "
                       f"{counts['failed']} failed, {counts['not_run']} not run in "
                       f"{report.seconds:.1f} s; style targets: {report.targets_computed} "
                       f"computed, {report.targets_cached} from the cache")
