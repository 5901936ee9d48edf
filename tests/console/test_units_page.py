"""The Units page (``console.units_page``) served by the console app, on a van made of real
parts: enrolled units with real keys, an event store holding sealed health reports and alerts,
a deployment store and a watchlist board with a real signed list, an audit trail. Only the
links are a stand-in (``FakeLinks``: which units are online).

The helpers at the top (``console_van``, ``ConsoleVan``, ``health_body``) are shared by the
Watchlist and Audit page tests, which import them from here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from actors.unit.event_body import AlertBody, CameraHealth, HealthBody, encode_body
from actors.van.deployment_store import DeploymentStore
from actors.van.enrolment import Enrolment
from actors.van.event_store import EventStore
from actors.van.unit_links import UnitLinks
from actors.van.watchlist_board import WatchlistBoard
from actors.watchlist_messages import HeldState
from audit.log import AuditLog
from audit.writer import WRITER_MAILBOX, AuditCounts, AuditSink, AuditWriter
from console import audit_page, units_page, watchlist_page
from console.alert_feed import AlertFeed
from console.app import PageRoute
from console.sources import ConsoleSources
from console.units_page import MAX_EVENTS_BACK, AlarmCode
from console.users import UserStore
from runtime.system import ActorSystem, SystemConfig
from secure.envelope import EventKind, seal_envelope
from secure.key_files import write_node_keys
from secure.node_keys import NodeKeys, NodeRole
from tests.actors.van.delivery_support import CROP, alert
from tests.actors.van.test_watchlist_board import AUTHORITY, DAY, EMBEDDER, NOW, Clock, poll, sign
from tests.console.support import (
    OPERATOR,
    SUPERVISOR,
    Client,
    FakeClock,
    console_client,
    inline_code,
    make_users,
    signed_in,
)

HTML = {"Accept": "text/html"}
ODD_UNIT = "<script>alert(1)"
"""A unit id that is valid (printable, no slash) and must never reach a page as markup."""


class FakeLinks:
    """Stands in for ``UnitLinks``: only ``linked_units`` (the pages read nothing else)."""

    def __init__(self, linked: Sequence[str] = ()) -> None:
        self.linked = set(linked)

    def linked_units(self) -> tuple[str, ...]:
        return tuple(sorted(self.linked))


def health_body(*, unit_time: float = NOW, cameras: Sequence[tuple[str, float, int]] = (
                    ("cam0", 29.9, 1798),), faces_seen: int = 12, faces_rejected: int = 3,
                alerts: int = 1, outbox_depth: int = 2, outbox_oldest_age_s: float | None = 12.0,
                outbox_full: bool = False, watchlist_version: int = 1, audit_head: str = "",
                audit_records: int = 0) -> HealthBody:
    """A valid health report; every count can be set."""
    return HealthBody(unit_time=unit_time, uptime_s=600.0,
                      cameras=tuple(CameraHealth(c, fps, frames) for c, fps, frames in cameras),
                      faces_seen=faces_seen, faces_rejected=faces_rejected, alerts=alerts,
                      outbox_depth=outbox_depth, outbox_oldest_age_s=outbox_oldest_age_s,
                      outbox_full=outbox_full, watchlist_version=watchlist_version,
                      model_ids=("mobilefacenet",), audit_head=audit_head,
                      audit_records=audit_records)


@dataclass
class ConsoleVan:
    """A van's parts behind ``sources`` (module docstring), and what the tests move."""

    sources: ConsoleSources
    board: WatchlistBoard
    deployments: DeploymentStore
    events: EventStore
    enrolment: Enrolment
    van: NodeKeys
    units: dict[str, NodeKeys]
    links: FakeLinks
    audit: AuditLog
    users: UserStore
    clock: Clock
    """The van's clock (pages, board)."""
    received: Clock
    """The event store's clock: ``received_at`` of what is stored next."""
    seqs: dict[str, int] = field(default_factory=dict)

    def _next(self, unit: str) -> int:
        self.seqs[unit] = self.seqs.get(unit, 0) + 1
        return self.seqs[unit]

    def store(self, unit: str, body: HealthBody | AlertBody, *,
              received_at: float | None = None, van_key: NodeKeys | None = None) -> int:
        """Seal ``body`` as ``unit`` does and store it as the receiver would; its seq."""
        seq = self._next(unit)
        kind = EventKind.HEALTH if isinstance(body, HealthBody) else EventKind.ALERT
        key = (van_key or self.van).encryption
        assert key is not None
        sealed = seal_envelope(encode_body(body), kind=kind, unit_id=unit, sequence=seq,
                               signing_key=self.units[unit].signing, van_key=key.public_key)
        self.received.now = self.clock.now if received_at is None else received_at
        captured = body.unit_time if isinstance(body, HealthBody) else body.captured_at
        assert self.events.store(unit, seq, "health" if kind is EventKind.HEALTH else "alert",
                                 captured, sealed)
        return seq

    def routes(self) -> list[PageRoute]:
        return [*units_page.routes(self.sources, clock=self.clock),
                *watchlist_page.routes(self.sources, clock=self.clock),
                *audit_page.routes(self.sources, clock=self.clock)]


