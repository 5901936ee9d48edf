"""The exit codes of every lfr-edge process, in one place (README "Exit codes" mirrors this).

Scripts and systemd act on these, so each means one thing only: a failure never exits 0, and
the program's own fault (70) is never reported as the user's (2).
"""

from __future__ import annotations

import enum
import signal


class ExitCode(enum.IntEnum):
    """Why a command or node ended."""

    OK = 0
    """Done, and everything it reports is true."""
    TARGET_MISSED = 1
    """A benchmark ran but missed its target (or its regression guard)."""
    VERIFICATION_FAILED = 1  # an alias of 1: "the check ran and what it checked failed"
    """``lfr audit verify``: the audit log was tampered with (the output names the first bad
    record and why)."""
    SELF_TEST_FAILED = 1  # an alias of 1, as above
    """``lfr edge --self-test``: it ran, and at least one item failed or could not be checked
    (its line says which and why)."""
    BAD_INPUT = 2
    """A file, flag, source or configuration is unusable; the message names it."""
    NO_USABLE_FACE = 3
    """``verify``: a photo holds no face good enough to compare."""
    INTERNAL_ERROR = 70
    """EX_SOFTWARE: a bug or a failure the supervisors could not contain (traceback in the
    log), including the root supervisor giving up."""
    OUTPUT_FAILED = 74
    """EX_IOERR: results could not be written (stdout closed, disk full): whatever the command
    found, nobody received it."""
    INTERRUPTED = 128 + signal.SIGINT
    """Stopped by Ctrl-C (SIGINT): 130."""
    TERMINATED = 128 + signal.SIGTERM
    """Stopped by SIGTERM: 143."""


def for_signal(signum: int) -> ExitCode:
    """The exit code of a process stopped by signal ``signum`` (SIGINT or SIGTERM)."""
    return ExitCode.INTERRUPTED if signum == signal.SIGINT else ExitCode.TERMINATED


class StoppedBySignal(BaseException):
    """Raised out of a command that SIGINT or SIGTERM stopped; the command line turns it into
    ``exit_code`` after the command has printed what it did. A ``BaseException``, like
    ``KeyboardInterrupt``, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = for_signal(signum)
        super().__init__(signal.Signals(signum).name)
