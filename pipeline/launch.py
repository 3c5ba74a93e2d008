"""The ``stylize`` command's entry point: signals are handled before anything heavy loads.

Importing the command line (Typer, Rich, pydantic, every command module) takes a good part
of a second.  A Ctrl-C in that window printed a ``KeyboardInterrupt`` traceback, and
SIGTERM or SIGHUP (a service stopped, a terminal closed) ended the process by the signal
instead of the documented status 130.  So this module, which imports nothing but the
standard library, installs a guard first: any of the three signals during start-up says
``interrupted`` and exits 130 at once (nothing has been written yet).  Once the command
line is loaded, SIGINT goes back to Python's own handling, which ``cli.common.errors``
turns into the same line and status; SIGTERM and SIGHUP keep exiting 130 wherever a
command has not installed its own stop handling (:class:`~pipeline.cli.common.StopFlag`,
which stops work between steps).
"""

from __future__ import annotations

import os
import signal
from types import FrameType

#: The status of a command stopped by a signal (as a shell reports one stopped by SIGINT).
INTERRUPTED = 130
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _leave(signum: int, frame: FrameType | None) -> None:
    try:
        os.write(2, b"interrupted\n")
    finally:
        os._exit(INTERRUPTED)


def main() -> None:
    for sig in _SIGNALS:
        signal.signal(sig, _leave)
    from pipeline.cli import app

    signal.signal(signal.SIGINT, signal.default_int_handler)
    app()


if __name__ == "__main__":
    main()
