"""The van's event store: exactly-once storage, the acknowledgeable mark, paged reads, crashes
and bad paths. Each test names the rule it guards."""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.van.event_store import (
    MAX_PAGE,
    EventStore,
    EventStoreFileError,
    StoredEvent,
    VerifiedEnvelope,
)
from guards.user_input import UserInputError
from tests.actors.van.processes import (
    kill_and_collect,
    read_numbers,
    run_without_write_access,
    start_writer,
)


def sealed(unit: str, seq: int) -> bytes:
    return f"{unit}:{seq}".encode() * 4


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore.open(tmp_path / "events.db") as opened:
        yield opened


def deliver(store: EventStore, unit: str, *seqs: int) -> list[bool]:
    return [store.store(unit, seq, "alert", 1000.0 + seq, sealed(unit, seq)) for seq in seqs]


def everything(store: EventStore, unit: str) -> list[StoredEvent]:
    """Every event of ``unit``, page by page."""
    result: list[StoredEvent] = []
    while page := store.by_unit(unit, before_seq=result[-1].seq if result else None):
        result += page
    return result


def highest_contiguous(seqs: set[int], floor: int = 0) -> int:
    mark = floor
    while mark + 1 in seqs:
        mark += 1
    return mark


# --- exactly once -----------------------------------------------------------------------------


def test_a_redelivered_envelope_is_refused_and_stored_once(store: EventStore) -> None:
    assert deliver(store, "u1", 1, 2, 1, 2) == [True, True, False, False]
    assert [e.seq for e in store.by_unit("u1")] == [2, 1]
    statistics = store.statistics()
    assert (statistics.events, statistics.stored, statistics.duplicates) == (2, 2, 2)


def test_a_duplicate_above_a_gap_is_refused_too(store: EventStore) -> None:
    assert deliver(store, "u1", 5, 5) == [True, False]  # UNIQUE (unit, seq), not just the mark


def test_deduplication_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventStore.open(path) as store:
        deliver(store, "u1", 1, 3)
    with EventStore.open(path) as store:
        assert deliver(store, "u1", 1, 3, 2) == [False, False, True]
        assert store.acknowledgeable("u1") == 3


def test_the_same_number_from_two_units_is_two_events(store: EventStore) -> None:
    assert deliver(store, "u1", 1) == deliver(store, "u2", 1) == [True]
    assert store.statistics().units == 2


# --- the acknowledgeable mark -----------------------------------------------------------------


def test_the_mark_follows_envelopes_delivered_in_order(store: EventStore) -> None:
    assert store.acknowledgeable("u1") == 0
    deliver(store, "u1", 1, 2, 3)
    assert store.acknowledgeable("u1") == 3


def test_the_mark_stops_below_a_gap_and_passes_it_once_filled(store: EventStore) -> None:
    deliver(store, "u1", 1, 2, 4, 5, 7)
    assert store.acknowledgeable("u1") == 2
    deliver(store, "u1", 3)
    assert store.acknowledgeable("u1") == 5
    deliver(store, "u1", 6)
    assert store.acknowledgeable("u1") == 7


def test_a_number_at_or_below_the_mark_is_refused_even_if_never_stored(store: EventStore) -> None:
    deliver(store, "u1", 1)
    assert store.skip_below("u1", 4) == 3  # the unit dropped health reports 2 and 3
    assert deliver(store, "u1", 2, 3) == [False, False]  # an old number: a replay
    assert deliver(store, "u1", 4) == [True]
    assert store.acknowledgeable("u1") == 4


def test_skip_below_passes_the_envelopes_already_stored_above_it(store: EventStore) -> None:
    deliver(store, "u1", 1, 5, 6, 8)
    assert store.skip_below("u1", 5) == 6
    assert store.skip_below("u1", 2) == 6  # the mark never goes back
    assert store.acknowledgeable("u1") == 6


def test_the_mark_is_per_unit_and_persisted(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventStore.open(path) as store:
        deliver(store, "u1", 1, 2)
        deliver(store, "u2", 2)
        store.skip_below("u3", 10)
    with EventStore.open(path) as store:
        assert [store.acknowledgeable(u) for u in ("u1", "u2", "u3")] == [2, 0, 9]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("store"), st.integers(1, 25)),
                          st.tuples(st.just("skip"), st.integers(1, 25))), max_size=40))
def test_the_mark_and_the_refusals_match_a_set_model(tmp_path_factory: pytest.TempPathFactory,
                                                     operations: list[tuple[str, int]]) -> None:
    stored: set[int] = set()
    mark = 0
    with EventStore.open(tmp_path_factory.mktemp("model") / "events.db") as store:
        for operation, seq in operations:
            if operation == "store":
                expected = seq > mark and seq not in stored
                assert store.store("u1", seq, "health", 1.0, b"x") == expected
                stored |= {seq} if expected else set()
            else:
                mark = max(mark, seq - 1)
                store.skip_below("u1", seq)
            mark = highest_contiguous(stored, mark)
            assert store.acknowledgeable("u1") == mark



