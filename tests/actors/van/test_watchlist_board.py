"""The van's watchlist board: deployments, pushes checked as far as the van can, assignments to
all or named units, purges, the units' reports (stored, audited, shown) and reloading after a
van restart.

The helpers at the top (keys, a small watchlist of both models' templates, signing, a board on
a real ``DeploymentStore``, reading an audit log back) are shared by the desk, control and
keeper tests, which import them from here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.signed_watchlist import RefusalReason, WatchlistRefused, sign_watchlist
from actors.unit.watchlist import Watchlist
from actors.van.deployment_store import DeploymentError, DeploymentStore, UnitWatchlistState
from actors.van.watchlist_board import ALL_UNITS, Embedder, WatchlistBoard
from actors.watchlist_messages import HeldState, NewsKind, WatchlistNews, WatchlistPoll
from audit.kinds import AuditKind
from audit.log import AuditLog
from audit.record import AuditRecord, parse_record
from guards.user_input import UserInputError
from models.face_embedder import EMBEDDING_DIM
from models.model_file import MOBILEFACENET
from models.second_opinion_model import DESCRIPTOR_DIM, DLIB_RESNET_V1
from runtime.system import ActorSystem
from secure.hybrid_signature import ED25519_SIGNATURE_BYTES, HYBRID_SIGNATURE_BYTES
from secure.node_keys import NodeKeys, NodeRole
from tests.actors.support import unit_rows

NOW = 1_800_000_000.0
"""The tests' clock (2027-01-15): every time below is exact."""
HOUR = 3600.0
DAY = 24 * HOUR
AUTHORITY = NodeKeys.generate(NodeRole.AUTHORITY, "hq-a")
OTHER_AUTHORITY = NodeKeys.generate(NodeRole.AUTHORITY, "hq-b")
"""Another authority whose id has the same length (so its files have the same size)."""
VAN = NodeKeys.generate(NodeRole.VAN, "van-1")
EMBEDDER = Embedder(MOBILEFACENET.model_id, MOBILEFACENET.sha256, DLIB_RESNET_V1.model_id,
                    DLIB_RESNET_V1.sha256)
"""What the units run: the vendored embedder and second face model."""


class Clock:
    """A settable clock (seconds since the epoch)."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_watchlist(n: int = 3, *, seed: int = 0, second: bool = True,
                   model_id: str = MOBILEFACENET.model_id) -> Watchlist:
    """``n`` subjects with both models' templates (the second only if ``second``)."""
    rng = np.random.default_rng(seed)
    extra: dict[str, Any] = {}
    if second:
        extra = {"second_model_id": DLIB_RESNET_V1.model_id,
                 "second_model_sha256": DLIB_RESNET_V1.sha256,
                 "second_embeddings": (0.1 * rng.standard_normal((n, DESCRIPTOR_DIM))
                                       ).astype(np.float32),
                 "second_thresholds": np.full(n, 0.6, np.float32)}
    return Watchlist(model_id=model_id, model_sha256=MOBILEFACENET.sha256,
                     created_at=1_700_000_000.0,
                     subjects=tuple(f"subject_{seed}_{i}" for i in range(n)),
                     embeddings=unit_rows(rng, n, EMBEDDING_DIM),
                     thresholds=np.full(n, 0.6, np.float32),
                     photos=tuple(1 for _ in range(n)), **extra)


def sign(watchlist: Watchlist | None = None, *, version: int = 1, deployment: str = "dep-1",
         not_after: float = NOW + DAY, not_before: float | None = None,
         authority: NodeKeys = AUTHORITY, now: float = NOW) -> bytes:
    """``watchlist`` (default: 3 subjects, seed ``version``) signed for ``deployment``."""
    return sign_watchlist(make_watchlist(seed=version) if watchlist is None else watchlist,
                          authority=authority, deployment_id=deployment, version=version,
                          not_after=not_after, not_before=not_before, now=now)


def signature_start(data: bytes) -> int:
    """Where a signed watchlist's signature starts (after magic, version, manifest length,
    manifest and the signature's length)."""
    manifest_len = int.from_bytes(data[7:11], "big")
    return 11 + manifest_len + 2


