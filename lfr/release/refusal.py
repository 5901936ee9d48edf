"""``UpdateRefused``: why a bundle or an update was refused, as a stable reason and a text.

Every refusal of ``bundle_tar``, ``bundle_manifest``, ``bundle_reader`` and ``installer`` is
this one type (a ``UserInputError``, so ``lfr`` exits 2 with the text); ``reason`` is for tests
and scripts, the text names what was wrong for a person. Texts from the bundle go through
``guards.log_text.printable``.
"""

from __future__ import annotations

import enum

from guards.user_input import UserInputError


class RefusalReason(enum.StrEnum):
    """Why a bundle or an update was refused."""

    OVERSIZE = "oversize"
    """The bundle, the manifest or a member is over its size limit."""
    MALFORMED = "malformed"
    """Not a release bundle: a bad header, a member that is not a regular file, a name that
    is not allowed, a manifest that does not parse, members out of order or missing."""
    UNSUPPORTED_FORMAT = "unsupported_format"
    """A manifest format version this lfr does not read."""
    OTHER_KEY = "other_key"
    """Signed (or claiming to be) by another release key than the trusted one."""
    SIGNATURE = "signature"
    """A half, or both halves, of the signature do not verify."""
    FILE_CORRUPT = "file_corrupt"
    """A file's size or sha256 is not the signed one, or a file is missing or extra."""
    OTHER_ARCH = "other_arch"
    """Built for another architecture or Python than this unit's."""
    ROLLBACK = "rollback"
    """Not newer than the installed release or than the newest ever installed."""
    BUSY = "busy"
    """Another update holds the install lock."""
    INSTALL_FAILED = "install_failed"
    """The verified bundle could not be installed (venv, pip or a model check failed)."""
    LAYOUT = "layout"
    """The install layout under ROOT is not what ``lfr update apply`` left (a ``current``
    that is not a link into releases/, a release without its manifest)."""


class UpdateRefused(UserInputError):
    """A bundle or an update was refused; ``reason`` is stable, the text says what was wrong."""

    def __init__(self, reason: RefusalReason, problem: str) -> None:
        self.reason = reason
        """The stable reason."""
        super().__init__(problem)
