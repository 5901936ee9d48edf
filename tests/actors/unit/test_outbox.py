"""The unit's outbox: order, sequence numbers, acknowledgements, the full policy, crashes and
bad paths. Each test names the rule it guards."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.unit.outbox import (
    MAX_PAGE,
    EnvelopeKind,
    EnvelopeTooLarge,
    Outbox,
    OutboxConfig,
    OutboxFull,
    PendingEnvelope,
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


def body(seq: int, size: int = 16) -> bytes:
    """Sealed bytes that carry their sequence number, as a real header does."""
    return (seq.to_bytes(8, "big") * (size // 8 + 1))[:size]


def sealer(size: int = 16) -> Callable[[int], bytes]:
    return lambda seq: body(seq, size)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox.open(tmp_path / "outbox.db", SMALL) as opened:
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


def test_sequence_numbers_start_at_one_and_pending_returns_them_in_order(outbox: Outbox) -> None:
    kinds: list[EnvelopeKind] = ["alert", "health", "alert"]
    assert [outbox.append(kind, sealer()) for kind in kinds] == [1, 2, 3]
    pending = outbox.pending()
    assert [(e.seq, e.kind, e.sealed) for e in pending] == [
        (1, "alert", body(1)), (2, "health", body(2)), (3, "alert", body(3))]


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
    with Outbox.open(path, SMALL) as outbox:
        for _ in range(3):
            outbox.append("alert", sealer())
        outbox.acknowledge(3)
        assert outbox.append("alert", sealer()) == 4
        outbox.acknowledge(4)
    with Outbox.open(path, SMALL) as outbox:
        assert outbox.depth() == 0
        assert outbox.first_pending() == 5
        assert outbox.append("health", sealer()) == 5


def test_a_failing_seal_stores_nothing_and_uses_no_number(outbox: Outbox) -> None:
    def broken(seq: int) -> bytes:
        raise RuntimeError("no key")

    with pytest.raises(RuntimeError, match="no key"):
        outbox.append("alert", broken)
    assert outbox.depth() == 0
    assert outbox.append("alert", sealer()) == 1


def test_an_unknown_kind_is_refused(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="unknown envelope kind"):
        outbox.append("crop", sealer())  # type: ignore[arg-type]


def test_pending_pages_after_a_number_and_bounds_the_page(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "outbox.db") as outbox:
        for _ in range(10):
            outbox.append("alert", sealer())
        assert [e.seq for e in outbox.pending(after_seq=4, limit=3)] == [5, 6, 7]
        assert outbox.pending(after_seq=10) == []
        with pytest.raises(ValueError, match="limit"):
            outbox.pending(limit=MAX_PAGE + 1)
        with pytest.raises(ValueError, match="limit"):
            outbox.pending(limit=0)


# --- acknowledgements -------------------------------------------------------------------------


def test_a_cumulative_ack_deletes_everything_up_to_it(outbox: Outbox) -> None:
    for _ in range(4):
        outbox.append("alert", sealer())
    assert outbox.acknowledge(2) == 2
    assert seqs(outbox) == [3, 4]
    assert outbox.acknowledge(2) == 0  # a repeated ack changes nothing
    assert outbox.statistics().acknowledged == 2


def test_a_selective_ack_deletes_one_envelope_above_a_gap(outbox: Outbox) -> None:
    for _ in range(4):
        outbox.append("alert", sealer())
    assert outbox.acknowledge_one(3)
    assert not outbox.acknowledge_one(3)
    assert seqs(outbox) == [1, 2, 4]
    assert outbox.first_pending() == 1
    outbox.acknowledge(2)
    assert outbox.first_pending() == 4


# --- the full policy --------------------------------------------------------------------------


def test_the_oldest_health_reports_give_way_to_a_new_envelope(outbox: Outbox) -> None:
    for _ in range(4):
        outbox.append("health", sealer())
    for _ in range(2):
        outbox.append("alert", sealer())  # 6 envelopes: full by count
    assert outbox.append("alert", sealer()) == 7
    assert seqs(outbox) == [2, 3, 4, 5, 6, 7]  # health 1 dropped, the oldest
    outbox.append("health", sealer())
    assert seqs(outbox) == [3, 4, 5, 6, 7, 8]
    statistics = outbox.statistics()
    assert (statistics.dropped_health, statistics.refused) == (2, 0)


def test_health_reports_give_way_by_bytes_too(outbox: Outbox) -> None:
    for _ in range(3):
        outbox.append("health", sealer(40))  # 120 of 150 bytes
    outbox.append("alert", sealer(50))  # needs 20 more: one health report goes
    assert seqs(outbox) == [2, 3, 4]


def test_alerts_are_never_dropped_and_one_beyond_their_share_raises_outbox_full(
        outbox: Outbox) -> None:
    alerts = [outbox.append("alert", sealer()) for _ in range(4)]  # the alerts' share: 4
    with pytest.raises(OutboxFull):
        outbox.append("alert", sealer())
    assert seqs(outbox) == alerts
    assert outbox.statistics().refused == 1
    # the refused alert used no number, and the health report with the alarm still fits
    assert outbox.append("health", sealer()) == 5
    assert outbox.append("health", sealer()) == 6
    assert outbox.append("health", sealer()) == 7  # health 5 gives way, the alerts stay
    assert seqs(outbox) == [*alerts, 6, 7]


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
    assert seqs(outbox) == [1]


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
    outbox.acknowledge(1)
    assert outbox.append("alert", sealer()) == 5


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
    assert (statistics.last_seq, statistics.appended) == (2, 2)


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
    with Outbox.open(tmp_path / "outbox.db") as outbox:

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
        assert sorted(results) == list(range(1, 121))
        assert seqs(outbox) == list(range(1, 121))


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
    for burst in (15, 60, 35):
        writer = start_writer(WRITER, str(path))
        read_numbers(writer, burst)
        printed = kill_and_collect(writer)  # killed while appending: it never stops by itself
        assert len(printed) >= burst
        # numbering continues after what is stored, without gaps
        assert printed == list(range(len(stored_before) + 1, len(stored_before) + 1
                                     + len(printed)))
        returned += printed
        with Outbox.open(path) as outbox:
            stored = everything(outbox)
        stored_seqs = [envelope.seq for envelope in stored]
        assert stored_seqs == list(range(1, len(stored_seqs) + 1))  # in order, no duplicates
        assert set(returned) <= set(stored_seqs)
        # at most the append in flight when killed committed without being printed
        assert len(stored_seqs) - len(stored_before) - len(printed) <= 1
        assert all(e.sealed == e.seq.to_bytes(8, "big") * 64 for e in stored)
        stored_before = stored_seqs
    with Outbox.open(path) as outbox:
        assert outbox.append("alert", sealer()) == len(stored_before) + 1


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
        self.outbox = Outbox.open(self.path, SMALL)
        self.rows: list[tuple[int, str, int]] = []  # (seq, kind, size) waiting
        self.last_seq = 0

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
        up_to = data.draw(st.integers(0, self.last_seq + 1))
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

    @rule()
    def reopen(self) -> None:
        self.outbox.close()
        self.outbox = Outbox.open(self.path, SMALL)

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
