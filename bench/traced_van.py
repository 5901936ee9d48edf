"""``lfr van`` with the delivery trace on: the van process of ``lfr bench uplink``.

    python -m bench.traced_van TRACE_FILE van --config van.toml [...]

Creates ``TRACE_FILE`` (it must not exist), writes the receiver's delivery marks and the data
channels' frame arrivals into it as JSON lines (``bench.trace_lines``), then runs the ``lfr``
command line with the remaining arguments exactly as ``python -m lfr`` does: the same van, the
same stop signals and exit codes. The trace holds unit ids, sequence numbers, frame sizes and
times only.
"""

from __future__ import annotations

import os
import sys

import lfr.__main__  # the stop signals first, as in ``python -m lfr``
from bench.trace_lines import install


def main() -> None:
    """Open the trace file, turn the trace on, run ``lfr`` with the rest of the arguments."""
    if len(sys.argv) < 3:
        sys.exit("usage: python -m bench.traced_van TRACE_FILE COMMAND [ARGS...]")
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
    install(fd, frames=True)
    sys.argv = ["lfr", *sys.argv[2:]]
    lfr.__main__.entry()


if __name__ == "__main__":
    main()
