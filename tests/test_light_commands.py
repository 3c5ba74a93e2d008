"""The light commands never import torch: they must start in a fraction of a second.

Each command runs in a fresh interpreter (the test process has torch loaded already) and
the child reports whether ``torch`` ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.images import PHOTOS

pytestmark = pytest.mark.timeout(120)

_CHILD = textwrap.dedent("""
    import json, sys
    from typer.testing import CliRunner
    from pipeline.cli import app
    result = CliRunner().invoke(app, sys.argv[1:])
    print(json.dumps({"code": result.exit_code, "torch": "torch" in sys.modules,
                      "output": result.output[-2000:]}))
""")


def _run_child(*args: str, cwd: Path) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    (tmp_path / "photos").mkdir()
    for photo in sorted(PHOTOS.iterdir())[:2]:
        (tmp_path / "photos" / photo.name).write_bytes(photo.read_bytes())
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs:\n  - {name: a, input: photos, styles: [udnie], output: out}\n")
    return path


@pytest.mark.parametrize("args", [["--help"], ["styles", "list"], ["styles", "show", "udnie"],
                                  ["run", "--dry-run", "jobs.yaml"], ["gallery", "jobs.yaml"]],
                         ids=lambda a: " ".join(a))
def test_light_commands_import_no_torch(args: list[str], manifest: Path) -> None:
    child = _run_child(*args, cwd=manifest.parent)
    assert child["code"] == 0, child["output"]
    assert child["torch"] is False, f"stylize {' '.join(args)} imported torch"
