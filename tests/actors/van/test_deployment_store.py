"""The van's deployment store: one active deployment, watchlists that only grow and are sealed
at rest, reference photos, the units' view, and what is wiped at deployment end (scanned in
the file and its -wal). Each test names the rule it guards."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from actors.unit.watchlist import ThresholdError
from actors.van import deployment_store
from actors.van.deployment_store import (
    MAX_PAGE,
    MAX_PHOTO_BYTES,
    MAX_REASON_CHARS,
    MAX_SIGNED_BYTES,
    Deployment,
    DeploymentError,
    DeploymentStore,
    DeploymentStoreFileError,
    SealedRowError,
    UnitWatchlistState,
    photo_info,
    watchlist_info,
)
from actors.van.event_store import EventStore
from guards.user_input import UserInputError
from secure.node_keys import NodeIdError
from secure.sealing import EncryptionKeyPair

T0 = 1_700_000_000.0
SIGNED_BYTES = 300_000
"""A signed watchlist spanning many overflow pages (about 75 of 4 KiB)."""


@pytest.fixture(scope="module")
def van_key() -> EncryptionKeyPair:
    return EncryptionKeyPair.generate()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "deployments.sqlite"


@pytest.fixture
def store(path: Path, van_key: EncryptionKeyPair) -> Iterator[DeploymentStore]:
    with DeploymentStore.open(path, van_key) as opened:
        yield opened


def signed_watchlist(version: int, size: int = 4096) -> bytes:
    """Stand-in for a signed watchlist file: random bytes, distinct per call."""
    return f"signed v{version}:".encode() + os.urandom(size)


def jpeg(size: int = 2048) -> bytes:
    return b"\xff\xd8\xff\xe0" + os.urandom(size)


def put(store: DeploymentStore, deployment_id: str, version: int,
        signed: bytes | None = None, *, now: float = T0 + 10) -> bytes:
    signed = signed_watchlist(version) if signed is None else signed
    store.put_watchlist(deployment_id, version, signed, subject_count=10 * version,
                        payload_sha256=hashlib.sha256(signed).hexdigest(), not_before=T0,
                        not_after=T0 + 86_400, now=now)
    return signed


def raw(path: Path) -> sqlite3.Connection:
    """Another connection to the file, as a tamperer or a forensic reader would have."""
    return sqlite3.connect(path, isolation_level=None)


def fragments(blob: bytes, size: int = 32, step: int = 997) -> list[bytes]:
    """Short slices of ``blob``: a long blob is split over overflow pages, so it never appears
    whole in the file; each slice does unless it straddles a page boundary (< 1% of them)."""
    return [blob[i:i + size] for i in range(0, len(blob) - size, step)]


def found_in(files: list[Path], pieces: list[bytes]) -> int:
    """How many of ``pieces`` occur in any of ``files``."""
    data = b"".join(file.read_bytes() for file in files if file.exists())
    return sum(piece in data for piece in pieces)


def database_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


# --- deployments ------------------------------------------------------------------------------


def test_a_deployment_starts_is_active_and_ends(store: DeploymentStore) -> None:
    assert store.active_deployment() is None
    started = store.start_deployment("op-1", 0.6, now=T0)
    assert started == Deployment("op-1", 0.6, T0, None)
    assert started.active
    assert store.active_deployment() == started
    ended = store.end_deployment(now=T0 + 3600)
    assert ended == Deployment("op-1", 0.6, T0, T0 + 3600)
    assert not ended.active
    assert store.active_deployment() is None


def test_deployments_are_listed_last_started_first_and_bounded(store: DeploymentStore) -> None:
    for i in range(5):
        store.start_deployment(f"op-{i}", 0.6, now=T0 + i)
        store.end_deployment(now=T0 + i + 0.5)
    store.start_deployment("op-5", 0.7, now=T0 - 100)  # a clock stepped back: still newest
    assert [d.id for d in store.deployments()] == ["op-5", "op-4", "op-3", "op-2", "op-1", "op-0"]
    assert [d.id for d in store.deployments(limit=2)] == ["op-5", "op-4"]
    for limit in (0, MAX_PAGE + 1):
        with pytest.raises(DeploymentError, match="limit must lie in"):
            store.deployments(limit)


def test_a_second_deployment_cannot_start_while_one_is_active(store: DeploymentStore) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    with pytest.raises(DeploymentError,
                       match="deployment 'op-2' cannot start: deployment 'op-1' is active"):
        store.start_deployment("op-2", 0.6, now=T0 + 1)
    assert [d.id for d in store.deployments()] == ["op-1"]


def test_a_deployment_id_is_used_once(store: DeploymentStore) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    store.end_deployment(now=T0 + 1)
    with pytest.raises(DeploymentError, match="deployment id 'op-1' was used before"):
        store.start_deployment("op-1", 0.6, now=T0 + 2)
    assert store.active_deployment() is None


def test_ending_without_an_active_deployment_is_refused(store: DeploymentStore) -> None:
    with pytest.raises(DeploymentError, match="no deployment is active"):
        store.end_deployment(now=T0)


@pytest.mark.parametrize("bad_id", ["", "*", "   ", "a\nb", "x" * 65])
def test_a_malformed_deployment_id_is_refused(store: DeploymentStore, bad_id: str) -> None:
    with pytest.raises(NodeIdError, match="deployment id"):
        store.start_deployment(bad_id, 0.6, now=T0)
    assert store.deployments() == []


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.5, float("nan"), float("inf")])
def test_a_threshold_outside_0_1_is_refused(store: DeploymentStore, threshold: float) -> None:
    with pytest.raises(ThresholdError, match="deployment threshold must lie strictly between"):
        store.start_deployment("op-1", threshold, now=T0)
    assert store.deployments() == []


@pytest.mark.parametrize("now", [float("nan"), float("inf"), True])
def test_a_time_that_is_not_finite_is_refused(store: DeploymentStore, now: float) -> None:
    with pytest.raises(DeploymentError, match="now must be a finite time"):
        store.start_deployment("op-1", 0.6, now=now)


def test_at_most_one_active_deployment_is_also_a_schema_rule(store: DeploymentStore,
                                                              path: Path) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    db = raw(path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="one_active_deployment"):
            db.execute("INSERT INTO deployments VALUES (NULL, 'op-2', 0.6, 0, NULL)")
    finally:
        db.close()


# --- watchlists -------------------------------------------------------------------------------


def test_the_current_watchlist_is_the_active_deployments_highest_version(
        store: DeploymentStore) -> None:
    assert store.current_watchlist() is None  # no deployment
    store.start_deployment("op-1", 0.6, now=T0)
    assert store.current_watchlist() is None  # none pushed
    put(store, "op-1", 1)
    second = put(store, "op-1", 2, now=T0 + 20)
    current = store.current_watchlist()
    assert current is not None
    assert current.signed == second
    facts = current.facts
    assert (facts.deployment_id, facts.version, facts.subject_count, facts.pushed_at,
            facts.signed_bytes, facts.stored) == ("op-1", 2, 20, T0 + 20, len(second), True)
    assert facts.payload_sha256 == hashlib.sha256(second).hexdigest()
    assert (facts.not_before, facts.not_after) == (T0, T0 + 86_400)


def test_watchlist_facts_page_highest_version_first(store: DeploymentStore) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    for version in (1, 2, 5, 9):
        put(store, "op-1", version)
    assert [f.version for f in store.watchlist_facts("op-1")] == [9, 5, 2, 1]
    assert [f.version for f in store.watchlist_facts("op-1", limit=2)] == [9, 5]
    assert [f.version for f in store.watchlist_facts("op-1", before_version=5)] == [2, 1]
    assert store.watchlist_facts("op-unknown") == []


def test_the_sha256_is_kept_in_lowercase(store: DeploymentStore) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    store.put_watchlist("op-1", 1, b"signed", subject_count=1, payload_sha256="AB" * 32,
                        not_before=T0, not_after=T0 + 1, now=T0)
    assert store.watchlist_facts("op-1")[0].payload_sha256 == "ab" * 32


@pytest.mark.parametrize("version", [3, 2])
def test_a_version_at_or_below_the_highest_is_a_rollback(store: DeploymentStore,
                                                         version: int) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    put(store, "op-1", 3)
    with pytest.raises(DeploymentError,
                       match=f"watchlist version {version} of deployment 'op-1' refused: "
                             "version 3 is stored already and versions only grow"):
        put(store, "op-1", version)
    assert [f.version for f in store.watchlist_facts("op-1")] == [3]


def test_versions_start_again_in_a_new_deployment(store: DeploymentStore) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    put(store, "op-1", 4)
    store.end_deployment(now=T0 + 1)
    store.start_deployment("op-2", 0.6, now=T0 + 2)
    signed = put(store, "op-2", 1)
    current = store.current_watchlist()
    assert current is not None
    assert (current.facts.deployment_id, current.facts.version, current.signed) == (
        "op-2", 1, signed)


def test_a_watchlist_only_goes_to_the_active_deployment(store: DeploymentStore) -> None:
    with pytest.raises(DeploymentError, match="'op-1' refused: there is no such deployment "
                                              r"\(no deployment is active\)"):
        put(store, "op-1", 1)
    store.start_deployment("op-1", 0.6, now=T0)
    store.end_deployment(now=T0 + 1)
    store.start_deployment("op-2", 0.6, now=T0 + 2)
    with pytest.raises(DeploymentError,
                       match=r"'op-1' refused: it has ended \(the active one is 'op-2'\)"):
        put(store, "op-1", 1)
    with pytest.raises(DeploymentError, match="'op-3' refused: there is no such deployment"):
        put(store, "op-3", 1)
    assert store.watchlist_facts("op-1") == []


def test_an_oversize_or_empty_watchlist_is_refused(store: DeploymentStore) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    with pytest.raises(DeploymentError, match=f"signed watchlist of {MAX_SIGNED_BYTES + 1} "
                                              f"bytes is over the {MAX_SIGNED_BYTES}-byte limit"):
        put(store, "op-1", 1, bytes(MAX_SIGNED_BYTES + 1))
    with pytest.raises(DeploymentError, match="signed watchlist is empty"):
        put(store, "op-1", 1, b"")
    assert store.watchlist_facts("op-1") == []


@pytest.mark.parametrize(("facts", "message"), [
    ({"subject_count": 0}, "subject count must be an integer in"),
    ({"payload_sha256": "ab" * 31}, "payload sha256 must be 64 hex digits"),
    ({"payload_sha256": "zz" * 32}, "payload sha256 must be 64 hex digits"),
    ({"not_after": T0}, "validity window is empty"),
    ({"not_before": float("nan")}, "not_before must be a finite time"),
])
def test_malformed_manifest_facts_are_refused(store: DeploymentStore, facts: dict[str, object],
                                              message: str) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    arguments: dict[str, object] = {"subject_count": 1, "payload_sha256": "ab" * 32,
                                    "not_before": T0, "not_after": T0 + 1, "now": T0}
    arguments.update(facts)
    with pytest.raises(DeploymentError, match=message):
        store.put_watchlist("op-1", 1, b"signed", **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [0, -1, True, 2**63])
def test_a_bad_version_is_refused(store: DeploymentStore, version: int) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    with pytest.raises(DeploymentError, match="watchlist version must be an integer"):
        put(store, "op-1", version)


def test_a_stored_watchlist_is_never_shown_in_a_repr(store: DeploymentStore) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    put(store, "op-1", 1, b"EMBEDDINGS-" * 10)
    current = store.current_watchlist()
    assert current is not None
    assert "EMBEDDINGS" not in repr(current)
    assert "version=1" in repr(current)


# --- sealed at rest ---------------------------------------------------------------------------


def test_no_plaintext_blob_reaches_the_file(store: DeploymentStore, path: Path) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    signed = put(store, "op-1", 1, signed_watchlist(1, SIGNED_BYTES))
    photo = jpeg(50_000)
    store.put_reference_photo("op-1", "subject-1", photo)
    db = raw(path)
    try:
        (sealed,) = db.execute("SELECT sealed FROM watchlists").fetchone()
    finally:
        db.close()
    assert found_in(database_files(path), fragments(sealed)) > 0  # the scan does find bytes
    assert found_in(database_files(path), fragments(signed)) == 0
    assert found_in(database_files(path), fragments(photo)) == 0
    assert found_in(database_files(path), [b"signed v1:"]) == 0


def test_a_watchlist_blob_copied_to_another_deployment_does_not_open(
        store: DeploymentStore, path: Path) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    put(store, "op-1", 1)
    db = raw(path)
    try:
        (first,) = db.execute("SELECT sealed FROM watchlists").fetchone()
        store.end_deployment(now=T0 + 1)
        store.start_deployment("op-2", 0.6, now=T0 + 2)
        put(store, "op-2", 1)
        db.execute("UPDATE watchlists SET sealed = ? WHERE deployment = 'op-2'", (first,))
    finally:
        db.close()
    with pytest.raises(SealedRowError,
                       match=f"deployment store {path}: watchlist version 1 of deployment "
                             "'op-2' does not open with the van's key under its own row"):
        store.current_watchlist()


def test_a_watchlist_blob_copied_to_another_version_does_not_open(
        store: DeploymentStore, path: Path) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    put(store, "op-1", 1)
    put(store, "op-1", 2)
    db = raw(path)
    try:
        db.execute("UPDATE watchlists SET sealed = (SELECT sealed FROM watchlists "
                   "WHERE version = 1) WHERE version = 2")
    finally:
        db.close()
    with pytest.raises(SealedRowError, match="watchlist version 2 of deployment 'op-1'"):
        store.current_watchlist()


def test_a_photo_copied_to_another_subject_does_not_open(store: DeploymentStore,
                                                         path: Path) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    store.put_reference_photo("op-1", "alice", jpeg())
    store.put_reference_photo("op-1", "bob", jpeg())
    db = raw(path)
    try:
        db.execute("UPDATE reference_photos SET sealed = (SELECT sealed FROM reference_photos "
                   "WHERE subject = 'alice') WHERE subject = 'bob'")
    finally:
        db.close()
    with pytest.raises(SealedRowError, match="reference photo of 'bob' in deployment 'op-1'"):
        store.reference_photo("op-1", "bob")
    assert store.reference_photo("op-1", "alice") is not None


def test_the_info_binds_each_blob_to_its_row(van_key: EncryptionKeyPair) -> None:
    infos = {watchlist_info("op-1", 1), watchlist_info("op-1", 2), watchlist_info("op-2", 1),
             photo_info("op-1", "a"), photo_info("op-1", "b"), photo_info("op-2", "a")}
    assert len(infos) == 6
    sealed = van_key.public_key.seal(b"x", watchlist_info("op-1", 1))
    assert van_key.open(sealed, watchlist_info("op-1", 1)) == b"x"


def test_a_store_opened_with_another_van_key_is_refused(path: Path,
                                                        van_key: EncryptionKeyPair) -> None:
    with DeploymentStore.open(path, van_key) as store:
        store.start_deployment("op-1", 0.6, now=T0)
    other = EncryptionKeyPair.generate()
    with pytest.raises(DeploymentStoreFileError,
                       match=f"deployment store {path}: its watchlists and photos are sealed "
                             f"to encryption key {van_key.key_id.hex()}, not to this van's key "
                             f"{other.key_id.hex()}"):
        DeploymentStore.open(path, other)


# --- deployment end: what dies ----------------------------------------------------------------


def test_ending_drops_the_blobs_and_keeps_the_facts(store: DeploymentStore) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    put(store, "op-1", 1)
    put(store, "op-1", 2)
    store.put_reference_photo("op-1", "alice", jpeg())
    store.end_deployment(now=T0 + 100)
    assert store.current_watchlist() is None
    assert store.reference_photo("op-1", "alice") is None
    facts = store.watchlist_facts("op-1")
    assert [(f.version, f.subject_count, f.stored) for f in facts] == [(2, 20, False),
                                                                        (1, 10, False)]


def test_after_the_end_no_byte_of_the_sealed_blobs_is_in_the_file_or_its_wal(
        store: DeploymentStore, path: Path) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    put(store, "op-1", 1, signed_watchlist(1, SIGNED_BYTES))
    put(store, "op-1", 2, signed_watchlist(2, 1000))  # fits in a page, beside other cells
    store.put_reference_photo("op-1", "alice", jpeg(100_000))
    store.put_reference_photo("op-1", "bob", jpeg(500))
    db = raw(path)
    try:
        blobs = [row[0] for row in db.execute("SELECT sealed FROM watchlists UNION ALL "
                                              "SELECT sealed FROM reference_photos")]
    finally:
        db.close()
    assert len(blobs) == 4
    pieces = [piece for blob in blobs for piece in fragments(blob, step=499)]
    before = found_in(database_files(path), pieces)
    assert before >= 0.95 * len(pieces)  # only slices straddling a page boundary are missed
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > 0

    store.end_deployment(now=T0 + 100)

    assert found_in([path], pieces) == 0
    assert found_in([wal], pieces) == 0
    assert wal.stat().st_size == 0  # checkpointed and truncated
    assert found_in(database_files(path), pieces) == 0


def test_the_wal_cannot_be_wiped_while_another_reader_holds_old_pages(
        store: DeploymentStore, path: Path) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    put(store, "op-1", 1, signed_watchlist(1, 20_000))
    reader = raw(path)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM watchlists").fetchone()  # holds a snapshot
        store.end_deployment(now=T0 + 1)  # commits; the checkpoint cannot finish
        assert store.wipe_wal() is False
        reader.execute("COMMIT")
    finally:
        reader.close()
    assert store.wipe_wal() is True
    assert path.with_name(path.name + "-wal").stat().st_size == 0


# --- reference photos -------------------------------------------------------------------------


def test_a_reference_photo_is_stored_replaced_and_read(store: DeploymentStore) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    first, second = jpeg(), jpeg()
    assert store.reference_photo("op-1", "alice") is None
    store.put_reference_photo("op-1", "alice", first)
    assert store.reference_photo("op-1", "alice") == first
    store.put_reference_photo("op-1", "alice", second)
    assert store.reference_photo("op-1", "alice") == second
    assert store.reference_photo("op-1", "bob") is None


def test_a_photo_only_goes_to_the_active_deployment(store: DeploymentStore) -> None:
    with pytest.raises(DeploymentError, match="a reference photo for deployment 'op-1' refused"):
        store.put_reference_photo("op-1", "alice", jpeg())
    store.start_deployment("op-1", 0.6, now=T0)
    store.end_deployment(now=T0 + 1)
    with pytest.raises(DeploymentError, match="it has ended"):
        store.put_reference_photo("op-1", "alice", jpeg())


@pytest.mark.parametrize(("photo", "message"), [
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "reference photo of 'alice' is not a JPEG"),
    (b"", "reference photo is empty"),
    (b"\xff\xd8\xff" + bytes(MAX_PHOTO_BYTES), f"over the {MAX_PHOTO_BYTES}-byte limit"),
])
def test_a_photo_that_is_not_a_small_jpeg_is_refused(store: DeploymentStore, photo: bytes,
                                                     message: str) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    with pytest.raises(DeploymentError, match=message):
        store.put_reference_photo("op-1", "alice", photo)
    assert store.reference_photo("op-1", "alice") is None


@pytest.mark.parametrize(("subject", "message"), [
    ("", "must have 1 to 255 characters"),
    ("x" * 256, "must have 1 to 255 characters"),
    ("a\nb", "cannot be printed"),
    ("a\u202eb", "cannot be printed"),
])
def test_a_malformed_subject_id_is_refused(store: DeploymentStore, subject: str,
                                           message: str) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    with pytest.raises(DeploymentError, match=message):
        store.put_reference_photo("op-1", subject, jpeg())


def test_a_deployment_holds_a_bounded_number_of_photos(store: DeploymentStore,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deployment_store, "MAX_PHOTOS_PER_DEPLOYMENT", 3)
    store.start_deployment("op-1", 0.6, now=T0)
    for subject in ("a", "b", "c"):
        store.put_reference_photo("op-1", subject, jpeg())
    with pytest.raises(DeploymentError, match=r"holds 3 reference photos, the most one may "
                                              r"hold \(3\)"):
        store.put_reference_photo("op-1", "d", jpeg())
    replacement = jpeg()
    store.put_reference_photo("op-1", "a", replacement)  # replacing is not one more
    assert store.reference_photo("op-1", "a") == replacement


# --- units' watchlists ------------------------------------------------------------------------


def test_the_latest_state_per_unit_is_kept(store: DeploymentStore) -> None:
    store.record_unit_watchlist("unit-1", deployment_id="op-1", version=1,
                                state=UnitWatchlistState.OFFERED, reason=None, subjects=None,
                                now=T0)
    store.record_unit_watchlist("unit-1", deployment_id="op-1", version=1,
                                state=UnitWatchlistState.HELD, reason=None, subjects=120,
                                now=T0 + 5)
    held = store.unit_watchlist("unit-1")
    assert held is not None
    assert (held.unit_id, held.deployment_id, held.version, held.state, held.reason,
            held.subjects, held.updated_at) == ("unit-1", "op-1", 1, UnitWatchlistState.HELD,
                                                None, 120, T0 + 5)
    assert store.unit_watchlist("unit-2") is None
    assert store.unit_watchlists() == [held]


def test_units_are_listed_by_id_in_pages(store: DeploymentStore) -> None:
    for unit in ("u-c", "u-a", "u-b"):
        store.record_unit_watchlist(unit, deployment_id=None, version=None,
                                    state=UnitWatchlistState.NONE, reason=None, subjects=0,
                                    now=T0)
    assert [u.unit_id for u in store.unit_watchlists()] == ["u-a", "u-b", "u-c"]
    assert [u.unit_id for u in store.unit_watchlists(limit=2)] == ["u-a", "u-b"]
    assert [u.unit_id for u in store.unit_watchlists(after="u-b")] == ["u-c"]
    with pytest.raises(DeploymentError, match="limit must lie in"):
        store.unit_watchlists(limit=MAX_PAGE + 1)


def test_a_refusal_reason_is_made_printable_and_cut(store: DeploymentStore) -> None:
    store.record_unit_watchlist("unit-1", deployment_id="op-1", version=2,
                                state=UnitWatchlistState.REFUSED,
                                reason="bad signature\n\x1b[2Jforged line" + "x" * 1000,
                                subjects=None, now=T0)
    recorded = store.unit_watchlist("unit-1")
    assert recorded is not None
    assert recorded.reason is not None
    assert recorded.reason.startswith("bad signature\\n\\x1b[2Jforged line")
    assert len(recorded.reason) <= MAX_REASON_CHARS
    assert recorded.reason.isprintable()


@pytest.mark.parametrize(("deployment_id", "version", "state", "reason", "message"), [
    (None, 1, UnitWatchlistState.PURGED, None, "a watchlist version needs its deployment id"),
    ("op-1", None, UnitWatchlistState.HELD, None, "state 'held' needs the deployment id"),
    (None, None, UnitWatchlistState.OFFERED, None, "state 'offered' needs the deployment id"),
    ("op-1", 1, UnitWatchlistState.REFUSED, None, "a refusal needs its reason"),
    ("op-1", 1, UnitWatchlistState.REFUSED, "", "a refusal needs its reason"),
    ("op-1", 1, "lost", None, "unknown unit watchlist state 'lost'"),
    ("op-1", 0, UnitWatchlistState.HELD, None, "watchlist version must be an integer"),
])
def test_an_inconsistent_unit_state_is_refused(store: DeploymentStore, deployment_id: str | None,
                                               version: int | None, state: UnitWatchlistState,
                                               reason: str | None, message: str) -> None:
    with pytest.raises(DeploymentError, match=message):
        store.record_unit_watchlist("unit-1", deployment_id=deployment_id, version=version,
                                    state=state, reason=reason, subjects=None, now=T0)
    assert store.unit_watchlist("unit-1") is None


def test_a_state_given_as_its_text_is_accepted(store: DeploymentStore) -> None:
    store.record_unit_watchlist("unit-1", deployment_id="op-1", version=3,
                                state="expired",  # type: ignore[arg-type]
                                reason=None, subjects=None, now=T0)
    recorded = store.unit_watchlist("unit-1")
    assert recorded is not None
    assert recorded.state is UnitWatchlistState.EXPIRED


def test_a_malformed_unit_id_is_refused(store: DeploymentStore) -> None:
    with pytest.raises(NodeIdError, match="unit id"):
        store.record_unit_watchlist("bad\nunit", deployment_id=None, version=None,
                                    state=UnitWatchlistState.NONE, reason=None, subjects=None,
                                    now=T0)


# --- the file ---------------------------------------------------------------------------------


def test_reopening_keeps_everything(path: Path, van_key: EncryptionKeyPair) -> None:
    photo = jpeg()
    with DeploymentStore.open(path, van_key) as store:
        store.start_deployment("op-1", 0.6, now=T0)
        store.end_deployment(now=T0 + 1)
        store.start_deployment("op-2", 0.65, now=T0 + 2)
        signed = put(store, "op-2", 7)
        store.put_reference_photo("op-2", "alice", photo)
        store.record_unit_watchlist("unit-1", deployment_id="op-2", version=7,
                                    state=UnitWatchlistState.HELD, reason=None, subjects=70,
                                    now=T0 + 3)
        before = (store.deployments(), store.watchlist_facts("op-2"), store.unit_watchlists())
    with DeploymentStore.open(path, van_key) as store:
        assert (store.deployments(), store.watchlist_facts("op-2"),
                store.unit_watchlists()) == before
        current = store.current_watchlist()
        assert current is not None
        assert current.signed == signed
        assert store.reference_photo("op-2", "alice") == photo
        with pytest.raises(DeploymentError, match="rollback"):
            put(store, "op-2", 7)
        with pytest.raises(DeploymentError, match="'op-2' is active"):
            store.start_deployment("op-3", 0.6, now=T0 + 4)


def test_another_programs_database_is_refused_and_left_alone(path: Path,
                                                             van_key: EncryptionKeyPair) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (text TEXT)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(DeploymentStoreFileError,
                       match=f"deployment store {path}: is an SQLite database of another "
                             "program, not an lfr deployment store"):
        DeploymentStore.open(path, van_key)
    assert path.read_bytes() == before


def test_an_event_store_is_not_a_deployment_store(path: Path,
                                                  van_key: EncryptionKeyPair) -> None:
    EventStore.open(path).close()
    with pytest.raises(DeploymentStoreFileError, match="another program"):
        DeploymentStore.open(path, van_key)


def test_a_garbage_file_is_refused_and_left_alone(path: Path, van_key: EncryptionKeyPair) -> None:
    content = bytes(range(256)) * 40
    path.write_bytes(content)
    with pytest.raises(DeploymentStoreFileError, match="not a usable SQLite"):
        DeploymentStore.open(path, van_key)
    assert path.read_bytes() == content


def test_a_directory_or_missing_folder_is_refused_naming_it(tmp_path: Path,
                                                            van_key: EncryptionKeyPair) -> None:
    with pytest.raises(DeploymentStoreFileError, match=f"deployment store {tmp_path}: is a "
                                                       "directory"):
        DeploymentStore.open(tmp_path, van_key)
    with pytest.raises(DeploymentStoreFileError, match="does not exist"):
        DeploymentStore.open(tmp_path / "absent" / "deployments.sqlite", van_key)


def test_refusals_are_user_input_errors_and_a_tampered_row_is_not() -> None:
    assert issubclass(DeploymentError, UserInputError)
    assert issubclass(DeploymentStoreFileError, UserInputError)
    assert not issubclass(SealedRowError, UserInputError)


# --- threads ----------------------------------------------------------------------------------


def run_threads(count: int, work: Callable[[int], object]) -> list[BaseException]:
    """Run ``work(i)`` on ``count`` threads started together; the exceptions they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            work(i)
        except BaseException as exc:  # collected for the test to check
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def test_threads_racing_to_start_leave_exactly_one_active(store: DeploymentStore) -> None:
    errors = run_threads(8, lambda i: store.start_deployment(f"op-{i}", 0.6, now=T0 + i))
    assert len(errors) == 7
    assert all(isinstance(e, DeploymentError) and "cannot start" in str(e) for e in errors)
    assert len(store.deployments()) == 1


