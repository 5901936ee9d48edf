"""The unit's outbox: order, sequence numbers, acknowledgements, the full policy, crashes and
bad paths. Each test names the rule it guards."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.unit.outbox import (
    MAX_ADVANCE_SEQ,
    MAX_PAGE,
    EnvelopeKind,
    EnvelopeTooLarge,
    Outbox,
    OutboxConfig,
    OutboxFull,
    PendingEnvelope,
    SequenceMoved,
    first_sequence_number,
)
from guards.config_checks import ConfigError
from tests.actors.van.processes import (
    kill_and_collect,
    read_numbers,
    run_without_write_access,
    start_writer,
)

# alerts may hold 4 envelopes and 110 bytes; health the rest of 6 envelopes and 150 bytes
SMALL = OutboxConfig(max_envelopes=6, max_bytes=150, health_reserve_envelopes=2,
                     health_reserve_bytes=40)
CREATED_S = 1000.0
"""The test clock when a file is created: 1000 s after the epoch."""
FIRST = 1_000_000_000
"""The first number of a file created at ``CREATED_S``: the clock in microseconds."""


def n(index: int) -> int:
    """The ``index``-th number (from 1) a file created at ``CREATED_S`` assigns."""
    return FIRST + index - 1


def open_outbox(path: Path, config: OutboxConfig | None = None, *,
                created_s: float = CREATED_S) -> Outbox:
    return Outbox.open(path, config, clock=lambda: created_s)


def body(seq: int, size: int = 16) -> bytes:
    """Sealed bytes that carry their sequence number, as a real header does."""
    return (seq.to_bytes(8, "big") * (size // 8 + 1))[:size]


def sealer(size: int = 16) -> Callable[[int], bytes]:
    return lambda seq: body(seq, size)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with open_outbox(tmp_path / "outbox.db", SMALL) as opened:
        yield opened


def seqs(outbox: Outbox) -> list[int]:
    return [envelope.seq for envelope in outbox.pending()]


def everything(outbox: Outbox) -> list[PendingEnvelope]:
    """Every pending envelope, page by page."""
    result: list[PendingEnvelope] = []
    while page := outbox.pending(after_seq=result[-1].seq if result else 0):
        result += page
    return result


# --- order and sequence numbers ---------------------------------------------------------------


def test_numbers_start_at_the_creation_clock_and_pending_returns_them_in_order(
        outbox: Outbox) -> None:
    kinds: list[EnvelopeKind] = ["alert", "health", "alert"]
    assert [outbox.append(kind, sealer()) for kind in kinds] == [FIRST, FIRST + 1, FIRST + 2]
    pending = outbox.pending()
    assert [(e.seq, e.kind, e.sealed) for e in pending] == [
        (n(1), "alert", body(n(1))), (n(2), "health", body(n(2))), (n(3), "alert", body(n(3)))]


def test_the_first_number_is_the_clock_in_microseconds_within_bounds() -> None:
    assert first_sequence_number(1_700_000_000.25) == 1_700_000_000_250_000
    assert first_sequence_number(0.0) == 1  # a clock at the epoch still numbers from 1
    assert first_sequence_number(-5.0) == 1
    assert first_sequence_number(1e15) == MAX_ADVANCE_SEQ  # a clock gone mad stays in range


def test_a_new_file_for_a_lost_one_numbers_above_every_number_the_lost_one_used(
        tmp_path: Path) -> None:
    now = [CREATED_S]
    path = tmp_path / "outbox.db"
    with Outbox.open(path, SMALL, clock=lambda: now[0]) as old:
        used = [old.append("alert", sealer()) for _ in range(4)]
        now[0] += 60.0
        used += [old.append("health", sealer()) for _ in range(3)]
    for suffix in ("", "-wal", "-shm"):  # a new SD card: the file and its journal are gone
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    now[0] += 1.0
    with Outbox.open(path, SMALL, clock=lambda: now[0]) as new:
        assert new.first_pending() > max(used)
        assert new.append("alert", sealer()) == int(now[0] * 1_000_000) > max(used)


def test_the_first_number_is_stored_when_the_file_is_created_not_at_the_first_append(
        tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    open_outbox(path).close()
    with open_outbox(path, created_s=CREATED_S * 2) as reopened:  # a later clock changes nothing
        assert reopened.first_pending() == FIRST
        assert reopened.statistics().last_seq == FIRST - 1
        assert reopened.append("alert", sealer()) == FIRST


def test_seal_is_given_the_number_it_is_stored_under(outbox: Outbox) -> None:
    given: list[int] = []

    def seal(seq: int) -> bytes:
        given.append(seq)
        return body(seq)

    returned = [outbox.append("alert", seal) for _ in range(3)]
    assert given == returned == seqs(outbox)


def test_sequence_numbers_continue_after_reopen_even_when_everything_was_acknowledged(
        tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with open_outbox(path, SMALL) as outbox:
        for _ in range(3):
            outbox.append("alert", sealer())
        outbox.acknowledge(n(3))
        assert outbox.append("alert", sealer()) == n(4)
        outbox.acknowledge(n(4))
    with open_outbox(path, SMALL, created_s=1.0) as outbox:  # an earlier clock changes nothing
        assert outbox.depth() == 0
        assert outbox.first_pending() == n(5)
        assert outbox.append("health", sealer()) == n(5)


def test_reads_and_acknowledgements_go_on_while_an_append_seals(outbox: Outbox) -> None:
    first = outbox.append("alert", sealer())
    seen: list[object] = []

    def read_and_acknowledge() -> None:
        seen.append([envelope.seq for envelope in outbox.pending()])
        seen.append(outbox.acknowledge(first))

    def seal(seq: int) -> bytes:
        # another thread uses the outbox while this seal runs (a signature takes a while)
        reader = threading.Thread(target=read_and_acknowledge)
        reader.start()
        reader.join(timeout=30)
        seen.append(reader.is_alive())
        return body(seq)

    assert outbox.append("alert", seal) == n(2)
    assert seen == [[first], 1, False]
    assert seqs(outbox) == [n(2)]


def test_a_failing_seal_stores_nothing_and_uses_no_number(outbox: Outbox) -> None:
    def broken(seq: int) -> bytes:
        raise RuntimeError("no key")

    with pytest.raises(RuntimeError, match="no key"):
        outbox.append("alert", broken)
    assert outbox.depth() == 0
    assert outbox.append("alert", sealer()) == FIRST


def test_an_unknown_kind_is_refused(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="unknown envelope kind"):
        outbox.append("crop", sealer())  # type: ignore[arg-type]


def test_pending_pages_after_a_number_and_bounds_the_page(tmp_path: Path) -> None:
    with open_outbox(tmp_path / "outbox.db") as outbox:
        for _ in range(10):
            outbox.append("alert", sealer())
        assert [e.seq for e in outbox.pending(after_seq=n(4), limit=3)] == [n(5), n(6), n(7)]
        assert outbox.pending(after_seq=n(10)) == []
        with pytest.raises(ValueError, match="limit"):
            outbox.pending(limit=MAX_PAGE + 1)
        with pytest.raises(ValueError, match="limit"):
            outbox.pending(limit=0)


# --- acknowledgements -------------------------------------------------------------------------


def test_a_cumulative_ack_deletes_everything_up_to_it(outbox: Outbox) -> None:
    for _ in range(4):
        outbox.append("alert", sealer())
    assert outbox.acknowledge(n(2)) == 2
    assert seqs(outbox) == [n(3), n(4)]
    assert outbox.acknowledge(n(2)) == 0  # a repeated ack changes nothing
    assert outbox.statistics().acknowledged == 2


def test_a_selective_ack_deletes_one_envelope_above_a_gap(outbox: Outbox) -> None:
    for _ in range(4):
        outbox.append("alert", sealer())
    assert outbox.acknowledge_one(n(3))
    assert not outbox.acknowledge_one(n(3))
    assert seqs(outbox) == [n(1), n(2), n(4)]
    assert outbox.first_pending() == n(1)
    outbox.acknowledge(n(2))
    assert outbox.first_pending() == n(4)


# --- numbering above the van's mark -----------------------------------------------------------


def test_advance_past_moves_numbering_above_a_number_and_keeps_what_waits(
        outbox: Outbox) -> None:
    outbox.append("alert", sealer())
    mark = FIRST + 500
    assert outbox.advance_past(mark) == mark
    assert seqs(outbox) == [FIRST]  # nothing deleted: only acknowledgements delete
    assert outbox.append("alert", sealer()) == mark + 1
    assert outbox.statistics().last_seq == mark + 1


def test_advance_past_a_number_already_passed_changes_nothing(outbox: Outbox) -> None:
    for _ in range(3):
        outbox.append("alert", sealer())
    assert outbox.advance_past(n(2)) == n(3)
    assert outbox.advance_past(0) == n(3)
    assert outbox.append("alert", sealer()) == n(4)


def test_after_advance_past_an_empty_outbox_claims_every_number_below_as_done(
        tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with open_outbox(path) as outbox:
        outbox.advance_past(FIRST + 99)
        assert outbox.first_pending() == FIRST + 100
    with open_outbox(path) as outbox:  # persisted
        assert outbox.first_pending() == FIRST + 100
        assert outbox.append("health", sealer()) == FIRST + 100


@pytest.mark.parametrize("seq", [-1, MAX_ADVANCE_SEQ + 1, True, 1.5, "7"])
def test_advance_past_refuses_what_is_not_a_number_in_range(outbox: Outbox, seq: object) -> None:
    with pytest.raises(ValueError, match="cannot number above"):
        outbox.advance_past(seq)  # type: ignore[arg-type]
    assert outbox.append("alert", sealer()) == FIRST


# --- the full policy --------------------------------------------------------------------------


def test_the_oldest_health_reports_give_way_to_a_new_envelope(outbox: Outbox) -> None:
    for _ in range(4):
        outbox.append("health", sealer())
    for _ in range(2):
        outbox.append("alert", sealer())  # 6 envelopes: full by count
    assert outbox.append("alert", sealer()) == n(7)
    assert seqs(outbox) == [n(i) for i in range(2, 8)]  # health 1 dropped, the oldest
    outbox.append("health", sealer())
    assert seqs(outbox) == [n(i) for i in range(3, 9)]
    statistics = outbox.statistics()
    assert (statistics.dropped_health, statistics.refused) == (2, 0)


def test_health_reports_give_way_by_bytes_too(outbox: Outbox) -> None:
    for _ in range(3):
        outbox.append("health", sealer(40))  # 120 of 150 bytes
    outbox.append("alert", sealer(50))  # needs 20 more: one health report goes
    assert seqs(outbox) == [n(2), n(3), n(4)]


def test_alerts_are_never_dropped_and_one_beyond_their_share_raises_outbox_full(
        outbox: Outbox) -> None:
    alerts = [outbox.append("alert", sealer()) for _ in range(4)]  # the alerts' share: 4
    with pytest.raises(OutboxFull):
        outbox.append("alert", sealer())
    assert seqs(outbox) == alerts
    assert outbox.statistics().refused == 1
    # the refused alert used no number, and the health report with the alarm still fits
    assert outbox.append("health", sealer()) == n(5)
    assert outbox.append("health", sealer()) == n(6)
    assert outbox.append("health", sealer()) == n(7)  # health 5 gives way, the alerts stay
    assert seqs(outbox) == [*alerts, n(6), n(7)]


def test_alerts_beyond_their_share_of_bytes_raise_outbox_full(outbox: Outbox) -> None:
    outbox.append("alert", sealer(100))
    with pytest.raises(OutboxFull):
        outbox.append("alert", sealer(11))  # 111 > 150 - 40
    outbox.append("alert", sealer(10))


def test_a_health_report_alerts_leave_no_room_for_is_refused_not_an_alert_dropped(
        outbox: Outbox) -> None:
    outbox.append("alert", sealer(110))
    with pytest.raises(OutboxFull):
        outbox.append("health", sealer(41))
    assert seqs(outbox) == [FIRST]


def test_envelopes_that_could_never_fit_are_refused_as_too_large(outbox: Outbox) -> None:
    with pytest.raises(EnvelopeTooLarge):
        outbox.append("alert", sealer(111))
    with pytest.raises(EnvelopeTooLarge):
        outbox.append("health", sealer(151))
    assert outbox.statistics().refused == 2
    assert outbox.depth() == 0


def test_acknowledging_alerts_makes_room_again(outbox: Outbox) -> None:
    for _ in range(4):
        outbox.append("alert", sealer())
    outbox.acknowledge(n(1))
    assert outbox.append("alert", sealer()) == n(5)


# --- envelopes sealed ahead -------------------------------------------------------------------


def ahead(first: int, *kinds: EnvelopeKind, size: int = 16) -> list[PendingEnvelope]:
    """Envelopes sealed ahead for the numbers from ``first`` on."""
    return [PendingEnvelope(first + i, kind, body(first + i, size)) for i, kind in enumerate(kinds)]


def test_envelopes_sealed_ahead_are_stored_together_under_their_numbers(outbox: Outbox) -> None:
    outbox.append("alert", sealer())
    assert outbox.next_seq() == n(2)
    batch = ahead(n(2), "alert", "health", "alert")
    outbox.append_sealed(batch)
    assert outbox.pending() == [PendingEnvelope(n(1), "alert", body(n(1))), *batch]
    assert outbox.next_seq() == n(5)
    assert outbox.append("alert", sealer()) == n(5)  # numbering goes on after them
    statistics = outbox.statistics()
    assert (statistics.appended, statistics.alerts, statistics.health) == (5, 4, 1)
    outbox.append_sealed([])  # nothing to store changes nothing
    assert outbox.next_seq() == n(6)


@pytest.mark.parametrize("first", [n(0), n(2), n(1) + 5])
def test_envelopes_sealed_ahead_under_other_numbers_store_nothing(outbox: Outbox,
                                                                  first: int) -> None:
    with pytest.raises(SequenceMoved):
        outbox.append_sealed(ahead(first, "alert", "alert"))
    gap = [*ahead(n(1), "alert"), *ahead(n(3), "alert")]  # not consecutive
    with pytest.raises(SequenceMoved):
        outbox.append_sealed(gap)
    assert (outbox.depth(), outbox.next_seq()) == (0, n(1))


def test_a_store_the_outbox_cannot_take_whole_stores_nothing_and_counts_nothing(
        outbox: Outbox) -> None:
    for _ in range(3):
        outbox.append("health", sealer())
    outbox.append("alert", sealer())
    # three alerts fit (a health report giving way), the fourth does not: none is stored
    with pytest.raises(OutboxFull):
        outbox.append_sealed(ahead(n(5), "alert", "alert", "alert", "alert"))
    assert seqs(outbox) == [n(1), n(2), n(3), n(4)]
    statistics = outbox.statistics()
    assert (statistics.dropped_health, statistics.refused, statistics.appended) == (0, 0, 4)
    with pytest.raises(EnvelopeTooLarge):
        outbox.append_sealed(ahead(n(5), "alert", size=111))
    # what fits is stored, the oldest health report giving way as for an append
    outbox.append_sealed(ahead(n(5), "alert", "alert", "health"))
    assert seqs(outbox) == [n(2), n(3), n(4), n(5), n(6), n(7)]
    assert outbox.statistics().dropped_health == 1


def test_an_unknown_kind_sealed_ahead_is_refused(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="unknown envelope kind"):
        outbox.append_sealed([PendingEnvelope(n(1), "video", b"x")])  # type: ignore[arg-type]
    assert outbox.depth() == 0


# --- statistics and configuration -------------------------------------------------------------


def test_statistics_report_depth_bytes_and_the_oldest_age(tmp_path: Path) -> None:
    now = [1000.0]
    with Outbox.open(tmp_path / "outbox.db", SMALL, clock=lambda: now[0]) as outbox:
        assert outbox.statistics().oldest_age_s is None
        outbox.append("alert", sealer(10))
        now[0] += 5.0
        outbox.append("health", sealer(20))
        now[0] += 2.0
        statistics = outbox.statistics()
    assert (statistics.depth, statistics.alerts, statistics.health) == (2, 1, 1)
    assert statistics.sealed_bytes == 30
    assert statistics.oldest_age_s == pytest.approx(7.0)
    assert (statistics.last_seq, statistics.appended) == (n(2), 2)


@pytest.mark.parametrize(("field", "value"), [
    ("max_envelopes", 1), ("max_bytes", 0), ("health_reserve_envelopes", 0),
    ("health_reserve_bytes", 0), ("health_reserve_envelopes", 6), ("health_reserve_bytes", 150)])
def test_config_refuses_bad_values_naming_the_field(field: str, value: int) -> None:
    fields = {"max_envelopes": 6, "max_bytes": 150, "health_reserve_envelopes": 2,
              "health_reserve_bytes": 40, field: value}
    with pytest.raises(ConfigError, match=f"OutboxConfig.{field}"):
        OutboxConfig(**fields)


# --- concurrency ------------------------------------------------------------------------------


def test_appends_from_several_pool_threads_get_distinct_numbers(tmp_path: Path) -> None:
    results: list[int] = []
    errors: list[BaseException] = []
    with open_outbox(tmp_path / "outbox.db") as outbox:

        def work() -> None:
            try:
                results.extend(outbox.append("alert", sealer()) for _ in range(40))
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        assert sorted(results) == list(range(FIRST, FIRST + 120))
        assert seqs(outbox) == list(range(FIRST, FIRST + 120))


def test_a_reader_holding_a_snapshot_does_not_block_appends(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox.open(path) as outbox:
        outbox.append("alert", sealer())
        reader = sqlite3.connect(path, isolation_level=None, timeout=0.5)
        try:
            reader.execute("BEGIN")
            assert reader.execute("SELECT count(*) FROM envelopes").fetchone() == (1,)
            for _ in range(5):
                outbox.append("alert", sealer())  # WAL: the writer does not wait for the reader
            assert reader.execute("SELECT count(*) FROM envelopes").fetchone() == (1,)
            reader.execute("COMMIT")
            assert reader.execute("SELECT count(*) FROM envelopes").fetchone() == (6,)
        finally:
            reader.close()


# --- crash safety -----------------------------------------------------------------------------

WRITER = """
import sys
from actors.unit.outbox import Outbox
outbox = Outbox.open(sys.argv[1])
print("ready", flush=True)
while True:
    seq = outbox.append("alert", lambda s: s.to_bytes(8, "big") * 64)
    print(seq, flush=True)
