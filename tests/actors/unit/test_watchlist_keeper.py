"""The unit's watchlist keeper wired to a real van side in one process: board, deployment store,
desks, real keys, real signed watchlists of both models and real audit logs on both sides.

The link between them is stood in for by ``DeskLink``: ``ref(WATCHLIST_ACTOR)`` reaches the
van's desk for this unit, every ask and answer crosses the codec as on a real link, and a desk's
error arrives as a ``RemoteError`` (a unit test may stand in for the transport; the link itself
is tested in tests/runtime). A van that lies or answers nonsense is made by wrapping the board's
or the link's answers. The keeper is driven tick by tick (``Unit.tick`` asks it a ``_Tick``;
its own timer is set to an hour) with injected clocks on both sides.

Checked for every path: what the unit's gate holds (and that a dropped gallery is all zeros),
what the van's board shows, what each audit log records, and that no audit log holds an
embedding.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pytest
import pytest_asyncio

from actors.signed_watchlist import MAX_SIGNED_WATCHLIST_BYTES, RefusalReason, WatchlistRefused
from actors.unit import watchlist_keeper
from actors.unit.gallery import Gallery
from actors.unit.second_opinion import TwoModelGallery
from actors.unit.watchlist import Watchlist
from actors.unit.watchlist_gate import HeldWatchlist, WatchlistGate
from actors.unit.watchlist_keeper import (
    MAX_REFUSALS_KEPT,
    KeeperConfig,
    KeeperStatistics,
    WatchlistKeeper,
    _Tick,
)
from actors.van import watchlist_desk
from actors.van.watchlist_board import UnitView, WatchlistBoard
from actors.van.watchlist_desk import WatchlistDesk, desk_name
from actors.watchlist_messages import (
    MAX_REASON_CHARS,
    WATCHLIST_ACTOR,
    HeldState,
    NewsKind,
    WatchlistChunk,
    WatchlistChunkWanted,
    WatchlistFetch,
    WatchlistNews,
    WatchlistPoll,
    WatchlistTransfer,
    transfer_info,
)
from audit.kinds import AuditKind
from audit.log import AuditLog
from models.model_file import MOBILEFACENET
from models.second_opinion_model import DLIB_RESNET_V1
from runtime.codec import Codec
from runtime.errors import AskTimeout, RemoteError
from runtime.ref import ActorRef
from runtime.system import ActorSystem, SystemConfig
from tests.actors.conftest import FAST_ROOT
from tests.actors.support import WAIT_S, eventually
from tests.actors.van.test_watchlist_board import (
    AUTHORITY,
    DAY,
    HOUR,
    NOW,
    OTHER_AUTHORITY,
    Clock,
    assert_no_embeddings,
    broken_ed25519,
    broken_ml_dsa,
    corrupted_payload,
    make_watchlist,
    open_board,
    read_audit,
    sign,
)

if TYPE_CHECKING:
    from runtime.link import Link

CONFIG = KeeperConfig(poll_interval_s=3600.0, ask_timeout_s=WAIT_S, transfer_timeout_s=WAIT_S,
                      retry_not_yet_valid_s=30.0)
"""The keeper's own timer never fires in a test: ``Unit.tick`` drives it."""

Answer = Callable[[Any, Any], Any]
"""(what the unit asked, what the desk answered) -> what the unit gets."""


class DeskLink:
    """The unit's link to its van, in process (module docstring)."""

    def __init__(self, desk: ActorRef[Any]) -> None:
        self.desk = desk
        self.closed = False
        self.asked: list[Any] = []
        """Every message the unit asked, as decoded on the van's side."""
        self.answer: Answer | None = None
        """Replaces the desk's answers when set (a van answering nonsense)."""

    def ref(self, name: str) -> _DeskRef:
        assert name == WATCHLIST_ACTOR  # the only actor a unit's link reaches at the van
        return _DeskRef(self)

    def fetches(self, version: int | None = None) -> int:
        return sum(1 for m in self.asked if isinstance(m, WatchlistFetch)
                   and (version is None or m.version == version))


class _DeskRef:
    def __init__(self, link: DeskLink) -> None:
        self._link = link

    async def ask(self, message: Any, timeout: float) -> Any:  # noqa: ASYNC109
        codec = Codec()
        sent = codec.decode(codec.encode(message))
        self._link.asked.append(sent)
        try:
            reply = await self._link.desk.ask(sent, timeout=timeout)
        except AskTimeout:
            raise
        except Exception as exc:  # as a link carries a handler's error: its type and text
            raise RemoteError(WATCHLIST_ACTOR, type(exc).__name__, str(exc)) from None
        if self._link.answer is not None:
            reply = self._link.answer(sent, reply)
        return codec.decode(codec.encode(reply))


