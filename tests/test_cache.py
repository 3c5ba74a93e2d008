"""Tests for pipeline.store.cache: the content-addressed tensor cache."""

from __future__ import annotations

import errno
import logging
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open

from pipeline.errors import DiskFullError, OutputNotWritableError
from pipeline.store import fsutil
from pipeline.store.cache import ArtifactCache, default_cache_dir
from pipeline.store.hashing import digest_json

pytestmark = pytest.mark.timeout(30)

KIND = "gram"
KEY = digest_json({"style": "mosaic", "size": 256})
OTHER_KEY = digest_json({"style": "mosaic", "size": 512})


@pytest.fixture(autouse=True)
def _isolated_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Nothing in these tests may touch the real per-user cache.
    cache_dir = tmp_path / "env-cache"
    monkeypatch.setenv("STYLIZE_CACHE_DIR", str(cache_dir))
    return cache_dir


@pytest.fixture
def cache(tmp_path: Path) -> ArtifactCache:
    return ArtifactCache(tmp_path / "cache")


def _tensors() -> dict[str, torch.Tensor]:
    return {
        "relu1_1": torch.arange(64, dtype=torch.float32).reshape(8, 8),
        "relu2_1": torch.linspace(-1, 1, 32, dtype=torch.float32).reshape(2, 16),
    }


def _assert_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype
        assert torch.equal(a[name], b[name])


def _temp_files(root: Path) -> list[Path]:
    return list(root.rglob(f"{fsutil.TEMP_PREFIX}*")) if root.exists() else []


# -- corruption helpers: each returns the damaged bytes of a good entry file ----------------


def _truncate(data: bytes) -> bytes:
    return data[:-17]


def _garbage(data: bytes) -> bytes:
    return b"this is not a safetensors file at all" * 4


def _flip_data_byte(data: bytes) -> bytes:
    # Layout: 8-byte little-endian header length, JSON header, then raw tensor bytes.
    (header_len,) = struct.unpack("<Q", data[:8])
    offset = 8 + header_len + 5
    assert offset < len(data)
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :]


def _empty(data: bytes) -> bytes:
    return b""


# -- basics --------------------------------------------------------------------------------


def test_default_cache_dir_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLIZE_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    assert ArtifactCache().root == tmp_path / "elsewhere"


def test_default_cache_dir_falls_back_to_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    monkeypatch.delenv("STYLIZE_CACHE_DIR", raising=False)
    assert default_cache_dir() == platformdirs.user_cache_path("stylize")


def test_put_get_roundtrip(cache: ArtifactCache) -> None:
    path = cache.put(KIND, KEY, _tensors(), metadata={"style": "mosaic"})
    assert path == cache.root / KIND / KEY[:2] / f"{KEY}.safetensors"
    assert path.is_file()
    got = cache.get(KIND, KEY)
    assert got is not None
    _assert_equal(got, _tensors())

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["key"] == KEY
    assert meta["kind"] == KIND
    assert meta["style"] == "mosaic"
    assert len(meta["sha256"]) == 64
    assert meta["created"]


def test_get_missing_is_none(cache: ArtifactCache) -> None:
    assert cache.get(KIND, KEY) is None


def test_put_accepts_noncontiguous_and_shared_tensors(cache: ArtifactCache) -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = {"t": base.t(), "row": base[1], "all": base}
    cache.put(KIND, KEY, tensors)
    got = cache.get(KIND, KEY)
    assert got is not None
    _assert_equal(got, {k: v.contiguous() for k, v in tensors.items()})


def test_put_leaves_no_temp_file(cache: ArtifactCache) -> None:
    cache.put(KIND, KEY, _tensors())
    cache.put(KIND, KEY, _tensors())  # overwriting an entry is fine too
    assert _temp_files(cache.root) == []
    assert [p.name for p in cache.root.rglob("*.safetensors")] == [f"{KEY}.safetensors"]


def test_put_rejects_reserved_metadata_and_bad_keys(cache: ArtifactCache) -> None:
    with pytest.raises(ValueError):
        cache.put(KIND, KEY, _tensors(), metadata={"sha256": "0" * 64})
    with pytest.raises(ValueError):
        cache.put(KIND, "../../escape", _tensors())
    with pytest.raises(ValueError):
        cache.get("../x", KEY)


def test_different_keys_do_not_collide(cache: ArtifactCache) -> None:
    cache.put(KIND, KEY, {"x": torch.zeros(3)})
    cache.put(KIND, OTHER_KEY, {"x": torch.ones(3)})
    a, b = cache.get(KIND, KEY), cache.get(KIND, OTHER_KEY)
    assert a is not None and b is not None
    assert not torch.equal(a["x"], b["x"])


