"""How training a network looks: a Rich live view on a terminal, plain lines elsewhere.

Used by ``stylize train`` and by ``stylize run`` when a fast job must train its network
first: :meth:`TrainView.live` around the training, :meth:`TrainView.on_start` and
:meth:`TrainView.on_step` as its callbacks.  Rich allows one live display at a time, so
``live()`` is entered outside any other (a run's view starts after the training).

A log file or cron mail gets a line at the first step, then one every ``every_s``
seconds, and one at the last step: enough to see it move, never a bar.  Torch is not
imported here (the progress types are only annotations).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from pipeline.ui.console import View, markup, shown

if TYPE_CHECKING:
    from pipeline.engine.training import TrainProgress
    from pipeline.training.job import TrainReport, TrainStart

#: Seconds between two plain progress lines.
PLAIN_EVERY_S = 30.0


def duration(seconds: float) -> str:
    """``1:02:03`` or ``2:05``: a duration as a clock shows it."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta(p: TrainProgress) -> float:
    """Seconds left at this run's pace (steps done since it started or resumed)."""
    done = p.step - p.resumed_from
    return (p.steps - p.step) * p.elapsed / done if done > 0 else 0.0


class TrainView(View):
    """Step/steps, loss, photos/s and ETA of one network's training."""

    def __init__(self, console: Console, *, quiet: bool = False, verbose: bool = False,
                 every_s: float = PLAIN_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(console, quiet=quiet, verbose=verbose)
        self.every_s = every_s
        self._clock = clock
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last_line: float | None = None  # when the last plain progress line was shown
        self._style = ""

    def on_start(self, start: TrainStart) -> None:
        """The photos are read; training starts (or resumes)."""
        self._style = start.style
        if self.quiet:
            return
        skipped = sum(start.skipped.values())
        kinds = ", ".join(f"{n} {c.replace('_', ' ')}" for c, n in start.skipped.items())
        left = start.found - start.photos - skipped
        notes = (f", {skipped} skipped ({kinds})" if skipped else "") + (
            f", {left} left out (memory)" if left > 0 else "")
        resume = (f", resuming from step {start.resume_from}" if start.resume_from
                  else "")
        self.line(f"training the network of {markup(start.style)} on {start.photos} "
                  f"photo{'s' * (start.photos != 1)}{notes}: {start.steps} steps{resume}")
        for problem in start.problems:
            self.line(f"[yellow]skipped[/] {markup(problem)}")
        if start.preview is not None:
            self.line(f"preview (a few photos through the network, at each checkpoint): "
                      f"{shown(start.preview)}")
        if self._bar is not None:
            self._task = self._bar.add_task(markup(f"training {start.style}"),
                                            total=start.steps, completed=start.resume_from,
                                            detail="")

    def on_step(self, p: TrainProgress) -> None:
        """One step done (the trainer's ``on_step``)."""
        detail = (f"loss {p.loss:.4g} · {p.photos_per_s:.1f} photos/s · "
                  f"{duration(p.elapsed)} · ETA {duration(eta(p))}")
        if self._bar is not None:
            if self._task is None:  # on_start was not called: a bare trainer's steps
                self._task = self._bar.add_task("training", total=p.steps, detail="")
            self._bar.update(self._task, completed=p.step, total=p.steps, detail=detail)
            return
        if self.quiet:
            return
        now = self._clock()
        if (self._last_line is None or p.step == p.steps
                or now - self._last_line >= self.every_s):
            self._last_line = now
            self.line(f"step {p.step}/{p.steps} {detail}")

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        """The live bar for the ``with`` block, on a terminal (else plain lines)."""
        if not self.live_view:
            yield
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[detail]}"))
        with Progress(*columns, console=self.console) as bar:
            self._bar = bar
            try:
                yield
            finally:
                self._bar, self._task = None, None

    def print_summary(self, report: TrainReport) -> None:
        """One line: what was trained (or found), and the network's digest."""
        name = markup(report.style)
        if not report.trained:
            where = "shipped with the preset" if report.source == "preset" else "in the cache"
            self.line(f"{name}: already trained ({report.steps} steps, {where}), network "
                      f"{report.digest[:12]} at {shown(report.path)}; --force trains it anew")
            return
        resumed = f", resumed from step {report.resumed_from}" if report.resumed_from else ""
        loss = f", last loss {report.loss:.4g}" if report.loss is not None else ""
        plural = "s" * (report.steps != 1)
        self.line(f"{name}: trained {report.steps} step{plural}{resumed} on "
                  f"{report.photos_used} photos in {duration(report.seconds)}{loss}; network "
                  f"{report.digest[:12]} written to {shown(report.path)}")
