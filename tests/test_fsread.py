"""The one bounded reader (pipeline.store.fsread) and bounded JSON (pipeline.store.jsonio)."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from pipeline.store.fsread import (
    FileTooLargeError,
    NotRegularFileError,
    open_regular,
    read_all,
    read_bounded,
    size_text,
)
from pipeline.store.jsonio import MAX_JSON_DEPTH, loads, read_json

pytestmark = pytest.mark.timeout(10)


def test_a_regular_file_is_read_up_to_exactly_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100) == b"x" * 100
    with pytest.raises(FileTooLargeError, match=r"too large for a record \(100 bytes; the "
                                                r"limit is 99 bytes\)") as info:
        read_bounded(path, 99, "a record")
    assert (info.value.size, info.value.limit, info.value.errno) == (100, 99, errno.EFBIG)


def test_a_fifo_is_refused_at_once_and_never_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    started = time.monotonic()
    with pytest.raises(NotRegularFileError, match="not a regular file"):
        read_bounded(tmp_path / "pipe", 10)
    assert time.monotonic() - started < 1


def test_a_device_a_folder_and_a_link_are_each_refused_in_words(tmp_path: Path) -> None:
    with pytest.raises(NotRegularFileError, match=r"pipe, socket or device"):
        read_bounded("/dev/zero", 10)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        read_bounded(tmp_path, 10)
    (tmp_path / "real").write_bytes(b"{}")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert read_bounded(tmp_path / "link", 10) == b"{}"  # followed unless told not to
    with pytest.raises(NotRegularFileError, match="symbolic link"):
        read_bounded(tmp_path / "link", 10, follow_links=False)
    (tmp_path / "to-zero").symlink_to("/dev/zero")
    with pytest.raises(NotRegularFileError):
        read_bounded(tmp_path / "to-zero", 10)


def test_a_file_that_declares_no_size_or_grows_stops_one_byte_past_the_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileTooLargeError, match="grew past") as info:
        read_bounded("/proc/self/status", 16)  # /proc files say they hold 0 bytes
    assert info.value.size is None
    path = tmp_path / "grows"
    path.write_bytes(b"y" * 5000)
    real_stat, real_fstat = os.stat, os.fstat

    def small(st: os.stat_result) -> os.stat_result:
        return os.stat_result((st.st_mode, *st[1:6], 10, *st[7:]))

    monkeypatch.setattr(os, "stat", lambda *a, **k: small(real_stat(*a, **k)))
    monkeypatch.setattr(os, "fstat", lambda fd: small(real_fstat(fd)))
    with open_regular(path, max_bytes=100) as fh, pytest.raises(FileTooLargeError):
        read_all(fh)
    monkeypatch.undo()
    with open_regular(path, max_bytes=5000) as fh:  # the bound is on the position:
        assert len(read_all(fh)) == 5000
        assert fh.seek(0) == 0 and fh.read(10) == b"y" * 10  # a seek back reads again


def test_size_text() -> None:
    assert [size_text(n) for n in (512, 1 << 20, (1 << 20) * 3 // 2, 2 << 30)] == [
        "512 bytes", "1 MiB", "1.5 MiB", "2 GiB"]


def test_bounded_json_refuses_deep_nesting_before_parsing() -> None:
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads(ok.encode()) is not None
    for bad in ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "[" * 100_000,
                '{"a": ' * 5000):
        with pytest.raises(ValueError, match="nested more than"):
            loads(bad.encode())
    # Brackets inside strings, escaped quotes included, are text, not nesting.
    assert loads(b'{"name": "[[[[\\"{{{{", "x": [1]}') == {"name": '[[[["{{{{', "x": [1]}
    with pytest.raises(ValueError):
        loads(b"\xff\xfe")


def test_read_json_is_the_bounded_reader_then_bounded_json(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"a": 1}')
    assert read_json(path, 100, "a record") == {"a": 1}
    (tmp_path / "link.json").symlink_to(path)
    with pytest.raises(NotRegularFileError):
        read_json(tmp_path / "link.json", 100, "a record")
    with pytest.raises(FileTooLargeError):
        read_json(path, 3, "a record")
