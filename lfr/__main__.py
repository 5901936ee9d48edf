"""``python -m lfr`` and the ``lfr`` console script (``lfr.__main__:entry``).

The stop signals are installed the moment this module is imported, before the command line and
anything heavy load, so a Ctrl-C or SIGTERM during start-up already stops cleanly (only the
interpreter's own start, before any of our code runs, keeps Python's default behaviour).
"""

import os
from typing import NoReturn

from guards.exit_codes import StoppedBySignal
from lfr.stop_signals import install_stop_signals, stop_signal_received

install_stop_signals()


def entry() -> NoReturn:
    """Load the command line and run the command; a stop signal while loading ends here."""
    try:
        from lfr.cli import run_and_exit  # noqa: PLC0415 - loaded after the signal handlers
    except (KeyboardInterrupt, StoppedBySignal) as stop:
        received = stop_signal_received()
        stopped = stop if isinstance(stop, StoppedBySignal) else StoppedBySignal(received or 2)
        os.write(2, f"lfr: stopped by {stopped}\n".encode())
        os._exit(stopped.exit_code)
    run_and_exit()


if __name__ == "__main__":
    entry()