@dataclasses.dataclass
class Unit:
    """One unit's keeper and what the test looks at."""

    name: str
    gate: WatchlistGate
    link: DeskLink | None
    keeper: ActorRef[Any]
    statistics: KeeperStatistics
    clock: Clock
    audit: AuditLog

    async def tick(self) -> None:
        """One tick of the keeper (expiry, poll, maybe a fetch), waited for."""
        await self.keeper.ask(_Tick(), timeout=3 * WAIT_S)

    def held(self) -> HeldWatchlist:
        held = self.gate.held
        assert held is not None
        return held

    def holds(self) -> HeldWatchlist | None:
        """What the gate holds now (a call: not narrowed by earlier asserts)."""
        return self.gate.held

    def audited(self) -> list[tuple[AuditKind, dict[str, Any]]]:
        return [(r.kind, dict(r.fields)) for r in read_audit(self.audit.path)]


@dataclasses.dataclass
class Van:
    """The van side: board, store and audit log, and a desk per unit."""

    system: ActorSystem
    board: WatchlistBoard
    clock: Clock
    audit: AuditLog
    tmp_path: Path
    stack: contextlib.ExitStack
    units: dict[str, Unit] = dataclasses.field(default_factory=dict)

    async def unit(self, name: str = "unit-a", *, clock: Clock | None = None) -> Unit:
        """A unit linked to this van, its keeper started."""
        desk = await self.system.spawn(desk_name(name), lambda: WatchlistDesk(name, self.board))
        return await spawn_keeper(self.system, name, DeskLink(desk), self.tmp_path, self.stack,
                                  clock=clock or Clock())

    def view(self, unit: str = "unit-a") -> UnitView:
        return self.board.views()[unit]

    def audited(self) -> list[tuple[AuditKind, dict[str, Any]]]:
        return [(r.kind, dict(r.fields)) for r in read_audit(self.audit.path)]


async def spawn_keeper(system: ActorSystem, name: str, link: DeskLink | None, tmp_path: Path,
                       stack: contextlib.ExitStack, *, clock: Clock,
                       gate: WatchlistGate | None = None,
                       statistics: KeeperStatistics | None = None,
                       actor: str | None = None) -> Unit:
    audit = stack.enter_context(AuditLog.open(tmp_path / f"{name}-audit.log", name,
                                              clock=clock))
    unit = Unit(name, gate or WatchlistGate(), link, cast("ActorRef[Any]", None),
                statistics or KeeperStatistics(), clock, audit)

    def current() -> Link | None:
        return cast("Link | None", unit.link)

    unit.keeper = await system.spawn(actor or f"keeper:{name}", lambda: WatchlistKeeper(
        name, unit.gate, current, authority=AUTHORITY.public(),
        model_id=MOBILEFACENET.model_id, model_sha256=MOBILEFACENET.sha256,
        second_model_id=DLIB_RESNET_V1.model_id, second_model_sha256=DLIB_RESNET_V1.sha256,
        audit=audit, config=CONFIG, statistics=unit.statistics, clock=clock))
    # Twice: the keeper's own first tick (told in on_start) may come after the first.
    await unit.tick()
    await unit.tick()
    return unit


@pytest_asyncio.fixture
async def van(tmp_path: Path) -> AsyncIterator[Van]:
    config = SystemConfig(name="test", root=FAST_ROOT, blocking_workers=2, shutdown_drain_s=1.0)
    clock = Clock()
    with contextlib.ExitStack() as stack:
        system = ActorSystem(config)
        try:
            audit = stack.enter_context(AuditLog.open(tmp_path / "van-audit.log", "van-1",
                                                      clock=clock))
            board, store = open_board(tmp_path / "deployments.sqlite", system, clock,
                                      audit=audit)
            stack.enter_context(store)
            yield Van(system, board, clock, audit, tmp_path, stack)
        finally:
            await system.stop()  # before the logs and the store close


def failures(system: ActorSystem, unit: Unit) -> tuple[int, int]:
    """(failures, restarts) of the keeper's cell."""
    cell = next(c for c in system.cells() if c.ref is unit.keeper)
    return cell.metrics.failures, cell.metrics.restarts


