"""The attack: kill -9 during `stylize run` and `stylize watch`, and a full disk, as a user would.

Three attacks on the installed ``stylize`` command, each as child processes of this script
(nothing of ``pipeline`` is imported: only the command, the files it writes and its reports):

1. **kill -9 during run.** N small photos (64-96 px) and a tiny preset (56 px, steps [6, 3],
   fp32, CPU). An uninterrupted run into a second folder is timed first; then ``stylize run``
   is started and SIGKILLed at a random moment, K times: a fifth of the kills in start-up
   (0.5 s to the time that run took to its first photo), the others 0 to three photos' time
   after the attacked run's first ``done`` line, so that kills land inside writes and each
   leaves work for the next (``--run-kill-after MIN MAX``: a fixed window from the start
   instead, e.g. 0.5 4). Then it is run once more to the end. Checked: the final run exits
   0; ``--dry-run`` then shows 0 to do and lists every output as skipped; every output
   decodes and has a record that vouches for it (size and mtime); no ``.stylize-tmp-*`` is
   left; no output that had its record was ever written again; the outputs equal the
   uninterrupted run's byte for byte; the photos are byte-identical. "Redone" is the sum of
   ``done`` lines over every run (killed ones included: plain lines are written as each photo
   finishes, and a killed run writes no ``--report``) minus N; the outputs found on disk
   without their record after a kill (written, killed before the record: legitimately done
   again) are counted apart.
2. **kill -9 during watch.** M photos are dropped into an inbox by copy, by ``os.rename`` from
   a folder outside it (a move), by a slow write in chunks with pauses (some longer than the
   settle time), and by writing ``NAME.part`` then renaming it; meanwhile the watcher
   (``stylize watch jobs.yaml --settle 0.5 --json-log FILE``) is SIGKILLed K times at random
   moments (a fifth of them in start-up, the others 0-6 s after it logs ``watching``) and
   restarted at once. At the end the last watcher runs until the inbox is empty, is
   stopped with SIGTERM, and a clean watcher is started and stopped once more. Checked: every
   photo is in ``inbox/done/`` exactly once and byte-identical to what was dropped (no ``-1``
   copies), nothing in ``failed/``; exactly one output per photo in ``out/inbox/``, each
   decoding, each with its record; no temporary file in ``out/inbox``, its ``.stylize`` or the
   inbox; no recorded output written twice; ``done`` events per photo from the JSON logs.
3. **disk full.** A tmpfs of a few MiB (root only, as ``tests/faults/test_faults.py`` does) holds
   the outputs; it is filled to all but a few KiB and ``stylize run`` is started: expected exit
   74, exactly one ``error:`` line on stderr, no traceback, no temporary or undecodable file.
   The filler is removed and the run repeated: expected exit 0 and every photo done.

Run:  python bench/attack.py [--photos 30] [--kills 10] [--watch-photos 150] [--watch-kills 10]
      [--disk-photos 30] [--seed 1] [--only run,watch,disk] [--keep] [--json FILE]
Children run with OMP_NUM_THREADS=1 (a shared 2-core machine). Exit status 1 if a check failed.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
PAINTING = REPO / "styles" / "starry-night" / "starry_night.jpg"
TEMP_PREFIX = ".stylize-tmp-"
PRESET = {"size": 56, "steps": [6, 3], "precision": "fp32", "device": "cpu"}
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# -- building inputs ---------------------------------------------------------------------


def make_photo(path: Path, rng: np.random.Generator) -> None:
    """A small photo-like picture: a smooth colour field with noise, 64-96 px a side."""
    w, h = (int(v) for v in rng.integers(64, 97, size=2))
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([np.sin(x * rng.uniform(2, 9) + rng.uniform(0, 6)),
                     np.cos(y * rng.uniform(2, 9) + rng.uniform(0, 6)),
                     np.sin((x + y) * rng.uniform(2, 9))], axis=-1)
    pixels = (base * 90 + 128 + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def make_photos(folder: Path, n: int, rng: np.random.Generator, prefix: str = "p") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    photos = [folder / f"{prefix}{i:03d}.png" for i in range(n)]
    for p in photos:
        make_photo(p, rng)
    return photos


def make_styles(folder: Path) -> Path:
    """A styles folder with the preset ``tiny`` (as tests/faults/helpers.py makes it)."""
    preset = folder / "tiny"
    preset.mkdir(parents=True, exist_ok=True)
    Image.open(PAINTING).convert("RGB").resize((96, 60)).save(preset / "paint.png")
    doc = {"description": "attack preset", "images": ["paint.png"], "settings": PRESET}
    (preset / "preset.yaml").write_text(yaml.safe_dump(doc))
    return folder


def write_manifest(path: Path, jobs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"styles_path": ["styles"], "jobs": jobs}))
    return path


# -- looking at what the command left ----------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(paths: list[Path]) -> dict[str, str]:
    return {p.name: sha256(p) for p in paths}


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob(f"{TEMP_PREFIX}*")) if folder.exists() else []


def outputs_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def decodes(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.load()
        return True
    except Exception:  # noqa: BLE001 - any failure to decode is what is counted
        return False


def identity(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def recorded(output: Path) -> bool:
    """The output has its record, and the record vouches for this very file."""
    try:
        rec = json.loads((output.parent / ".stylize" / f"{output.name}.json").read_text())
        st = os.stat(output)
    except (OSError, ValueError):
        return False
    return rec.get("output_size") == st.st_size and rec.get("output_mtime_ns") == st.st_mtime_ns


class Identities:
    """Every output seen with its record, and whether it was ever written again after that."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, int, int]] = {}
        self.rewritten: list[str] = []
        self.orphans: set[str] = set()  # outputs seen written but not yet recorded
        self.orphan_sightings = 0

    def scan(self, folder: Path) -> tuple[int, int]:
        """Returns (outputs with their record, outputs without) in ``folder`` now."""
        if not folder.exists():
            return 0, 0
        good = bad = 0
        for out in outputs_in(folder):
            if recorded(out):
                good += 1
                ident = identity(out)
                first = self.seen.setdefault(out.name, ident)
                if first != ident and out.name not in self.rewritten:
                    self.rewritten.append(out.name)
            else:
                bad += 1
                self.orphan_sightings += 1
                self.orphans.add(out.name)
        return good, bad


