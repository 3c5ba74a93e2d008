"""The run's display: a live view on a terminal, plain lines elsewhere, a summary either way."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from pipeline.config.styles import Registry
from pipeline.engine.optimize import Progress
from pipeline.plan.planning import Plan, Task
from pipeline.run.report import (
    Report,
    TargetsReady,
    TaskFinished,
    TaskResult,
    TaskStarted,
    TaskStep,
)
from pipeline.ui.run_view import RunDisplay


def _tasks(tmp_path: Path) -> list[Task]:
    preset = Registry.discover().resolve("udnie")
    base = Task("main", tmp_path / "a.jpg", tmp_path, False, preset, tmp_path / "out" /
                "a.jpg.udnie.jpg", "jpeg", "k", "d", (1, 1), "due")
    return [base, replace(base, input=tmp_path / "b.jpg",
                          output=tmp_path / "out" / "b.jpg.udnie.jpg")]


def _drive(display: RunDisplay, tasks: list[Task]) -> Report:
    plan = Plan(tasks)
    report = Report(targets_computed=2, targets_cached=1, seconds=12.5)
    with display.live(plan):
        display.on_event(TargetsReady("udnie", 2, 1))
        for i, task in enumerate(tasks, start=1):
            display.on_event(TaskStarted(task, i, len(tasks)))
            for step in (1, 2):
                display.on_event(TaskStep(task, Progress(2, 2, step, 2, 0.5, 1.0, 64, 48,
                                                         step, 2)))
            result = TaskResult(task, "done" if i == 1 else "failed", "not_an_image",
                                "b.jpg: not an image" if i == 2 else "", 3.0)
            report.results.append(result)
            display.on_event(TaskFinished(result))
    display.print_summary(report)
    return report


def test_a_terminal_gets_bars_and_a_summary_table(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    _drive(RunDisplay(console), _tasks(tmp_path))
    text = out.getvalue()
    # The bars as last drawn: the overall one and the photo being done.
    assert "photos" in text and "b.jpg · udnie" in text
    assert "scale 2/2 64×48 tile 2/2" in text
    assert f"failed {tmp_path / 'b.jpg'} [udnie]: b.jpg: not an image" in text
    for header in ("done", "skipped", "failed", "style targets computed", "from cache"):
        assert header in text
    assert "summary:" not in text  # the table, not the plain line


def test_plain_output_has_no_bars_and_verbose_adds_scale_lines(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=160)
    _drive(RunDisplay(console, verbose=True), _tasks(tmp_path))
    text = out.getvalue()
    assert "\x1b[" not in text and "━" not in text  # cron mail stays readable
    assert f"{tmp_path / 'a.jpg'} [udnie] scale 2/2 64×48 tile 2/2 loss 0.5" in text
    assert "style udnie: 2 style target(s) computed, 1 from the cache" in text
    assert ("summary: 1 done, 0 skipped, 1 failed, 0 not run in 12.5 s; style targets: "
            "2 computed, 1 from the cache") in text


def test_quiet_prints_failures_and_the_summary_only(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=160)
    _drive(RunDisplay(console, quiet=True), _tasks(tmp_path))
    lines = out.getvalue().strip().splitlines()
    assert lines[0].startswith(f"failed {tmp_path / 'b.jpg'}")
    assert lines[-1].startswith("summary:")
    assert len(lines) == 2


def test_a_video_segment_shows_its_frames_not_a_loss() -> None:
    frames = Progress(1, 1, 12, 48, 0.0, 2.0, 512, 288, frames=True)
    assert frames.label() == "frames 12/48 512×288"
    assert Progress(1, 3, 5, 40, 2.5, 1.0, 128, 96).label() == "scale 1/3 128×96 loss 2.5"
