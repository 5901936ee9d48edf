"""Audit records: the privacy rule on fields, the canonical line and its hash, strict parsing."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import numpy as np
import pytest

from audit.kinds import AuditKind
from audit.record import (
    GENESIS_HASH,
    MAX_FIELDS,
    AuditFieldError,
    AuditRecordError,
    check_fields,
    format_time,
    make_record,
    parse_record,
)

EMBEDDING = np.random.default_rng(7).standard_normal(192).astype(np.float32)  # 768 bytes


def record(**fields: object) -> bytes:
    """The line (without its newline) of a first record holding ``fields``."""
    made = make_record(seq=1, time=format_time(1_700_000_000.25), node="unit-1",
                       kind=AuditKind.ALERT_RAISED, fields=check_fields(fields),
                       prev=GENESIS_HASH)
    return made.line()[:-1]


@pytest.mark.parametrize("value", [
    EMBEDDING,                       # a numpy float32 array
    EMBEDDING[0],                    # a numpy float32 scalar
    np.float64(0.5),                 # a float subclass: refused too, exact types only
    EMBEDDING.tobytes(),             # bytes
    bytearray(EMBEDDING.tobytes()),
    memoryview(EMBEDDING.tobytes()),
    EMBEDDING.tolist(),              # a list
    (1, 2),
    {"x": 1},                        # nested data
    {1, 2},
    AuditKind.ALERT_RAISED,          # an enum: its value must be passed
], ids=lambda value: type(value).__name__)
def test_only_flat_scalars_can_be_written(value: object) -> None:
    with pytest.raises(AuditFieldError, match=r"audit field 'crop': .* cannot be written"):
        check_fields({"subject": "s1", "crop": value})


@pytest.mark.parametrize("text", [EMBEDDING.tobytes().hex(),
                                  base64.b64encode(EMBEDDING.tobytes()).decode("ascii")],
                         ids=["hex", "base64"])
def test_an_embedding_cannot_be_smuggled_in_as_text(text: str) -> None:
    assert len(EMBEDDING.tobytes()) == 768
    assert len(text) > 512
    with pytest.raises(AuditFieldError, match=r"audit field 'note': text of \d+ characters, "
                                              r"over the limit of 512"):
        check_fields({"note": text})


@pytest.mark.parametrize("text", ["a\nforged line", "bell\x07", "esc\x1b[2J", "rtl\u202e",
                                  "nul\x00"])
def test_unprintable_text_is_refused(text: str) -> None:
    with pytest.raises(AuditFieldError, match=r"audit field 'reason': text holds control"):
        check_fields({"reason": text})


@pytest.mark.parametrize("key", ["", "Camera", "1st", "a-b", "a" * 41, "é", "a b"])
def test_field_names_are_short_identifiers(key: str) -> None:
    with pytest.raises(AuditFieldError, match=r"is not a short identifier"):
        check_fields({key: 1})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 2**63, -(2**63) - 1])
def test_numbers_are_finite_and_64_bit(value: float) -> None:
    with pytest.raises(AuditFieldError, match=r"audit field 'score'"):
        check_fields({"score": value})


def test_at_most_32_fields() -> None:
    check_fields({f"f{i}": i for i in range(MAX_FIELDS)})
    with pytest.raises(AuditFieldError, match=r"33 audit fields, over the limit of 32"):
        check_fields({f"f{i}": i for i in range(MAX_FIELDS + 1)})


def test_the_allowed_values_are_kept_and_read_only() -> None:
    fields = {"subject": "s1", "score": 0.71, "seq": 3, "confirmed": True, "note": None,
              "empty": "", "accent": "Zoë", "big": 2**63 - 1, "a" * 40: 0}
    checked = check_fields(fields)
    assert dict(checked) == fields
    with pytest.raises(TypeError):
        checked["score"] = 1.0  # type: ignore[index]


def test_the_line_is_canonical_json_and_the_hash_covers_all_but_itself() -> None:
    line = record(subject="s1", score=0.71, accent="Zoë")
    value = json.loads(line)
    assert line == json.dumps(value, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False).encode("utf-8")
    assert "Zoë".encode() in line  # non-ASCII as itself, not \u escapes
    assert set(value) == {"seq", "time", "node", "kind", "fields", "prev", "hash"}
    assert value["time"] == "2023-11-14T22:13:20.250000Z"
    body = {k: v for k, v in value.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert value["hash"] == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert value["prev"] == "0" * 64


def test_a_record_reads_back_as_written() -> None:
    line = record(subject="s1", score=0.71, seq=9, ok=False, note=None)
    parsed = parse_record(line)
    assert parsed.line() == line + b"\n"
    assert parsed.kind is AuditKind.ALERT_RAISED
    assert dict(parsed.fields) == {"subject": "s1", "score": 0.71, "seq": 9, "ok": False,
                                   "note": None}


def test_fields_that_look_like_the_records_own_keys_read_back() -> None:
    line = record(hash="0" * 64, kind="offer", fields="x", note='},"hash":"')
    assert dict(parse_record(line).fields) == {"hash": "0" * 64, "kind": "offer",
                                               "fields": "x", "note": '},"hash":"'}


def test_format_time_refuses_a_clock_outside_the_years_it_can_write() -> None:
    assert format_time(0.0) == "1970-01-01T00:00:00.000000Z"
    for bad in (-1.0, float("nan"), 1e12):
        with pytest.raises(ValueError, match="not a time from 1970 to 9999"):
            format_time(bad)


def rehashed(value: dict[str, object]) -> bytes:
    """``value`` as a canonical line with its hash recomputed: only the content is wrong."""
    body = {k: v for k, v in value.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    value = {**body, "hash": hashlib.sha256(canonical.encode("utf-8")).hexdigest()}
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def edited(**changes: object) -> dict[str, object]:
    value: dict[str, object] = json.loads(record(subject="s1"))
    value.update(changes)
    return value


@pytest.mark.parametrize(("line", "reason"), [
    (b"\xff\xfe", "not UTF-8"),
    (b"", "not JSON"),
    (b"[1]", "not a JSON object"),
    (b"[" * 20_000, "not JSON"),
    (b'{"seq":NaN}', "not JSON"),
    (rehashed(edited(extra=1)), r"unknown: extra"),
    (rehashed(edited(seq=0)), "seq is not a whole number"),
    (rehashed(edited(seq=True)), "seq is not a whole number"),
    (rehashed(edited(time="2023-11-14 22:13:20")), "time is not a UTC time"),
    (rehashed(edited(time="2023-02-30T00:00:00.000000Z")), "time is not a UTC time"),
    (rehashed(edited(node="")), "node is not a node id"),
    (rehashed(edited(kind="face_saved")), "kind face_saved is not a kind this version knows"),
    (rehashed(edited(fields={"crop": [1, 2]})), "a field breaks the audit's rules"),
    (rehashed(edited(fields={"note": "x" * 600})), "a field breaks the audit's rules"),
    (rehashed(edited(prev="A" * 64)), "prev is not 64 lowercase hex digits"),
    (json.dumps(edited(), sort_keys=True).encode(), "not in the canonical form"),
    (record(subject="s1").replace(b'"seq":1', b'"seq":1,"seq":1'), "not in the canonical form"),
    (record(subject="s1").replace(b"s1", b"s2"), "its hash does not match its content"),
], ids=lambda item: item if isinstance(item, str) else None)
def test_parse_refuses_anything_but_a_valid_canonical_record(line: bytes, reason: str) -> None:
    with pytest.raises(AuditRecordError, match=reason):
        parse_record(line)


def test_parse_refuses_random_bytes() -> None:
    for _ in range(200):
        with pytest.raises(AuditRecordError):
            parse_record(os.urandom(64))