"""


def test_every_append_that_returned_survives_a_kill_9_and_numbering_continues(
        tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    returned: list[int] = []
    stored_before: list[int] = []
    created_after_us = time.time() * 1_000_000
    first = 0
    for burst in (15, 60, 35):
        writer = start_writer(WRITER, str(path))
        read_numbers(writer, burst)
        printed = kill_and_collect(writer)  # killed while appending: it never stops by itself
        assert len(printed) >= burst
        if not stored_before:  # the file was made by the first writer: its clock's number
            first = printed[0]
            assert created_after_us <= first <= time.time() * 1_000_000
        # numbering continues after what is stored, without gaps
        assert printed == list(range(first + len(stored_before),
                                     first + len(stored_before) + len(printed)))
        returned += printed
        with open_outbox(path) as outbox:
            stored = everything(outbox)
        stored_seqs = [envelope.seq for envelope in stored]
        # in order, no duplicates
        assert stored_seqs == list(range(first, first + len(stored_seqs)))
        assert set(returned) <= set(stored_seqs)
        # at most the append in flight when killed committed without being printed
        assert len(stored_seqs) - len(stored_before) - len(printed) <= 1
        assert all(e.sealed == e.seq.to_bytes(8, "big") * 64 for e in stored)
        stored_before = stored_seqs
    with open_outbox(path) as outbox:
        assert outbox.append("alert", sealer()) == first + len(stored_before)


AHEAD_WRITER = """
import sys
from actors.unit.outbox import Outbox, PendingEnvelope
outbox = Outbox.open(sys.argv[1])
print("ready", flush=True)
size = 0
while True:
    size = size % 4 + 1
    first = outbox.next_seq()
    outbox.append_sealed([PendingEnvelope(seq, "alert", seq.to_bytes(8, "big") * 64)
                          for seq in range(first, first + size)])
    for seq in range(first, first + size):
        print(seq, flush=True)
