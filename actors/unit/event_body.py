"""What a unit seals into an envelope: an ``AlertBody`` or a ``HealthBody``, strictly checked.

A body is one message of the strict codec from ``EVENT_BODIES``, a registry of its own (type
codes 320-329), so no body can be encoded onto a link in the clear and no link message can pass
for a body:

======  =========================================================================
 320    ``AlertBody``: one match, with its face crop (JPEG): biometric data
 321    ``HealthBody``: counts only, never face data (no bytes, arrays or free text)
 322    ``CameraHealth``: one camera's frame rate and frames, inside a ``HealthBody``
======  =========================================================================

``encode_body`` and ``decode_body`` run the same checks, so a unit never seals what its van
would refuse. ``decode_body`` takes the bytes ``secure.envelope.open_envelope`` returned, i.e.
from an enrolled unit whose signature held, and still trusts nothing: at most
``MAX_ENCODED_BODY_BYTES`` (the envelope's own body limit), numbers finite and in range, ids
printable and bounded, the crop a JPEG (SOI and EOI markers, a header Pillow reads, at most
``MAX_CROP_PIXELS``). Every refusal is an ``EventBodyError`` naming the field.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Final

from PIL import Image

from actors.unit.match_alert import MatchAlert
from guards.log_text import printable
from runtime.codec import Codec, DecodeError, EncodeError
from runtime.message import MessageRegistry, message
from secure.envelope import MAX_BODY_BYTES, EventKind

EVENT_BODIES = MessageRegistry()
"""The registry of sealed event bodies (type codes 320-329), never used by a link."""
MAX_ENCODED_BODY_BYTES: Final = MAX_BODY_BYTES
"""A body must fit one envelope (``secure.envelope.MAX_BODY_BYTES``, 240 KiB)."""
MAX_CROP_BYTES: Final = 200 * 1024
"""Largest face crop. The matcher's are 256 px JPEGs of 10-25 KB; the rest of an alert body is
at most about 4 KB (ids of up to 4 UTF-8 bytes a character), so the body stays under
``MAX_ENCODED_BODY_BYTES``."""
MAX_CROP_SIDE_PX: Final = 2048
"""Longest side of a crop, read from the JPEG header (the matcher's are at most 256 px)."""
MAX_CROP_PIXELS: Final = 1024 * 1024
"""Most pixels in a crop: the console decodes it, so a tiny file that would decode to
gigabytes (a decompression bomb) is refused here, from the header alone."""
MAX_EVENT_ID_CHARS: Final = 512
"""An event id is unit/camera/track/subject/frame: 64 + 128 + 255 and some digits."""
MAX_CAMERA_ID_CHARS: Final = 128
MAX_SUBJECT_ID_CHARS: Final = 255
"""As ``actors.unit.watchlist.MAX_SUBJECT_ID_CHARS``."""
MAX_MODEL_ID_CHARS: Final = 128
MAX_CAMERAS: Final = 16
"""Cameras one health report may list."""
MAX_MODELS: Final = 8
"""Model ids one health report may list."""
MAX_COUNT: Final = 2**63 - 1
"""Counts, sequence-like numbers and versions are 0..2**63-1."""
MAX_EPOCH_S: Final = 4_102_444_800.0
"""2100-01-01 UTC: times (s since the Unix epoch) lie in 0..this."""
MAX_FPS: Final = 1000.0
MAX_BOX_PX: Final = 65_536.0
"""Box corners lie within +-this (px); a box may reach past the frame's edge."""
SCORE_SLACK: Final = 1e-3
"""Cosines computed in float32 may pass +-1 by a rounding error."""
MAX_HITS: Final = 1_000_000
JPEG_SOI: Final = b"\xff\xd8\xff"
"""Start of image, and the first byte of the next marker."""
JPEG_EOI: Final = b"\xff\xd9"


class EventBodyError(ValueError):
    """An event body that is malformed or out of range; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        """The field (``"crop_jpeg"``, ``"cameras[2].fps"``) or ``"body"`` for the whole."""
        super().__init__(f"event body field {field}: {problem}")


@message(320, registry=EVENT_BODIES)
@dataclass(frozen=True, slots=True)
class AlertBody:
    """One match, as the van shows it to an officer. Sealed: the crop is biometric data."""

    event_id: str
    """Unique id from the unit (``MatchAlert.alert_id``), 1-512 printable characters."""
    camera_id: str
    """Camera id, 1-128 printable characters."""
    captured_at: float
    """Wall-clock time the frame was decoded on the unit, seconds since the Unix epoch (UTC)."""
    subject_id: str
    """Watchlist subject id, 1-255 printable characters."""
    watchlist_version: int
    """Version of the watchlist that matched; 0 until watchlists are signed and versioned."""
    score: float
    """Cosine similarity of the alerting face to the subject (-1..1)."""
    threshold: float
    """The subject's threshold the score was compared with, strictly between 0 and 1."""
    track: int
    """Track id on this camera (0..2**63-1)."""
    box: tuple[float, float, float, float]
    """Face box x0, y0, x1, y1 in frame pixels (x0 < x1, y0 < y1)."""
    hits: int
    """Matched frames behind the alert (1..1,000,000)."""
    crop_jpeg: bytes
    """JPEG of the face with some context (at most 200 KiB and 1 MP)."""


@message(322, registry=EVENT_BODIES)
@dataclass(frozen=True, slots=True)
class CameraHealth:
    """One camera's throughput in a health report."""

    camera_id: str
    """Camera id, 1-128 printable characters."""
    fps: float
    """Frames decoded per second over the last report interval (0..1000)."""
    frames: int
    """Frames decoded since the unit started."""


@message(321, registry=EVENT_BODIES)
@dataclass(frozen=True, slots=True)
class HealthBody:
    """A unit's periodic health report: counts and ids only, never face data."""

    unit_time: float
    """The unit's clock when it made the report, s since the Unix epoch (shows clock drift)."""
    uptime_s: float
    """Seconds since the unit started."""
    cameras: tuple[CameraHealth, ...]
    """Per camera frame rate and frames, at most ``MAX_CAMERAS``."""
    faces_seen: int
    """Faces detected since start, all cameras."""
    faces_rejected: int
    """Of those, faces the quality gates refused."""
    alerts: int
    """Alerts raised since start."""
    outbox_depth: int
    """Envelopes waiting in the outbox for the van's acknowledgement."""
    outbox_oldest_age_s: float | None
    """Age of the oldest waiting envelope (s); None when the outbox is empty."""
    outbox_full: bool
    """The alarm: an alert was refused by the full outbox and is held back."""
    watchlist_version: int
    """Version of the watchlist held (0: none: the unit scans nothing)."""
    model_ids: tuple[str, ...]
    """Ids of the models in use (detector, embedder), at most ``MAX_MODELS``."""
    audit_head: str = ""
    """sha256 (hex) of the last record of the unit's audit trail when the report was made:
    the van keeps it as a witness, so a later rewrite of the unit's trail shows (docs/AUDIT.md).
    Empty when the unit keeps no trail (tests)."""
    audit_records: int = 0
    """Records in the unit's audit trail then."""


EventBody = AlertBody | HealthBody
_CODEC = Codec(EVENT_BODIES, max_message_bytes=MAX_ENCODED_BODY_BYTES)


def alert_body(alert: MatchAlert, watchlist_version: int) -> AlertBody:
    """The body sealed for ``alert``; ``EventBodyError`` if it breaks a limit."""
    body = AlertBody(
        event_id=alert.alert_id, camera_id=alert.camera, captured_at=alert.captured_at,
        subject_id=alert.subject, watchlist_version=watchlist_version, score=alert.score,
        threshold=alert.threshold, track=alert.track, box=alert.box, hits=alert.hits,
        crop_jpeg=alert.crop_jpeg)
    check_body(body)
    return body


def event_kind(body: EventBody) -> EventKind:
    """The envelope kind ``body`` is sealed under (the van checks the two agree)."""
    return EventKind.ALERT if isinstance(body, AlertBody) else EventKind.HEALTH


def encode_body(body: EventBody) -> bytes:
    """The bytes to seal; ``EventBodyError`` for a body ``decode_body`` would refuse."""
    check_body(body)
    try:
        return _CODEC.encode(body)
    except EncodeError as exc:
        raise EventBodyError("body", str(exc)) from None


def decode_body(data: bytes) -> EventBody:
    """The body in ``data``; ``EventBodyError`` (and nothing else) naming the field."""
    try:
        # The codec refuses over MAX_ENCODED_BODY_BYTES before reading anything, and names
        # the field path of a mistyped value, never the value.
        body = _CODEC.decode(data)
    except DecodeError as exc:
        raise EventBodyError("body", printable(exc)) from None
    if not isinstance(body, AlertBody | HealthBody):
        raise EventBodyError("body", f"a {type(body).__name__} is not an event body")
    check_body(body)
    return body


def check_body(body: EventBody) -> None:
    """Refuse (``EventBodyError``) a body with a field out of range."""
    if isinstance(body, AlertBody):
        _check_alert(body)
    else:
        _check_health(body)


def _check_alert(body: AlertBody) -> None:
    _check_id("event_id", body.event_id, MAX_EVENT_ID_CHARS)
    _check_id("camera_id", body.camera_id, MAX_CAMERA_ID_CHARS)
    _check_number("captured_at", body.captured_at, 0.0, MAX_EPOCH_S)
    _check_id("subject_id", body.subject_id, MAX_SUBJECT_ID_CHARS)
    _check_number("watchlist_version", body.watchlist_version, 0, MAX_COUNT)
    _check_number("score", body.score, -1.0 - SCORE_SLACK, 1.0 + SCORE_SLACK)
    _check_number("threshold", body.threshold, 0.0, 1.0)
    if body.threshold in (0.0, 1.0):
        raise EventBodyError("threshold", "must lie strictly between 0 and 1")
    _check_number("track", body.track, 0, MAX_COUNT)
    for i, corner in enumerate(body.box):
        _check_number(f"box[{i}]", corner, -MAX_BOX_PX, MAX_BOX_PX)
    x0, y0, x1, y1 = body.box
    if not (x0 < x1 and y0 < y1):
        raise EventBodyError("box", "must have x0 < x1 and y0 < y1")
    _check_number("hits", body.hits, 1, MAX_HITS)
    check_crop_jpeg(body.crop_jpeg)


def _check_health(body: HealthBody) -> None:
    _check_number("unit_time", body.unit_time, 0.0, MAX_EPOCH_S)
    _check_number("uptime_s", body.uptime_s, 0.0, MAX_EPOCH_S)
    if len(body.cameras) > MAX_CAMERAS:
        raise EventBodyError("cameras", f"{len(body.cameras)} cameras; at most {MAX_CAMERAS}")
    for i, camera in enumerate(body.cameras):
        _check_id(f"cameras[{i}].camera_id", camera.camera_id, MAX_CAMERA_ID_CHARS)
        _check_number(f"cameras[{i}].fps", camera.fps, 0.0, MAX_FPS)
        _check_number(f"cameras[{i}].frames", camera.frames, 0, MAX_COUNT)
    if len({camera.camera_id for camera in body.cameras}) != len(body.cameras):
        raise EventBodyError("cameras", "a camera id repeats")
    for name in ("faces_seen", "faces_rejected", "alerts", "outbox_depth",
                 "watchlist_version"):
        _check_number(name, getattr(body, name), 0, MAX_COUNT)
    if body.faces_rejected > body.faces_seen:
        raise EventBodyError("faces_rejected", "is more than faces_seen")
    if body.outbox_oldest_age_s is not None:
        _check_number("outbox_oldest_age_s", body.outbox_oldest_age_s, 0.0, MAX_EPOCH_S)
    if body.audit_head and (len(body.audit_head) != 64
                            or body.audit_head.strip("0123456789abcdef")):
        raise EventBodyError("audit_head", "must be 64 lowercase hex digits or empty")
    _check_number("audit_records", body.audit_records, 0, MAX_COUNT)
    if len(body.model_ids) > MAX_MODELS:
        raise EventBodyError("model_ids", f"{len(body.model_ids)} ids; at most {MAX_MODELS}")
    for i, model_id in enumerate(body.model_ids):
        _check_id(f"model_ids[{i}]", model_id, MAX_MODEL_ID_CHARS)


def _check_id(field: str, value: str, max_chars: int) -> None:
    if not 0 < len(value) <= max_chars:
        raise EventBodyError(field, f"must have 1 to {max_chars} characters, got {len(value)}")
    if not value.isprintable() or value.isspace():
        raise EventBodyError(field, f"{printable(value, max_chars=64)} holds characters "
                                    "that cannot be printed, or only spaces")


def _check_number(field: str, value: float, low: float, high: float) -> None:
    # bool is an int to Python, never a count here; the codec refuses it too.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventBodyError(field, f"must be a number, got {type(value).__name__}")
    if not low <= value <= high:  # NaN fails every comparison, infinities the range
        raise EventBodyError(field, f"{value!r} is not a finite number in {low:g}..{high:g}")


def check_crop_jpeg(data: bytes) -> None:
    """Refuse a crop that is not a JPEG of at most ``MAX_CROP_BYTES`` and ``MAX_CROP_PIXELS``
    whose header Pillow reads. No pixel is decoded here."""
    if not 0 < len(data) <= MAX_CROP_BYTES:
        raise EventBodyError("crop_jpeg", f"{len(data)} bytes; 1 to {MAX_CROP_BYTES} expected")
    if not (data.startswith(JPEG_SOI) and data.endswith(JPEG_EOI)):
        raise EventBodyError("crop_jpeg", "not a JPEG (no start or end of image marker)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
                width, height = image.size
    except (OSError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Image.open turns its parsers' SyntaxError, IndexError, TypeError and struct.error
        # into UnidentifiedImageError (an OSError); 30,000 mutated headers raised nothing else.
        # Above ~89 MP Pillow warns (an error here: never printed), above ~179 MP it refuses.
        raise EventBodyError("crop_jpeg", f"Pillow cannot read its JPEG header "
                                          f"({type(exc).__name__})") from None
    if not (0 < width <= MAX_CROP_SIDE_PX and 0 < height <= MAX_CROP_SIDE_PX
            and width * height <= MAX_CROP_PIXELS):
        raise EventBodyError("crop_jpeg", f"{width} x {height} px; at most "
                                          f"{MAX_CROP_SIDE_PX} px a side and {MAX_CROP_PIXELS} "
                                          "pixels")
