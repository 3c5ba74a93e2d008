"""Attack 3: disk full.

A tmpfs of a few MiB (root only, as ``tests/faults/test_faults.py`` does) holds the outputs;
it is filled to all but a few KiB and ``stylize run`` is started: expected exit 74, exactly
one ``error:`` line on stderr, no traceback, no temporary or undecodable file. The filler is
removed and the run repeated: expected exit 0 and every photo done.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from .observe import decodes, digests, outputs_in, recorded, report_summary, temp_files
from .setup import Context, make_photos, make_styles, photo_rng, write_manifest

TITLE = "disk full"


def fill(path: Path, leave_kib: int) -> None:
    """Fills the file system of ``path`` with one file, then gives back ``leave_kib`` KiB."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
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
        os.ftruncate(fd, max(0, size - leave_kib * 1024))
    finally:
        os.close(fd)


def unmount(small: Path) -> None:
    um = subprocess.run(["umount", os.fspath(small)], capture_output=True, text=True, timeout=30)
    if um.returncode != 0:
        subprocess.run(["umount", "-l", os.fspath(small)], capture_output=True, timeout=30)


def full_run(ctx: Context, manifest: Path, small: Path) -> dict[str, Any]:
    """The run on the full disk and its checks; returns its figures."""
    top, out = ctx.top, small / "out"
    first = ctx.tool.run("run", manifest, "--cache-dir", top / "cache", "--report",
                         top / "report-full.json", cwd=top)
    err_lines = [ln for ln in first.stderr.splitlines() if ln.startswith("error:")]
    summary = report_summary(top / "report-full.json")
    outs = outputs_in(out)
    whole = sum(decodes(p) for p in outs)
    unrecorded = sum(not recorded(p) for p in outs)
    temps = temp_files(small)
    print(f"  full: rc {first.returncode}, stderr {first.stderr.strip()!r}", flush=True)
    print(f"  report: {summary}", flush=True)
    ctx.check(first.returncode == 74, f"exit {first.returncode} on a full disk (74)")
    ctx.check(len(err_lines) == 1, f"{len(err_lines)} 'error:' line(s) on stderr")
    ctx.check("Traceback" not in first.stderr + first.stdout, "no traceback")
    ctx.check(summary.get("failed") == 0, f"no photo blamed ({summary.get('failed')} failed)")
    ctx.check(whole == len(outs) and not temps,
              f"nothing partial: {whole}/{len(outs)} outputs decode, {len(temps)} temp "
              f"files, {unrecorded} outputs without their record")
    return {"rc": first.returncode, "summary": summary, "err_lines": err_lines,
            "temps": len(temps), "unrecorded": unrecorded}


def rerun(ctx: Context, manifest: Path, small: Path) -> dict[str, Any]:
    """The run once space is freed and its checks; returns its figures."""
    top, n = ctx.top, ctx.args.disk_photos
    second = ctx.tool.run("run", manifest, "--cache-dir", top / "cache", "--report",
                          top / "report-rerun.json", cwd=top)
    summary = report_summary(top / "report-rerun.json")
    due, _, lastline = ctx.tool.dry_run(manifest, top)
    outs = outputs_in(small / "out")
    whole = sum(decodes(p) for p in outs)
    temps = temp_files(small)
    print(f"  rerun: rc {second.returncode}, {summary.get('done')} done, "
          f"{summary.get('skipped')} skipped", flush=True)
    ctx.check(second.returncode == 0, f"rerun exit {second.returncode} once space is "
              f"freed ({second.stderr.strip()[-200:]})")
    ctx.check(due == 0 and len(outs) == n == whole and not temps,
              f"rerun finished the rest: {whole}/{n} outputs decode, "
              f"dry-run '{lastline}', {len(temps)} temp files")
    return {"rc": second.returncode, "summary": summary, "outputs": len(outs),
            "decoded": whole, "temps": len(temps)}


def attack(ctx: Context) -> None:
    a, top = ctx.args, ctx.top
    print(f"\n== disk full: {a.disk_photos} photos onto a {a.disk_size} tmpfs with "
          f"{a.disk_leave_kib} KiB left ==", flush=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        ctx.skip("mounting a small tmpfs needs root")
        ctx.row = {"attack": TITLE, "skipped": "needs root"}
        return
    photos = make_photos(top / "photos", a.disk_photos, photo_rng(ctx.rng))
    before = digests(photos)
    make_styles(top / "styles")
    small = top / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={a.disk_size}", "tmpfs",
                              os.fspath(small)], capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        ctx.check(False, f"mount a tmpfs: {mounted.stderr.strip()}")
        return
    started = time.perf_counter()
    try:
        # Style targets go to the cache on the big disk: it is the outputs that fill it.
        manifest = write_manifest(top / "jobs.yaml", [
            {"name": "full", "input": "photos", "styles": ["tiny"],
             "output": os.fspath(small / "out")}])
        fill(small / "filler.bin", a.disk_leave_kib)
        full = full_run(ctx, manifest, small)
        (small / "filler.bin").unlink()
        again = rerun(ctx, manifest, small)
        ctx.check(digests(photos) == before, "inputs byte-identical (sha256)")
        ctx.row = {
            "attack": TITLE, "runs": 2, "kills": 0, "photos": a.disk_photos,
            "outputs": again["outputs"], "decoded": again["decoded"],
            "done_before_full": full["summary"].get("done"),
            "not_run": full["summary"].get("not_run"),
            "redone": (full["summary"].get("done", 0) + again["summary"].get("done", 0))
            - a.disk_photos,
            "leftovers": full["temps"] + again["temps"], "error_lines": len(full["err_lines"]),
            "error": full["err_lines"][0] if full["err_lines"] else None,
            "unrecorded_after_full": full["unrecorded"],
            "exit_codes": {"full": full["rc"], "rerun": again["rc"]},
            "seconds": round(time.perf_counter() - started, 1)}
    finally:
        unmount(small)
