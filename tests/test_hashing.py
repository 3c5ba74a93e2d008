"""Tests for pipeline.store.hashing: file, JSON and tensor digests."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.store import hashing
from pipeline.store.hashing import digest_json, digest_tensors, file_digest

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _fresh_memo() -> Iterator[None]:
    # The memo is process-wide; tests must not see each other's entries.
    hashing.clear_file_digest_memo()
    yield
    hashing.clear_file_digest_memo()


def _bump_mtime(path: Path) -> None:
    # Some file systems have coarse timestamps; move mtime explicitly so a rewrite
    # within the same tick is still seen as a change.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


# -- file_digest ---------------------------------------------------------------------------


def test_file_digest_matches_sha256_and_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"hello world")
    expected = hashlib.sha256(b"hello world").hexdigest()
    assert file_digest(path) == expected
    assert file_digest(path) == expected


def test_file_digest_streams_multi_block_files(tmp_path: Path) -> None:
    data = os.urandom(hashing._BLOCK * 2 + 123)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert file_digest(path) == hashlib.sha256(data).hexdigest()


def test_file_digest_changes_with_content(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"aaaa")
    first = file_digest(path)
    path.write_bytes(b"bbbb")  # same size: only mtime tells the memo it changed
    _bump_mtime(path)
    second = file_digest(path)
    assert first != second
    assert second == hashlib.sha256(b"bbbb").hexdigest()


def test_file_digest_memo_avoids_reread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"content")
    opened: list[str] = []
    real_open = hashing.open_regular

    def spy_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    # hashing's one way to open a file: the shared bounded reader.
    monkeypatch.setattr(hashing, "open_regular", spy_open)

    first = file_digest(path)
    second = file_digest(path)
    # Another spelling of the same file resolves to the same memo entry.
    third = file_digest(tmp_path / "." / "a.bin")
    assert first == second == third
    assert len(opened) == 1

    path.write_bytes(b"changed")
    _bump_mtime(path)
    assert file_digest(path) == hashlib.sha256(b"changed").hexdigest()
    assert len(opened) == 2


def test_file_digest_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_digest(tmp_path / "nope.bin")


@pytest.mark.timeout(5)
def test_file_digest_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # no writer: a blocking open waits forever
    with pytest.raises(OSError, match="not a regular file"):
        file_digest(fifo)


@pytest.mark.timeout(5)
def test_file_digest_refuses_a_device_that_never_ends() -> None:
    # Reading /dev/zero to its end spun at 100 % CPU forever, deaf to the first SIGTERM.
    with pytest.raises(OSError, match="not a regular file"):
        file_digest(Path("/dev/zero"))


def test_file_digest_refuses_a_folder_and_a_link_loop(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        file_digest(tmp_path)
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    with pytest.raises(OSError, match="Too many levels of symbolic links"):  # not RuntimeError
        file_digest(loop)


@pytest.mark.timeout(5)
def test_file_digest_refuses_a_file_swapped_for_a_fifo_after_its_stat(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.jpg"
    other.write_bytes(b"photo")
    swapped = tmp_path / "a.jpg"
    os.mkfifo(swapped)
    real_stat = os.stat

    def stale(path: object, *args: object, **kwargs: object) -> os.stat_result:
        # The stat saw a regular file; by the open, a FIFO stands at that path.
        if os.fspath(path) == str(swapped):  # type: ignore[call-overload]
            return real_stat(other)
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", stale)
    with pytest.raises(OSError, match="not a regular file"):
        file_digest(swapped)


def test_hashing_imports_no_torch() -> None:
    """Planning (file and settings digests) must not pay for importing torch."""
    code = ("import sys, pipeline.store.hashing as h; h.digest_json({'a': 1}); "
            "h.file_digest(h.__file__); assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


# -- digest_json ---------------------------------------------------------------------------


def test_digest_json_ignores_key_order() -> None:
    a = {"style": "mosaic", "size": 512, "weights": {"content": 1.0, "style": 1e5}}
    b = {"weights": {"style": 1e5, "content": 1.0}, "size": 512, "style": "mosaic"}
    assert digest_json(a) == digest_json(b)
    assert len(digest_json(a)) == 64


def test_digest_json_changes_with_values() -> None:
    base = {"size": 512, "steps": 300}
    assert digest_json(base) != digest_json({"size": 512, "steps": 301})
    # A float and an int with the same value are different settings.
    assert digest_json({"x": 1}) != digest_json({"x": 1.0})
    assert digest_json({"x": 0.1}) == digest_json({"x": 0.1})


def test_digest_json_paths_hash_as_strings() -> None:
    assert digest_json({"p": Path("/a/b.jpg")}) == digest_json({"p": "/a/b.jpg"})
    assert digest_json([Path("x")]) == digest_json(["x"])


def test_digest_json_canonical_text() -> None:
    assert hashing.canonical_json({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'


def test_digest_json_rejects_unknown_types() -> None:
    with pytest.raises(TypeError):
        digest_json({"x": object()})


# -- digest_tensors ------------------------------------------------------------------------


def test_digest_tensors_order_independent_and_stable() -> None:
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    b = torch.ones(4, dtype=torch.int64)
    assert digest_tensors({"a": a, "b": b}) == digest_tensors({"b": b, "a": a.clone()})


def test_digest_tensors_sensitive_to_name_dtype_shape_and_bytes() -> None:
    t = torch.arange(6, dtype=torch.float32)
    base = digest_tensors({"t": t})
    variants = [
        {"u": t},
        {"t": t.to(torch.float64)},
        {"t": t.reshape(2, 3)},
        {"t": t + torch.tensor([0, 0, 0, 0, 0, 1e-6])},
        {"t": t, "extra": torch.zeros(0)},
    ]
    digests = {digest_tensors(v) for v in variants}
    assert base not in digests
    assert len(digests) == len(variants)


def test_digest_tensors_ignores_memory_layout() -> None:
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    transposed = t.t()
    assert not transposed.is_contiguous()
    assert digest_tensors({"t": transposed}) == digest_tensors({"t": transposed.contiguous()})


def test_digest_tensors_handles_odd_dtypes_and_shapes() -> None:
    tensors = {
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "bf16": torch.ones(2, 2, dtype=torch.bfloat16),
        "mask": torch.tensor([True, False]),
    }
    assert digest_tensors(tensors) == digest_tensors(dict(tensors))
    assert digest_tensors({}) != digest_tensors(tensors)