@asynccontextmanager
async def console_van(folder: Path, *unit_ids: str,
                      linked: Sequence[str] = ()) -> AsyncIterator[ConsoleVan]:
    """A van in ``folder`` with ``unit_ids`` enrolled (real key files), ``linked`` online."""
    clock, received = Clock(), Clock()
    van = NodeKeys.generate(NodeRole.VAN, "van-1")
    assert van.encryption is not None
    state = folder / "state"
    state.mkdir()
    enrolment = Enrolment.open(state)
    units: dict[str, NodeKeys] = {}
    for index, unit_id in enumerate(unit_ids):
        units[unit_id] = NodeKeys.generate(NodeRole.UNIT, unit_id)
        enrolment.enrol(write_node_keys(units[unit_id], folder / f"unit-keys-{index}").public)
    users_dir = folder / "users"
    users_dir.mkdir()
    async with ActorSystem(SystemConfig(name="console-test", blocking_workers=2)) as system:
        with (AuditLog.open(state / "audit.log", "van-1", clock=clock) as trail,
              EventStore.open(state / "events.sqlite", clock=received) as events,
              DeploymentStore.open(state / "deployments.sqlite", van.encryption) as deployments):
            counts = AuditCounts()
            sink = AuditSink(await system.spawn("audit", lambda: AuditWriter(trail, counts),
                                                WRITER_MAILBOX), counts)
            board = WatchlistBoard(deployments, system.blocking, authority=AUTHORITY.public(),
                                   embedder=EMBEDDER, audit=trail, clock=clock)
            await board.load()
            links = FakeLinks(linked)
            sources = ConsoleSources("van-1", events, deployments, board,
                                     cast("UnitLinks", links), enrolment, van.encryption, sink,
                                     trail.path, system.blocking, AlertFeed())
            yield ConsoleVan(sources, board, deployments, events, enrolment, van, units, links,
                             trail, make_users(users_dir), clock, received)


@asynccontextmanager
async def browser(van: ConsoleVan, account: tuple[str, str]) -> AsyncIterator[
        tuple[Client, str]]:
    """The console with every page of this helper, signed in as ``account``; (client, CSRF
    token)."""
    async with console_client(van.users, FakeClock(), pages=van.routes()) as client:
        yield client, await signed_in(client, *account)


async def page_text(client: Client, path: str, status: int = 200) -> str:
    answer = await client.get(path, headers=HTML, allow_redirects=False)
    text = await answer.text()
    assert answer.status == status, (answer.status, text[:500])
    return text


async def units_json(client: Client) -> dict[str, Any]:
    answer = await client.get("/units.json")
    assert answer.status == 200
    assert answer.content_type == "application/json"
    data: dict[str, Any] = await answer.json()
    return data


def by_unit(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["unit"]: row for row in data["units"]}


def alarm_codes(row: dict[str, Any]) -> set[str]:
    return {alarm["code"] for alarm in row["alarms"]}


# --- the rows -----------------------------------------------------------------------------------


