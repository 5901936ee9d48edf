"""The van's review store: every decision kept (append-only), the latest shown, the figures per
deployment (each alert counted once, where it was first decided, by its latest decision),
refusals naming the field, bounds, and the file's rules."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.van.review_store import (
    DECISION_KINDS,
    DEFAULT_FILE_NAME,
    MAX_HISTORY,
    MAX_KEYS,
    MAX_NOTE_CHARS,
    REVIEWER_ROLES,
    DecisionCounts,
    ReviewError,
    ReviewStore,
    ReviewStoreFileError,
)
from console.users import Role
from guards.user_input import UserInputError


class Clock:
    """Seconds since epoch that move one second per reading."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReviewStore]:
    with ReviewStore.open(tmp_path, clock=Clock()) as opened:
        yield opened


def decide(store: ReviewStore, seq: int, decision: str, *, unit: str = "unit-1",
           deployment: str = "dep-1", operator: str = "olive", role: str = "operator",
           note: str = "") -> None:
    store.record(unit, seq, decision, operator=operator, role=role, deployment_id=deployment,
                 note=note)


# --- recording and reading ------------------------------------------------------------------


def test_a_decision_is_recorded_with_who_when_and_the_deployment(store: ReviewStore) -> None:
    recorded = store.record("unit-1", 7, "dismissed", operator="olive", role="operator",
                            deployment_id="dep-1", note="poster of the subject on a bus")
    assert (recorded.unit, recorded.seq, recorded.decision, recorded.note, recorded.operator,
            recorded.role, recorded.deployment_id) == (
        "unit-1", 7, "dismissed", "poster of the subject on a bus", "olive", "operator", "dep-1")
    assert recorded.decided_at == 1_800_000_001.0
    assert store.latest("unit-1", 7) == recorded
    assert store.decisions("unit-1", 7) == [recorded]
    assert store.latest("unit-1", 8) is None
    assert store.decisions("unit-1", 8) == []


def test_a_later_decision_supersedes_and_every_one_is_kept(store: ReviewStore) -> None:
    decide(store, 1, "confirmed")
    decide(store, 1, "dismissed", operator="sam", role="supervisor", note="corrected")
    history = store.decisions("unit-1", 1)
    assert [(d.decision, d.operator) for d in history] == [("dismissed", "sam"),
                                                            ("confirmed", "olive")]
    assert history[0].number > history[1].number
    latest = store.latest("unit-1", 1)
    assert latest is not None
    assert (latest.decision, latest.role, latest.note) == ("dismissed", "supervisor", "corrected")
    assert [d.decision for d in store.decisions("unit-1", 1, limit=1)] == ["dismissed"]


def test_latest_many_answers_only_the_decided_alerts_asked_for(store: ReviewStore) -> None:
    decide(store, 1, "confirmed")
    decide(store, 2, "cannot_tell")
    decide(store, 2, "dismissed")
    decide(store, 1, "confirmed", unit="unit-ü")  # another unit, same number, non-ASCII id
    found = store.latest_many([("unit-1", 1), ("unit-1", 2), ("unit-1", 3), ("unit-ü", 1)])
    assert {key: d.decision for key, d in found.items()} == {
        ("unit-1", 1): "confirmed", ("unit-1", 2): "dismissed", ("unit-ü", 1): "confirmed"}
    assert store.latest_many([]) == {}
    assert store.latest_many([("unit-2", 1)]) == {}


def test_counts_take_each_alert_once_where_first_decided_by_its_latest_decision(
        store: ReviewStore) -> None:
    decide(store, 1, "confirmed")
    decide(store, 2, "dismissed")
    decide(store, 3, "dismissed")
    decide(store, 4, "cannot_tell")
    decide(store, 4, "confirmed")  # corrected: counts once, as confirmed
    decide(store, 5, "dismissed", unit="unit-2")
    # Corrected after dep-1 ended, during dep-2: still dep-1's alert.
    decide(store, 3, "cannot_tell", deployment="dep-2", operator="sam", role="supervisor")
    decide(store, 9, "confirmed", deployment="dep-2")
    decide(store, 10, "dismissed", deployment="")
    assert store.counts("dep-1") == DecisionCounts("dep-1", confirmed=2, dismissed=2,
                                                   cannot_tell=1)
    assert store.counts("dep-1").decided == 5
    assert store.counts("dep-2") == DecisionCounts("dep-2", 1, 0, 0)
    assert store.counts("") == DecisionCounts("", 0, 1, 0)
    assert store.counts("dep-9") == DecisionCounts("dep-9", 0, 0, 0)


def test_decisions_survive_a_reopen(tmp_path: Path) -> None:
    with ReviewStore.open(tmp_path) as store:
        decide(store, 3, "confirmed", note="engaged at the north gate")
    with ReviewStore.open(tmp_path) as store:
        latest = store.latest("unit-1", 3)
        assert latest is not None
        assert latest.note == "engaged at the north gate"
        assert store.counts("dep-1").confirmed == 1


