"""``method: fast`` end to end: a preset's trained network in the cache (or its folder)
stylizes photos in ``image`` and ``run``, records name the network, a rerun skips, a
retrained network makes results due again, ``explain`` remakes a fast picture byte for
byte, and a damaged or pickled network is refused in one line.

The network is a real one, trained here for a few steps at a tiny size (width 8): what
is tested is the plumbing around it, not its looks.
"""

from __future__ import annotations

import json
import pickle
import shlex
import textwrap
from pathlib import Path

import pytest
from PIL import Image
from support.engines import train_tiny_network
from support.images import gradient_photo
from support.presets import TINY_FAST, write_preset
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config.styles import Registry
from pipeline.errors import NetworkMissingError, StylizeError
from pipeline.plan.methods import result_view
from pipeline.store import records
from pipeline.training.networks import PRESET_NETWORK_FILE, cache_paths, find_network, network_key

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("one_thread")]

TINY = TINY_FAST


@pytest.fixture
def styles(tmp_path: Path) -> Path:
    folder = tmp_path / "styles"
    write_preset(folder, "quick", TINY_FAST, description="a tiny fast preset")
    return folder


def _preset(styles: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STYLIZE_STYLES_PATH", str(styles))
    return Registry.discover().resolve("quick")


def _invoke(*args: str, styles: Path, cache: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [*args], env={"STYLIZE_STYLES_PATH": str(styles),
                                                   "STYLIZE_CACHE_DIR": str(cache)})
    return result.exit_code, result.stdout, result.stderr


def test_image_with_a_trained_network_names_it_and_explain_remakes_it(
        tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    preset = _preset(styles, monkeypatch)
    digest = train_tiny_network(preset, cache_paths(cache, network_key(preset))[0])
    photo, out = tmp_path / "cat.png", tmp_path / "made" / "cat.png"
    gradient_photo(72, 48, seed=3).save(photo)
    code, _, err = _invoke("image", str(photo), "--style", "quick", "-o", str(out), "-q",
                           styles=styles, cache=cache)
    assert code == 0, err
    assert Image.open(out).size == (64, 43)
    made = records.read_record(out).made  # type: ignore[union-attr]
    assert made["method"] == "fast" and made["network"] == digest
    code, command, err = _invoke("explain", str(out), "--command", styles=styles, cache=cache)
    assert code == 0, err
    argv = shlex.split(command.strip())
    code, _, err = _invoke(*argv[1:], "-q", styles=styles, cache=cache)
    assert code == 0, err
    again = Path(argv[argv.index("-o") + 1])
    assert again.read_bytes() == out.read_bytes()


def test_explain_finds_the_network_in_the_cache_the_picture_was_made_with(
        tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    preset = _preset(styles, monkeypatch)
    train_tiny_network(preset, cache_paths(elsewhere, network_key(preset))[0])
    photo, out = tmp_path / "cat.png", tmp_path / "made" / "cat.png"
    gradient_photo(72, 48, seed=3).save(photo)
    code, _, err = _invoke("image", str(photo), "--style", "quick", "-o", str(out), "-q",
                           "--cache-dir", str(elsewhere), styles=styles, cache=default)
    assert code == 0, err
    code, _, err = _invoke("explain", str(out), "--command", styles=styles, cache=default)
    assert code == 0 and "is not here" in err  # the default cache holds no network
    code, command, err = _invoke("explain", str(out), "--command", "--cache-dir",
                                 str(elsewhere), styles=styles, cache=default)
    assert code == 0 and "warning" not in err, err
    argv = shlex.split(command.strip())
    assert argv[argv.index("--cache-dir") + 1] == str(elsewhere.absolute())
    code, _, err = _invoke(*argv[1:], "-q", styles=styles, cache=default)
    assert code == 0, err
    assert Path(argv[argv.index("-o") + 1]).read_bytes() == out.read_bytes()


def test_a_fast_run_records_the_network_skips_after_and_redoes_when_retrained(
        tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    preset = _preset(styles, monkeypatch)
    network = cache_paths(cache, network_key(preset))[0]
    first = train_tiny_network(preset, network)
    (tmp_path / "photos").mkdir()
    for i in range(3):
        gradient_photo(80, 60, seed=i).save(tmp_path / "photos" / f"p{i}.png")
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent("""
        jobs:
          - {name: main, input: photos, styles: [quick], output: out}
    """))
    manifest = str(tmp_path / "jobs.yaml")
    code, _, err = _invoke("run", manifest, "--json", styles=styles, cache=cache)
    assert code == 0, err
    outputs = sorted((tmp_path / "out").glob("*.jpg"))
    assert len(outputs) == 3
    assert {records.read_record(o).made["network"] for o in outputs} == {first}  # type: ignore[union-attr]
    code, text, err = _invoke("run", manifest, "--json", styles=styles, cache=cache)
    assert code == 0 and json.loads(text)["summary"]["skipped"] == 3, err
    second = train_tiny_network(preset, network, seed=1)  # retrained: another network
    assert second != first
    code, text, err = _invoke("run", manifest, "--json", styles=styles, cache=cache)
    assert code == 0 and json.loads(text)["summary"]["done"] == 3, err
    assert {records.read_record(o).made["network"] for o in outputs} == {second}  # type: ignore[union-attr]


def test_a_preset_ships_its_network_and_a_pickle_there_is_refused(
        tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    preset = _preset(styles, monkeypatch)
    shipped = styles / "quick" / PRESET_NETWORK_FILE
    digest = train_tiny_network(preset, shipped)
    photo, out = tmp_path / "cat.png", tmp_path / "cat-quick.png"
    gradient_photo(72, 48, seed=3).save(photo)
    code, _, err = _invoke("image", str(photo), "--style", "quick", "-o", str(out), "-q",
                           styles=styles, cache=cache)
    assert code == 0, err
    assert records.read_record(out).made["network"] == digest  # type: ignore[union-attr]

    class Boom:
        def __reduce__(self) -> tuple:
            return (Path(tmp_path / "pwned").touch, ())

    shipped.write_bytes(pickle.dumps({"net": Boom()}))
    code, _, err = _invoke("image", str(photo), "--style", "quick", "-o", str(out), "-q",
                           styles=styles, cache=cache)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "no trained network" in err and "stylize train quick" in err
    assert not (tmp_path / "pwned").exists()


def test_a_corrupt_network_is_refused_in_one_line(
        tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    preset = _preset(styles, monkeypatch)
    network = cache_paths(cache, network_key(preset))[0]
    train_tiny_network(preset, network)
    data = bytearray(network.read_bytes())
    data[-5] ^= 0xFF  # a flipped byte in the last tensor
    network.write_bytes(bytes(data))
    photo, out = tmp_path / "cat.png", tmp_path / "cat-quick.png"
    gradient_photo(72, 48, seed=3).save(photo)
    code, _, err = _invoke("image", str(photo), "--style", "quick", "-o", str(out), "-q",
                           styles=styles, cache=cache)
    assert code != 0 and len(err.strip().splitlines()) == 1, err
    assert "corrupt" in err and not out.exists()


def test_watch_stylizes_inbox_photos_with_the_network(
        tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from pipeline.config.manifest import load_manifest
    from pipeline.executors.local import LocalExecutor
    from pipeline.store.cache import ArtifactCache
    from pipeline.training.networks import bind_networks
    from pipeline.watch import InboxWatcher, WatchOptions

    cache = tmp_path / "cache"
    preset = _preset(styles, monkeypatch)
    digest = train_tiny_network(preset, cache_paths(cache, network_key(preset))[0])
    for name in ("photos", "inbox"):
        (tmp_path / name).mkdir()
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent("""
        jobs:
          - {name: main, input: photos, inbox: inbox, styles: [quick], output: out}
    """))
    manifest = bind_networks(load_manifest(tmp_path / "jobs.yaml"), cache)
    executor = LocalExecutor(ArtifactCache(cache))
    watcher = InboxWatcher(list(manifest.jobs), executor=executor, cache=ArtifactCache(cache),
                           options=WatchOptions(settle=0.2, rescan=1.0))

    def made(name: str) -> dict[str, object]:
        out = tmp_path / "out" / "inbox" / f"{name}.quick.jpg"
        deadline = time.monotonic() + 60
        while records.read_record(out) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return records.read_record(out).made  # type: ignore[union-attr,return-value]

    watcher.start()
    try:
        gradient_photo(80, 60, seed=5).save(tmp_path / "inbox" / "new.png")
        first = made("new.png")
        # Retrained while the watcher runs (stylize train in another shell): the next
        # photo is made, keyed and recorded with the new network.
        retrained = train_tiny_network(preset, cache_paths(cache, network_key(preset))[0],
                                       seed=1)
        gradient_photo(80, 60, seed=6).save(tmp_path / "inbox" / "next.png")
        second = made("next.png")
        # Both photos dropped again: the one made by the old network is made anew, the
        # one made by the current network is current (its output is left as it is).
        kept = records.read_record(tmp_path / "out" / "inbox" / "next.png.quick.jpg")
        for name in ("new.png", "next.png"):
            (tmp_path / "inbox" / name).write_bytes(
                (tmp_path / "inbox" / "done" / name).read_bytes())
        deadline = time.monotonic() + 60
        while (time.monotonic() < deadline and (made("new.png")["network"] != retrained
                                                or (tmp_path / "inbox" / "next.png").exists())):
            time.sleep(0.1)
    finally:
        watcher.stop()
        executor.close()
    assert first["method"] == "fast" and first["network"] == digest
    assert retrained != digest and second["network"] == retrained
    assert made("new.png")["network"] == retrained
    now = records.read_record(tmp_path / "out" / "inbox" / "next.png.quick.jpg")
    assert kept is not None and now is not None
    assert (now.key, now.finished, now.output_mtime_ns) == (kept.key, kept.finished,
                                                            kept.output_mtime_ns)
    # ... so that `stylize run` (which binds the network afresh) finds it current.
    from pipeline.plan.planning import job_task

    job = bind_networks(load_manifest(tmp_path / "jobs.yaml"), cache).jobs[0]
    out = tmp_path / "out" / "inbox" / "next.png.quick.jpg"
    again = tmp_path / "inbox" / "next.png"  # the same photo, to be dropped once more
    again.write_bytes((tmp_path / "inbox" / "done" / "next.png").read_bytes())
    task = job_task(job, again, job.styles[0])
    assert records.read_record(out).key == task.key  # type: ignore[union-attr]


def test_watch_refuses_a_fast_style_without_a_network_in_one_line(
        tmp_path: Path, styles: Path) -> None:
    for name in ("photos", "inbox"):
        (tmp_path / name).mkdir()
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent("""
        jobs:
          - {name: main, input: photos, inbox: inbox, styles: [quick], output: out}
    """))
    code, _, err = _invoke("watch", str(tmp_path / "jobs.yaml"), styles=styles,
                           cache=tmp_path / "cache")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "no trained network" in err and "stylize train quick" in err


def test_a_fast_job_without_a_network_trains_one_first_on_its_photos(
        tmp_path: Path, styles: Path) -> None:
    cache = tmp_path / "cache"
    (tmp_path / "photos").mkdir()
    for i in range(5):
        gradient_photo(96, 64, seed=i).save(tmp_path / "photos" / f"p{i}.png")
    (tmp_path / "photos" / "notes.txt").write_text("not a photo")
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent("""
        jobs:
          - {name: main, input: photos, styles: [quick], output: out}
    """))
    code, text, err = _invoke("run", str(tmp_path / "jobs.yaml"), styles=styles, cache=cache)
    assert code == 0, err
    assert "training the network of quick on 5 photos" in text
    outputs = sorted((tmp_path / "out").glob("*.jpg"))
    networks = list((cache / "network").rglob("*[0-9a-f].safetensors"))
    assert len(outputs) == 5 and len(networks) == 1
    from pipeline.training.networks import read_header

    digest = read_header(networks[0])["network_digest"]  # type: ignore[index]
    assert {records.read_record(o).made["network"] for o in outputs} == {digest}  # type: ignore[union-attr]
    code, text, err = _invoke("run", str(tmp_path / "jobs.yaml"), styles=styles, cache=cache)
    assert code == 0 and "training" not in text and "5 already done" in text, text + err


def test_init_fast_optimizes_the_finest_scale_from_the_networks_picture(
        tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.config.geometry import pyramid
    from pipeline.engine.network_file import read_network
    from pipeline.engine.optimize import Engine, PassInfo
    from pipeline.engine.style_targets import StyleTargetMaker

    cache = tmp_path / "cache"
    preset = _preset(styles, monkeypatch).with_overrides({"method": "optimize",
                                                          "init": "fast"})
    path = cache_paths(cache, network_key(preset))[0]
    digest = train_tiny_network(preset, path)
    s = preset.settings
    assert len(pyramid(64, 43, s)) == 1  # the finest scale alone
    engine = Engine(s, read_network(path))
    photo = gradient_photo(96, 64)
    targets = StyleTargetMaker(s).compute([(Image.open(preset.images[0].path), 1.0)],
                                          engine.style_sides(96, 64))
    passes: list[PassInfo] = []
    engine.stylize(photo, targets, on_pass=passes.append)
    from pipeline.engine.fast import FastStylizer
    from pipeline.images import pil_to_tensor

    painted = FastStylizer(s, read_network(path)).stylize(photo)
    assert len(passes) == 1 and (passes[0].start - pil_to_tensor(painted)).abs().max() < 1e-6
    assert not passes[0].bands  # the finest scale moves pixels, as in every schedule
    # Through the command: the record names the network it started from.
    photo_path, out = tmp_path / "cat.png", tmp_path / "cat-init.png"
    photo.save(photo_path)
    code, _, err = _invoke("image", str(photo_path), "--style", "quick", "-o", str(out), "-q",
                           "--set", "method=optimize", "--set", "init=fast",
                           styles=styles, cache=cache)
    assert code == 0, err
    assert records.read_record(out).made["network"] == digest  # type: ignore[union-attr]


def test_a_fast_results_key_ignores_the_optimizers_knobs() -> None:
    from pipeline.config.settings import Settings

    fast = Settings(method="fast")
    assert result_view(fast) == result_view(fast.merged({"steps": [5], "optimizer": "adam",
                                                         "init": "noise", "style_weight": 3}))
    assert result_view(fast) != result_view(fast.merged({"size": 256}))
    assert "method" not in result_view(Settings())  # optimize keys are as they were


def test_gallery_judges_fast_results_by_the_network_of_the_cache_they_were_made_with(
        tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    preset = _preset(styles, monkeypatch)
    train_tiny_network(preset, cache_paths(elsewhere, network_key(preset))[0])
    (tmp_path / "photos").mkdir()
    for i in range(2):
        gradient_photo(80, 60, seed=i).save(tmp_path / "photos" / f"p{i}.png")
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n  - {name: main, input: photos, styles: [quick], output: out}\n")
    manifest = str(tmp_path / "jobs.yaml")
    code, _, err = _invoke("run", manifest, "-q", "--cache-dir", str(elsewhere),
                           styles=styles, cache=default)
    assert code == 0, err
    code, _, err = _invoke("gallery", manifest, "--cache-dir", str(elsewhere),
                           styles=styles, cache=default)
    assert code == 0 and "2 done," in err and "outdated" not in err, err
    # Looked for in the default cache, which has no network: not current.
    code, _, err = _invoke("gallery", manifest, styles=styles, cache=default)
    assert code == 0 and "2 outdated" in err, err


def test_a_running_watcher_survives_a_forced_retrain(
        tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``stylize train quick --force`` while ``stylize watch`` runs: the network is gone
    while the new one trains.  A photo dropped then waits in the inbox (one warning), the
    watcher goes on, and the photo is made with the new network once it is written
    (issue 27: the watcher exited 2 and the photo stayed behind)."""
    import threading
    import time

    from pipeline.config.manifest import load_manifest
    from pipeline.executors.local import LocalExecutor
    from pipeline.store.cache import ArtifactCache
    from pipeline.training.job import ensure_network
    from pipeline.training.networks import bind_networks
    from pipeline.watch import InboxWatcher, WatchOptions

    cache = tmp_path / "cache"
    preset = _preset(styles, monkeypatch)
    old = train_tiny_network(preset, cache_paths(cache, network_key(preset))[0])
    for name in ("photos", "inbox"):
        (tmp_path / name).mkdir()
    for i in range(4):
        gradient_photo(64, 48, seed=10 + i).save(tmp_path / "photos" / f"t{i}.png")
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent("""
        jobs:
          - {name: main, input: photos, inbox: inbox, styles: [quick], output: out}
    """))
    manifest = bind_networks(load_manifest(tmp_path / "jobs.yaml"), cache)
    executor = LocalExecutor(ArtifactCache(cache))
    events: list[object] = []
    watcher = InboxWatcher(list(manifest.jobs), executor=executor, cache=ArtifactCache(cache),
                           options=WatchOptions(settle=0.2, rescan=1.0),
                           on_event=events.append)
    waited = threading.Event()

    def warned() -> bool:
        return any(getattr(e, "kind", "") == "warning" and "waits in the inbox"
                   in str(getattr(e, "data", {}).get("message", "")) for e in events)

    def on_step(_: object) -> None:  # the training holds still until the photo waited
        waited.wait(60)

    result: dict[str, object] = {}
    trainer = threading.Thread(target=lambda: result.update(report=ensure_network(
        preset, sorted((tmp_path / "photos").iterdir()), cache, force=True,
        on_step=on_step)))
    watcher.start()
    try:
        trainer.start()
        deadline = time.monotonic() + 30
        while cache_paths(cache, network_key(preset))[0].exists():
            assert time.monotonic() < deadline, "the forced training did not discard"
            time.sleep(0.05)
        gradient_photo(80, 60, seed=5).save(tmp_path / "inbox" / "new.png")
        deadline = time.monotonic() + 60
        while not warned():
            assert time.monotonic() < deadline, events
            time.sleep(0.05)
        assert watcher.fatal is None and (tmp_path / "inbox" / "new.png").exists()
        waited.set()
        trainer.join(120)
        out = tmp_path / "out" / "inbox" / "new.png.quick.jpg"
        deadline = time.monotonic() + 60
        while records.read_record(out) is None:
            assert time.monotonic() < deadline and watcher.fatal is None, events
            time.sleep(0.1)
    finally:
        waited.set()
        watcher.stop()
        executor.close()
    new = result["report"].digest  # type: ignore[attr-defined]
    assert new != old
    assert records.read_record(out).made["network"] == new  # type: ignore[union-attr]
    assert (tmp_path / "inbox" / "done" / "new.png").exists()
    assert sum(1 for e in events if getattr(e, "kind", "") == "warning") == 1


def test_missing_networks_are_trained_once_and_the_plan_comes_back_bound(
        tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.config.manifest import load_manifest
    from pipeline.plan.planning import plan
    from pipeline.training.missing import missing_networks, train_missing

    monkeypatch.setenv("STYLIZE_STYLES_PATH", str(styles))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            gradient_photo(72, 48, seed=i).save(tmp_path / name / f"p{i}.png")
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n"
        "  - {name: one, input: a, output: out-a, styles: [quick]}\n"
        "  - {name: two, input: b, output: out-b, styles: [quick]}\n")
    the_plan = plan(load_manifest(tmp_path / "jobs.yaml"))
    missing = missing_networks(the_plan)
    assert len(missing) == 1 and len(missing[0][1]) == 6  # one network, both jobs' photos
    bound = train_missing(the_plan, tmp_path / "cache")
    ref = find_network(bound.tasks[0].preset, tmp_path / "cache")
    assert ref is not None
    assert {t.preset.network for t in bound.tasks} == {ref.digest}
    assert all(t.key != old.key for t, old in zip(bound.tasks, the_plan.tasks, strict=True))
    assert missing_networks(bound) == []
    assert train_missing(bound, tmp_path / "cache") is bound  # nothing to train: as it was


def test_a_bound_network_is_loaded_by_digest_without_looking_at_files_again(
        tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.render.network_loader import NetworkLoader
    from pipeline.training.networks import bind

    preset = _preset(styles, monkeypatch)
    path = cache_paths(tmp_path / "cache", network_key(preset))[0]
    digest = train_tiny_network(preset, path)
    bound = bind(preset, tmp_path / "cache")
    assert bound.network == digest
    loader = NetworkLoader(tmp_path / "cache")
    first = loader(bound)
    path.rename(path.with_name("elsewhere"))  # the next photos need no file at all
    assert loader(bound) is first
    with pytest.raises(StylizeError):  # unbound, it is looked for (and not found)
        loader(preset)


def test_a_network_trained_again_during_a_run_is_refused_not_recorded_under_the_old_key(
        tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Results are keyed by the bound network before they are made (the writer records the
    driver's keys): a run that would make them with another network stops, in one line
    (as when its network is deleted), and the next run, planned with the new network,
    makes them."""
    from support.engines import run_local

    from pipeline.plan.planning import Plan, make_task
    from pipeline.store.cache import ArtifactCache
    from pipeline.training.networks import bind

    preset = _preset(styles, monkeypatch)
    cache = tmp_path / "cache"
    path = cache_paths(cache, network_key(preset))[0]
    train_tiny_network(preset, path, seed=0)
    bound = bind(preset, cache)
    photo = tmp_path / "photo.png"
    gradient_photo(64, 48).save(photo)
    out = tmp_path / "out" / "photo.quick.png"
    plan = Plan([make_task("j", photo, bound, out, root=None)])
    newer = train_tiny_network(preset, path, seed=1)  # `stylize train --force` meanwhile
    assert newer != bound.network

    with pytest.raises(NetworkMissingError) as caught:
        run_local(plan, ArtifactCache(cache))
    assert caught.value.message == (
        "style 'quick': its network was trained again while this run was under way; run "
        "again to make its photos with the new one")
    assert not out.exists() and records.read_record(out) is None

    again = run_local(Plan([make_task("j", photo, bind(preset, cache), out, root=None)]),
                      ArtifactCache(cache))
    (result,) = again.results  # type: ignore[attr-defined]
    assert result.status == "done"
    rec = records.read_record(out)
    assert rec is not None and rec.made["network"] == newer