def flipped(data: bytes, offset: int) -> bytes:
    """``data`` with one bit of byte ``offset`` flipped."""
    changed = bytearray(data)
    changed[offset] ^= 0x01
    return bytes(changed)


def broken_ed25519(data: bytes) -> bytes:
    return flipped(data, signature_start(data) + 3)


def broken_ml_dsa(data: bytes) -> bytes:
    return flipped(data, signature_start(data) + ED25519_SIGNATURE_BYTES + 100)


def corrupted_payload(data: bytes) -> bytes:
    return flipped(data, signature_start(data) + HYBRID_SIGNATURE_BYTES + 40)


def read_audit(path: Path) -> list[AuditRecord]:
    """Every record of the audit log at ``path``."""
    return [parse_record(line) for line in path.read_bytes().splitlines()]


def kinds(path: Path) -> list[AuditKind]:
    return [record.kind for record in read_audit(path)]


def assert_no_embeddings(path: Path, watchlists: list[Watchlist]) -> None:
    """No row of either model's embeddings is in the file, neither as bytes, as hex nor as the
    text of its first floats."""
    data = path.read_bytes()
    text = data.decode("utf-8", "replace")
    for watchlist in watchlists:
        for matrix in (watchlist.embeddings, watchlist.second_embeddings):
            for row in matrix:
                raw = row.tobytes()
                assert raw not in data
                assert raw.hex() not in text
                for value in row[:4]:
                    assert repr(float(value)) not in text
                    assert str(np.float32(value)) not in text


def payload_hash(data: bytes) -> str:
    """The payload sha256 (hex) of a signed file."""
    return hashlib.sha256(data[signature_start(data) + HYBRID_SIGNATURE_BYTES:]).hexdigest()


def poll(state: HeldState = HeldState.NONE, deployment: str = "", version: int = 0,
         subjects: int = 0, refused_version: int = 0, refused_reason: str = "") -> WatchlistPoll:
    return WatchlistPoll(state.value, deployment, version, subjects, refused_version,
                         refused_reason)


def open_board(path: Path, system: ActorSystem, clock: Clock, *,
               authority: NodeKeys = AUTHORITY, embedder: Embedder = EMBEDDER,
               audit: AuditLog | None = None,
               lines: list[str] | None = None) -> tuple[WatchlistBoard, DeploymentStore]:
    """A board on a (new or existing) store at ``path``; the caller closes the store."""
    assert VAN.encryption is not None
    store = DeploymentStore.open(path, VAN.encryption)
    board = WatchlistBoard(store, system.blocking, authority=authority.public(),
                           embedder=embedder, audit=audit,
                           lines=None if lines is None else lines.append, clock=clock)
    return board, store


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def audit(tmp_path: Path, clock: Clock) -> Iterator[AuditLog]:
    with AuditLog.open(tmp_path / "van-audit.log", "van-1", clock=clock) as log:
        yield log


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def board_and_store(tmp_path: Path, system: ActorSystem, clock: Clock, audit: AuditLog,
                    lines: list[str]) -> Iterator[tuple[WatchlistBoard, DeploymentStore]]:
    board, store = open_board(tmp_path / "deployments.sqlite", system, clock, audit=audit,
                              lines=lines)
    with store:
        yield board, store


@pytest.fixture
def board(board_and_store: tuple[WatchlistBoard, DeploymentStore]) -> WatchlistBoard:
    return board_and_store[0]


@pytest.fixture
def store(board_and_store: tuple[WatchlistBoard, DeploymentStore]) -> DeploymentStore:
    return board_and_store[1]


HOLDING = poll(HeldState.HELD, "dep-1", 1, 3)


# --- deployments --------------------------------------------------------------------------------


async def test_without_a_deployment_units_hold_nothing_and_pushes_are_refused(
        board: WatchlistBoard, audit: AuditLog) -> None:
    assert board.deployment is None
    assert await board.news_for("unit-a", poll()) == WatchlistNews(NewsKind.NOTHING.value)
    # A unit still holding a list (from before a van restart, say) is told to drop it.
    assert (await board.news_for("unit-a", HOLDING)).kind == NewsKind.PURGE.value
    with pytest.raises(DeploymentError, match="no deployment is active"):
        await board.push(sign())
    assert board.wanted("unit-a") is None
    with pytest.raises(UserInputError, match="not what this unit is to hold"):
        board.signed_for("unit-a", "dep-1", 1)


