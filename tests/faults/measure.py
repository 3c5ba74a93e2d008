"""Running ``stylize`` as a child with a bound on its time and memory, and measuring both.

``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` is the peak of the largest child a
process has waited for, not of the last one; so every measured child is started by a
wrapper process of its own (``python -c _WRAPPER``), which waits for it alone and reports
that child's peak.  The wrapper also enforces the bounds while the child runs: it kills
the child (SIGKILL) when its resident memory passes the cap or the time runs out, so a
regression that reads ``/dev/zero`` into memory fails the test instead of the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from faults.helpers import Outcome, child_env, stylize_cmd

#: Runs argv[3:] with stdout/stderr to files, polls its RSS, kills it past a bound, then
#: writes {"code", "seconds", "peak_mb", "killed"} to argv[2].
_WRAPPER = r"""
import json, os, resource, signal, subprocess, sys, time
limits = json.loads(sys.argv[1])
start = time.monotonic()
with open(limits["stdout"], "wb") as out, open(limits["stderr"], "wb") as err:
    proc = subprocess.Popen(sys.argv[3:], stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    killed = None
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as fh:
                rss_kb = next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
        except OSError:
            rss_kb = 0
        if killed is None and rss_kb > limits["max_mb"] * 1024:
            killed = f"resident memory passed {limits['max_mb']} MB"
        elif killed is None and time.monotonic() - start > limits["timeout"]:
            killed = f"still running after {limits['timeout']} s"
        if killed is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            break
        time.sleep(limits.get("poll", 0.02))
seconds = time.monotonic() - start
peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
with open(sys.argv[2], "w") as fh:
    json.dump({"code": proc.returncode, "seconds": seconds, "peak_mb": peak_mb,
               "killed": killed}, fh)
"""


@dataclass
class Measured:
    outcome: Outcome
    seconds: float
    peak_mb: float
    killed: str | None  # why the wrapper had to kill the child, or None

    @property
    def code(self) -> int:
        return self.outcome.code

    @property
    def err(self) -> str:
        return self.outcome.err

    def describe(self) -> str:
        return (f"exit {self.code} after {self.seconds:.2f} s, peak RSS {self.peak_mb:.0f} MB"
                + (f", killed: {self.killed}" if self.killed else "")
                + f"; stderr: {self.outcome.stderr[-600:]!r}")


def run_measured(*args: str | os.PathLike[str], timeout: float = 10, max_mb: float = 400,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> Measured:
    """``stylize ARGS`` in a wrapper of its own; killed past ``timeout`` s or ``max_mb`` MB.

    The caps are enforced with a margin (the child is killed at twice ``max_mb`` and at
    ``timeout`` plus ten seconds), so a test sees the real figures a little past its bound
    and can say by how much, while a runaway child is still stopped early.
    """
    with tempfile.TemporaryDirectory(prefix="stylize-measure-") as tmp:
        folder = Path(tmp)
        limits = {"max_mb": 2 * max_mb, "timeout": timeout + 10,
                  "stdout": str(folder / "out"), "stderr": str(folder / "err")}
        result = folder / "result.json"
        subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(limits), str(result),
                        *map(os.fsdecode, stylize_cmd(*args))],
                       env=env or child_env(), cwd=cwd, check=True, timeout=timeout + 60)
        data = json.loads(result.read_text())
        outcome = Outcome(data["code"], (folder / "out").read_bytes(),
                          (folder / "err").read_bytes())
    return Measured(outcome, data["seconds"], data["peak_mb"], data["killed"])
