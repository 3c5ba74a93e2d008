"""Batches in the scheduler: photos of one output size go through the engine together.

On a GPU the batch size comes from free memory; here it is set (``batch_size``) so that
the same code path runs on the CPU.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.engines import run_local
from support.images import gradient_photo

from pipeline.config.geometry import output_size
from pipeline.config.manifest import load_manifest
from pipeline.config.settings import Settings
from pipeline.engine.optimize import Engine
from pipeline.errors import InputError
from pipeline.executors.local import LocalExecutor
from pipeline.images import probe
from pipeline.plan.batching import Batcher
from pipeline.plan.methods import result_view
from pipeline.plan.planning import plan
from pipeline.run.report import TaskStarted
from pipeline.store import records
from pipeline.store.cache import ArtifactCache

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("one_thread")]




def _project(root: Path, batch_size: int) -> Path:
    photos = root / "photos"
    photos.mkdir(parents=True)
    for i in range(4):  # four of one size ...
        gradient_photo(96, 64, seed=i).save(photos / f"same-{i}.png")
    gradient_photo(64, 96, seed=9).save(photos / "portrait.png")  # ... one of another
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # ... and junk
    (root / "jobs.yaml").write_text(textwrap.dedent(f"""
        defaults: {{size: 64, min_side: 32, steps: [8, 4], min_scales: 1, precision: fp32,
                    device: cpu, batch_size: {batch_size}}}
        jobs:
          - {{name: main, input: photos, styles: [udnie], output: out}}
    """))
    return root / "jobs.yaml"


def test_batches_bucket_by_output_size_and_keep_the_batch_size(tmp_path: Path) -> None:
    manifest = load_manifest(_project(tmp_path, 3))
    tasks = plan(manifest).due
    executor = LocalExecutor(None)
    batches = _batches(tasks, executor)
    names = [[t.input.name for t in b] for b in batches]
    assert sorted(n for b in names for n in b) == sorted(t.input.name for t in tasks)
    assert ["same-0.png", "same-1.png", "same-2.png"] in names
    assert ["same-3.png"] in names and ["portrait.png"] in names and ["broken.png"] in names
    # On the CPU the automatic choice is one photo at a time, in plan order.
    auto = [replace(t, preset=t.preset.with_overrides({"batch_size": 0})) for t in tasks]
    assert _batches(auto, executor) == [[t] for t in auto]


def _batches(tasks: list, executor: LocalExecutor) -> list[list]:
    """The batches the runner would send, photos taken in plan order."""
    preset = tasks[0].preset
    batcher: Batcher = Batcher(lambda w, h: executor.batch_size(preset, w, h))
    batches = []
    for task in tasks:
        try:
            info = probe(task.input)
            size = output_size(info.width, info.height, preset.settings.size)
        except InputError:
            size = None
        batches += batcher.add(task, size)
    return batches + batcher.rest()


def test_held_photos_are_bounded() -> None:
    batcher: Batcher[str] = Batcher(lambda w, h: 4, max_held_bytes=100)
    assert batcher.add("a", (10, 10), 60) == []
    assert batcher.add("b", (20, 10), 30) == []
    assert batcher.add("c", (30, 10), 20) == [["a"]]  # 110 bytes held: the fullest goes
    assert batcher.add("d", (20, 10), 1) == []
    assert batcher.rest() == [["b", "d"], ["c"]]


def test_a_batched_run_matches_a_one_by_one_run(tmp_path: Path) -> None:
    batched, single = tmp_path / "batched", tmp_path / "single"
    reports = {}
    started: list[str] = []
    for root, size in ((batched, 3), (single, 1)):
        manifest = load_manifest(_project(root, size))
        reports[size] = run_local(plan(manifest), ArtifactCache(tmp_path / "cache"),
                            on_event=lambda e, size=size: started.append(e.task.input.name)
                            if isinstance(e, TaskStarted) and size == 3 else None)
    for report in reports.values():
        statuses = {r.task.input.name: r.status for r in report.results}
        assert statuses == {"same-0.png": "done", "same-1.png": "done", "same-2.png": "done",
                            "same-3.png": "done", "portrait.png": "done",
                            "broken.png": "failed"}
        assert report.exit_code == 3
    assert sorted(started) == sorted(r.task.input.name for r in reports[3].results)
    singles = {p.name: np.asarray(Image.open(p), np.int16)
               for p in sorted((single / "out").glob("*.jpg"))}
    for name, alone in singles.items():
        twin = batched / "out" / name
        together = np.asarray(Image.open(twin), np.int16)
        # Equal up to rounding, which the optimizer amplifies to a few levels of 255
        # (test_engine checks exactness in float64), against about 40 levels between
        # the results of two of these photos: so each result is its own photo's.
        diff = np.abs(together - alone).mean()
        assert diff < 6, name
        others = [np.abs(together - a).mean() for n, a in singles.items()
                  if n != name and a.shape == together.shape]
        assert all(diff < o / 4 for o in others), name
        rec = records.read_record(twin)
        assert rec is not None and rec.key == records.read_record(single / "out" / name).key  # type: ignore[union-attr]
    # Done is done: the batched outputs count as current for a rerun of either setting.
    again = run_local(plan(load_manifest(batched / "jobs.yaml")), ArtifactCache(tmp_path / "c2"))
    assert again.count("skipped") == 5 and again.count("done") == 0


def test_a_batch_that_runs_out_of_memory_is_done_one_by_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(self: Engine, *args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(Engine, "stylize_batch", no_memory)
    report = run_local(plan(load_manifest(_project(tmp_path, 4))),
                       ArtifactCache(tmp_path / "cache"))
    assert report.count("done") == 5 and report.count("failed") == 1
    assert len(list((tmp_path / "out").glob("*.jpg"))) == 5


def test_settings_validate_batch_and_tile_knobs() -> None:
    with pytest.raises(ValueError):
        Settings(batch_size=-1)
    with pytest.raises(ValueError):
        Settings(tile_overlap=4)
    # Hardware knobs do not make finished results due again.
    assert result_view(Settings(batch_size=8, tile_pixels=10**6)) == result_view(Settings())


def test_the_batch_size_is_decided_by_memory_batch_size() -> None:
    from pipeline.engine import memory

    cpu, gpu = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
    assert memory.batch_size(Settings(), cpu, torch.float32, 100) == 1  # auto: none on a CPU
    assert memory.batch_size(Settings(batch_size=2), cpu, torch.float32, 100) == 2
    # Asked-for and automatic batches never hold more than one pass may (the tile limit).
    assert memory.batch_size(Settings(batch_size=8, tile_pixels=5000), cpu, torch.float32,
                             1500) == 3
    assert memory.batch_size(Settings(tile_pixels=10_000), gpu, torch.float32, 300) == 33
    assert memory.batch_size(Settings(tile_pixels=10**8), gpu, torch.float32, 300) == \
        memory.MAX_AUTO_BATCH
    assert memory.batch_size(Settings(batch_size=1), gpu, torch.float32, 300) == 1
