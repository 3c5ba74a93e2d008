"""Files the tool writes get the mode an ordinary new file would, and stay atomic.

The umask is process-wide, so the checks that set it run in a child process: a
thread of this one (an earlier test's watcher, say) creating a file meanwhile would
otherwise get the test's umask.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from pipeline.config.naming import TEMP_PREFIX
from pipeline.images import save_image
from pipeline.store import fsutil

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits"),
]

_CHILD = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from PIL import Image
    from pipeline.store import fsutil
    from pipeline.images import save_image

    umask, folder = int(sys.argv[1], 8), Path(sys.argv[2])
    os.umask(umask)
    old = folder / "old.json"
    old.write_bytes(b"{}")
    os.chmod(old, 0o600)  # what every file used to get
    fsutil.atomic_write_bytes(folder / "record.json", b"{}")
    fsutil.atomic_write_bytes(old, b"{}")
    with fsutil.atomic_path(folder / "error.error.json") as tmp:
        tmp.write_bytes(b"{}")
    for suffix in (".jpg", ".png", ".webp", ".tif"):
        save_image(Image.new("RGB", (8, 8)), folder / f"out{suffix}")
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in folder.iterdir()}
    print(json.dumps({"umask": oct(fsutil.current_umask()), "modes": modes}))
    """
)


def _write_under(umask: int, folder: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, oct(umask), str(folder)],
        capture_output=True, text=True, check=True, timeout=50,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_get_the_umasks_mode(tmp_path: Path, umask: int, mode: int) -> None:
    result = _write_under(umask, tmp_path)
    assert result["umask"] == oct(umask)
    modes = result["modes"]
    assert isinstance(modes, dict)
    assert set(modes) == {"old.json", "record.json", "error.error.json", "out.jpg", "out.png",
                          "out.webp", "out.tif"}, "no temporary file is left behind"
    assert set(modes.values()) == {oct(mode)}, modes


def test_umask_fallback_without_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = os.umask(0o022)
    os.umask(expected)

    def no_proc(*_args: object, **_kwargs: object) -> object:
        raise FileNotFoundError("/proc/self/status")

    # fsutil's own name for open shadows the builtin, so only its /proc read fails.
    monkeypatch.setattr(fsutil, "open", no_proc, raising=False)
    assert fsutil.current_umask() == expected
    assert os.umask(expected) == expected, "the fallback puts the umask back"
    assert fsutil.new_file_mode() == 0o666 & ~expected


def test_atomic_write_can_give_the_photos_modification_time(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"x")
    os.utime(photo, ns=(1_600_000_000_000_000_000, 1_500_000_000_123_456_789))
    mtime = photo.stat().st_mtime_ns
    out = tmp_path / "out" / "photo.jpg.udnie.jpg"
    fsutil.atomic_write_bytes(out, b"result", mtime_ns=mtime)
    assert out.stat().st_mtime_ns == mtime
    later = tmp_path / "later.png"
    save_image(Image.new("RGB", (4, 4)), later)
    fsutil.set_mtime(later, mtime)
    assert later.stat().st_mtime_ns == mtime
    assert not [p for p in tmp_path.rglob(f"{TEMP_PREFIX}*")]
