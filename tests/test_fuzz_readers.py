"""Fuzzing the readers of files anyone who can write a folder may replace (issue 22).

Records, the inbox registry and cache entries are read back from folders other people can
write to.  Whatever bytes or JSON stand there, reading them gives a value or nothing,
never a traceback, within a bounded time: Hypothesis writes random JSON values, random
bytes, real files with one field changed, and deep nesting, a few hundred cases in all.
A record that reads as valid must also make ``stylize explain`` print, not crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config.settings import Settings
from pipeline.config.styles import Registry as Styles
from pipeline.store.cache import ArtifactCache
from pipeline.store.hashing import digest_json, file_digest
from pipeline.store.records import Record, read_record, record_path, write_record
from pipeline.watch.inbox import Registry

pytestmark = pytest.mark.timeout(120)

#: Each example reads one small file: a few milliseconds.  The bound is generous for a
#: loaded 2-core machine, and far below what an unbounded read or a hang would take.
SECONDS = 2.0

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (st.lists(inner, max_size=4)
                   | st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=25)
#: Nesting from just past the bound to past Python's recursion limit, closed or not.
deep = st.builds(lambda n, open_, close: open_ * n + close * min(n, 40),
                 st.integers(20, 3000), st.sampled_from(["[", "{\"a\":", "[{\"b\":"]),
                 st.sampled_from(["]", "}", "}]"]))


def _bounded(read: Any) -> Any:
    started = time.monotonic()
    value = read()
    assert time.monotonic() - started < SECONDS
    return value


def _plant(path: Path, data: bytes) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("fuzz")


# -- records ----------------------------------------------------------------------------


def _real_record(output: Path) -> dict[str, Any]:
    preset = Styles.discover().resolve("udnie")
    painting = preset.images[0].path
    return {"key": "k" * 64, "input": str(output.parent / "p.png"), "input_digest": "d" * 64,
            "input_size": 10, "input_mtime_ns": 1, "style": "udnie", "output_size": 10,
            "output_mtime_ns": 1, "seconds": 1.5, "finished": "2026-01-01T00:00:00+00:00",
            "made": {"tool": "stylize 0", "preset": "udnie", "preset_source": "builtin",
                     "preset_path": None, "format": "jpeg",
                     "style_images": [{"path": str(painting), "weight": 1.0,
                                       "digest": file_digest(painting)}],
                     "settings": Settings().model_dump(mode="json"),
                     "weights_digest": None, "note": None, "device": "cpu",
                     "precision": "float32", "method": "optimize", "network": ""}}


def _explain(output: Path) -> None:
    result = CliRunner().invoke(app, ["explain", str(output)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback would have reached the user
    assert result.exit_code in (0, 2), result.output


@FUZZ
@given(value=json_values | deep)
def test_records_of_random_json_read_as_a_record_or_none(folder: Path, value: Any) -> None:
    output = folder / "records" / "x.jpg"
    text = value if isinstance(value, str) and value[:1] in "[{" else json.dumps(value)
    _plant(record_path(output), text.encode())
    assert _bounded(lambda: read_record(output)) is None  # none of these is a record


@FUZZ
@given(data=st.binary(max_size=3000))
def test_records_of_random_bytes_read_as_none(folder: Path, data: bytes) -> None:
    output = folder / "records" / "y.jpg"
    _plant(record_path(output), data)
    assert _bounded(lambda: read_record(output)) is None


@FUZZ
@given(where=st.sampled_from(["top", "made", "image", "settings"]), field=st.text(max_size=3),
       value=json_values | st.text(), drop=st.booleans())
def test_a_real_record_with_one_field_changed_never_crashes_explain(
        folder: Path, where: str, field: str, value: Any, drop: bool) -> None:
    output = folder / "records" / "z.jpg"
    record = _real_record(output)
    target = {"top": record, "made": record["made"], "settings": record["made"]["settings"],
              "image": record["made"]["style_images"][0]}[where]
    keys = sorted(target)
    name = keys[sum(map(ord, field)) % len(keys)]  # Hypothesis picks the field through `field`
    if drop:
        del target[name]
    else:
        target[name] = value
    _plant(record_path(output), json.dumps(record).encode())
    got = _bounded(lambda: read_record(output))
    assert got is None or isinstance(got, Record)
    event("still a record" if got is not None else "no record")
    _explain(output)


def test_the_fuzzed_real_record_is_itself_valid(folder: Path) -> None:
    """Guard the test above: unchanged, its record reads back and explains."""
    output = folder / "records" / "ok.jpg"
    rec = Record(**_real_record(output))
    write_record(output, rec)
    assert read_record(output) == rec
    _explain(output)


# -- the inbox registry -------------------------------------------------------------------


def _registry_entry() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({}, optional={
        "size": json_values, "mtime_ns": json_values, "ino": json_values,
        "digest": json_values, "outcome": json_values})


@FUZZ
@given(value=json_values | deep | st.fixed_dictionaries(
    {"version": json_values,
     "files": st.dictionaries(st.text(max_size=8), _registry_entry(), max_size=4)}))
def test_the_registry_reads_any_json_and_keeps_only_valid_entries(folder: Path,
                                                                 value: Any) -> None:
    path = folder / "inbox" / ".stylize-watch.json"
    text = value if isinstance(value, str) and value[:1] in "[{" else json.dumps(value)
    _plant(path, text.encode())
    registry = _bounded(lambda: Registry(path))
    for name, entry in registry.entries.items():
        assert all(type(entry[k]) is int for k in ("size", "mtime_ns", "ino"))
        assert entry.get("digest") is None or isinstance(entry["digest"], str)
        registry.same_file(name, (1, 2, 3))
    registry.add("new.jpg", (1, 2, 3), None, "done")  # and it can be written again
    assert "new.jpg" in Registry(path)


@FUZZ
@given(data=st.binary(max_size=3000))
def test_the_registry_reads_random_bytes_as_empty_or_valid(folder: Path, data: bytes) -> None:
    path = folder / "inbox" / ".stylize-watch.json"
    _plant(path, data)
    _bounded(lambda: Registry(path))


# -- cache entries ------------------------------------------------------------------------


KIND = "gram"
KEY = digest_json({"fuzz": 1})


def _header(value: Any, size_delta: int) -> bytes:
    text = json.dumps(value).encode()
    return (len(text) + size_delta).to_bytes(8, "little", signed=False) + text


@FUZZ
@given(data=st.binary(max_size=3000)
       | st.builds(_header, json_values | st.fixed_dictionaries(
           {"__metadata__": st.dictionaries(st.sampled_from(["key", "kind", "sha256", "x"]),
                                            json_values, max_size=4)},
           optional={"t": st.fixed_dictionaries({"dtype": st.sampled_from(["F32", "I8", "?"]),
                                                 "shape": json_values,
                                                 "data_offsets": json_values})}),
           st.integers(0, 16)).flatmap(lambda head: st.binary(max_size=64).map(
               lambda tail: head + tail)))
def test_a_cache_entry_of_random_bytes_is_a_miss_and_is_dropped(folder: Path,
                                                                 data: bytes) -> None:
    cache = ArtifactCache(folder / "cache")
    path = cache.path_for(KIND, KEY)
    _plant(path, data)
    assert _bounded(lambda: cache.get(KIND, KEY)) is None
    assert not os.path.lexists(path)


def test_a_real_cache_entry_still_reads(folder: Path) -> None:
    """Guard the test above: a genuine entry is a hit."""
    cache = ArtifactCache(folder / "cache-ok")
    tensors = {"relu1_1": torch.ones(2, 2)}
    cache.put(KIND, KEY, tensors)
    got = cache.get(KIND, KEY)
    assert got is not None and torch.equal(got["relu1_1"], tensors["relu1_1"])


# -- bounded JSON ---------------------------------------------------------------------------


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list('[]{}"\\:,a1 ')), max_size=400))
def test_bounded_json_raises_only_value_error(text: str) -> None:
    from pipeline.store.jsonio import loads

    with contextlib.suppress(ValueError):  # anything else would be a traceback
        loads(text.encode())


# -- the safetensors reader (networks and checkpoints; issue 27) -------------------------

def _small_network_bytes(metadata: dict[str, str]) -> bytes:
    from pipeline.engine.network import NetworkConfig, TransformNet
    from pipeline.engine.network_file import encode_network

    torch.manual_seed(0)
    return encode_network(TransformNet(NetworkConfig(width=8, blocks=1)).eval(), metadata)


@FUZZ
@given(metadata=st.dictionaries(st.text(min_size=1, max_size=30).filter(
           lambda k: k not in {"format", "sha256", "config"}),
           st.text(max_size=300), max_size=6),
       pad=st.integers(0, 600))
def test_a_network_with_any_metadata_and_header_length_reads_back(
        metadata: dict[str, str], pad: int) -> None:
    """Random metadata and any padding of the header (so every residue of its length):
    the network always reads back, with its metadata, and never as a pickle."""
    from support.safetensors_files import with_header_length

    from pipeline.engine.network_file import decode_network

    data = _small_network_bytes(metadata)
    data = with_header_length(data, int.from_bytes(data[:8], "little") + pad)
    event(f"first byte of the length {'0x80' if data[0] == 0x80 else 'other'}")
    loaded = decode_network(data, "fuzzed.safetensors")
    assert {k: loaded.metadata[k] for k in metadata} == metadata


@FUZZ
@given(junk=st.binary(max_size=64), keep=st.integers(0, 4000))
def test_any_bytes_are_a_network_or_one_refusal(junk: bytes, keep: int) -> None:
    """A valid file cut short and followed by random bytes, or random bytes alone: read, or
    refused with one WeightsError line, in bounded time."""
    from pipeline.engine.network_file import decode_network
    from pipeline.errors import WeightsError

    data = _small_network_bytes({})[:keep] + junk
    start = time.monotonic()
    try:
        decode_network(data, "fuzzed.safetensors")
    except WeightsError as exc:
        assert "\n" not in exc.message and exc.message.startswith("fuzzed.safetensors")
    assert time.monotonic() - start < SECONDS
