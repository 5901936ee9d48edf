"""``printable``: an untrusted name made safe to log or print on one line.

Camera ids, source URLs, file names, subject ids and peer names come from people and peers we do
not trust. Written raw, a newline in one of them forges a log line (``x\\nCRITICAL fake``) and an
ANSI escape rewrites the operator's terminal. ``printable`` escapes every character that is not
printable (C0, DEL, C1, Unicode line/paragraph separators, bidi overrides...) the way Python
writes them in a string literal, so the text stays readable and cannot break out of its line.
Backslashes are left as they are, so text that was made printable once (a message holding an
escaped name) passes through again unchanged.
"""

from __future__ import annotations

MAX_LOGGED_CHARS = 256
"""Longer text is cut here (with a note of how much was cut): a log line is not a dump."""

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    # str.isprintable() is False for the C0/C1 controls and DEL, the "format" characters
    # (bidi overrides reorder what a terminal shows), line and paragraph separators, spaces
    # other than " ", surrogates, private-use and unassigned code points.
    if char.isprintable():
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: object, *, max_chars: int = MAX_LOGGED_CHARS) -> str:
    """``text`` (``str()`` of anything) with control characters escaped, at most ``max_chars``
    characters of it kept."""
    raw = text if isinstance(text, str) else str(text)
    cut = len(raw) - max_chars
    kept = raw[:max_chars] if cut > 0 else raw
    escaped = "".join(_escape(char) for char in kept)
    return f"{escaped}...({cut} more chars)" if cut > 0 else escaped
