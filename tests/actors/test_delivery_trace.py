"""The delivery trace's marks: nothing unless its logger is on, then one record per mark
carrying a ``DeliveryMark`` (ids, number, stage, time; nothing from a body)."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from actors.delivery_trace import TRACE_LOG, DeliveryMark, Stage, enabled, mark


def traced(caplog: pytest.LogCaptureFixture) -> list[DeliveryMark]:
    return [record.trace for record in caplog.records if hasattr(record, "trace")]


def test_marks_are_off_unless_the_logger_is_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=TRACE_LOG.name)
    assert not enabled()
    mark("unit-1", 5, Stage.SENT)
    assert traced(caplog) == []


def test_a_mark_carries_unit_number_stage_and_time(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=TRACE_LOG.name)
    assert enabled()
    mark("unit-1", 5, Stage.SENT, 1_700_000_000.25)
    mark("unit-1", 6, Stage.SEALED)
    first, second = traced(caplog)
    assert first == DeliveryMark("unit-1", 5, Stage.SENT, 1_700_000_000.25)
    assert (second.seq, second.stage) == (6, Stage.SEALED)
    assert second.at > first.at  # now
    assert [field.name for field in dataclasses.fields(DeliveryMark)] == [
        "unit", "seq", "stage", "at"]
    assert "seq 5: sent" in caplog.records[0].getMessage()


def test_the_stages_are_in_delivery_order() -> None:
    assert list(Stage) == [Stage.SEALED, Stage.SENT, Stage.STARTED, Stage.VERIFIED,
                           Stage.STORED, Stage.RECEIPT]
