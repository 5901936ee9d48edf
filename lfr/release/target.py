"""The platforms a release is built for: an architecture, CPython 3.11, glibc Linux.

``ReleaseTarget`` answers the two questions a build asks about its target without looking at
the machine it runs on: which lines of the universal lock apply there (the environment that
PEP 508 markers are evaluated against), and which wheel platform tags run there (what ``pip
download --platform`` is given).

Guarantees: the marker environment and the tags are fixed tables, never read from the running
machine (building for aarch64 on x86_64 gives the same bundle as building on aarch64); the
glibc ceiling is the lowest of the supported boards' systems, so every wheel chosen runs on
all of them.
"""

from __future__ import annotations

import enum
import platform
import sys

PYTHON_VERSION = (3, 11)
"""The CPython minor version releases are built for (the lock's ``--python-version``)."""
PYTHON_TAG = "cp311"
"""The wheel tag of that interpreter and of its ABI."""
MAX_GLIBC_MINOR = 35
"""Wheels up to manylinux_2_35: Ubuntu 22.04 (JetPack 6, Jetson Orin) has glibc 2.35,
Raspberry Pi OS bookworm 2.36. A wheel needing a newer glibc would not load on a Jetson."""
MIN_GLIBC_MINOR = 17
"""manylinux_2_17 (= manylinux2014) is the oldest tag aarch64 wheels use."""


class Arch(enum.StrEnum):
    """A unit's CPU architecture, as ``platform.machine()`` and PEP 508 name it."""

    X86_64 = "x86_64"
    AARCH64 = "aarch64"

    def marker_environment(self) -> dict[str, str]:
        """The PEP 508 environment of a unit of this architecture running CPython 3.11 on
        Linux: what the lock's markers are evaluated against."""
        return {
            "implementation_name": "cpython",
            "implementation_version": "3.11.0",
            "os_name": "posix",
            "platform_machine": self.value,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": "3.11.0",
            "python_version": "3.11",
            "sys_platform": "linux",
        }

    def platform_tags(self) -> tuple[str, ...]:
        """The wheel platform tags that run on such a unit, newest glibc first (for ``pip
        download --platform``; pip 23 does not expand a manylinux_2_X tag to older ones)."""
        tags = [f"manylinux_2_{minor}_{self.value}"
                for minor in range(MAX_GLIBC_MINOR, MIN_GLIBC_MINOR - 1, -1)]
        tags.append(f"manylinux2014_{self.value}")
        if self is Arch.X86_64:
            tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
        return tuple(tags)


def running_arch() -> str:
    """This machine's architecture as ``platform.machine()`` names it (may be none of
    ``Arch``)."""
    return platform.machine()


def running_python_tag() -> str:
    """The wheel tag of the interpreter running this code (``cp311`` on a unit)."""
    return f"cp{sys.version_info.major}{sys.version_info.minor}"
