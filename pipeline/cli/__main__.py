"""``python -m pipeline.cli``: the same as the ``stylize`` command (``python -m pipeline``
guards start-up against signals sooner: see :mod:`pipeline.launch`)."""

from pipeline.launch import main

main()