# -- corrupt entries -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [_truncate, _garbage, _flip_data_byte, _empty],
    ids=["truncated", "garbage", "tampered-byte", "empty"],
)
def test_corrupt_entry_detected_deleted_and_rebuilt(
    cache: ArtifactCache, caplog: pytest.LogCaptureFixture, damage: Callable[[bytes], bytes]
) -> None:
    path = cache.put(KIND, KEY, _tensors())
    path.write_bytes(damage(path.read_bytes()))

    with caplog.at_level(logging.WARNING, logger="pipeline.store.cache"):
        assert cache.get(KIND, KEY) is None
    assert str(path) in caplog.text
    assert "corrupt" in caplog.text
    assert not path.exists()

    cache.put(KIND, KEY, _tensors())  # what the caller does on a miss: rebuilt
    again = cache.get(KIND, KEY)
    assert again is not None
    _assert_equal(again, _tensors())


def test_tampered_byte_still_loads_but_fails_hash(
    cache: ArtifactCache, caplog: pytest.LogCaptureFixture
) -> None:
    # Guard the test itself: the damaged file must be valid safetensors, so only the
    # content hash can catch it.
    path = cache.put(KIND, KEY, _tensors())
    path.write_bytes(_flip_data_byte(path.read_bytes()))
    safetensors.torch.load_file(str(path))
    with caplog.at_level(logging.WARNING, logger="pipeline.store.cache"):
        assert cache.get(KIND, KEY) is None
    assert "hash mismatch" in caplog.text


def test_entry_with_other_key_is_rejected(
    cache: ArtifactCache, caplog: pytest.LogCaptureFixture
) -> None:
    source = cache.put(KIND, OTHER_KEY, _tensors())
    target = cache.path_for(KIND, KEY)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())

    with caplog.at_level(logging.WARNING, logger="pipeline.store.cache"):
        assert cache.get(KIND, KEY) is None
    assert str(target) in caplog.text
    assert "key" in caplog.text
    assert not target.exists()
    assert source.exists()  # the genuine entry is untouched
    cache.put(KIND, KEY, _tensors())
    assert cache.get(KIND, KEY) is not None


def test_entry_without_metadata_is_rejected(
    cache: ArtifactCache, caplog: pytest.LogCaptureFixture
) -> None:
    target = cache.path_for(KIND, KEY)
    target.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(_tensors(), str(target))
    with caplog.at_level(logging.WARNING, logger="pipeline.store.cache"):
        assert cache.get(KIND, KEY) is None
    assert "no metadata" in caplog.text
    assert not target.exists()


# -- write failures ------------------------------------------------------------------------


def _failing_save(exc: BaseException) -> Callable[..., None]:
    def save_file(tensors: Any, filename: Any, metadata: Any = None) -> None:
        # Leave a partial file behind, as a real writer interrupted by ENOSPC would.
        Path(filename).write_bytes(b"partial")
        raise exc

    return save_file


@pytest.mark.parametrize(
    "how",
    ["oserror", "safetensor-error", "replace"],
)
def test_put_disk_full_raises_and_leaves_nothing(
    cache: ArtifactCache, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "oserror":
        exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(safetensors.torch, "save_file", _failing_save(exc))
    elif how == "safetensor-error":
        # What safetensors really raises on a full disk.
        exc2 = SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )
        monkeypatch.setattr(safetensors.torch, "save_file", _failing_save(exc2))
    else:

        def failing_replace(src: Any, dst: Any) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "replace", failing_replace)

    with pytest.raises(DiskFullError):
        cache.put(KIND, KEY, _tensors())
    monkeypatch.undo()
    assert _temp_files(cache.root) == []
    assert not cache.path_for(KIND, KEY).exists()
    assert cache.get(KIND, KEY) is None


def test_unwritable_cache_put_raises_but_a_run_continues_without_caching(
    cache: ArtifactCache, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only cache folder costs speed, not the run (the store logs it once)."""
    from pipeline.config.styles import Registry
    from pipeline.render.targets import StyleTargetStore

    # chmod cannot be used: the tests may run as root, who writes anywhere.
    exc = OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(safetensors.torch, "save_file", _failing_save(exc))
    with pytest.raises(OutputNotWritableError):
        cache.put(KIND, KEY, _tensors())

    preset = Registry.discover().resolve("udnie").with_overrides(
        {"size": 64, "min_side": 32, "precision": "fp32", "device": "cpu"})
    store = StyleTargetStore(cache)
    with caplog.at_level(logging.WARNING, logger="pipeline.render.targets"):
        targets = store.get(preset.settings, preset, [32, 64])
    assert sorted(targets) == [32, 64] and store.counts.computed == 2
    assert caplog.text.count("style targets are not cached") == 1  # once, not per entry
    assert _temp_files(cache.root) == []


# -- housekeeping --------------------------------------------------------------------------


def test_sweep_removes_only_stale_temp_files(cache: ArtifactCache) -> None:
    folder = cache.root / KIND / "ab"
    folder.mkdir(parents=True)
    stale = folder / f"{fsutil.TEMP_PREFIX}old.safetensors"
    fresh = folder / f"{fsutil.TEMP_PREFIX}new.safetensors"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    entry = cache.put(KIND, KEY, _tensors())

    assert cache.sweep() == 1
    assert not stale.exists()
    assert fresh.exists()
    assert entry.exists()


def test_sweep_on_missing_root_is_noop(tmp_path: Path) -> None:
    assert ArtifactCache(tmp_path / "never-created").sweep() == 0
