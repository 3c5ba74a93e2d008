"""``python -m pipeline.cli``: the same as the ``stylize`` command."""

from pipeline.cli import main

main()
