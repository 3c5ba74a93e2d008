"""Shared fixtures: tiny images, a fast preset, an isolated cache.

Helpers that tests import live in ``tests/support/`` (pictures, presets, engine runs);
this module holds fixtures only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.images import gradient_photo
from support.presets import FAST, write_preset

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n auto` runs one worker per core: each keeps to one thread (and so do the
    # `stylize` processes some tests start), or the workers' OpenMP threads fight for cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own cache folder and no user style folders."""
    monkeypatch.setenv("STYLIZE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("STYLIZE_STYLES_PATH", raising=False)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """torch on one thread for a module of tiny-image tests.

    Tiny images gain nothing from threads, and on a busy machine OpenMP threads that spin
    against other processes make each step many times slower.  The `stylize` child
    processes of the fault tests use one thread too (faults/helpers.CHILD_ENV).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    gradient_photo().save(path)
    return path


@pytest.fixture
def fast_preset_dir(tmp_path: Path) -> Path:
    """A user style folder holding the preset 'fast' (Starry Night, tiny and quick)."""
    folder = tmp_path / "user-styles"
    write_preset(folder, "fast", FAST, description="tiny test preset", painting_name="paint.png")
    return folder