"""


def test_every_store_of_envelopes_sealed_ahead_that_returned_survives_a_kill_9_whole(
        tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    printed: list[int] = []
    for burst in (20, 50):
        writer = start_writer(AHEAD_WRITER, str(path))
        read_numbers(writer, burst)
        printed += kill_and_collect(writer)
        with open_outbox(path) as outbox:
            stored = everything(outbox)
        stored_seqs = [envelope.seq for envelope in stored]
        assert stored_seqs == list(range(stored_seqs[0], stored_seqs[0] + len(stored_seqs)))
        assert set(printed) <= set(stored_seqs)  # every store that returned is there
        # at most the store in flight (up to 4, all or none) committed without being printed
        assert 0 <= len(stored_seqs) - len(set(printed)) <= 4
        assert all(e.sealed == e.seq.to_bytes(8, "big") * 64 for e in stored)


ADVANCER = """
import sys
from actors.unit.outbox import Outbox
outbox = Outbox.open(sys.argv[1], clock=lambda: float(sys.argv[2]))
print("ready", flush=True)
while True:
    print(outbox.advance_past(outbox.statistics().last_seq + 1000), flush=True)
    print(outbox.append("alert", lambda s: s.to_bytes(8, "big")), flush=True)
"""


def test_the_first_number_and_every_advance_survive_a_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    created = start_writer(ADVANCER, str(path), str(CREATED_S))
    printed = read_numbers(created, 0)  # killed at once: the file was just created
    printed += kill_and_collect(created)
    writer = start_writer(ADVANCER, str(path), "1.0")  # an earlier clock changes nothing
    read_numbers(writer, 40)
    printed += kill_and_collect(writer)
    with open_outbox(path, created_s=1.0) as outbox:
        assert all(seq >= FIRST for seq in seqs(outbox))
        assert outbox.statistics().last_seq >= max([FIRST - 1, *printed])
        assert outbox.append("alert", sealer()) > max([FIRST - 1, *printed])


# --- bad paths --------------------------------------------------------------------------------


OPEN_WITHOUT_WRITE_ACCESS = """
import sys
from actors.unit.outbox import Outbox
from guards.user_input import UserInputError
try:
    Outbox.open(sys.argv[1]).append("alert", lambda s: b"x")
