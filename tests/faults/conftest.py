"""Fixtures of the fault suite (the repository-wide ones in tests/conftest.py apply too)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from faults.helpers import make_styles


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """In-process runs use one thread, like the child processes (see helpers.CHILD_ENV)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def styles(tmp_path: Path) -> Path:
    """``tmp_path/styles`` with the preset ``tiny``; manifests in tmp_path find it."""
    return make_styles(tmp_path / "styles")