async def test_a_deployment_starts_once_and_is_audited_and_shown(
        board: WatchlistBoard, audit: AuditLog, lines: list[str]) -> None:
    deployment = await board.start_deployment("dep-1", 0.6)
    assert (deployment.id, deployment.threshold, deployment.started_at) == ("dep-1", 0.6, NOW)
    assert board.deployment == deployment
    with pytest.raises(DeploymentError, match="is active"):
        await board.start_deployment("dep-2", 0.6)
    ended = await board.end_deployment()
    assert ended.ended_at == NOW
    with pytest.raises(DeploymentError, match="used before"):
        await board.start_deployment("dep-1", 0.6)
    with pytest.raises(DeploymentError, match="none to end"):
        await board.end_deployment()
    records = read_audit(audit.path)
    assert [r.kind for r in records] == [AuditKind.DEPLOYMENT_STARTED,
                                         AuditKind.DEPLOYMENT_ENDED]
    assert dict(records[0].fields) == {"deployment": "dep-1", "threshold": 0.6,
                                       "operator": "command line"}
    assert any("dep-1 started" in line for line in lines)
    assert any("every unit is told to purge" in line for line in lines)


# --- pushes -------------------------------------------------------------------------------------


async def test_a_push_to_all_is_stored_and_offered_to_every_unit(
        board: WatchlistBoard, store: DeploymentStore, audit: AuditLog) -> None:
    await board.start_deployment("dep-1", 0.62)
    signed = sign()
    result = await board.push(signed)
    assert (result.deployment_id, result.version, result.subjects, result.units) == (
        "dep-1", 1, 3, ())
    assert result.payload_sha256 == payload_hash(signed)
    assert result.not_after == NOW + DAY
    for unit in ("unit-a", "unit-b", "enrolled-later"):
        assert board.wanted(unit) == 1
        news = await board.news_for(unit, poll())
        assert news == WatchlistNews(NewsKind.HOLD.value, "dep-1", 1, 0.62, len(signed))
        assert board.signed_for(unit, "dep-1", 1) == signed
    stored = store.current_watchlist()
    assert stored is not None
    assert stored.signed == signed
    pushed = [r for r in read_audit(audit.path) if r.kind is AuditKind.WATCHLIST_PUSHED]
    assert len(pushed) == 1
    fields = dict(pushed[0].fields)
    signer = fields.pop("signer")
    assert isinstance(signer, str)
    assert len(signer) == 16  # the authority's key id, hex
    assert fields == {"deployment": "dep-1", "version": 1, "subjects": 3,
                      "payload_sha256": payload_hash(signed), "units": "all",
                      "signed_at": NOW, "not_after": NOW + DAY, "operator": "command line"}
    assert_no_embeddings(audit.path, [make_watchlist(seed=1)])


@pytest.mark.parametrize(("make", "reason"), [
    (lambda: sign(authority=OTHER_AUTHORITY), RefusalReason.OTHER_AUTHORITY),
    (lambda: broken_ed25519(sign()), RefusalReason.SIGNATURE_ED25519),
    (lambda: broken_ml_dsa(sign()), RefusalReason.SIGNATURE_ML_DSA),
    (lambda: corrupted_payload(sign()), RefusalReason.PAYLOAD_CORRUPT),
    (lambda: sign(make_watchlist(model_id="other-embedder")), RefusalReason.OTHER_MODEL),
    (lambda: sign(deployment="dep-2"), RefusalReason.OTHER_DEPLOYMENT),
    (lambda: sign(not_after=NOW - HOUR, now=NOW - DAY), RefusalReason.EXPIRED),
    (lambda: sign(not_before=NOW + HOUR), RefusalReason.NOT_YET_VALID),
    (lambda: b"LFRW not a signed watchlist", RefusalReason.MALFORMED),
])
async def test_a_push_the_van_can_tell_is_bad_is_refused_and_changes_nothing(
        board: WatchlistBoard, store: DeploymentStore, audit: AuditLog,
        make: Any, reason: RefusalReason) -> None:
    await board.start_deployment("dep-1", 0.6)
    with pytest.raises(WatchlistRefused) as refused:
        await board.push(make())
    assert refused.value.reason is reason
    assert store.current_watchlist() is None
    assert board.wanted("unit-a") is None
    assert (await board.news_for("unit-a", poll())).kind == NewsKind.NOTHING.value
    assert AuditKind.WATCHLIST_PUSHED not in kinds(audit.path)


