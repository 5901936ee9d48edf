"""Event bodies: a MatchAlert through seal and open, every field check, fuzzing, and privacy."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import struct
import tracemalloc
import warnings
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from actors.unit.event_body import (
    EVENT_BODIES,
    MAX_CROP_BYTES,
    MAX_ENCODED_BODY_BYTES,
    MAX_EVENT_ID_CHARS,
    MAX_SUBJECT_ID_CHARS,
    AlertBody,
    CameraHealth,
    EventBodyError,
    HealthBody,
    alert_body,
    check_crop_jpeg,
    decode_body,
    encode_body,
    event_kind,
)
from actors.unit.match_alert import MatchAlert
from runtime.codec import Codec, EncodeError
from runtime.message import default_registry
from runtime.schema import MessageRef, OptionalType, ScalarType, SequenceType
from secure.envelope import MAX_BODY_BYTES, EventKind, open_envelope, seal_envelope
from tests.secure.envelope_support import UNIT, VAN_KEY, Signers

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Writes what the checks would refuse, to show that decode_body refuses it.
UNCHECKED = Codec(EVENT_BODIES, max_message_bytes=4 * MAX_ENCODED_BODY_BYTES)


def jpeg(width: int = 64, height: int = 80, *, noise: bool = False) -> bytes:
    rng = np.random.default_rng(7)
    pixels = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8) if noise
              else np.full((height, width, 3), 128, dtype=np.uint8))
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


CROP = jpeg()


def match_alert(**changes: Any) -> MatchAlert:
    alert = MatchAlert(
        alert_id="unit-7/cam0/12/lin_manuel_miranda/140", subject="lin_manuel_miranda",
        score=0.7312, threshold=0.6, track=12, camera="cam0", t_s=5.525,
        captured_at=1_732_590_000.125, frame_index=140, box=(210.5, 40.25, 330.0, 190.75),
        hits=3, crop_jpeg=CROP)
    return dataclasses.replace(alert, **changes)


def health(**changes: Any) -> HealthBody:
    body = HealthBody(
        unit_time=1_732_590_010.5, uptime_s=3600.0,
        cameras=(CameraHealth("cam0", 29.97, 107_892), CameraHealth("cam1", 15.0, 54_000)),
        faces_seen=1200, faces_rejected=300, alerts=4, outbox_depth=2,
        outbox_oldest_age_s=1.5, outbox_full=False, watchlist_version=0,
        model_ids=("blazeface-short-range", "edgeface-xs"))
    return dataclasses.replace(body, **changes)


# -- round trips ---------------------------------------------------------------------------


def test_a_match_alert_arrives_sealed_and_opened_as_the_same_alert() -> None:
    alert = match_alert()
    body = alert_body(alert, watchlist_version=0)
    envelope = seal_envelope(encode_body(body), kind=event_kind(body), unit_id=UNIT.node_id,
                             sequence=5, signing_key=UNIT.signing,
                             van_key=VAN_KEY.public_key)
    opened = open_envelope(envelope, signers=Signers(UNIT), van_key=VAN_KEY)
    assert opened.header.kind is EventKind.ALERT
    decoded = decode_body(opened.body)
    assert decoded == body
    assert isinstance(decoded, AlertBody)
    assert (decoded.event_id, decoded.camera_id, decoded.subject_id) == (
        alert.alert_id, alert.camera, alert.subject)
    assert (decoded.captured_at, decoded.score, decoded.threshold, decoded.track,
            decoded.box, decoded.hits, decoded.crop_jpeg) == (
        alert.captured_at, alert.score, alert.threshold, alert.track, alert.box, alert.hits,
        alert.crop_jpeg)
    assert isinstance(decoded.box, tuple)


def test_a_health_report_round_trips_as_a_health_kind() -> None:
    body = health(outbox_oldest_age_s=None, outbox_full=True, cameras=(), model_ids=())
    assert event_kind(body) is EventKind.HEALTH
    assert decode_body(encode_body(body)) == body


def test_bodies_are_in_a_registry_of_their_own() -> None:
    body = alert_body(match_alert(), 0)
    with pytest.raises(EncodeError):
        Codec().encode(body)  # the link's registry cannot carry a body in the clear
    assert default_registry.spec_for_class(AlertBody) is None
    with pytest.raises(EventBodyError, match="unknown message type code 110"):
        decode_body(Codec().encode(match_alert()))
    with pytest.raises(EventBodyError, match="CameraHealth is not an event body"):
        decode_body(UNCHECKED.encode(CameraHealth("cam0", 1.0, 1)))


def test_the_largest_alert_body_fits_one_envelope() -> None:
    # Ids at their longest in 4-byte UTF-8 characters, the crop at its limit (padded with
    # JPEG comment segments).
    crop = jpeg(1024, 1024, noise=True)[:2]
    base = jpeg(1024, 1024)
    while len(crop) + len(base) - 2 < MAX_CROP_BYTES:
        chunk = min(65_533, MAX_CROP_BYTES - len(crop) - len(base) + 2 - 4)
        crop += b"\xff\xfe" + struct.pack(">H", chunk + 2) + b"c" * chunk
    crop += base[2:]
    assert len(crop) == MAX_CROP_BYTES
    body = alert_body(match_alert(alert_id="\U0001d518" * MAX_EVENT_ID_CHARS,
                                  camera="\U0001d518" * 128,
                                  subject="\U0001d518" * MAX_SUBJECT_ID_CHARS,
                                  crop_jpeg=crop, track=2**63 - 1, hits=1_000_000),
                      watchlist_version=2**63 - 1)
    data = encode_body(body)
    assert len(data) <= MAX_BODY_BYTES
    seal_envelope(data, kind=EventKind.ALERT, unit_id=UNIT.node_id, sequence=1,
                  signing_key=UNIT.signing, van_key=VAN_KEY.public_key)
    assert decode_body(data) == body


def test_a_body_over_the_limit_is_refused_before_it_is_read() -> None:
    with pytest.raises(EventBodyError, match="over the limit"):
        decode_body(b"\x93" + b"\x00" * MAX_ENCODED_BODY_BYTES)


# -- field checks ----------------------------------------------------------------------------

BAD_ALERTS: list[tuple[str, dict[str, Any]]] = [
    ("event_id", {"event_id": ""}),
    ("event_id", {"event_id": "x" * (MAX_EVENT_ID_CHARS + 1)}),
    ("event_id", {"event_id": "a\nCRITICAL forged"}),
    ("event_id", {"event_id": "   "}),
    ("camera_id", {"camera_id": "c" * 129}),
    ("camera_id", {"camera_id": "cam\x1b[2J"}),
    ("subject_id", {"subject_id": "s" * (MAX_SUBJECT_ID_CHARS + 1)}),
    ("subject_id", {"subject_id": "\u202eevil"}),
    ("captured_at", {"captured_at": float("nan")}),
    ("captured_at", {"captured_at": -1.0}),
    ("captured_at", {"captured_at": 5e9}),
    ("watchlist_version", {"watchlist_version": -1}),
    ("score", {"score": float("inf")}),
    ("score", {"score": 1.5}),
    ("score", {"score": -1.01}),
    ("threshold", {"threshold": 0.0}),
    ("threshold", {"threshold": 1.0}),
    ("threshold", {"threshold": float("nan")}),
    ("track", {"track": -3}),
    ("box[2]", {"box": (0.0, 0.0, float("inf"), 10.0)}),
    ("box[0]", {"box": (-1e6, 0.0, 10.0, 10.0)}),
    ("box", {"box": (10.0, 0.0, 10.0, 10.0)}),
    ("box", {"box": (0.0, 20.0, 10.0, 10.0)}),
    ("hits", {"hits": 0}),
    ("hits", {"hits": 1_000_001}),
    ("crop_jpeg", {"crop_jpeg": b""}),
]
BAD_HEALTH: list[tuple[str, dict[str, Any]]] = [
    ("unit_time", {"unit_time": float("nan")}),
    ("uptime_s", {"uptime_s": -0.5}),
    ("cameras", {"cameras": tuple(CameraHealth(f"c{i}", 1.0, 1) for i in range(17))}),
    ("cameras", {"cameras": (CameraHealth("c", 1.0, 1), CameraHealth("c", 2.0, 2))}),
    ("cameras[0].camera_id", {"cameras": (CameraHealth("", 1.0, 1),)}),
    ("cameras[0].fps", {"cameras": (CameraHealth("c", float("inf"), 1),)}),
    ("cameras[0].fps", {"cameras": (CameraHealth("c", 1001.0, 1),)}),
    ("cameras[0].frames", {"cameras": (CameraHealth("c", 1.0, -1),)}),
    ("faces_seen", {"faces_seen": -1}),
    ("faces_rejected", {"faces_rejected": 1201}),
    ("alerts", {"alerts": -2}),
    ("outbox_depth", {"outbox_depth": -1}),
    ("outbox_oldest_age_s", {"outbox_oldest_age_s": float("-inf")}),
    ("watchlist_version", {"watchlist_version": -1}),
    ("model_ids", {"model_ids": tuple(f"m{i}" for i in range(9))}),
    ("model_ids[1]", {"model_ids": ("ok", "m" * 129)}),
    ("model_ids[0]", {"model_ids": ("tab\there",)}),
]


def alert_with(**changes: Any) -> AlertBody:
    return dataclasses.replace(alert_body(match_alert(), 0), **changes)


@pytest.mark.parametrize(("field", "changes"), BAD_ALERTS + BAD_HEALTH,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_ALERTS + BAD_HEALTH)])
def test_a_field_out_of_range_is_refused_by_both_ends(field: str,
                                                      changes: dict[str, Any]) -> None:
    body: AlertBody | HealthBody = (alert_with(**changes) if (field, changes) in BAD_ALERTS
                                    else health(**changes))
    with pytest.raises(EventBodyError) as on_encode:
        encode_body(body)
    with pytest.raises(EventBodyError) as on_decode:
        decode_body(UNCHECKED.encode(body))
    assert on_encode.value.field == on_decode.value.field == field
    assert str(on_decode.value).startswith(f"event body field {field}: ")


def test_alert_body_checks_the_alert() -> None:
    with pytest.raises(EventBodyError, match="subject_id"):
        alert_body(match_alert(subject=""), 0)
    with pytest.raises(EventBodyError, match="watchlist_version"):
        alert_body(match_alert(), -1)


def test_a_mistyped_field_is_refused_naming_it() -> None:
    spec = EVENT_BODIES.spec_for_class(AlertBody)
    assert spec is not None
    fields = {name: getattr(alert_with(), name) for name, _ in spec.fields}
    fields["hits"] = True
    raw = msgpack.packb([spec.code, spec.version, fields], use_bin_type=True)
    with pytest.raises(EventBodyError, match=r"message\.hits: expected int"):
        decode_body(raw)
    with pytest.raises(EventBodyError, match="hits: must be a number, got bool"):
        encode_body(alert_with(hits=True))


# -- the crop ------------------------------------------------------------------------------


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(("crop", "problem"), [
    (CROP[:-2], "no start or end"),                               # cut: no EOI
    (b"\x00" + CROP, "no start or end"),                         # no SOI
    (png(), "no start or end"),
    (b"\xff\xd8\xff" + b"\x00" * 64 + b"\xff\xd9", "cannot read its JPEG header"),
    (CROP[:3] + b"\xee" + CROP[4:40] + b"\xff\xd9", "cannot read its JPEG header"),
    (jpeg(1025, 1024), "1025 x 1024 px"),                         # over the pixel limit
    (jpeg(2049, 8), "2049 x 8 px"),                               # over the side limit
    (b"\xff\xd8\xff" + b"\x00" * MAX_CROP_BYTES + b"\xff\xd9", "bytes; 1 to"),
])
def test_a_crop_that_is_not_a_small_jpeg_is_refused(crop: bytes, problem: str) -> None:
    with pytest.raises(EventBodyError, match=problem) as refused:
        check_crop_jpeg(crop)
    assert refused.value.field == "crop_jpeg"
    with pytest.raises(EventBodyError, match=problem):
        decode_body(UNCHECKED.encode(alert_with(crop_jpeg=crop)))


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    # A 16 px JPEG whose header claims 8000 x 8000 px (under Pillow's own guard): refused
    # from the header, without decoding.
    header = bytearray(jpeg(16, 16))
    sof = header.index(b"\xff\xc0")
    header[sof + 5:sof + 9] = struct.pack(">HH", 8000, 8000)
    with pytest.raises(EventBodyError, match="8000 x 8000 px"):
        check_crop_jpeg(bytes(header))


@pytest.mark.parametrize("side", [10_000, 60_000])
def test_pillows_own_bomb_guards_end_as_refusals_and_print_nothing(side: int) -> None:
    # 100 MP: Pillow warns; 3.6 GP: Pillow raises. Both are this refusal, and no warning
    # reaches the operator's terminal.
    header = bytearray(jpeg(16, 16))
    sof = header.index(b"\xff\xc0")
    header[sof + 5:sof + 9] = struct.pack(">HH", side, side)
    with warnings.catch_warnings(record=True) as printed:
        warnings.simplefilter("always")
        with pytest.raises(EventBodyError, match="DecompressionBomb"):
            check_crop_jpeg(bytes(header))
    assert not printed


def test_a_crop_at_the_limits_is_accepted() -> None:
    check_crop_jpeg(jpeg(1024, 1024))
    check_crop_jpeg(jpeg(2048, 512))


# -- fuzz ------------------------------------------------------------------------------------

VALID_ALERT = encode_body(alert_with())
VALID_HEALTH = encode_body(health())


def decodes_or_refuses(data: bytes) -> None:
    with contextlib.suppress(EventBodyError):
        decode_body(data)


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_raise_only_event_body_errors(data: bytes) -> None:
    decodes_or_refuses(data)


@FUZZ
@given(st.sampled_from([VALID_ALERT, VALID_HEALTH]),
       st.lists(st.tuples(st.integers(0, 2**16), st.integers(1, 255)), min_size=1, max_size=6))
def test_valid_bodies_with_bytes_changed_raise_only_event_body_errors(
        valid: bytes, flips: list[tuple[int, int]]) -> None:
    data = bytearray(valid)
    for index, mask in flips:
        data[index % len(data)] ^= mask
    decodes_or_refuses(bytes(data))


@FUZZ
@given(st.binary(max_size=512), st.integers(0, len(CROP)))
def test_hostile_jpeg_headers_raise_only_event_body_errors(noise: bytes, cut: int) -> None:
    for crop in (b"\xff\xd8\xff" + noise + b"\xff\xd9", CROP[:cut] + noise + b"\xff\xd9",
                 CROP[:4] + noise + CROP[4 + len(noise):]):
        with contextlib.suppress(EventBodyError):
            check_crop_jpeg(crop)


def test_the_largest_refused_input_stays_within_a_few_copies_of_itself() -> None:
    candidates = (b"\x93" + b"\x90" * (MAX_ENCODED_BODY_BYTES - 1),       # empty lists
                  VALID_ALERT[:-1] + b"\x00" * (MAX_ENCODED_BODY_BYTES - len(VALID_ALERT)),
                  b"\xdb" + struct.pack(">I", 2**31) + b"x" * (MAX_ENCODED_BODY_BYTES - 5))
    for data in candidates:
        assert len(data) <= MAX_ENCODED_BODY_BYTES
        tracemalloc.start()
        try:
            decodes_or_refuses(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 70 * MAX_ENCODED_BODY_BYTES


# -- privacy ---------------------------------------------------------------------------------

ID_FIELDS = {"camera_id", "model_ids", "audit_head"}
"""The only text a health report may carry: ids, each checked as a short printable id, and the
audit trail's head hash (64 hex digits exactly, ``check_body``)."""


