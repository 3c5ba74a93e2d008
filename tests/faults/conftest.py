"""Fixtures of the fault suite (the repository-wide ones in tests/conftest.py apply too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faults.helpers import make_styles


@pytest.fixture
def styles(tmp_path: Path) -> Path:
    """``tmp_path/styles`` with the preset ``tiny``; manifests in tmp_path find it."""
    return make_styles(tmp_path / "styles")


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """In-process runs use one thread, like the child processes (see helpers.CHILD_ENV)."""