async def test_a_watchlist_of_another_second_model_is_refused_at_the_push(
        board: WatchlistBoard) -> None:
    await board.start_deployment("dep-1", 0.6)
    watchlist = make_watchlist()
    other = Watchlist(watchlist.model_id, watchlist.model_sha256, watchlist.created_at,
                      watchlist.subjects, watchlist.embeddings, watchlist.thresholds,
                      watchlist.photos, "other-second", "0" * 64, watchlist.second_embeddings,
                      watchlist.second_thresholds)
    with pytest.raises(WatchlistRefused) as refused:
        await board.push(sign(other))
    assert refused.value.reason is RefusalReason.OTHER_MODEL


async def test_versions_only_grow_within_a_deployment(board: WatchlistBoard) -> None:
    await board.start_deployment("dep-1", 0.6)
    await board.push(sign(version=2))
    for version in (1, 2):
        with pytest.raises(WatchlistRefused) as refused:
            await board.push(sign(version=version))
        assert refused.value.reason is RefusalReason.ROLLBACK
    assert board.wanted("unit-a") == 2


async def test_a_push_to_named_units_leaves_the_others_on_what_they_had(
        board: WatchlistBoard, audit: AuditLog, lines: list[str]) -> None:
    await board.start_deployment("dep-1", 0.6)
    await board.push(sign(version=1))
    second = sign(version=2)
    result = await board.push(second, ["unit-a", "unit-a"])
    assert result.units == ("unit-a",)
    assert (board.wanted("unit-a"), board.wanted("unit-b"), board.wanted("later")) == (2, 1, 1)
    assert (await board.news_for("unit-b", poll())).version == 1
    assert (await board.news_for("unit-a", poll())).version == 2
    # Each unit fetches only its own version.
    assert board.signed_for("unit-a", "dep-1", 2) == second
    for unit, version in (("unit-a", 1), ("unit-b", 2)):
        with pytest.raises(UserInputError, match=f"version {version} is not what"):
            board.signed_for(unit, "dep-1", version)
    with pytest.raises(UserInputError):
        board.signed_for("unit-a", "dep-2", 2)
    # A push to all replaces every named assignment.
    await board.push(sign(version=3))
    assert (board.wanted("unit-a"), board.wanted("unit-b")) == (3, 3)
    pushed = [r for r in read_audit(audit.path) if r.kind is AuditKind.WATCHLIST_PUSHED]
    assert [r.fields["units"] for r in pushed] == ["all", "unit-a", "all"]
    assert any("pushed to unit-a" in line for line in lines)


async def test_a_push_to_named_units_only_gives_the_others_nothing(
        board: WatchlistBoard) -> None:
    await board.start_deployment("dep-1", 0.6)
    await board.push(sign(), ["unit-a"])
    assert board.wanted("unit-b") is None
    assert (await board.news_for("unit-b", poll())).kind == NewsKind.NOTHING.value
    assert (await board.news_for("unit-a", poll())).kind == NewsKind.HOLD.value


# --- purges and the end of a deployment ---------------------------------------------------------


async def test_a_purge_of_named_units_tells_only_them_to_drop_their_list(
        board: WatchlistBoard, audit: AuditLog) -> None:
    await board.start_deployment("dep-1", 0.6)
    await board.push(sign(version=1))
    await board.push(sign(version=2), ["unit-a"])
    await board.purge(["unit-a"])
    assert board.wanted("unit-a") is None
    assert (await board.news_for("unit-a", HOLDING)).kind == NewsKind.PURGE.value
    assert (await board.news_for("unit-a", poll(HeldState.PURGED, "dep-1", 1))).kind == (
        NewsKind.NOTHING.value)
    assert board.wanted("unit-b") == 1
    # A later push to the purged unit gives it a list again.
    await board.push(sign(version=3), ["unit-a"])
    assert board.wanted("unit-a") == 3
    # A purge of all: nobody holds anything until the next push.
    await board.purge(ALL_UNITS)
    assert (board.wanted("unit-a"), board.wanted("unit-b")) == (None, None)
    purged = [dict(r.fields) for r in read_audit(audit.path)
              if r.kind is AuditKind.WATCHLIST_PURGED]
    assert purged == [{"units": "unit-a", "deployment": "dep-1", "operator": "command line"},
                      {"unit": "unit-a", "deployment": "dep-1", "version": 1},  # its report
                      {"units": "all", "deployment": "dep-1", "operator": "command line"}]