def test_two_connections_racing_to_start_leave_exactly_one_active(
        path: Path, van_key: EncryptionKeyPair) -> None:
    with DeploymentStore.open(path, van_key) as first, \
            DeploymentStore.open(path, van_key) as second:
        stores = [first, second] * 3
        errors = run_threads(6, lambda i: stores[i].start_deployment(f"op-{i}", 0.6, now=T0))
        assert len(errors) == 5
        assert all(isinstance(e, DeploymentError) for e in errors)
        assert len(first.deployments()) == 1


def test_threads_racing_versions_store_each_once_and_only_upwards(
        store: DeploymentStore) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    errors = run_threads(8, lambda i: put(store, "op-1", 1 + i % 4))
    versions = [f.version for f in store.watchlist_facts("op-1")]
    assert versions == sorted(set(versions), reverse=True)  # no version twice
    assert len(versions) + len(errors) == 8
    assert all(isinstance(e, DeploymentError) and "rollback" in str(e) for e in errors)
    current = store.current_watchlist()
    assert current is not None
    assert current.facts.version == versions[0]


def test_threads_writing_photos_and_units_at_once_lose_nothing(store: DeploymentStore) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    photos = {f"s-{i}": jpeg(200) for i in range(16)}

    def work(i: int) -> None:
        for j in range(4):
            subject = f"s-{4 * i + j}"
            store.put_reference_photo("op-1", subject, photos[subject])
            store.record_unit_watchlist(f"unit-{i}", deployment_id="op-1", version=j + 1,
                                        state=UnitWatchlistState.HELD, reason=None,
                                        subjects=j, now=T0 + j)
            assert store.active_deployment() is not None

    assert run_threads(4, work) == []
    assert all(store.reference_photo("op-1", s) == photo for s, photo in photos.items())
    assert [(u.unit_id, u.version) for u in store.unit_watchlists()] == [
        (f"unit-{i}", 4) for i in range(4)]


def test_an_active_watchlist_row_emptied_by_hand_is_reported_not_crashed_on(
        store: DeploymentStore, path: Path) -> None:
    store.start_deployment("op-1", 0.6, now=T0)
    put(store, "op-1", 1)
    db = raw(path)
    try:
        db.execute("UPDATE watchlists SET sealed = NULL")
    finally:
        db.close()
    with pytest.raises(SealedRowError, match="watchlist version 1 of deployment 'op-1'"):
        store.current_watchlist()
