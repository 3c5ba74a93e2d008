"""What is measured about what the command left: files, records, temporary files, its
reports and logs, and the processes' progress."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image

TEMP_PREFIX = ".stylize-tmp-"


# -- files -------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(paths: list[Path]) -> dict[str, str]:
    return {p.name: sha256(p) for p in paths}


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob(f"{TEMP_PREFIX}*")) if folder.exists() else []


def outputs_in(folder: Path) -> list[Path]:
    if not folder.exists():
        return []
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


# -- reports and logs --------------------------------------------------------------------


def done_lines(text: str) -> int:
    """The plain ``done`` lines a run printed (one as each photo finishes)."""
    return sum(1 for line in text.splitlines() if line.startswith("done "))


def report_summary(path: Path) -> dict[str, Any]:
    """The ``summary`` of a ``--report`` file, or nothing when the run wrote none."""
    return json.loads(path.read_text())["summary"] if path.exists() else {}


def watch_events(top: Path) -> tuple[list[dict[str, Any]], int]:
    """Every event in the watchers' JSON logs, and how many lines were torn."""
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


def inbox_pending(inbox: Path) -> list[str]:
    return sorted(p.name for p in inbox.iterdir() if p.name not in ("done", "failed")
                  and not p.name.startswith(".stylize-watch"))


def counts(counter: Counter[int]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(counter.items())}


# -- processes ---------------------------------------------------------------------------


def wait_done_line(log: Path, proc: subprocess.Popen[Any]) -> None:
    """Until the run logged its first ``done`` line, or ended."""
    while proc.poll() is None and "\ndone " not in "\n" + log.read_text(errors="replace"):
        time.sleep(0.05)


def wait_watching(log: Path, proc: subprocess.Popen[Any], timeout: float) -> float:
    """Seconds until the watcher logged ``watching`` (or gave up, or ended)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout and proc.poll() is None:
        if log.exists() and '"watching"' in log.read_text(errors="replace"):
            break
        time.sleep(0.1)
    return time.perf_counter() - t0