async def test_ending_the_deployment_purges_every_unit_and_the_vans_copies(
        board: WatchlistBoard, store: DeploymentStore) -> None:
    await board.start_deployment("dep-1", 0.6)
    await board.push(sign(version=1))
    await board.push(sign(version=2), ["unit-b"])
    await board.end_deployment()
    for unit in ("unit-a", "unit-b"):
        assert board.wanted(unit) is None
        assert (await board.news_for(unit, HOLDING)).kind == NewsKind.PURGE.value
        with pytest.raises(UserInputError):
            board.signed_for(unit, "dep-1", 1)
    assert store.current_watchlist() is None
    assert [facts.stored for facts in store.watchlist_facts("dep-1")] == [False, False]
    # The next deployment starts from nothing, at version 1 again.
    await board.start_deployment("dep-2", 0.6)
    assert board.wanted("unit-a") is None
    await board.push(sign(version=1, deployment="dep-2"))
    assert board.wanted("unit-b") == 1


# --- the units' reports -------------------------------------------------------------------------


async def test_each_change_a_unit_reports_is_stored_audited_and_shown_once(
        board: WatchlistBoard, store: DeploymentStore, audit: AuditLog, lines: list[str],
        clock: Clock) -> None:
    await board.start_deployment("dep-1", 0.6)
    await board.push(sign(version=1))
    await board.push(sign(version=2))
    clock.now = NOW + 5
    await board.news_for("unit-a", poll(HeldState.HELD, "dep-1", 1, 3))
    view = board.views()["unit-a"]
    assert (view.state, view.deployment_id, view.version, view.subjects, view.last_poll) == (
        HeldState.HELD, "dep-1", 1, 3, NOW + 5)
    row = store.unit_watchlist("unit-a")
    assert row is not None
    assert (row.state, row.deployment_id, row.version, row.subjects) == (
        UnitWatchlistState.HELD, "dep-1", 1, 3)
    count = audit.count
    await board.news_for("unit-a", poll(HeldState.HELD, "dep-1", 1, 3))  # nothing new
    assert audit.count == count

    refused = poll(HeldState.HELD, "dep-1", 1, 3, 2, "signature_ed25519: signature invalid")
    await board.news_for("unit-a", refused)
    await board.news_for("unit-a", refused)  # reported again at every poll: recorded once
    view = board.views()["unit-a"]
    assert (view.refused_version, view.refused_reason) == (2, refused.refused_reason)
    row = store.unit_watchlist("unit-a")
    assert row is not None
    assert row.state is UnitWatchlistState.REFUSED
    assert row.reason == refused.refused_reason

    await board.news_for("unit-a", poll(HeldState.PURGED, "dep-1", 1, 0, 2,
                                        refused.refused_reason))
    await board.news_for("unit-b", poll(HeldState.EXPIRED, "dep-1", 2, 0))
    records = [r for r in read_audit(audit.path) if "unit" in r.fields]
    assert [(r.kind, r.fields["unit"]) for r in records] == [
        (AuditKind.WATCHLIST_ACCEPTED, "unit-a"), (AuditKind.WATCHLIST_REFUSED, "unit-a"),
        (AuditKind.WATCHLIST_PURGED, "unit-a"), (AuditKind.WATCHLIST_EXPIRED, "unit-b")]
    assert records[1].fields["reason"] == refused.refused_reason
    assert board.views()["unit-b"].state is HeldState.EXPIRED
    shown = "\n".join(lines)
    assert "unit unit-a holds watchlist version 1" in shown
    assert "unit unit-a refused watchlist version 2: signature_ed25519" in shown
    assert "unit unit-b dropped watchlist version 2 of deployment dep-1: expired" in shown


