"""``AuditRecord``: one line of an audit log, its canonical bytes, its hash and its checks.

A record is one JSON object on one line, UTF-8, ending in ``\\n``, in canonical form: keys
sorted, no spaces (separators ``,`` and ``:``), non-ASCII characters written as themselves
(``ensure_ascii=False``), no NaN or infinity. Its keys are exactly ``seq`` (1, 2, 3...),
``time`` (UTC, ``2025-01-31T12:00:00.123456Z``), ``node`` (the node id), ``kind`` (an
``AuditKind`` value), ``fields`` (a flat map), ``prev`` (the previous record's ``hash``; 64
zeros for the first) and ``hash``: the lowercase hex sha256 of the canonical JSON of the record
**without** its ``hash`` key. So a record's hash covers its ``prev``, and each record commits to
every record before it.

Privacy, enforced here for every record written and every record read: ``fields`` holds at most
``MAX_FIELDS`` keys matching ``[a-z][a-z0-9_]{0,39}``, and each value is exactly a ``str``
(at most ``MAX_TEXT_CHARS`` printable characters), ``int`` (64-bit signed), finite ``float``,
``bool`` or ``None``. Bytes, arrays (numpy's included), lists, maps and every other type are
refused with ``AuditFieldError`` naming the field, so no face crop or embedding can be written,
and one cannot be smuggled in as text either: the 768 bytes of an embedding are 1,536 hex
digits or 1,024 base64 characters, over the text limit.

``parse_record`` is strict: a line is accepted only if it is exactly the canonical encoding of
a valid record whose hash matches its content, so any change to a line's bytes is either a
malformed line or a hash mismatch.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from audit.kinds import AuditKind
from guards.log_text import printable
from runtime.link_keys import valid_peer_name

GENESIS_HASH = "0" * 64
"""The ``prev`` of a log's first record, and the head of an empty log."""
MAX_RECORD_BYTES = 16 * 1024
"""Longest line, its ``\\n`` included: a record is refused when written and a line when read
beyond this, so reading a log never holds more than this per line."""
MAX_FIELDS = 32
"""Most fields a record holds."""
MAX_TEXT_CHARS = 512
"""Longest text value, in characters: ids, versions, hashes and reasons, never data."""
MIN_INT, MAX_INT = -(2**63), 2**63 - 1
"""Integer values are 64-bit signed, so every JSON reader takes them as they are."""
MAX_EPOCH_S = 253_402_300_800.0
"""Year 10000: a clock past it cannot be written in the four-digit year of ``time``."""

FieldValue = str | int | float | bool | None
"""What a field may hold: flat scalars only (the privacy rule)."""
_FIELD_TYPES = (str, int, float, bool, type(None))
# Exact types, not isinstance: a numpy.float64 (a float subclass), an IntEnum or a str subclass
# with its own __str__ would be written as something other than what the caller sees.

_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_RECORD_KEYS = frozenset({"seq", "time", "node", "kind", "fields", "prev", "hash"})
_KINDS = {kind.value: kind for kind in AuditKind}


class AuditFieldError(ValueError):
    """A field given to the audit log is refused (privacy rule or limits); names the field."""


class AuditRecordError(ValueError):
    """A line of an audit log is not a valid record; the text says why in plain words."""


def check_field(key: str, value: object) -> None:
    """Refuse (``AuditFieldError``) a field the privacy rule or the limits do not allow."""
    if type(key) is not str or not _KEY.fullmatch(key):
        raise AuditFieldError(f"audit field name {printable(repr(key), max_chars=60)} is not a "
                              "short identifier ([a-z][a-z0-9_]{0,39})")
    kind = type(value)
    if kind not in _FIELD_TYPES:
        raise AuditFieldError(f"audit field {key!r}: a {kind.__module__}.{kind.__qualname__} "
                              "cannot be written; only str, int, float, bool or None (no bytes, "
                              "arrays, lists or maps: the audit never holds face data)")
    if type(value) is str:
        if len(value) > MAX_TEXT_CHARS:
            raise AuditFieldError(f"audit field {key!r}: text of {len(value)} characters, over "
                                  f"the limit of {MAX_TEXT_CHARS} (ids, hashes and reasons "
                                  "only, never data)")
        if not value.isprintable():
            raise AuditFieldError(f"audit field {key!r}: text holds control or other "
                                  "unprintable characters (pass it through "
                                  "guards.log_text.printable)")
    elif type(value) is int and not MIN_INT <= value <= MAX_INT:
        raise AuditFieldError(f"audit field {key!r}: integer outside the 64-bit signed range")
    elif type(value) is float and not math.isfinite(value):
        raise AuditFieldError(f"audit field {key!r}: {value!r} is not a finite number")


def check_fields(fields: Mapping[str, object]) -> Mapping[str, FieldValue]:
    """A read-only copy of ``fields`` once every field passed ``check_field``."""
    if len(fields) > MAX_FIELDS:
        raise AuditFieldError(f"{len(fields)} audit fields, over the limit of {MAX_FIELDS}")
    for key, value in fields.items():
        check_field(key, value)
    return types.MappingProxyType(cast("dict[str, FieldValue]", dict(fields)))