def test_calls_from_many_threads_each_record_once(store: ReviewStore) -> None:
    def work(thread: int) -> None:
        for seq in range(1, 21):
            decide(store, seq, DECISION_KINDS[thread % 3], unit=f"unit-{thread}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    counts = store.counts("dep-1")
    assert (counts.confirmed, counts.dismissed, counts.cannot_tell) == (40, 40, 40)


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "field"), [
    ({"decision": "open"}, "decision"),
    ({"decision": "CONFIRMED"}, "decision"),
    ({"note": "x" * (MAX_NOTE_CHARS + 1)}, "note"),
    ({"note": "line one\nline two"}, "note"),
    ({"note": "bell\x07"}, "note"),
    ({"note": "bidi \u202e override"}, "note"),
    ({"unit": ""}, "unit"),
    ({"unit": "unit\n1"}, "unit"),
    ({"unit": "u" * 65}, "unit"),
    ({"seq": 0}, "seq"),
    ({"seq": 2**63}, "seq"),
    ({"seq": True}, "seq"),
    ({"operator": ""}, "operator"),
    ({"operator": "o" * 65}, "operator"),
    ({"operator": "olive\r"}, "operator"),
    ({"role": "admin"}, "role"),
    ({"deployment": "dep\x00"}, "deployment"),
])
def test_malformed_decisions_are_refused_naming_the_field(
        store: ReviewStore, changes: dict[str, object], field: str) -> None:
    values: dict[str, object] = {"unit": "unit-1", "seq": 1, "decision": "confirmed",
                                 "note": "", "operator": "olive", "role": "operator",
                                 "deployment": "dep-1"}
    values.update(changes)
    with pytest.raises(ReviewError) as refused:
        store.record(values["unit"], values["seq"], values["decision"],  # type: ignore[arg-type]
                     operator=values["operator"], role=values["role"],  # type: ignore[arg-type]
                     deployment_id=values["deployment"], note=values["note"])  # type: ignore[arg-type]
    assert refused.value.field == field
    assert isinstance(refused.value, UserInputError)
    assert store.latest("unit-1", 1) is None


def test_a_note_of_the_largest_size_and_any_script_is_kept(store: ReviewStore) -> None:
    note = ("é" * (MAX_NOTE_CHARS - 2)) + "ok"
    decide(store, 1, "cannot_tell", note=note)
    latest = store.latest("unit-1", 1)
    assert latest is not None
    assert latest.note == note


def test_an_alert_holds_at_most_max_history_decisions(store: ReviewStore) -> None:
    for _ in range(MAX_HISTORY):
        decide(store, 1, "cannot_tell")
    with pytest.raises(ReviewError) as refused:
        decide(store, 1, "confirmed")
    assert refused.value.field == "seq"
    assert len(store.decisions("unit-1", 1)) == MAX_HISTORY
    latest = store.latest("unit-1", 1)
    assert latest is not None
    assert latest.decision == "cannot_tell"
    decide(store, 2, "confirmed")  # other alerts are not affected


def test_reads_are_bounded(store: ReviewStore) -> None:
    with pytest.raises(ReviewError) as refused:
        store.latest_many([("unit-1", seq) for seq in range(1, MAX_KEYS + 2)])
    assert refused.value.field == "keys"
    assert store.latest_many([("unit-1", seq) for seq in range(1, MAX_KEYS + 1)]) == {}
    with pytest.raises(ReviewError):
        store.decisions("unit-1", 1, limit=MAX_HISTORY + 1)
    with pytest.raises(ReviewError):
        store.decisions("unit-1", 1, limit=0)
    with pytest.raises(ReviewError):
        store.latest_many([("unit\n", 1)])


def test_history_is_append_only_even_to_sql(store: ReviewStore) -> None:
    decide(store, 1, "confirmed")
    db = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE decisions SET decision = 'dismissed'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM decisions")
    finally:
        db.close()
    latest = store.latest("unit-1", 1)
    assert latest is not None
    assert latest.decision == "confirmed"


def test_the_roles_are_the_consoles() -> None:
    assert tuple(role.value for role in Role) == REVIEWER_ROLES


# --- the file -------------------------------------------------------------------------------


def test_the_file_is_private_to_the_van(tmp_path: Path) -> None:
    with ReviewStore.open(tmp_path) as store:
        decide(store, 1, "confirmed")
        assert store.path == tmp_path / DEFAULT_FILE_NAME
        for name in os.listdir(tmp_path):
            mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
            assert mode & 0o077 == 0, (name, oct(mode))


def test_another_programs_database_or_a_missing_folder_is_refused(tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / DEFAULT_FILE_NAME)
    other.execute("CREATE TABLE something (x)")
    other.commit()
    other.close()
    with pytest.raises(ReviewStoreFileError, match="another program"):
        ReviewStore.open(tmp_path)
    with pytest.raises(ReviewStoreFileError, match="does not exist"):
        ReviewStore.open(tmp_path / "missing")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / DEFAULT_FILE_NAME).mkdir()
    with pytest.raises(ReviewStoreFileError, match="regular file"):
        ReviewStore.open(tmp_path / "folder")
