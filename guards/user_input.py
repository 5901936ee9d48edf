"""``UserInputError``: input a person gave us is wrong, and the message says what and where.

The command line maps this family, and only this family, to exit code 2 ("bad input"). Any other
exception is the program's fault: an internal error (exit 70) with its traceback in the log,
never dressed up as the user's mistake.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """A file, flag or configuration value is unusable; the text names it and the problem.

    Derives from ``ValueError`` so code that validates values can raise it where a
    ``ValueError`` is expected.
    """