def test_a_health_report_cannot_carry_face_data_or_free_text() -> None:
    # Walk the schema the codec decodes by: numbers, flags and ids only. A field that could
    # hold bytes, an array (an embedding), a map or free text fails here.
    def allowed(name: str, field_type: Any) -> bool:
        if isinstance(field_type, OptionalType):
            return allowed(name, field_type.inner)
        if isinstance(field_type, ScalarType):
            return field_type.kind in (int, float, bool) or (
                field_type.kind is str and name in ID_FIELDS)
        if isinstance(field_type, SequenceType):  # of nested messages or ids, never numbers
            return ((isinstance(field_type.item, MessageRef) and every_field_allowed(
                field_type.item.cls)) or (name in ID_FIELDS and allowed(name, field_type.item)))
        return False

    def every_field_allowed(cls: type[Any]) -> bool:
        spec = EVENT_BODIES.spec_for_class(cls)
        assert spec is not None
        refused = [name for name, field_type in spec.fields if not allowed(name, field_type)]
        assert not refused, f"{cls.__name__} fields that could carry face data: {refused}"
        return True

    assert every_field_allowed(HealthBody)
    # ... and each id is bounded, so it cannot smuggle a crop or an embedding either.
    with pytest.raises(EventBodyError, match=r"model_ids\[0\]"):
        encode_body(health(model_ids=("x" * 4096,)))