except UserInputError as exc:
    print(exc)
else:
    print("opened")
"""


@pytest.mark.parametrize("existing", [False, True])
def test_a_read_only_folder_is_a_named_user_error(tmp_path: Path, existing: bool) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    path = folder / "outbox.db"
    if existing:
        with Outbox.open(path) as outbox:
            outbox.append("alert", sealer())
    folder.chmod(0o555)
    try:
        result = run_without_write_access(OPEN_WITHOUT_WRITE_ACCESS, str(path))
    finally:
        folder.chmod(0o755)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"outbox {path}: "), result.stdout
    assert "Traceback" not in result.stdout + result.stderr


# --- a random life against a model ------------------------------------------------------------


class OutboxModel(RuleBasedStateMachine):
    """Appends, acks and reopens in any order agree with a list-based model of the policy."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="lfr-outbox-")
        self.path = Path(self.folder) / "outbox.db"
        self.outbox = open_outbox(self.path, SMALL)
        self.rows: list[tuple[int, str, int]] = []  # (seq, kind, size) waiting
        self.last_seq = FIRST - 1

    def expected_append(self, kind: str, size: int) -> str | None:
        """Apply the documented policy to the model; the error class it predicts, if any."""
        alerts = [r for r in self.rows if r[1] == "alert"]
        alert_bytes = sum(r[2] for r in alerts)
        if kind == "alert":
            if size > 110:
                return "EnvelopeTooLarge"
            if len(alerts) + 1 > 4 or alert_bytes + size > 110:
                return "OutboxFull"
        elif size > 150:
            return "EnvelopeTooLarge"
        elif alert_bytes + size > 150:
            return "OutboxFull"
        while len(self.rows) + 1 > 6 or sum(r[2] for r in self.rows) + size > 150:
            oldest_health = next(r for r in self.rows if r[1] == "health")
            self.rows.remove(oldest_health)
        self.last_seq += 1
        self.rows.append((self.last_seq, kind, size))
        return None

    @rule(kind=st.sampled_from(["alert", "health"]), size=st.integers(1, 160))
    def append(self, kind: EnvelopeKind, size: int) -> None:
        expected = self.expected_append(kind, size)
        outcome: str | None = None
        try:
            seq = self.outbox.append(kind, sealer(size))
        except (OutboxFull, EnvelopeTooLarge) as exc:
            outcome = type(exc).__name__
        else:
            assert seq == self.last_seq
        assert outcome == expected

    @rule(data=st.data())
    def acknowledge(self, data: st.DataObject) -> None:
        up_to = data.draw(st.integers(FIRST - 2, self.last_seq + 1))
        deleted = self.outbox.acknowledge(up_to)
        kept = [r for r in self.rows if r[0] > up_to]
        assert deleted == len(self.rows) - len(kept)
        self.rows = kept

    @precondition(lambda self: bool(self.rows))
    @rule(data=st.data())
    def acknowledge_one(self, data: st.DataObject) -> None:
        row = data.draw(st.sampled_from(self.rows))
        assert self.outbox.acknowledge_one(row[0])
        self.rows.remove(row)

    @rule(ahead=st.integers(-3, 3))
    def advance_past(self, ahead: int) -> None:
        assert self.outbox.advance_past(self.last_seq + ahead) == max(self.last_seq,
                                                                       self.last_seq + ahead)
        self.last_seq = max(self.last_seq, self.last_seq + ahead)

    @rule()
    def reopen(self) -> None:
        self.outbox.close()
        self.outbox = open_outbox(self.path, SMALL, created_s=CREATED_S * 2)

    @invariant()
    def outbox_matches_the_model(self) -> None:
        pending = self.outbox.pending()
        assert [(e.seq, e.kind, len(e.sealed)) for e in pending] == self.rows
        assert all(e.sealed == body(e.seq, len(e.sealed)) for e in pending)
        statistics = self.outbox.statistics()
        assert statistics.depth == len(self.rows)
        assert statistics.sealed_bytes == sum(r[2] for r in self.rows)
        assert statistics.last_seq == self.last_seq
        assert self.outbox.first_pending() == (self.rows[0][0] if self.rows
                                               else self.last_seq + 1)

    def teardown(self) -> None:
        self.outbox.close()
        shutil.rmtree(self.folder)


TestOutboxModel = OutboxModel.TestCase
TestOutboxModel.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
