"""``MatchAlert`` is the one message that leaves a unit; nothing else of ``actors.unit`` can."""

from __future__ import annotations

import dataclasses
import inspect
from types import ModuleType

import msgpack
import pytest

import actors.unit.alert_policy
import actors.unit.camera
import actors.unit.detector
import actors.unit.face_analysis
import actors.unit.gallery
import actors.unit.match_alert
import actors.unit.matcher
import actors.unit.tracking
import actors.unit.watchlist
from actors.unit.match_alert import MatchAlert
from actors.unit.watchlist import Watchlist
from runtime.codec import Codec, DecodeError
from runtime.message import default_registry

UNIT_MODULES: tuple[ModuleType, ...] = (
    actors.unit.alert_policy, actors.unit.camera, actors.unit.detector,
    actors.unit.face_analysis, actors.unit.gallery, actors.unit.match_alert,
    actors.unit.matcher, actors.unit.tracking, actors.unit.watchlist,
)


def alert() -> MatchAlert:
    """A fully populated alert."""
    return MatchAlert(
        alert_id="unit7/cam0/12/lin_manuel_miranda/140", subject="lin_manuel_miranda",
        score=0.7312, threshold=0.6, track=12, camera="cam0", t_s=5.525,
        captured_at=1_732_590_000.125, frame_index=140, box=(210.5, 40.25, 330.0, 190.75),
        hits=3, crop_jpeg=b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9",
    )


def test_match_alert_round_trips() -> None:
    codec = Codec()
    original = alert()
    decoded = codec.decode(codec.encode(original))
    assert type(decoded) is MatchAlert
    assert decoded == original
    assert isinstance(decoded.box, tuple)
    assert isinstance(decoded.crop_jpeg, bytes)


def test_a_mistyped_match_alert_is_refused_on_decode() -> None:
    spec = default_registry.spec_for_class(MatchAlert)
    assert spec is not None
    fields = {f.name: getattr(alert(), f.name) for f in dataclasses.fields(MatchAlert)}
    fields["track"] = "12"  # a str where the schema says int
    raw = msgpack.packb([spec.code, spec.version, fields], use_bin_type=True)
    with pytest.raises(DecodeError, match="track"):
        Codec().decode(raw)


def test_only_match_alert_and_watchlist_are_registered() -> None:
    registered = {
        cls for module in UNIT_MODULES for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__ and dataclasses.is_dataclass(cls)
        and default_registry.spec_for_class(cls) is not None
    }
    assert registered == {MatchAlert, Watchlist}