def format_time(epoch_s: float) -> str:
    """``epoch_s`` (seconds since 1970, UTC) as a record's ``time``, to the microsecond."""
    if not (math.isfinite(epoch_s) and 0 <= epoch_s < MAX_EPOCH_S):
        raise ValueError(f"clock reading {epoch_s!r} is not a time from 1970 to 9999")
    return datetime.datetime.fromtimestamp(epoch_s, datetime.UTC).strftime(_TIME_FORMAT)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One record of an audit log, as written and as read back (``parse_record``)."""

    seq: int
    """Its place in the log: 1 for the first, then one more for each (no gaps)."""
    time: str
    """When it was written, UTC with microseconds (``format_time``); from the node's clock,
    which may step back: a later record may carry an earlier time."""
    node: str
    """The id of the node whose log it is; the same in every record of one log."""
    kind: AuditKind
    """What happened."""
    fields: Mapping[str, FieldValue]
    """What it is about (``check_fields``); read-only."""
    prev: str
    """The previous record's ``hash`` (``GENESIS_HASH`` for the first)."""
    hash: str
    """Lowercase hex sha256 of ``body()``; ``line()`` holds it too."""

    def body(self) -> dict[str, Any]:
        """The record without its hash: what the hash is computed over."""
        return {"seq": self.seq, "time": self.time, "node": self.node, "kind": self.kind.value,
                "fields": dict(self.fields), "prev": self.prev}

    def line(self) -> bytes:
        """The canonical line the log holds, ``\\n`` included."""
        return _canonical({**self.body(), "hash": self.hash}) + b"\n"

    def as_json(self) -> dict[str, Any]:
        """The record as a JSON object (what ``line()`` encodes)."""
        return {**self.body(), "hash": self.hash}


def make_record(*, seq: int, time: str, node: str, kind: AuditKind,
                fields: Mapping[str, FieldValue], prev: str) -> AuditRecord:
    """A record with its hash computed; ``fields`` must have passed ``check_fields``."""
    unhashed = AuditRecord(seq, time, node, kind, fields, prev, GENESIS_HASH)
    return AuditRecord(seq, time, node, kind, fields, prev, _hash(unhashed.body()))


def parse_record(line: bytes) -> AuditRecord:
    """The record ``line`` (without its ``\\n``) holds, if it is exactly the canonical line of
    a valid record whose hash matches; else ``AuditRecordError`` saying why. Checks the record
    alone: its place in the chain is ``audit.verify``'s to check."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise AuditRecordError("the line is not UTF-8 text") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:  # [[[[... nested deeper than the parser goes
        raise AuditRecordError("the line is not JSON (nested too deeply)") from None
    except ValueError as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise AuditRecordError(f"the line is not JSON ({reason})") from None
    if not isinstance(value, dict):
        raise AuditRecordError("the line is not a JSON object")
    record = _record_from(value)
    if record.line() != line + b"\n":
        raise AuditRecordError("the line is not in the canonical form the log writes "
                               "(spacing, key order, escapes or number format differ)")
    if hashlib.sha256(_without_hash(line, record.hash)).hexdigest() != record.hash:
        raise AuditRecordError("its hash does not match its content: the record was changed")
    return record


def _without_hash(line: bytes, hash_hex: str) -> bytes:
    """The canonical JSON of the record without its hash, cut from its canonical ``line``
    (one encoding per record read instead of two: verifying a long log is that much faster).
    Keys are sorted, so the record's ``"hash":"..."`` member always follows the ``fields``
    object and precedes ``kind``: ``},"hash":"<hex>",``. Fields are flat, so a ``}`` followed
    by ``,`` occurs nowhere else outside a string, and inside a string every ``"`` is
    escaped: the marker is found exactly once, at that place."""
    marker = b'},"hash":"' + hash_hex.encode("ascii") + b'",'
    at = line.index(marker)
    return line[: at + 2] + line[at + len(marker):]


def _record_from(value: dict[str, Any]) -> AuditRecord:
    keys = set(value)
    if keys != _RECORD_KEYS:
        missing = ", ".join(sorted(_RECORD_KEYS - keys)) or "none"
        extra = ", ".join(printable(k, max_chars=40) for k in sorted(keys - _RECORD_KEYS))
        raise AuditRecordError(f"not the keys of a record (missing: {missing}; unknown: "
                               f"{extra or 'none'})")
    seq, time, node = value["seq"], value["time"], value["node"]
    if type(seq) is not int or seq < 1:
        raise AuditRecordError("seq is not a whole number >= 1")
    if not isinstance(time, str) or not _valid_time(time):
        raise AuditRecordError("time is not a UTC time like 2025-01-31T12:00:00.000000Z")
    if not isinstance(node, str) or not valid_peer_name(node):
        raise AuditRecordError("node is not a node id (1-64 printable characters)")
    kind = _KINDS.get(value["kind"]) if isinstance(value["kind"], str) else None
    if kind is None:
        raise AuditRecordError(f"kind {printable(value['kind'], max_chars=60)} is not a kind "
                               "this version knows")
    if not isinstance(value["fields"], dict):
        raise AuditRecordError("fields is not a JSON object")
    try:
        fields = check_fields(value["fields"])
    except AuditFieldError as exc:
        raise AuditRecordError(f"a field breaks the audit's rules: {exc}") from None
    for name in ("prev", "hash"):
        if not isinstance(value[name], str) or not _HEX_HASH.fullmatch(value[name]):
            raise AuditRecordError(f"{name} is not 64 lowercase hex digits")
    return AuditRecord(seq, time, node, kind, fields, value["prev"], value["hash"])


def _valid_time(text: str) -> bool:
    if not _TIME.fullmatch(text):
        return False
    try:  # the day exists (not 02-30); fromisoformat is many times faster than strptime
        datetime.datetime.fromisoformat(text[:-1])
    except ValueError:
        return False
    return True


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(body)).hexdigest()