async def test_a_units_report_is_shown_printable_and_an_unknown_state_counts_as_none(
        board: WatchlistBoard, lines: list[str]) -> None:
    await board.start_deployment("dep-1", 0.6)
    await board.news_for("unit-a", poll(refused_version=3,
                                        refused_reason="bad\n\x1b[2Jforged line"))
    assert any("bad\\n\\x1b[2Jforged line" in line for line in lines)
    assert all("\n" not in line and "\x1b" not in line for line in lines)
    await board.news_for("unit-b", WatchlistPoll("bogus", "", 0, 0))
    assert board.views()["unit-b"].state is HeldState.NONE


async def test_views_are_copies(board: WatchlistBoard) -> None:
    await board.news_for("unit-a", poll())
    board.views()["unit-a"].state = HeldState.HELD
    assert board.views()["unit-a"].state is HeldState.NONE


async def test_a_restarted_van_tells_every_unit_what_it_told_it_before(
        tmp_path: Path, system: ActorSystem, clock: Clock) -> None:
    path = tmp_path / "deployments.sqlite"
    board, store = open_board(path, system, clock)
    with store:
        await board.start_deployment("dep-1", 0.7)
        await board.push(sign(version=1))
        second = sign(version=2)
        await board.push(second, ["unit-a"])
        await board.purge(["unit-c"])
        await board.news_for("unit-b", poll(HeldState.HELD, "dep-1", 1, 3))
    board, store = open_board(path, system, clock)
    with store:
        await board.load()
        assert board.deployment is not None
        assert board.deployment.id == "dep-1"
        assert [board.wanted(unit) for unit in ("unit-a", "unit-b", "unit-c", "later")] == [
            2, 1, None, 1]
        news = await board.news_for("unit-b", poll(HeldState.HELD, "dep-1", 1, 3))
        assert (news.kind, news.version, news.threshold) == (NewsKind.HOLD.value, 1, 0.7)
        assert board.signed_for("unit-a", "dep-1", 2) == second
        assert len(board.signed_for("unit-b", "dep-1", 1)) > 0
        view = board.views()["unit-b"]
        assert (view.state, view.version) == (HeldState.HELD, 1)
        # Versions still only grow after the restart.
        with pytest.raises(WatchlistRefused) as refused:
            await board.push(sign(version=2))
        assert refused.value.reason is RefusalReason.ROLLBACK
        # And the replayed purge of all holds too.
        await board.purge()
    board, store = open_board(path, system, clock)
    with store:
        await board.load()
        assert [board.wanted(unit) for unit in ("unit-a", "unit-b")] == [None, None]


async def test_a_long_refusal_reason_is_still_audited_and_stored(
        board: WatchlistBoard, store: DeploymentStore, audit: AuditLog) -> None:
    await board.start_deployment("dep-1", 0.6)
    reason = "payload_invalid: " + "x" * 600
    await board.news_for("unit-a", poll(refused_version=2, refused_reason=reason))
    refusals = [r for r in read_audit(audit.path) if r.kind is AuditKind.WATCHLIST_REFUSED]
    assert len(refusals) == 1
    assert str(refusals[0].fields["reason"]).startswith("payload_invalid: xxx")
    row = store.unit_watchlist("unit-a")
    assert row is not None
    assert row.state is UnitWatchlistState.REFUSED


async def test_a_list_past_its_not_after_is_no_longer_offered(board: WatchlistBoard,
                                                               clock: Clock) -> None:
    # The unit drops it by itself then: offering it again would only make it fetch and refuse.
    await board.start_deployment("dep-1", 0.6)
    await board.push(sign(not_after=NOW + HOUR))
    offered = await board.news_for("unit-a", poll())
    assert (offered.kind, offered.version) == (NewsKind.HOLD.value, 1)
    clock.now = NOW + HOUR
    news = await board.news_for("unit-a", poll(HeldState.EXPIRED, "dep-1", 1))
    assert news.kind == NewsKind.NOTHING.value
    holding = await board.news_for("unit-b", poll(HeldState.HELD, "dep-1", 1, subjects=3))
    assert holding.kind == NewsKind.PURGE.value