def stylize_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("STYLIZE_STYLES_PATH", None)
    env.update(CHILD_ENV)
    return env


class Attack:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.stylize = args.stylize
        self.failures: list[str] = []
        self.rows: list[dict[str, Any]] = []
        self.rng = random.Random(args.seed)
        self.nprng = np.random.default_rng(args.seed)

    def check(self, ok: bool, what: str) -> bool:
        print(f"  [{'held' if ok else 'FAILED'}] {what}", flush=True)
        if not ok:
            self.failures.append(what)
        return ok

    def cmd(self, *args: str | os.PathLike[str]) -> list[str]:
        return [self.stylize, *(os.fspath(a) for a in args)]

    def run(self, *args: str | os.PathLike[str], cwd: Path,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(*args), cwd=cwd, env=stylize_env(), capture_output=True,
                              text=True, timeout=timeout)

    def dry_run(self, manifest: Path, cwd: Path,
                job: str | None = None) -> tuple[int, set[str], str]:
        """(tasks to do, outputs reported as skipped, last line) from ``stylize run --dry-run``."""
        res = self.run("run", manifest, "--dry-run", *(["--job", job] if job else []), cwd=cwd)
        skipped = set()
        due = 0
        for line in res.stdout.splitlines():
            cols = line.split("\t")
            if len(cols) == 5 and cols[0] == "skipped":
                skipped.add(os.path.basename(cols[4]))
            elif len(cols) == 5:
                due += 1
        lines = res.stdout.strip().splitlines()
        return due, skipped, lines[-1] if lines else f"(no output; rc {res.returncode})"

    # -- 1. kill -9 during run -----------------------------------------------------------

    def attack_run(self) -> None:
        a = self.args
        top = self.work / "run"
        photos = make_photos(top / "photos", a.photos, self.nprng)
        before = digests(photos)
        make_styles(top / "styles")
        manifest = write_manifest(top / "jobs.yaml", [
            {"name": "reference", "input": "photos", "styles": ["tiny"], "output": "ref"},
            {"name": "attack", "input": "photos", "styles": ["tiny"], "output": "out"}])
        out = top / "out"
        cache = top / "cache"
        # An uninterrupted run first: its outputs are what the attacked ones must equal, and its
        # pace sets the kill window: from 0.5 s to its first photo plus three photos' time, so
        # that kills land in start-up and inside the work, and each leaves work for the next.
        t0 = time.perf_counter()
        first = None
        with open(top / "ref.err", "w") as ferr:
            ref = subprocess.Popen(self.cmd("run", manifest, "--job", "reference", "--cache-dir",
                                            cache), cwd=top, env=stylize_env(), text=True,
                                   stdout=subprocess.PIPE, stderr=ferr)
            assert ref.stdout is not None
            for line in ref.stdout:
                if line.startswith("done ") and first is None:
                    first = time.perf_counter() - t0
            ref.wait()
        ref_seconds = time.perf_counter() - t0
        first = first or ref_seconds
        per_photo = (ref_seconds - first) / max(1, a.photos - 1)
        self.check(ref.returncode == 0, f"reference run exit {ref.returncode}")
        how = (f"{a.run_kill_after[0]}-{a.run_kill_after[1]} s after the start"
               if a.run_kill_after else
               f"{a.run_startup_kills:.0%} in start-up (0.5-{max(1.0, first):.1f} s), the others "
               f"0-{3 * per_photo:.1f} s after the run's first 'done' line")
        print(f"\n== kill -9 during `stylize run`: {a.photos} photos, {a.kills} kills, {how} "
              f"(uninterrupted: first photo after {first:.1f} s, {per_photo:.2f} s a photo, "
              f"{ref_seconds:.1f} s in all) ==", flush=True)
        started = time.perf_counter()
        ids = Identities()
        done_lines = 0
        codes: Counter[int] = Counter()
        kill_codes: list[int] = []
        temps_at_kills = 0
        kills_in_work = 0
        for i in range(a.kills):
            log = top / f"kill-{i:02d}.out"
            with open(log, "w") as fout, open(top / f"kill-{i:02d}.err", "w") as ferr:
                proc = subprocess.Popen(self.cmd("run", manifest, "--job", "attack",
                                                 "--cache-dir", cache,
                                                 "--report", top / f"report-{i:02d}.json"),
                                        cwd=top, env=stylize_env(), stdout=fout, stderr=ferr)
                t0 = time.perf_counter()
                if a.run_kill_after:
                    when = "fixed window"
                    time.sleep(self.rng.uniform(*a.run_kill_after))
                elif self.rng.random() < a.run_startup_kills:
                    when = "start-up"
                    time.sleep(self.rng.uniform(0.5, max(1.0, first)))
                else:
                    while proc.poll() is None and "\ndone " not in "\n" + log.read_text():
                        time.sleep(0.05)
                    when = (f"first photo after {time.perf_counter() - t0:.1f} s"
                            if proc.poll() is None else "it had ended: nothing left to do")
                    time.sleep(self.rng.uniform(0, 3 * per_photo))
                alive = time.perf_counter() - t0
                proc.kill()
                proc.wait(timeout=60)
            codes[proc.returncode] += 1
            kill_codes.append(proc.returncode)
            text = log.read_text(errors="replace")
            n_done = sum(1 for line in text.splitlines() if line.startswith("done "))
            done_lines += n_done
            temps = temp_files(out)
            temps_at_kills += len(temps)
            good, bad = ids.scan(out) if out.exists() else (0, 0)
            if n_done or temps or bad:
                kills_in_work += 1
            print(f"  kill {i + 1} after {alive:.1f} s ({when}): rc {proc.returncode}, "
                  f"{n_done} done in this run, "
                  f"{good} recorded, {bad} without record, {len(temps)} temp files", flush=True)
        final = self.run("run", manifest, "--job", "attack", "--cache-dir", cache, "--report",
                         top / "report-final.json", cwd=top)
        codes[final.returncode] += 1
        final_done = sum(1 for line in final.stdout.splitlines() if line.startswith("done "))
        done_lines += final_done
        elapsed = time.perf_counter() - started
        report = json.loads((top / "report-final.json").read_text())["summary"] \
            if (top / "report-final.json").exists() else {}
        ids.scan(out)
        due, skipped, last = self.dry_run(manifest, top, "attack")
        outs = outputs_in(out)
        decoded = sum(decodes(p) for p in outs)
        with_record = sum(recorded(p) for p in outs)
        temps = temp_files(out)
        cache_temps = temp_files(cache)
        reports = sorted(top.glob("report-*.json"))

        self.check(all(c in (-9, 0) for c in kill_codes),
                   f"killed runs ended by the kill (never 75, a stale lock): {kill_codes}")
        self.check(final.returncode == 0, f"final run exit {final.returncode} "
                   f"({final.stderr.strip()[-200:]})")
        self.check("Traceback" not in final.stderr, "no traceback in the final run")
        self.check(report.get("done", -1) + report.get("skipped", -1) == a.photos,
                   f"final report: {report.get('done')} done + {report.get('skipped')} skipped "
                   f"= {a.photos} photos")
        self.check(due == 0 and len(skipped) == a.photos,
                   f"dry-run after: {due} to do, {len(skipped)} listed skipped ('{last}')")
        self.check(len(outs) == a.photos and {p.name for p in outs} == skipped,
                   f"{len(outs)} outputs on disk, the same names the dry-run skips")
        self.check(decoded == len(outs), f"{decoded}/{len(outs)} outputs decode fully")
        self.check(with_record == len(outs), f"{with_record}/{len(outs)} outputs have the record "
                   "that vouches for them")
        self.check(not temps, f"{len(temps)} temp files left in the output folder "
                   f"({temps_at_kills} seen right after kills, swept by the next start)")
        self.check(not ids.rewritten, f"no recorded output written again "
                   f"({len(ids.rewritten)} were: {ids.rewritten[:5]})")
        self.check(done_lines - a.photos == len(ids.orphans),
                   f"done over all runs {done_lines} - {a.photos} photos = "
                   f"{done_lines - a.photos} redone; outputs found without their record after a "
                   f"kill: {len(ids.orphans)}")
        same = outputs_in(top / "ref") and digests(outs) == digests(outputs_in(top / "ref"))
        self.check(bool(same), "outputs byte-identical to the uninterrupted run's")
        self.check(digests(photos) == before, "inputs byte-identical (sha256) after the attack")
        self.rows.append({
            "attack": "kill -9 during run", "kill_moments": how,
            "uninterrupted_s": round(ref_seconds, 1), "first_photo_s": round(first, 1),
            "per_photo_s": round(per_photo, 2), "runs": a.kills + 1, "kills": a.kills,
            "kills_in_work": kills_in_work, "photos": a.photos, "outputs": len(outs),
            "decoded": decoded, "redone": done_lines - a.photos,
            "unrecorded_at_kill": len(ids.orphans), "rewritten": len(ids.rewritten),
            "temp_after_kills": temps_at_kills, "leftovers": len(temps),
            "cache_leftovers": len(cache_temps), "done_in_killed_runs": done_lines - final_done,
            "exit_codes": {str(k): v for k, v in sorted(codes.items())},
            "reports_written": len(reports), "seconds": round(elapsed, 1)})

    # -- 2. kill -9 during watch ---------------------------------------------------------

    def _drop(self, src: Path, inbox: Path, staging: Path, method: str) -> None:
        data = src.read_bytes()
        final = inbox / src.name
        if method == "copy":
            shutil.copyfile(src, final)
        elif method == "move":
            tmp = staging / src.name
            tmp.write_bytes(data)
            os.rename(tmp, final)
        elif method == "slow":
            chunks = 5
            step = -(-len(data) // chunks)
            with open(final, "wb") as f:
                for k in range(0, len(data), step):
                    f.write(data[k:k + step])
                    f.flush()
                    time.sleep(self.rng.uniform(0.1, 0.9))  # sometimes past the settle time
        elif method == "part":
            part = inbox / f"{src.name}.part"
            with open(part, "wb") as f:
                for k in range(0, len(data), 4096):
                    f.write(data[k:k + 4096])
                    f.flush()
                    time.sleep(self.rng.uniform(0.0, 0.3))
            os.rename(part, final)

    def _pending(self, inbox: Path) -> list[str]:
        return sorted(p.name for p in inbox.iterdir() if p.name not in ("done", "failed")
                      and not p.name.startswith(".stylize-watch"))

    def _watcher(self, manifest: Path, top: Path, n: int) -> subprocess.Popen[bytes]:
        fout = open(top / f"watch-{n:02d}.out", "wb")  # noqa: SIM115 - closed with the process
        ferr = open(top / f"watch-{n:02d}.err", "wb")  # noqa: SIM115
        proc = subprocess.Popen(self.cmd("watch", manifest, "--settle", "0.5", "--json-log",
                                         top / f"watch-{n:02d}.jsonl", "--cache-dir",
                                         top / "cache"),
                                cwd=top, env=stylize_env(), stdout=fout, stderr=ferr)
        fout.close()
        ferr.close()
        return proc

    @staticmethod
    def _wait_watching(log: Path, proc: subprocess.Popen[bytes], timeout: float) -> float:
        """Seconds until the watcher logged ``watching`` (or gave up, or ended)."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout and proc.poll() is None:
            if log.exists() and '"watching"' in log.read_text(errors="replace"):
                break
            time.sleep(0.1)
        return time.perf_counter() - t0

    def _events(self, top: Path) -> tuple[list[dict[str, Any]], int]:
        events, torn = [], 0
        for log in sorted(top.glob("watch-*.jsonl")):
            for line in log.read_text(errors="replace").splitlines():
                try:
                    e = json.loads(line)
                    e["_log"] = log.name
                    events.append(e)
                except ValueError:
                    torn += 1
        return events, torn

    def attack_watch(self) -> None:
        a = self.args
        top = self.work / "watch"
        lo, hi = a.watch_kill_after
        print(f"\n== kill -9 during `stylize watch`: {a.watch_photos} photos dropped, "
              f"{a.watch_kills} kills ({a.watch_startup_kills:.0%} in start-up, the others "
              f"{lo}-{hi} s after it logs `watching`) ==", flush=True)
        sources = make_photos(top / "sources", a.watch_photos, self.nprng, prefix="w")
        want = digests(sources)
        make_styles(top / "styles")
        (top / "library").mkdir()
        inbox, staging = top / "inbox", top / "staging"
        inbox.mkdir()
        staging.mkdir()
        manifest = write_manifest(top / "jobs.yaml", [
            {"name": "box", "input": "library", "styles": ["tiny"], "output": "out",
             "inbox": "inbox"}])
        out = top / "out" / "inbox"
        methods = ["copy", "move", "slow", "part"]
        plan = [(src, methods[i % 4]) for i, src in enumerate(sources)]
        self.rng.shuffle(plan)
        how = Counter(m for _, m in plan)
        todo: queue.Queue[tuple[Path, str]] = queue.Queue()
        for item in plan:
            todo.put(item)
        span = a.watch_kills * (4 + (lo + hi) / 2)  # drops spread over the kill phase
        threads = 3
        gap = span * threads / max(1, len(plan))
        errors: list[str] = []

        def dropper() -> None:
            while True:
                try:
                    src, method = todo.get_nowait()
                except queue.Empty:
                    return
                time.sleep(random.uniform(0, 2 * gap))
                try:
                    self._drop(src, inbox, staging, method)
                except OSError as exc:
                    errors.append(f"{src.name}: {exc}")

        started = time.perf_counter()
        pool = [threading.Thread(target=dropper, daemon=True) for _ in range(threads)]
        for t in pool:
            t.start()
        ids = Identities()
        codes: Counter[int] = Counter()
        kill_codes: list[int] = []
        temps_at_kills = 0
        n = 0
        for i in range(a.watch_kills):
            proc = self._watcher(manifest, top, n)
            t0 = time.perf_counter()
            if self.rng.random() < a.watch_startup_kills:
                when = "start-up"
                time.sleep(self.rng.uniform(0.5, 4.0))
            else:
                up = self._wait_watching(top / f"watch-{n:02d}.jsonl", proc, 120)
                when = f"{up:.1f} s start-up + work"
                time.sleep(self.rng.uniform(lo, hi))
            n += 1
            alive = time.perf_counter() - t0
            proc.kill()
            proc.wait(timeout=60)
            codes[proc.returncode] += 1
            kill_codes.append(proc.returncode)
            temps = temp_files(top / "out") + temp_files(inbox)
            temps_at_kills += len(temps)
            good, bad = ids.scan(out)
            done_now = len(list((inbox / "done").glob("*"))) if (inbox / "done").exists() else 0
            print(f"  kill {i + 1} after {alive:.1f} s ({when}): rc {proc.returncode}, "
                  f"{done_now} in done/, {good} outputs "
                  f"recorded, {bad} without record, {len(temps)} temp files", flush=True)
        last = self._watcher(manifest, top, n)
        n += 1
        for t in pool:
            t.join()
        deadline = time.monotonic() + a.watch_timeout
        while self._pending(inbox) and time.monotonic() < deadline and last.poll() is None:
            time.sleep(1)
        pending = self._pending(inbox)
        time.sleep(1)
        last.send_signal(signal.SIGTERM)
        last.wait(timeout=120)
        codes[last.returncode] += 1
        elapsed = time.perf_counter() - started
        ids.scan(out)
        temps_before_clean = temp_files(top / "out") + temp_files(inbox)
        # A clean start and stop: it must find nothing to do and leave nothing behind.
        clean = self._watcher(manifest, top, n)
        self._wait_watching(top / f"watch-{n:02d}.jsonl", clean, 120)
        n += 1
        time.sleep(2)
        clean.send_signal(signal.SIGTERM)
        clean.wait(timeout=120)
        codes[clean.returncode] += 1
        events, torn = self._events(top)
        done_events = Counter(e["file"] for e in events if e.get("event") == "done")
        rendered = Counter(e["file"] for e in events if e.get("event") == "done"
                           and not e.get("already_done"))
        started_events = Counter(e["file"] for e in events if e.get("event") == "started")
        failed_events = [e for e in events if e.get("event") == "failed"]
        tracebacks = [p.name for p in top.glob("watch-*.err") if b"Traceback" in p.read_bytes()]
        done_dir = sorted((inbox / "done").iterdir()) if (inbox / "done").exists() else []
        failed_dir = sorted((inbox / "failed").iterdir()) if (inbox / "failed").exists() else []
        outs = outputs_in(out) if out.exists() else []
        whole = sum(decodes(p) for p in outs)
        with_record = sum(recorded(p) for p in outs)
        temps = temp_files(top / "out") + temp_files(inbox)
        expected_outs = {f"{name}.tiny.jpg" for name in want}

        self.check(not errors, f"every drop succeeded ({len(errors)} errors: {errors[:3]})")
        self.check(all(c == -9 for c in kill_codes),
                   f"every killed watcher ended by the kill (none 75, a stale lock): "
                   f"{kill_codes}")
        self.check(last.returncode == 0 and clean.returncode == 0,
                   f"SIGTERM stops the last and the clean watcher with 0 "
                   f"({last.returncode}, {clean.returncode})")
        self.check(not pending, f"inbox empty at the end ({len(pending)} left: {pending[:5]})")
        self.check(sorted(p.name for p in done_dir) == sorted(want) and
                   all(sha256(p) == want.get(p.name) for p in done_dir),
                   f"{len(done_dir)} photos in done/, each once and byte-identical "
                   f"({a.watch_photos} dropped)")
        self.check(not failed_dir and not failed_events,
                   f"nothing failed ({len(failed_dir)} in failed/, {len(failed_events)} events)")
        self.check({p.name for p in outs} == expected_outs,
                   f"{len(outs)} outputs in out/inbox/, exactly one per photo")
        self.check(whole == len(outs) and with_record == len(outs),
                   f"{whole} decode, {with_record} have their record")
        self.check(not temps, f"{len(temps)} temp files left after the final clean start+stop "
                   f"({temps_at_kills} seen right after kills, {len(temps_before_clean)} before "
                   f"the clean start)")
        self.check(not ids.rewritten, f"no recorded output written again "
                   f"({len(ids.rewritten)} were: {ids.rewritten[:5]})")
        self.check(not tracebacks, f"no traceback on any watcher's stderr ({tracebacks})")
        twice = sorted(f for f, c in rendered.items() if c > 1)
        self.check(not twice or len(twice) <= len(ids.orphans),
                   f"photos stylized more than once: {len(twice)} (outputs without record seen "
                   f"after a kill: {len(ids.orphans)})")
        per_photo = Counter(done_events.get(name, 0) for name in want)
        print(f"  'done' events per photo: {dict(sorted(per_photo.items()))}; rendered once: "
              f"{sum(1 for c in rendered.values() if c == 1)}; done with every style already "
              f"there (killed after the output, before the move): "
              f"{sum(1 for e in events if e.get('event') == 'done' and e.get('already_done'))}; "
              f"started more than once: {sum(1 for c in started_events.values() if c > 1)}; "
              f"torn log lines: {torn}", flush=True)
        self.rows.append({
            "attack": "kill -9 during watch", "runs": n, "kills": a.watch_kills,
            "photos": a.watch_photos, "drops": dict(how), "outputs": len(outs), "decoded": whole,
            "in_done": len(done_dir), "in_failed": len(failed_dir),
            "redone": sum(c - 1 for c in started_events.values() if c > 1),
            "rendered_twice": len(twice), "unrecorded_at_kill": len(ids.orphans),
            "done_events_per_photo": {str(k): v for k, v in sorted(per_photo.items())},
            "rewritten": len(ids.rewritten), "temp_after_kills": temps_at_kills,
            "leftovers": len(temps), "torn_log_lines": torn,
            "exit_codes": {str(k): v for k, v in sorted(codes.items())},
            "seconds": round(elapsed, 1)})

    # -- 3. disk full --------------------------------------------------------------------

    def attack_disk(self) -> None:
        a = self.args
        top = self.work / "disk"
        print(f"\n== disk full: {a.disk_photos} photos onto a {a.disk_size} tmpfs with "
              f"{a.disk_leave_kib} KiB left ==", flush=True)
        if os.geteuid() != 0 or shutil.which("mount") is None:
            print("  skipped: mounting a small tmpfs needs root")
            self.rows.append({"attack": "disk full", "skipped": "needs root"})
            return
        photos = make_photos(top / "photos", a.disk_photos, self.nprng)
        before = digests(photos)
        make_styles(top / "styles")
        small = top / "small"
        small.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={a.disk_size}", "tmpfs",
                                  os.fspath(small)], capture_output=True, text=True, timeout=30)
        if mounted.returncode != 0:
            self.check(False, f"mount a tmpfs: {mounted.stderr.strip()}")
            return
        started = time.perf_counter()
        try:
            out = small / "out"
            manifest = write_manifest(top / "jobs.yaml", [
                {"name": "full", "input": "photos", "styles": ["tiny"], "output": os.fspath(out)}])
            cache = top / "cache"
            # Style targets go to the cache on the big disk: it is the outputs that fill it.
            filler = small / "filler.bin"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            size = 0
            try:
                while True:
                    try:
                        size += os.write(fd, b"\0" * 65536)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        try:
                            size += os.write(fd, b"\0" * 4096)
                        except OSError:
                            break
                os.ftruncate(fd, max(0, size - a.disk_leave_kib * 1024))
            finally:
                os.close(fd)
            first = self.run("run", manifest, "--cache-dir", cache, "--report",
                             top / "report-full.json", cwd=top)
            err_lines = [ln for ln in first.stderr.splitlines() if ln.startswith("error:")]
            summary = json.loads((top / "report-full.json").read_text())["summary"] \
                if (top / "report-full.json").exists() else {}
            outs = outputs_in(out) if out.exists() else []
            whole = sum(decodes(p) for p in outs)
            unrecorded = sum(not recorded(p) for p in outs)
            temps = temp_files(small)
            print(f"  full: rc {first.returncode}, stderr {first.stderr.strip()!r}", flush=True)
            print(f"  report: {summary}", flush=True)
            self.check(first.returncode == 74, f"exit {first.returncode} on a full disk (74)")
            self.check(len(err_lines) == 1, f"{len(err_lines)} 'error:' line(s) on stderr")
            self.check("Traceback" not in first.stderr + first.stdout, "no traceback")
            self.check(summary.get("failed") == 0, f"no photo blamed ({summary.get('failed')} "
                       "failed)")
            self.check(whole == len(outs) and not temps,
                       f"nothing partial: {whole}/{len(outs)} outputs decode, {len(temps)} temp "
                       f"files, {unrecorded} outputs without their record")

            filler.unlink()
            second = self.run("run", manifest, "--cache-dir", cache, "--report",
                              top / "report-rerun.json", cwd=top)
            summary2 = json.loads((top / "report-rerun.json").read_text())["summary"] \
                if (top / "report-rerun.json").exists() else {}
            due, skipped, lastline = self.dry_run(manifest, top)
            outs2 = outputs_in(out)
            whole2 = sum(decodes(p) for p in outs2)
            temps2 = temp_files(small)
            print(f"  rerun: rc {second.returncode}, {summary2.get('done')} done, "
                  f"{summary2.get('skipped')} skipped", flush=True)
            self.check(second.returncode == 0, f"rerun exit {second.returncode} once space is "
                       f"freed ({second.stderr.strip()[-200:]})")
            self.check(due == 0 and len(outs2) == a.disk_photos == whole2 and not temps2,
                       f"rerun finished the rest: {whole2}/{a.disk_photos} outputs decode, "
                       f"dry-run '{lastline}', {len(temps2)} temp files")
            self.check(digests(photos) == before, "inputs byte-identical (sha256)")
            elapsed = time.perf_counter() - started
            self.rows.append({
                "attack": "disk full", "runs": 2, "kills": 0, "photos": a.disk_photos,
                "outputs": len(outs2), "decoded": whole2,
                "done_before_full": summary.get("done"), "not_run": summary.get("not_run"),
                "redone": (summary.get("done", 0) + summary2.get("done", 0)) - a.disk_photos,
                "leftovers": len(temps) + len(temps2), "error_lines": len(err_lines),
                "error": err_lines[0] if err_lines else None, "unrecorded_after_full": unrecorded,
                "exit_codes": {"full": first.returncode, "rerun": second.returncode},
                "seconds": round(elapsed, 1)})
        finally:
            um = subprocess.run(["umount", os.fspath(small)], capture_output=True, text=True,
                                timeout=30)
            if um.returncode != 0:
                subprocess.run(["umount", "-l", os.fspath(small)], capture_output=True,
                               timeout=30)


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["attack", "runs", "kills", "photos", "outputs", "decoded", "redone", "rewritten",
            "leftovers", "exit_codes", "seconds"]
    cells = [[str(r.get(c, "-")) if not isinstance(r.get(c), dict)
              else " ".join(f"{k}:{v}" for k, v in r[c].items()) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=30, help="photos for the run attack")
    p.add_argument("--kills", type=int, default=10, help="kill -9s during run")
    p.add_argument("--run-kill-after", type=float, nargs=2, default=None,
                   metavar=("MIN", "MAX"), help="kill -9 the run this many seconds after its "
                   "start (default: see --run-startup-kills)")
    p.add_argument("--run-startup-kills", type=float, default=0.2,
                   help="share of the run kills made in start-up (0.5 s to the uninterrupted "
                   "run's first photo); the others come 0 to 3 photos' time after the run's "
                   "first 'done' line")
    p.add_argument("--watch-photos", type=int, default=150, help="photos dropped in the inbox")
    p.add_argument("--watch-kills", type=int, default=10, help="kill -9s of the watcher")
    p.add_argument("--watch-kill-after", type=float, nargs=2, default=(0.0, 6.0),
                   metavar=("MIN", "MAX"),
                   help="seconds after the watcher logs `watching` to kill -9 it")
    p.add_argument("--watch-startup-kills", type=float, default=0.2,
                   help="share of the watcher kills made during start-up (0.5-4 s after it "
                   "starts) instead")
    p.add_argument("--watch-timeout", type=float, default=900,
                   help="seconds the last watcher may take to empty the inbox")
    p.add_argument("--disk-photos", type=int, default=30, help="photos for the disk-full attack")
    p.add_argument("--disk-size", default="3M", help="size of the tmpfs")
    p.add_argument("--disk-leave-kib", type=int, default=40,
                   help="KiB left free on the tmpfs (about 8 KiB per output and record)")
    p.add_argument("--only", default="run,watch,disk", help="comma-separated attacks to run")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stylize", default=shutil.which("stylize") or
                   os.fspath(Path(sys.executable).with_name("stylize")),
                   help="the command to attack (default: stylize on PATH)")
    p.add_argument("--workdir", type=Path, default=None, help="default: a new folder in /tmp")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()
    os.environ.update(CHILD_ENV)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="stylize-attack-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"attacking {args.stylize} in {work} (seed {args.seed})", flush=True)
    attack = Attack(args, work)
    started = time.perf_counter()
    try:
        for name in args.only.split(","):
            {"run": attack.attack_run, "watch": attack.attack_watch,
             "disk": attack.attack_disk}[name.strip()]()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{table(attack.rows)}\n")
    for row in attack.rows:
        extra = {k: v for k, v in row.items() if k not in ("attack",)}
        print(f"{row['attack']}: {json.dumps(extra)}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s; "
          f"{'every check held' if not attack.failures else f'{len(attack.failures)} FAILED:'}")
    for f in attack.failures:
        print(f"  - {f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": attack.rows, "failures": attack.failures},
                                        indent=1))
    return 1 if attack.failures else 0


if __name__ == "__main__":
    sys.exit(main())
