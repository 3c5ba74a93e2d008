"""``python -m pipeline``: the same as the ``stylize`` command."""

from pipeline.launch import main

main()