@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 25), st.integers(1, 25)), max_size=40))
def test_store_and_mark_is_skip_below_then_store_then_the_mark(
        tmp_path_factory: pytest.TempPathFactory, operations: list[tuple[int, int]]) -> None:
    stored: set[int] = set()
    mark = 0
    with EventStore.open(tmp_path_factory.mktemp("model") / "events.db") as store:
        for skip_to, seq in operations:
            mark = highest_contiguous(stored, max(mark, skip_to - 1))
            expected = seq > mark and seq not in stored
            stored |= {seq} if expected else set()
            mark = highest_contiguous(stored, mark)
            assert store.store_and_mark("u1", seq, "alert", 1.0, b"x",
                                        skip_below=skip_to) == (expected, mark)
            assert store.acknowledgeable("u1") == mark
        assert sorted(event.seq for event in everything(store, "u1")) == sorted(stored)


def test_a_skip_that_passes_nothing_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventStore.open(path) as store:
        deliver(store, "u1", 1, 2, 3)
        size = Path(f"{path}-wal").stat().st_size
        assert [store.skip_below("u1", seq) for seq in (1, 2, 4)] == [3, 3, 3]
        assert store.store_and_mark("u1", 4, "alert", 1.0, b"x", skip_below=4) == (True, 4)
        grown = Path(f"{path}-wal").stat().st_size
        assert store.skip_below("u1", 5) == 4
        assert Path(f"{path}-wal").stat().st_size == grown > size


# --- reads ------------------------------------------------------------------------------------


def test_events_keep_the_sealed_bytes_and_header_fields(tmp_path: Path) -> None:
    with EventStore.open(tmp_path / "events.db", clock=lambda: 2000.0) as store:
        store.store("u1", 1, "alert", 1500.5, b"\x00sealed\xff")
        store.store("u1", 2, "health", 1501.0, b"report")
        health, alert = store.by_unit("u1")
    assert (alert.unit, alert.seq, alert.kind, alert.captured_at, alert.received_at,
            alert.decision, alert.sealed) == ("u1", 1, "alert", 1500.5, 2000.0, "open",
                                              b"\x00sealed\xff")
    assert (health.kind, health.decision) == ("health", None)


def test_by_unit_pages_newest_first(store: EventStore) -> None:
    deliver(store, "u1", *range(1, 8))
    deliver(store, "u2", 1)
    first = store.by_unit("u1", limit=3)
    assert [e.seq for e in first] == [7, 6, 5]
    second = store.by_unit("u1", before_seq=first[-1].seq, limit=3)
    assert [e.seq for e in second] == [4, 3, 2]
    assert [e.seq for e in store.by_unit("u1", before_seq=2, limit=3)] == [1]


def test_recent_pages_every_unit_by_arrival(store: EventStore) -> None:
    deliver(store, "u1", 2)
    deliver(store, "u2", 1)
    deliver(store, "u1", 1)
    first = store.recent(limit=2)
    assert [(e.unit, e.seq) for e in first] == [("u1", 1), ("u2", 1)]
    assert [(e.unit, e.seq) for e in store.recent(before_id=first[-1].id)] == [("u1", 2)]


