"""A camera's source as text: what kind it is, what FFmpeg is asked to open, what logs may show.

A source is a file path, an ``rtsp://``/``rtsps://`` or ``http(s)://`` URL, or a V4L2 device
(``/dev/videoN``). URLs may carry credentials, which never reach a log or a message.
"""

from __future__ import annotations

import os

LIVE_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "/dev/video")
"""Sources that are live: reconnected with backoff when they fail, never "finished"."""


def is_live_source(source: str) -> bool:
    """RTSP, HTTP(S) and devices are live; anything else is a file."""
    return source.startswith(LIVE_PREFIXES)


def ffmpeg_url(source: str) -> str:
    """What FFmpeg is asked to open. A file goes through FFmpeg's ``file:`` protocol with its
    absolute path: a file named ``pipe:0``, ``concat:...`` or ``subfile:...`` is that file,
    never another protocol (the checked file is the file that is read)."""
    if is_live_source(source):
        return source
    return f"file:{os.path.abspath(source)}"


def redact(source: str) -> str:
    """A URL without its credentials, for logs.

    The credentials end at the last ``@`` of the authority (FFmpeg accepts a raw ``@`` in a
    password), and the authority ends at the first ``/`` after the scheme.
    """
    if "://" not in source:
        return source
    scheme, rest = source.split("://", 1)
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return source
    return f"{scheme}://***@{authority.rsplit('@', 1)[1]}{slash}{path}"


def redact_in(text: str, source: str) -> str:
    """``text`` with every occurrence of ``source`` replaced by its redacted form."""
    return text.replace(source, redact(source)) if source != redact(source) else text
