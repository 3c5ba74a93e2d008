"""The ``stylize`` command line: the only package that prints or exits.

Each command lives in the module named after it; :mod:`~pipeline.cli.common` holds
what they share (the consoles, errors into exit statuses, stopping on signals),
and :mod:`~pipeline.cli.knobs` makes the engine options from the settings model.
Heavy modules (torch above all) are imported inside the commands that need them,
so ``stylize --help``, ``styles list`` and ``run --dry-run`` start fast.
"""

from __future__ import annotations

from pipeline.cli import batch, explain, image, styles, train, watching  # noqa: F401  (registration)
from pipeline.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