async def test_every_unit_has_a_row_with_its_newest_health_report(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1", "unit-2", linked=["unit-1"]) as van:
        van.store("unit-1", health_body(faces_seen=5, faces_rejected=1),
                  received_at=NOW - 9)
        van.store("unit-1", health_body(), received_at=NOW - 4)
        for seq in range(3):  # alerts newer than the report: passed over, never opened
            van.store("unit-1", alert(seq), received_at=NOW - 1)
        await van.board.news_for("unit-3", poll())  # heard of by the board, not enrolled
        async with browser(van, OPERATOR) as (client, _):
            page = await page_text(client, "/units")
            data = await units_json(client)
    assert "<caption>Camera units</caption>" in page
    for unit in ("unit-1", "unit-2", "unit-3"):
        assert f'<th scope="row">{unit}</th>' in page
    for heading in ("Unit", "Link", "Last health report", "Cameras", "Faces", "Outbox",
                    "Watchlist", "Alarms"):
        assert f'<th scope="col">{heading}</th>' in page
    rows = by_unit(data)
    assert [row["unit"] for row in data["units"]] == ["unit-1", "unit-2", "unit-3"]
    one = rows["unit-1"]
    assert (one["online"], one["enrolled"]) == (True, True)
    assert one["report"]["faces_seen"] == 12  # the newer report
    assert one["report"]["received_at"] == NOW - 4
    assert one["cells"]["cameras"] == ["cam0: 29.9 fps, 1,798 frames"]
    assert one["cells"]["faces"] == ["seen 12", "rejected 3"]
    assert one["cells"]["outbox"] == ["2 waiting", "oldest 12 s"]
    assert one["cells"]["report"] == ["made 2027-01-15 08:00:00 UTC (unit clock)",
                                      "received 4 s ago", "alerts since start: 1"]
    assert one["cells"]["watchlist"][0] == "reports holding version 1"
    assert one["alarms"] == []
    assert "cam0: 29.9 fps, 1,798 frames" in page
    assert "received 4 s ago" in page
    two = rows["unit-2"]
    assert (two["online"], two["report"], two["alarms"]) == (False, None, [])
    assert rows["unit-3"]["enrolled"] is False
    assert rows["unit-3"]["cells"]["link"] == ["offline", "not enrolled"]
    assert data["summary"] == "3 units: 1 online, 0 with alarms"
    assert "3 units: 1 online, 0 with alarms" in page


async def test_each_alarm_is_raised_in_words_and_only_when_it_applies(tmp_path: Path) -> None:
    units = ("full", "camera", "skew", "silent", "expired", "refused", "offline", "quiet")
    async with console_van(tmp_path, *units, linked=(*units[:-2], "quiet")) as van:
        van.store("full", health_body(outbox_full=True))
        van.store("camera", health_body(cameras=(("cam0", 25.0, 10), ("cam1", 0.0, 0))))
        van.store("skew", health_body(unit_time=NOW + 45))
        van.store("silent", health_body(unit_time=NOW - 25), received_at=NOW - 25)
        van.store("expired", health_body())
        van.store("refused", health_body())
        # Offline: a camera at 0 fps and an old report are no alarm (the unit is not there).
        van.store("offline", health_body(cameras=(("cam0", 0.0, 0),), unit_time=NOW - 600),
                  received_at=NOW - 600)
        van.store("quiet", health_body(unit_time=NOW - 19), received_at=NOW - 19)  # in time
        await van.board.news_for("expired", poll(HeldState.EXPIRED, "dep-1", 1, 3))
        await van.board.news_for("refused", poll(refused_version=2,
                                                 refused_reason="expired: past not_after"))
        async with browser(van, OPERATOR) as (client, _):
            rows = by_unit(await units_json(client))
            page = await page_text(client, "/units")
    assert alarm_codes(rows["full"]) == {AlarmCode.OUTBOX_FULL}
    assert alarm_codes(rows["camera"]) == {AlarmCode.CAMERA_DOWN}
    assert rows["camera"]["alarms"][0]["text"] == "Camera down: cam1 at 0 fps"
    assert alarm_codes(rows["skew"]) == {AlarmCode.CLOCK_SKEW}
    assert "45 s ahead of the van's" in rows["skew"]["alarms"][0]["text"]
    assert alarm_codes(rows["silent"]) == {AlarmCode.UNIT_SILENT}
    assert "no health report for 25 s" in rows["silent"]["alarms"][0]["text"]
    assert alarm_codes(rows["expired"]) == {AlarmCode.WATCHLIST_EXPIRED}
    assert alarm_codes(rows["refused"]) == {AlarmCode.WATCHLIST_REFUSED}
    assert rows["refused"]["alarms"][0]["text"] == ("Watchlist refused: version 2: expired: "
                                                    "past not_after")
    assert rows["offline"]["alarms"] == []
    assert rows["quiet"]["alarms"] == []
    for text in ("Outbox full:", "Camera down: cam1 at 0 fps", "Clock skew:", "Unit silent:",
                 "Watchlist expired:", "Watchlist refused: version 2"):
        assert f"<li><strong>{text}" in page  # words in a list, not a colour
    assert "6 with alarms" in page


async def test_an_online_unit_without_any_report_is_silent(tmp_path: Path) -> None:
    async with (console_van(tmp_path, "unit-1", linked=["unit-1"]) as van,
                browser(van, OPERATOR) as (client, _)):
        rows = by_unit(await units_json(client))
    assert alarm_codes(rows["unit-1"]) == {AlarmCode.UNIT_SILENT}


async def test_a_refusal_older_than_the_list_held_is_no_alarm(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        await van.board.news_for("unit-1", poll(HeldState.HELD, "dep-1", 3, 3,
                                                refused_version=2, refused_reason="rollback"))
        async with browser(van, OPERATOR) as (client, _):
            rows = by_unit(await units_json(client))
    assert rows["unit-1"]["alarms"] == []
    assert "last refused version 2: rollback" in rows["unit-1"]["cells"]["watchlist"]


async def test_the_watchlist_column_shows_the_boards_view_and_the_expiry(
        tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        await van.board.start_deployment("dep-1", 0.6)
        await van.board.push(sign())
        await van.board.news_for("unit-1", poll(HeldState.HELD, "dep-1", 1, 3))
        async with browser(van, OPERATOR) as (client, _):
            row = by_unit(await units_json(client))["unit-1"]
    assert row["watchlist"]["state"] == "held"
    assert row["wanted"] == 1
    assert row["expires_at"] == NOW + DAY
    assert row["cells"]["watchlist"] == [
        "board: held version 1 of dep-1 (3 subjects)", "last poll 0 s ago",
        "must hold version 1", "expires 2027-01-16 08:00:00 UTC"]


# --- bounds and failures ------------------------------------------------------------------------


async def test_the_report_is_looked_for_among_a_bounded_number_of_events(
        tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1", "unit-2") as van:
        van.store("unit-1", health_body())
        for seq in range(MAX_EVENTS_BACK):
            van.store("unit-1", alert(seq))
        van.store("unit-2", health_body(faces_seen=7))
        for seq in range(MAX_EVENTS_BACK - 1):
            van.store("unit-2", alert(seq))
        async with browser(van, OPERATOR) as (client, _):
            rows = by_unit(await units_json(client))
    assert rows["unit-1"]["report"] is None
    assert rows["unit-1"]["cells"]["report"] == ["none among its newest events"]
    assert rows["unit-2"]["report"]["faces_seen"] == 7


async def test_a_stored_report_that_does_not_open_is_passed_over(tmp_path: Path) -> None:
    other_van = NodeKeys.generate(NodeRole.VAN, "van-2")
    async with console_van(tmp_path, "unit-1") as van:
        van.store("unit-1", health_body(faces_seen=4))
        van.store("unit-1", health_body(faces_seen=9), van_key=other_van)  # not for this van
        async with browser(van, OPERATOR) as (client, _):
            rows = by_unit(await units_json(client))
    assert rows["unit-1"]["report"]["faces_seen"] == 4


# --- safety -------------------------------------------------------------------------------------


async def test_unit_ids_and_reasons_are_escaped_and_no_page_carries_face_data(
        tmp_path: Path) -> None:
    reason = '<img src=x onerror="alert(2)">'
    async with console_van(tmp_path, ODD_UNIT, linked=[ODD_UNIT]) as van:
        van.store(ODD_UNIT, alert(1))
        van.store(ODD_UNIT, health_body(cameras=(("<b>cam</b>", 0.0, 0),)))
        await van.board.news_for(ODD_UNIT, poll(refused_version=1, refused_reason=reason))
        async with browser(van, OPERATOR) as (client, _):
            page = await page_text(client, "/units")
            answer = await client.get("/units.json")
            raw = await answer.read()
    assert "<script>alert(1)" not in page
    assert '<th scope="row">&lt;script&gt;alert(1)</th>' in page
    assert "<img" not in page
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in page
    assert "Camera down: &lt;b&gt;cam&lt;/b&gt; at 0 fps" in page
    assert inline_code(page).found == []
    assert inline_code(page).scripts == ["/static/console.js", "/static/units.js"]
    data = json.loads(raw)
    assert data["units"][0]["unit"] == ODD_UNIT  # JSON carries the text as text
    assert answer.content_type == "application/json"
    for shown in (page.encode(), raw):
        assert CROP not in shown
        assert base64.b64encode(CROP)[:64] not in shown
        assert CROP.hex()[:64].encode() not in shown
        assert b"data:image" not in shown


async def test_the_page_and_json_are_for_signed_in_operators(tmp_path: Path) -> None:
    async with (console_van(tmp_path, "unit-1") as van,
                console_client(van.users, FakeClock(), pages=van.routes()) as client):
        assert (await client.get("/units.json")).status == 401
        answer = await client.get("/units", headers=HTML, allow_redirects=False)
        assert answer.status == 303
        await signed_in(client, *SUPERVISOR)  # a supervisor may do what operators may
        assert (await client.get("/units.json")).status == 200
        await signed_in(client, *OPERATOR)
        assert (await client.get("/units")).status == 200
        script = await client.get("/static/units.js")
        assert script.status == 200
        assert "textContent" in await script.text()


async def test_the_units_route_list_is_what_the_page_module_exports(tmp_path: Path) -> None:
    async with console_van(tmp_path) as van:
        found = [(r.method, r.path, r.role.value) for r in units_page.routes(van.sources)]
    assert found == [("GET", "/units", "operator"), ("GET", "/units.json", "operator")]

