"""``AuditWriter``/``AuditSink``: event-loop code records without waiting, in order, and a full
backlog or a bad record costs that record only; ``RefusalRecorder``: at most one record per kind
of refusal per window, with exact counts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest_asyncio

from audit.kinds import AuditKind
from audit.log import AuditLog, Pending
from audit.record import GENESIS_HASH, AuditFieldError, AuditRecord, FieldValue, make_record
from audit.refusals import RefusalRecorder
from audit.verify import verify_audit_file
from audit.writer import WRITER_MAILBOX, Appender, AuditCounts, AuditSink, AuditWriter
from runtime.mailbox import MailboxConfig, MailboxPolicy
from runtime.system import ActorSystem, SystemConfig
from tests.actors.support import eventually


@pytest_asyncio.fixture
async def system() -> AsyncIterator[ActorSystem]:
    started = ActorSystem(SystemConfig(name="audit-test"))
    await started.start()
    yield started
    await started.stop()


async def writer_sink(system: ActorSystem, trail: Appender) -> AuditSink:
    """A sink to a new ``AuditWriter`` over ``trail`` with the nodes' mailbox (its counts on
    ``sink.counts``)."""
    counts = AuditCounts()
    return AuditSink(await system.spawn("audit", lambda: AuditWriter(trail, counts),
                                        WRITER_MAILBOX), counts)


async def test_records_reach_the_trail_in_order_and_a_bad_one_fails_alone(
        tmp_path: Path, system: ActorSystem) -> None:
    trail = AuditLog.open(tmp_path / "audit.log", "van-1")
    sink = await writer_sink(system, trail)
    counts = sink.counts
    sink.record(AuditKind.UNIT_CONNECTED, peer="unit-1")
    sink.record(AuditKind.INPUT_REFUSED, source="link", peer="unit-1",
                reason=b"raw bytes".hex() * 100)  # over the text limit: refused by the log
    sink.record(AuditKind.UNIT_DROPPED, peer="unit-1", reason="closed")
    await eventually(lambda: counts.written + counts.failed == 3)
    assert (counts.written, counts.failed, counts.dropped) == (2, 1, 0)
    assert counts.kinds_failed == {"input_refused": 1}
    trail.close()
    checked = verify_audit_file(tmp_path / "audit.log")
    assert checked.ok
    assert checked.records == 2
    kinds = [line.split('"kind":"')[1].split('"')[0]
             for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert kinds == ["unit_connected", "unit_dropped"]


class _Slow:
    """A trail that only notes what it was given, and answers each with a record."""

    def __init__(self) -> None:
        self.appended: list[AuditKind] = []

    def append_all(self, pending: Sequence[Pending], /) -> list[AuditRecord | AuditFieldError]:
        self.appended.extend(kind for kind, _ in pending)
        return [make_record(seq=1, time="2026-01-01T00:00:00.000000Z", node="van-1", kind=kind,
                            fields={}, prev=GENESIS_HASH) for kind, _ in pending]


class _FailingOnce(_Slow):
    """A trail whose first group meets a full disk."""

    def append_all(self, pending: Sequence[Pending], /) -> list[AuditRecord | AuditFieldError]:
        if not self.appended:
            self.appended.append(AuditKind.NODE_STOPPED)  # marks the failure as seen
            raise OSError(28, "No space left on device")
        return super().append_all(pending)


async def test_a_full_backlog_drops_and_counts_without_waiting(system: ActorSystem) -> None:
    counts = AuditCounts()
    writer = await system.spawn("audit", lambda: AuditWriter(_Slow(), counts),
                                MailboxConfig(2, MailboxPolicy.REJECT))
    sink = AuditSink(writer, counts)
    for _ in range(50):  # no await between: the writer cannot take any yet
        sink.record(AuditKind.UNIT_CONNECTED, peer="unit-1")
    assert counts.dropped >= 47
    await eventually(lambda: counts.written + counts.dropped == 50)


async def test_a_burst_is_written_in_groups_in_order_and_the_chain_holds(
        tmp_path: Path, system: ActorSystem) -> None:
    trail = AuditLog.open(tmp_path / "audit.log", "van-1")
    sink = await writer_sink(system, trail)
    counts = sink.counts
    for seq in range(1, 301):  # told at once, as the van's stored batch is
        sink.record(AuditKind.ALERT_SENT, unit="unit-1", seq=seq)
    await eventually(lambda: counts.written == 300)
    assert counts.groups < 300  # group commit: fewer fsyncs than records
    assert counts.groups >= 2  # at most GROUP_RECORDS (256) in one
    trail.close()
    assert verify_audit_file(tmp_path / "audit.log").ok
    told = [json.loads(line)["fields"]["seq"]
            for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert told == list(range(1, 301))


async def test_a_failed_group_fails_its_records_and_the_writer_goes_on(
        system: ActorSystem) -> None:
    trail = _FailingOnce()
    sink = await writer_sink(system, trail)
    counts = sink.counts
    for _ in range(3):
        sink.record(AuditKind.UNIT_CONNECTED, peer="unit-1")
    await eventually(lambda: counts.failed == 3)
    sink.record(AuditKind.UNIT_DROPPED, peer="unit-1", reason="closed")
    await eventually(lambda: counts.written == 1)
    assert counts.kinds_failed == {"unit_connected": 3}
    assert trail.appended[-1] is AuditKind.UNIT_DROPPED


async def test_stopping_writes_what_the_writer_holds(tmp_path: Path,
                                                     system: ActorSystem) -> None:
    trail = AuditLog.open(tmp_path / "audit.log", "van-1")
    counts = AuditCounts()
    writer = await system.spawn("audit", lambda: AuditWriter(trail, counts), WRITER_MAILBOX)
    sink = AuditSink(writer, counts)
    for seq in range(1, 41):
        sink.record(AuditKind.ALERT_SENT, unit="unit-1", seq=seq)
    await writer.stop(drain_s=10.0)
    assert (counts.written, counts.dropped, counts.failed) == (40, 0, 0)
    assert trail.count == 40
    trail.close()


class _Collect:
    def __init__(self) -> None:
        self.records: list[dict[str, FieldValue]] = []

    def record(self, kind: AuditKind, /, **fields: FieldValue) -> None:
        assert kind is AuditKind.INPUT_REFUSED
        self.records.append(fields)


def test_refusals_are_recorded_once_per_kind_per_window_with_exact_counts() -> None:
    sink, now = _Collect(), [0.0]
    recorder = RefusalRecorder(sink, window_s=10.0, clock=lambda: now[0])
    for _ in range(1000):
        recorder.refused("offer", "bad_signature", "10.0.0.9 unit x")
    recorder.refused("offer", "stale", "10.0.0.9 unit x")
    assert [(r["reason"], r["count"]) for r in sink.records] == [("bad_signature", 1),
                                                                  ("stale", 1)]
    now[0] = 11.0
    recorder.refused("offer", "bad_signature", "10.0.0.9 unit x")
    assert (sink.records[-1]["reason"], sink.records[-1]["count"]) == ("bad_signature", 1000)
    recorder.refused("offer", "bad_signature", "10.0.0.9 unit x")
    recorder.flush()
    assert (sink.records[-1]["reason"], sink.records[-1]["count"]) == ("bad_signature", 1)
    assert sum(int(r["count"] or 0) for r in sink.records) == 1003  # every refusal


def test_a_peer_name_with_control_characters_is_recorded_printable() -> None:
    sink = _Collect()
    RefusalRecorder(sink).refused("offer", "unknown_unit", "1.2.3.4 unit \x1b[2J\n")
    peer = str(sink.records[0]["peer"])
    assert peer.isprintable()
    assert "\x1b" not in peer