@pytest.mark.parametrize("limit", [0, MAX_PAGE + 1])
def test_a_page_is_bounded(store: EventStore, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.by_unit("u1", limit=limit)
    with pytest.raises(ValueError, match="limit"):
        store.recent(limit=limit)


@pytest.mark.parametrize(("unit", "seq", "kind", "captured_at", "message"), [
    ("", 1, "alert", 1.0, "unit id"), ("u\n1", 1, "alert", 1.0, "unit id"),
    ("u" * 256, 1, "alert", 1.0, "unit id"), ("u1", 0, "alert", 1.0, "seq"),
    ("u1", 2**63, "alert", 1.0, "seq"), ("u1", True, "alert", 1.0, "seq"),
    ("u1", 1, "crop", 1.0, "kind"), ("u1", 1, "alert", math.nan, "captured_at")])
def test_bad_header_fields_are_refused(store: EventStore, unit: str, seq: int, kind: str,
                                       captured_at: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.store(unit, seq, kind, captured_at, b"x")  # type: ignore[arg-type]
    assert store.statistics().events == 0


# --- concurrency ------------------------------------------------------------------------------


def test_a_reader_holding_a_snapshot_does_not_block_stores(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventStore.open(path) as store:
        deliver(store, "u1", 1)
        reader = sqlite3.connect(path, isolation_level=None, timeout=0.5)
        try:
            reader.execute("BEGIN")
            assert reader.execute("SELECT count(*) FROM events").fetchone() == (1,)
            deliver(store, "u1", 2, 3)  # WAL: the writer does not wait for the reader
            assert reader.execute("SELECT count(*) FROM events").fetchone() == (1,)
            reader.execute("COMMIT")
            assert reader.execute("SELECT count(*) FROM events").fetchone() == (3,)
        finally:
            reader.close()


def test_the_console_reads_pages_while_the_receiver_stores(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    errors: list[BaseException] = []
    seen: list[int] = []
    with EventStore.open(path) as writer, EventStore.open(path) as console:
        done = threading.Event()

        def read() -> None:
            try:
                while not done.is_set():
                    page = console.by_unit("u1", limit=10)
                    seen.append(page[0].seq if page else 0)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        thread = threading.Thread(target=read)
        thread.start()
        try:
            deliver(writer, "u1", *range(1, 101))
        finally:
            done.set()
            thread.join(timeout=30)
        assert errors == []
        assert seen == sorted(seen)  # the newest seen only grows
        assert console.acknowledgeable("u1") == 100


# --- crash safety -----------------------------------------------------------------------------

WRITER = """
import sys
from actors.van.event_store import EventStore
store = EventStore.open(sys.argv[1])
block = int(sys.argv[2])
print("ready", flush=True)
while True:
    base = 4 * block
    for seq in (base + 2, base + 1, base + 1, base + 4, base + 3):  # out of order, a duplicate
        if store.store("u1", seq, "alert", 1.0, seq.to_bytes(8, "big") * 64):
            print(seq, flush=True)
    block += 1
"""


def test_every_store_that_returned_true_survives_a_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    returned: list[int] = []
    stored_before: set[int] = set()
    block = 0
    for burst in (20, 70, 40):
        writer = start_writer(WRITER, str(path), str(block))
        read_numbers(writer, burst)
        printed = kill_and_collect(writer)  # killed while storing: it never stops by itself
        assert len(printed) >= burst
        assert not set(printed) & set(returned)  # True at most once per number
        returned += printed
        with EventStore.open(path) as store:
            stored = [e.seq for e in everything(store, "u1")]
            mark = store.acknowledgeable("u1")
        assert len(stored) == len(set(stored))
        assert set(returned) <= set(stored)
        # at most the store in flight when killed committed without being printed
        assert len(set(stored) - stored_before - set(printed)) <= 1
        assert mark == highest_contiguous(set(stored))
        stored_before = set(stored)
        block = (max(stored) - 1) // 4  # the next run redelivers the block it was killed in
    assert mark >= len(returned) - 4


# --- bad paths --------------------------------------------------------------------------------


OPEN_WITHOUT_WRITE_ACCESS = """
import sys
from actors.van.event_store import EventStore
from guards.user_input import UserInputError
try:
    EventStore.open(sys.argv[1]).store("u1", 1, "alert", 1.0, b"x")
except UserInputError as exc:
    print(exc)
else:
    print("opened")
"""


@pytest.mark.parametrize("existing", [False, True])
def test_a_read_only_folder_is_a_named_user_error(tmp_path: Path, existing: bool) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    path = folder / "events.db"
    if existing:
        with EventStore.open(path) as store:
            deliver(store, "u1", 1)
    folder.chmod(0o555)
    try:
        result = run_without_write_access(OPEN_WITHOUT_WRITE_ACCESS, str(path))
    finally:
        folder.chmod(0o755)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"event store {path}: "), result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_file_errors_are_user_input_errors() -> None:
    assert issubclass(EventStoreFileError, UserInputError)


# --- several envelopes in one transaction (a DeliverBatch) ------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 25), st.lists(st.integers(1, 25), min_size=1,
                                                        max_size=6)), max_size=15))
def test_store_all_and_mark_is_the_skip_then_each_store_in_order(
        tmp_path_factory: pytest.TempPathFactory,
        operations: list[tuple[int, list[int]]]) -> None:
    stored: set[int] = set()
    mark = 0
    with EventStore.open(tmp_path_factory.mktemp("model") / "events.db") as store:
        for skip_to, seqs in operations:
            mark = highest_contiguous(stored, max(mark, skip_to - 1))
            expected: list[bool] = []
            for seq in seqs:  # a number twice in one batch: the second is a duplicate
                expected.append(seq > mark and seq not in stored)
                stored |= {seq} if expected[-1] else set()
                mark = highest_contiguous(stored, mark)
            items = [VerifiedEnvelope(seq, "alert", 1.0, sealed("u1", seq)) for seq in seqs]
            assert store.store_all_and_mark("u1", items, skip_below=skip_to) == (expected, mark)
            assert store.acknowledgeable("u1") == mark
        assert sorted(event.seq for event in everything(store, "u1")) == sorted(stored)
        assert store.statistics().stored == len(stored)


def test_store_all_and_mark_stores_all_or_nothing(store: EventStore) -> None:
    good = VerifiedEnvelope(1, "alert", 1.0, sealed("u1", 1))
    broken = VerifiedEnvelope(2, "alert", 1.0, object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.store_all_and_mark("u1", [good, broken])
    assert everything(store, "u1") == []
    assert store.acknowledgeable("u1") == 0
    assert store.store_all_and_mark("u1", [good]) == ([True], 1)


def test_store_all_and_mark_checks_every_header_before_storing(store: EventStore) -> None:
    items = [VerifiedEnvelope(1, "alert", 1.0, b"x"), VerifiedEnvelope(0, "alert", 1.0, b"y")]
    with pytest.raises(ValueError, match="seq"):
        store.store_all_and_mark("u1", items)
    with pytest.raises(ValueError, match="unit id"):
        store.store_all_and_mark("", [])
    assert everything(store, "u1") == []
    assert store.store_all_and_mark("u1", []) == ([], 0)
