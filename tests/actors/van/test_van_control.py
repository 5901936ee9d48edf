"""The van's control actor: each operator command becomes a board call and its answer; the
usual-threshold check, unknown or too many units named, and every unit's row in the status.
Bad input fails that ask with its reason and the actor keeps running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.signed_watchlist import RefusalReason, WatchlistRefused
from actors.unit.watchlist import ThresholdError
from actors.van.control_messages import (
    CONTROL_ASKS,
    DeploymentState,
    EndDeployment,
    GetWatchlistStatus,
    PurgeWatchlists,
    PushDone,
    PushWatchlist,
    StartDeployment,
    UnitWatchlistRow,
    WatchlistStatus,
)
from actors.van.deployment_store import DeploymentError
from actors.van.van_control import MAX_UNITS_NAMED, ControlMessage, UnknownUnits, VanControl
from actors.van.watchlist_board import WatchlistBoard
from actors.watchlist_messages import HeldState
from guards.user_input import UserInputError
from runtime.codec import Codec
from runtime.ref import ActorRef
from runtime.system import ActorSystem
from tests.actors.support import WAIT_S
from tests.actors.van.test_watchlist_board import (
    DAY,
    NOW,
    Clock,
    open_board,
    payload_hash,
    poll,
    sign,
)

ENROLLED = ("unit-a", "unit-b", "unit-c")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def board(tmp_path: Path, system: ActorSystem, clock: Clock) -> Iterator[WatchlistBoard]:
    board, store = open_board(tmp_path / "deployments.sqlite", system, clock)
    with store:
        yield board


@pytest.fixture
def linked() -> set[str]:
    return {"unit-b"}


@pytest.fixture
async def control(system: ActorSystem, board: WatchlistBoard, clock: Clock,
                  linked: set[str]) -> ActorRef[ControlMessage]:
    return await system.spawn("control", lambda: VanControl(
        board, enrolled=lambda: ENROLLED, linked=lambda: tuple(linked), clock=clock))


def failures(system: ActorSystem) -> tuple[int, int]:
    cell = next(c for c in system.cells() if c.name == "control")
    return cell.metrics.failures, cell.metrics.restarts


async def test_a_deployment_starts_and_ends_through_the_control_actor(
        control: ActorRef[ControlMessage], board: WatchlistBoard, clock: Clock) -> None:
    started = await control.ask(StartDeployment("dep-1", 0.6), timeout=WAIT_S)
    assert started == DeploymentState("dep-1", 0.6, NOW, 0.0)
    assert board.deployment is not None
    assert board.deployment.id == "dep-1"
    clock.now = NOW + 60
    ended = await control.ask(EndDeployment(), timeout=WAIT_S)
    assert ended == DeploymentState("dep-1", 0.6, NOW, NOW + 60)
    assert board.deployment is None


@pytest.mark.parametrize(("threshold", "problem"), [
    (0.3, "outside the usual range"), (0.95, "outside the usual range"),
    (0.0, "strictly between 0 and 1"), (1.0, "strictly between 0 and 1"),
    (float("nan"), "strictly between 0 and 1"),
])
async def test_a_threshold_outside_the_usual_range_is_refused(
        system: ActorSystem, control: ActorRef[ControlMessage], board: WatchlistBoard,
        threshold: float, problem: str) -> None:
    with pytest.raises(ThresholdError, match=problem):
        await control.ask(StartDeployment("dep-1", threshold), timeout=WAIT_S)
    assert board.deployment is None
    # The bounds of the usual range are accepted.
    assert isinstance(await control.ask(StartDeployment("dep-1", 0.45), timeout=WAIT_S),
                      DeploymentState)
    assert failures(system) == (0, 0)


async def test_deployment_commands_the_store_refuses_fail_with_its_reason(
        system: ActorSystem, control: ActorRef[ControlMessage]) -> None:
    with pytest.raises(DeploymentError, match="none to end"):
        await control.ask(EndDeployment(), timeout=WAIT_S)
    await control.ask(StartDeployment("dep-1", 0.6), timeout=WAIT_S)
    with pytest.raises(DeploymentError, match="is active"):
        await control.ask(StartDeployment("dep-2", 0.6), timeout=WAIT_S)
    with pytest.raises(UserInputError, match="deployment id"):
        await control.ask(StartDeployment("", 0.6), timeout=WAIT_S)
    assert failures(system) == (0, 0)


async def test_a_push_answers_what_was_stored(control: ActorRef[ControlMessage],
                                              board: WatchlistBoard) -> None:
    await control.ask(StartDeployment("dep-1", 0.6), timeout=WAIT_S)
    signed = sign()
    done = await control.ask(PushWatchlist(signed, ()), timeout=WAIT_S)
    assert done == PushDone("dep-1", 1, 3, payload_hash(signed), NOW + DAY)
    assert all(board.wanted(unit) == 1 for unit in ENROLLED)
    done = await control.ask(PushWatchlist(sign(version=2), ("unit-a", "unit-c")),
                             timeout=WAIT_S)
    assert isinstance(done, PushDone)
    assert done.version == 2
    assert [board.wanted(unit) for unit in ENROLLED] == [2, 1, 2]


async def test_a_push_or_purge_naming_an_unknown_unit_is_refused_with_its_name(
        system: ActorSystem, control: ActorRef[ControlMessage], board: WatchlistBoard) -> None:
    await control.ask(StartDeployment("dep-1", 0.6), timeout=WAIT_S)
    with pytest.raises(UnknownUnits, match="not enrolled at this van: unit-x, unit-z") as caught:
        await control.ask(PushWatchlist(sign(), ("unit-a", "unit-z", "unit-x")), timeout=WAIT_S)
    assert "unit-a" not in str(caught.value)
    assert board.wanted("unit-a") is None  # nothing was pushed to anyone
    with pytest.raises(UnknownUnits, match=r"unit\\n-forged"):
        await control.ask(PurgeWatchlists(("unit\n-forged",)), timeout=WAIT_S)
    too_many = tuple(f"unit-{i}" for i in range(MAX_UNITS_NAMED + 1))
    with pytest.raises(UserInputError, match=f"{MAX_UNITS_NAMED + 1} units named"):
        await control.ask(PushWatchlist(sign(), too_many), timeout=WAIT_S)
    assert failures(system) == (0, 0)


async def test_a_bad_signed_file_is_refused_with_its_reason(
        system: ActorSystem, control: ActorRef[ControlMessage]) -> None:
    await control.ask(StartDeployment("dep-1", 0.6), timeout=WAIT_S)
    with pytest.raises(WatchlistRefused) as refused:
        await control.ask(PushWatchlist(sign(deployment="dep-9"), ()), timeout=WAIT_S)
    assert refused.value.reason is RefusalReason.OTHER_DEPLOYMENT
    assert failures(system) == (0, 0)


async def test_the_status_has_a_row_for_every_unit_enrolled_or_heard_from(
        control: ActorRef[ControlMessage], board: WatchlistBoard, clock: Clock) -> None:
    empty = await control.ask(GetWatchlistStatus(), timeout=WAIT_S)
    assert empty == WatchlistStatus("", 0.0, tuple(
        UnitWatchlistRow(unit, unit == "unit-b", 0, "none", "", 0, 0, 0, "", -1.0)
        for unit in ENROLLED))
    await control.ask(StartDeployment("dep-1", 0.6), timeout=WAIT_S)
    await control.ask(PushWatchlist(sign(), ()), timeout=WAIT_S)
    await control.ask(PushWatchlist(sign(version=2), ("unit-b",)), timeout=WAIT_S)
    await board.news_for("unit-a", poll(HeldState.HELD, "dep-1", 1, 3))
    await board.news_for("unit-b", poll(HeldState.HELD, "dep-1", 1, 3, 2,
                                        "signature_ml_dsa: bad"))
    await board.news_for("stranger", poll())  # not enrolled (any more), but heard from
    clock.now = NOW + 7
    status = await control.ask(GetWatchlistStatus(), timeout=WAIT_S)
    assert isinstance(status, WatchlistStatus)
    assert (status.deployment_id, status.threshold) == ("dep-1", 0.6)
    rows = {row.unit_id: row for row in status.units}
    assert list(rows) == ["stranger", "unit-a", "unit-b", "unit-c"]
    assert rows["unit-a"] == UnitWatchlistRow("unit-a", False, 1, "held", "dep-1", 1, 3, 0, "",
                                              7.0)
    assert rows["unit-b"] == UnitWatchlistRow("unit-b", True, 2, "held", "dep-1", 1, 3, 2,
                                              "signature_ml_dsa: bad", 7.0)
    assert rows["unit-c"].last_poll_age_s == -1.0
    assert rows["unit-c"].wanted_version == 1
    # A purge answers with the status after it.
    purged = await control.ask(PurgeWatchlists(("unit-a",)), timeout=WAIT_S)
    assert isinstance(purged, WatchlistStatus)
    assert {row.unit_id: row.wanted_version for row in purged.units}["unit-a"] == 0


def test_every_control_message_crosses_the_codec() -> None:
    codec = Codec()
    for message in (StartDeployment("dep-1", 0.6), EndDeployment(),
                    PushWatchlist(b"signed", ("unit-a",)), PurgeWatchlists(()),
                    GetWatchlistStatus()):
        assert type(message) in CONTROL_ASKS
        assert codec.decode(codec.encode(message)) == message
    status = WatchlistStatus("dep-1", 0.6, (UnitWatchlistRow("unit-a", True, 1, "held", "dep-1",
                                                             1, 3, 0, "", 1.5),))
    assert codec.decode(codec.encode(status)) == status