def wiped(gallery: Gallery) -> bool:
    """Every embedding overwritten and no subject left (the second model's too)."""
    clean = not gallery.embeddings.any() and gallery.subjects == [] and len(gallery) == 0
    if isinstance(gallery, TwoModelGallery):
        clean = clean and not gallery.second.embeddings.any() and gallery.second.rows == {}
    return clean


def refusal_records(records: list[tuple[AuditKind, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [fields for kind, fields in records if kind is AuditKind.WATCHLIST_REFUSED]


async def offered_by_a_restored_van(van: Van, unit: Unit, first: Watchlist) -> WatchlistBoard:
    """Link ``unit`` to another van state (an old backup) of deployment dep-1 that offers
    version 1 of ``first`` again; that van's board."""
    restored, store = open_board(van.tmp_path / "restored.sqlite", van.system, van.clock)
    van.stack.enter_context(store)
    await restored.start_deployment("dep-1", 0.6)
    await restored.push(sign(first, version=1))
    unit.link = DeskLink(await van.system.spawn(
        "restored-desk", lambda: WatchlistDesk("unit-a", restored)))
    return restored


async def start_with(van: Van, *units: Unit, watchlist: Watchlist | None = None,
                     **signing: Any) -> Watchlist:
    """Start deployment dep-1 (threshold 0.6), push version 1 to all and let ``units`` take it."""
    watchlist = watchlist or make_watchlist(3, seed=1)
    await van.board.start_deployment("dep-1", 0.6)
    await van.board.push(sign(watchlist, **signing))
    for unit in units:
        await unit.tick()
        assert unit.gate.version == 1
    return watchlist


# --- push, replace, purge, expiry, deployment end ---------------------------------------------


async def test_a_pushed_watchlist_is_installed_and_the_van_sees_it_held(van: Van) -> None:
    unit = await van.unit()
    assert unit.holds() is None
    assert van.view().state is HeldState.NONE
    watchlist = make_watchlist(400, seed=1)  # several chunks, fetched concurrently
    await van.board.start_deployment("dep-1", 0.6)
    pushed = await van.board.push(sign(watchlist))
    await unit.tick()

    held = unit.held()
    assert unit.gate.scanning
    assert unit.gate.version == 1
    assert (held.deployment_id, held.version, held.threshold, held.not_after) == (
        "dep-1", 1, 0.6, NOW + DAY)
    assert held.payload_sha256 == pushed.payload_sha256
    assert isinstance(held.gallery, TwoModelGallery)
    assert held.gallery.subjects == list(watchlist.subjects)
    assert np.allclose(held.gallery.embeddings, watchlist.embeddings)
    assert np.array_equal(held.gallery.second.embeddings, watchlist.second_embeddings)
    assert np.all(held.gallery.thresholds == np.float32(0.6))
    # The van's view changed in the same tick (the keeper polls at once after a change).
    view = van.view()
    assert (view.state, view.deployment_id, view.version, view.subjects) == (
        HeldState.HELD, "dep-1", 1, 400)
    assert (unit.statistics.accepted, unit.statistics.state) == (1, HeldState.HELD)

    assert unit.audited() == [(AuditKind.WATCHLIST_ACCEPTED, {
        "deployment": "dep-1", "version": 1, "subjects": 400,
        "payload_sha256": pushed.payload_sha256, "threshold": 0.6, "not_after": NOW + DAY})]
    assert (AuditKind.WATCHLIST_ACCEPTED, {"unit": "unit-a", "deployment": "dep-1",
                                           "version": 1, "subjects": 400}) in van.audited()
    # Held: polled again, not fetched again.
    await unit.tick()
    assert unit.link is not None
    assert unit.link.fetches() == 1
    assert unit.gate.held is held
    for path in (unit.audit.path, van.audit.path):
        assert_no_embeddings(path, [watchlist])


async def test_a_newer_version_replaces_the_held_one_whose_gallery_is_wiped(van: Van) -> None:
    unit = await van.unit()
    first = await start_with(van, unit)
    old = unit.held()
    second = make_watchlist(4, seed=2)
    await van.board.push(sign(second, version=2))
    await unit.tick()
    assert unit.gate.version == 2
    assert unit.held().gallery.subjects == list(second.subjects)
    assert wiped(old.gallery)
    assert van.view().version == 2
    assert van.view().subjects == 4
    assert [kind for kind, _ in unit.audited()] == [AuditKind.WATCHLIST_ACCEPTED] * 2
    for path in (unit.audit.path, van.audit.path):
        assert_no_embeddings(path, [first, second])


async def test_a_purge_drops_the_list_wipes_it_and_the_unit_confirms(van: Van) -> None:
    unit = await van.unit()
    watchlist = await start_with(van, unit)
    held = unit.held()
    await van.board.purge()
    await unit.tick()
    assert unit.gate.held is None
    assert not unit.gate.scanning
    assert unit.gate.version == 0
    assert wiped(held.gallery)
    assert (unit.statistics.purged, unit.statistics.state) == (1, HeldState.PURGED)
    await unit.tick()  # the next poll confirms it to the van
    view = van.view()
    assert (view.state, view.deployment_id, view.version, view.subjects) == (
        HeldState.PURGED, "dep-1", 1, 0)
    assert unit.audited()[-1] == (AuditKind.WATCHLIST_PURGED, {
        "deployment": "dep-1", "version": 1, "subjects": 3,
        "payload_sha256": held.payload_sha256})
    assert (AuditKind.WATCHLIST_PURGED, {"unit": "unit-a", "deployment": "dep-1",
                                         "version": 1}) in van.audited()
    await unit.tick()
    assert unit.gate.held is None  # stays empty: the van wants nothing
    assert unit.link is not None
    assert unit.link.fetches() == 1
    for path in (unit.audit.path, van.audit.path):
        assert_no_embeddings(path, [watchlist])


async def test_at_not_after_the_unit_drops_the_list_by_itself_even_without_its_van(
        van: Van) -> None:
    unit = await van.unit()
    watchlist = await start_with(van, unit, not_after=NOW + HOUR)
    held = unit.held()
    link, unit.link = unit.link, None  # the van is out of reach
    unit.clock.now = NOW + HOUR - 1
    await unit.tick()
    assert unit.gate.held is held
    unit.clock.now = NOW + HOUR
    await unit.tick()
    assert unit.holds() is None
    assert wiped(held.gallery)
    assert (unit.statistics.expired, unit.statistics.state) == (1, HeldState.EXPIRED)
    assert unit.audited()[-1] == (AuditKind.WATCHLIST_EXPIRED, {
        "deployment": "dep-1", "version": 1, "subjects": 3,
        "payload_sha256": held.payload_sha256})
    unit.link = link  # back in reach: the van learns it expired; it is not loaded again
    await unit.tick()
    await unit.tick()
    assert unit.holds() is None
    assert van.view().state is HeldState.EXPIRED
    assert (AuditKind.WATCHLIST_EXPIRED, {"unit": "unit-a", "deployment": "dep-1",
                                          "version": 1}) in van.audited()
    for path in (unit.audit.path, van.audit.path):
        assert_no_embeddings(path, [watchlist])


async def test_ending_the_deployment_purges_every_unit(van: Van) -> None:
    units = [await van.unit("unit-a"), await van.unit("unit-b")]
    await start_with(van, *units)
    galleries = [unit.held().gallery for unit in units]
    await van.board.end_deployment()
    for unit, gallery in zip(units, galleries, strict=True):
        await unit.tick()
        await unit.tick()
        assert unit.gate.held is None
        assert wiped(gallery)
        assert van.view(unit.name).state is HeldState.PURGED
    # The next deployment counts its versions from 1 again.
    await van.board.start_deployment("dep-2", 0.7)
    await van.board.push(sign(version=1, deployment="dep-2"))
    for unit in units:
        await unit.tick()
        assert (unit.held().deployment_id, unit.held().version, unit.held().threshold) == (
            "dep-2", 1, 0.7)


async def test_a_push_to_named_units_leaves_the_others_on_what_they_hold(van: Van) -> None:
    a, b = await van.unit("unit-a"), await van.unit("unit-b")
    await start_with(van, a, b)
    b_held = b.held()
    await van.board.push(sign(version=2), ["unit-a"])
    await a.tick()
    await b.tick()
    assert (a.gate.version, b.gate.version) == (2, 1)
    assert b.held() is b_held
    assert not wiped(b_held.gallery)
    await van.board.purge(["unit-b"])
    await a.tick()
    await b.tick()
    assert (a.gate.version, b.gate.held) == (2, None)
    assert wiped(b_held.gallery)


async def test_units_not_named_in_a_push_get_nothing(van: Van) -> None:
    a, b = await van.unit("unit-a"), await van.unit("unit-b")
    await van.board.start_deployment("dep-1", 0.6)
    await van.board.push(sign(), ["unit-a"])
    await a.tick()
    await b.tick()
    assert a.gate.version == 1
    assert b.gate.held is None
    assert b.link is not None
    assert b.link.fetches() == 0
    assert b.statistics.state is HeldState.NONE


# --- refusals: the unit keeps what it holds, tells the van, audits ---------------------------


def serve_instead(monkeypatch: pytest.MonkeyPatch, board: WatchlistBoard, version: int,
                  data: bytes, *, announced: int | None = None) -> None:
    """Make the van serve ``data`` as ``version`` (a van that lies, or was given the file by
    someone else), announcing ``announced`` bytes (default: its size)."""
    real_news, real_signed = board.news_for, board.signed_for

    async def news_for(unit_id: str, poll: WatchlistPoll) -> WatchlistNews:
        news = await real_news(unit_id, poll)
        if news.kind == NewsKind.HOLD.value and news.version == version:
            news = dataclasses.replace(
                news, signed_bytes=len(data) if announced is None else announced)
        return news

    def signed_for(unit_id: str, deployment_id: str, wanted: int) -> bytes:
        real = real_signed(unit_id, deployment_id, wanted)
        return data if wanted == version else real

    monkeypatch.setattr(board, "news_for", news_for)
    monkeypatch.setattr(board, "signed_for", signed_for)


async def assert_refused(van: Van, unit: Unit, held: HeldWatchlist | None, version: int,
                         reason: RefusalReason, watchlists: list[Watchlist]) -> None:
    """``unit`` refused ``version`` for ``reason``, keeps ``held`` (intact), told the van at
    its next poll, audited it on both sides, does not fetch it again, and neither audit log
    holds an embedding."""
    assert unit.gate.held is held
    if held is not None:
        assert not wiped(held.gallery)
    assert unit.statistics.refusals == {reason.value: 1}
    refusals = refusal_records(unit.audited())
    assert len(refusals) == 1
    assert (refusals[0]["deployment"], refusals[0]["version"], refusals[0]["reason"]) == (
        "dep-1", version, reason.value)
    assert refusals[0]["detail"].startswith(f"{reason.value}: ")
    assert unit.link is not None
    fetched = unit.link.fetches(version)
    await unit.tick()
    view = van.view(unit.name)
    assert view.refused_version == version
    assert view.refused_reason == refusals[0]["detail"]
    assert view.version == (0 if held is None else held.version)
    van_refusals = refusal_records(van.audited())
    assert [(f["unit"], f["version"]) for f in van_refusals] == [(unit.name, version)]
    assert van_refusals[0]["reason"].startswith(reason.value)
    await unit.tick()
    assert unit.link.fetches(version) == fetched  # a refused version is not fetched again
    assert unit.gate.held is held
    for path in (unit.audit.path, van.audit.path):
        assert_no_embeddings(path, watchlists)


SECOND = make_watchlist(3, seed=2)
"""Version 2 of the refusal tests."""


@pytest.mark.parametrize(("bad", "reason"), [
    (lambda: sign(SECOND, version=2, authority=OTHER_AUTHORITY), RefusalReason.OTHER_AUTHORITY),
    (lambda: broken_ed25519(sign(SECOND, version=2)), RefusalReason.SIGNATURE_ED25519),
    (lambda: broken_ml_dsa(sign(SECOND, version=2)), RefusalReason.SIGNATURE_ML_DSA),
    (lambda: broken_ml_dsa(broken_ed25519(sign(SECOND, version=2))),
     RefusalReason.SIGNATURE_BOTH),
    (lambda: corrupted_payload(sign(SECOND, version=2)), RefusalReason.PAYLOAD_CORRUPT),
    (lambda: sign(make_watchlist(3, seed=2, model_id="other-embedder"), version=2),
     RefusalReason.OTHER_MODEL),
    (lambda: b"LFRSWL\x01" + bytes(range(200)), RefusalReason.MALFORMED),
])
async def test_a_watchlist_the_van_should_not_have_sent_is_refused_and_the_old_one_kept(
        van: Van, monkeypatch: pytest.MonkeyPatch, bad: Callable[[], bytes],
        reason: RefusalReason) -> None:
    unit = await van.unit()
    first = await start_with(van, unit)
    held = unit.held()
    await van.board.push(sign(SECOND, version=2))
    serve_instead(monkeypatch, van.board, 2, bad())
    await unit.tick()
    await assert_refused(van, unit, held, 2, reason, [first, SECOND])


async def test_a_watchlist_expired_by_the_units_clock_is_refused(van: Van) -> None:
    unit = await van.unit()
    first = await start_with(van, unit)
    held = unit.held()
    await van.board.push(sign(SECOND, version=2, not_after=NOW + HOUR))  # the van's clock: NOW
    unit.clock.now = NOW + 2 * HOUR
    await unit.tick()
    await assert_refused(van, unit, held, 2, RefusalReason.EXPIRED, [first, SECOND])


async def test_a_watchlist_not_yet_valid_is_refused_then_fetched_again_later(
        van: Van) -> None:
    unit = await van.unit()
    first = await start_with(van, unit)
    held = unit.held()
    van.clock.now = NOW + HOUR  # the van's clock runs an hour ahead of the unit's
    await van.board.push(sign(SECOND, version=2, not_before=NOW + HOUR, now=NOW + HOUR))
    await unit.tick()
    assert unit.gate.held is held
    assert unit.statistics.refusals == {RefusalReason.NOT_YET_VALID.value: 1}
    assert unit.link is not None
    assert unit.link.fetches(2) == 1
    unit.clock.now += CONFIG.retry_not_yet_valid_s - 1
    await unit.tick()
    assert unit.link.fetches(2) == 1  # not before retry_not_yet_valid_s
    assert van.view().refused_reason.startswith("not_yet_valid: ")
    unit.clock.now += 1
    await unit.tick()
    assert unit.link.fetches(2) == 2  # retried, and still too early
    assert unit.statistics.refusals == {RefusalReason.NOT_YET_VALID.value: 2}
    assert unit.gate.held is held
    unit.clock.now = NOW + HOUR - 60  # within the allowed clock skew
    await unit.tick()
    assert unit.gate.version == 2
    assert wiped(held.gallery)
    for path in (unit.audit.path, van.audit.path):
        assert_no_embeddings(path, [first, SECOND])


async def test_a_van_restored_from_an_older_state_cannot_roll_back_a_purged_version(
        van: Van) -> None:
    unit = await van.unit()
    first = await start_with(van, unit)
    await van.board.push(sign(SECOND, version=2))
    await unit.tick()
    await van.board.purge()
    await unit.tick()
    assert unit.gate.held is None
    # Another van state (an old backup) for the same deployment offers version 1 again.
    restored = await offered_by_a_restored_van(van, unit, first)
    await unit.tick()
    assert unit.gate.held is None
    assert unit.statistics.refusals == {RefusalReason.ROLLBACK.value: 1}
    refusals = refusal_records(unit.audited())
    assert [(f["version"], f["reason"]) for f in refusals] == [(1, "rollback")]
    await unit.tick()
    assert restored.views()["unit-a"].refused_reason.startswith("rollback: ")
    assert unit.link is not None
    assert unit.link.fetches(1) == 1
    # A newer version from it is accepted.
    await restored.push(sign(make_watchlist(3, seed=3), version=3))
    await unit.tick()
    assert unit.gate.version == 3


async def test_an_oversize_announcement_is_refused_before_anything_is_fetched(
        van: Van, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = await van.unit()
    first = await start_with(van, unit)
    held = unit.held()
    signed = sign(SECOND, version=2)
    await van.board.push(signed)
    serve_instead(monkeypatch, van.board, 2, signed, announced=MAX_SIGNED_WATCHLIST_BYTES + 1)
    await unit.tick()
    assert unit.link is not None
    assert unit.link.fetches(2) == 0
    await assert_refused(van, unit, held, 2, RefusalReason.OVERSIZE, [first, SECOND])
    assert str(MAX_SIGNED_WATCHLIST_BYTES + 1) in van.view().refused_reason


def fetch_answered_with_news(asked: Any, answer: Any) -> Any:
    return WatchlistNews(NewsKind.NOTHING.value) if isinstance(asked, WatchlistFetch) else answer


def transfer_with_another_hash(asked: Any, answer: Any) -> Any:
    if isinstance(answer, WatchlistTransfer):
        return dataclasses.replace(answer, sha256=bytes(32))
    return answer


def transfer_of_another_size(asked: Any, answer: Any) -> Any:
    if isinstance(answer, WatchlistTransfer):
        return dataclasses.replace(answer, sealed_bytes=answer.sealed_bytes + 1)
    return answer


def chunk_of_another_index(asked: Any, answer: Any) -> Any:
    if isinstance(answer, WatchlistChunk) and answer.index == 1:
        return WatchlistChunk(0, answer.data)
    return answer


def chunk_cut_short(asked: Any, answer: Any) -> Any:
    if isinstance(answer, WatchlistChunk):
        return WatchlistChunk(answer.index, answer.data[:-1])
    return answer


def chunk_altered(asked: Any, answer: Any) -> Any:
    if isinstance(answer, WatchlistChunk) and answer.index == 0:
        data = bytearray(answer.data)
        data[100] ^= 0x01
        return WatchlistChunk(0, bytes(data))
    return answer


@pytest.mark.parametrize("answer", [fetch_answered_with_news, transfer_with_another_hash,
                                    transfer_of_another_size, chunk_of_another_index,
                                    chunk_cut_short, chunk_altered])
async def test_a_transfer_the_van_botched_is_refused_and_the_old_list_kept(
        van: Van, answer: Answer) -> None:
    unit = await van.unit()
    first = await start_with(van, unit)
    held = unit.held()
    second = make_watchlist(200, seed=2)  # a few chunks
    await van.board.push(sign(second, version=2))
    assert unit.link is not None
    unit.link.answer = answer
    await unit.tick()
    unit.link.answer = None
    await assert_refused(van, unit, held, 2, RefusalReason.MALFORMED, [first, second])
    assert failures(van.system, unit) == (0, 0)


async def test_a_transfer_sealed_for_another_unit_does_not_open_and_is_refused(
        van: Van, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = await van.unit()
    first = await start_with(van, unit)
    held = unit.held()
    await van.board.push(sign(SECOND, version=2))
    monkeypatch.setattr(watchlist_desk, "transfer_info",
                        lambda unit_id, deployment_id, version: transfer_info(
                            "unit-b", deployment_id, version))
    await unit.tick()
    await assert_refused(van, unit, held, 2, RefusalReason.MALFORMED, [first, SECOND])
    assert "does not open" in van.view().refused_reason


async def test_a_refusal_of_any_length_is_audited_and_reported(
        van: Van, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = await van.unit()
    await start_with(van, unit)
    await van.board.push(sign(SECOND, version=2))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise WatchlistRefused(RefusalReason.PAYLOAD_INVALID, "signed payload " + "x" * 900)

    monkeypatch.setattr(watchlist_keeper, "verify_signed_watchlist", refuse)
    await unit.tick()
    refusals = refusal_records(unit.audited())
    assert len(refusals) == 1
    assert len(refusals[0]["detail"]) == MAX_REASON_CHARS
    assert refusals[0]["detail"].startswith("payload_invalid: signed payload xxx")
    assert failures(van.system, unit) == (0, 0)
    await unit.tick()
    assert van.view().refused_reason == refusals[0]["detail"]


# --- failures: the tick ends, nothing changes, the next tick tries again ------------------------


@pytest.mark.parametrize("answer", [
    WatchlistTransfer(1, 10, 1, bytes(32)),  # a poll answered with something else
    WatchlistNews("install-everything"),
    WatchlistNews(NewsKind.HOLD.value, "dep-1", 2, 0.0),  # no threshold
    WatchlistNews(NewsKind.HOLD.value, "dep-1", 0, 0.6),  # no version
    WatchlistNews(NewsKind.HOLD.value, "", 2, 0.6),  # no deployment
    WatchlistNews(NewsKind.HOLD.value, "dep-1", 2, float("nan")),
])
async def test_a_poll_answered_with_nonsense_changes_nothing(van: Van, answer: Any) -> None:
    unit = await van.unit()
    await start_with(van, unit)
    held = unit.held()
    await van.board.push(sign(SECOND, version=2))
    assert unit.link is not None
    unit.link.answer = lambda asked, real: answer if isinstance(asked, WatchlistPoll) else real
    records = len(unit.audited())
    await unit.tick()
    assert unit.gate.held is held
    assert unit.link.fetches(2) == 0
    assert unit.statistics.failures == 1
    assert unit.statistics.refused == 0
    assert len(unit.audited()) == records
    assert failures(van.system, unit) == (0, 0)
    unit.link.answer = None
    await unit.tick()
    assert unit.gate.version == 2


async def test_a_failing_ask_ends_the_tick_and_the_next_one_fetches_again(van: Van) -> None:
    unit = await van.unit()
    await start_with(van, unit)
    await van.board.push(sign(SECOND, version=2))
    assert unit.link is not None

    def desk_refuses(asked: Any, answer: Any) -> Any:
        if isinstance(asked, WatchlistChunkWanted):
            raise RemoteError(WATCHLIST_ACTOR, "DeskRefused", "no transfer 7 is open")
        return answer

    unit.link.answer = desk_refuses
    await unit.tick()
    assert unit.gate.version == 1
    assert (unit.statistics.failures, unit.statistics.refused) == (1, 0)
    assert refusal_records(unit.audited()) == []
    unit.link.answer = None
    await unit.tick()
    assert unit.gate.version == 2
    assert unit.link.fetches(2) == 2
    assert failures(van.system, unit) == (0, 0)


async def test_without_a_link_the_keeper_waits_and_holds_nothing(van: Van) -> None:
    unit = await van.unit()
    polls = unit.statistics.polls
    unit.link = None
    await van.board.start_deployment("dep-1", 0.6)
    await van.board.push(sign())
    await unit.tick()
    assert unit.gate.held is None
    assert (unit.statistics.polls, unit.statistics.failures) == (polls, 0)


@pytest.mark.parametrize("deployment", ["d" * 600, "dep\x1b[2J-1", "dep\n1"])
async def test_a_van_naming_an_impossible_deployment_cannot_fail_the_keeper(
        van: Van, deployment: str) -> None:
    unit = await van.unit()
    await start_with(van, unit)
    held = unit.held()
    assert unit.link is not None
    # An oversize announcement is refused (and audited) before anything is fetched: the
    # audit must not be handed a name it cannot hold.
    unit.link.answer = lambda asked, real: WatchlistNews(
        NewsKind.HOLD.value, deployment, 2, 0.6, MAX_SIGNED_WATCHLIST_BYTES + 1) if isinstance(
        asked, WatchlistPoll) else real
    await unit.keeper.tell(_Tick())
    await unit.tick()
    assert failures(van.system, unit) == (0, 0)
    assert unit.gate.held is held
    assert unit.statistics.failures == 2  # both ticks ended as nonsense from the van


async def test_a_van_announcing_ever_new_versions_cannot_grow_the_keepers_memory(
        van: Van) -> None:
    unit = await van.unit()
    assert unit.link is not None
    announced = [1]
    unit.link.answer = lambda asked, real: WatchlistNews(
        NewsKind.HOLD.value, "dep-1", announced[0], 0.6,
        MAX_SIGNED_WATCHLIST_BYTES + 1) if isinstance(asked, WatchlistPoll) else real
    for version in range(1, MAX_REFUSALS_KEPT + 2):
        announced[0] = version
        await unit.tick()
    assert unit.statistics.refused == MAX_REFUSALS_KEPT + 1
    await unit.tick()  # the newest refusal is remembered: not refused (or fetched) again
    assert unit.statistics.refused == MAX_REFUSALS_KEPT + 1
    announced[0] = 1  # the oldest was forgotten: it is looked at again (and refused again)
    await unit.tick()
    assert unit.statistics.refused == MAX_REFUSALS_KEPT + 2
    assert unit.gate.held is None
    assert failures(van.system, unit) == (0, 0)


# --- the keeper's memory of versions outlives its incarnation ---------------------------------


class _BrokenOnce:
    """A link whose first use raises (a bug, not a link failure): the keeper's incarnation
    fails once; then the unit has ``link`` again."""

    closed = False

    def __init__(self, unit: Unit, link: DeskLink | None) -> None:
        self._unit, self._link = unit, link

    def ref(self, name: str) -> Any:
        self._unit.link = self._link
        raise RuntimeError("a bug in the link")


async def test_a_restarted_keeper_still_refuses_a_rolled_back_version(van: Van) -> None:
    unit = await van.unit()
    first = await start_with(van, unit)
    await van.board.push(sign(SECOND, version=2))
    await unit.tick()
    await van.board.purge()
    await unit.tick()
    unit.link = cast("DeskLink", _BrokenOnce(unit, unit.link))
    await unit.keeper.tell(_Tick())  # fails this incarnation: the supervisor restarts it
    await eventually(lambda: failures(van.system, unit) == (1, 1))
    await unit.tick()
    assert unit.gate.held is None
    await offered_by_a_restored_van(van, unit, first)
    await unit.tick()
    assert unit.gate.held is None
    assert unit.statistics.refusals == {RefusalReason.ROLLBACK.value: 1}
