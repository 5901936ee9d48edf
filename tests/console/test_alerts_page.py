"""The live alerts page served on loopback and driven like a browser, over a real van's parts: an
event store of sealed alert envelopes from enrolled units, a deployment store with a reference
photo, the watchlist board, an audit trail written by the real writer, the review store and the
alert feed. Each test names the rule it guards."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientPayloadError, ClientResponse, CookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from actors.van.deployment_store import DeploymentStore
from actors.van.receiver import AlertNotice
from actors.van.review_store import ReviewStore
from actors.van.unit_links import UnitLinks
from actors.van.watchlist_board import WatchlistBoard
from audit.log import AuditLog
from audit.writer import WRITER_MAILBOX, AuditCounts, AuditSink, AuditWriter
from console.alert_feed import AlertFeed, AlertFeedConfig
from console.alerts_page import MAX_LIST_LIMIT, routes
from console.app import ConsoleConfig, build_console_app
from console.sources import ConsoleSources
from console.users import UserStore
from runtime.system import ActorSystem, SystemConfig
from tests.actors.support import eventually
from tests.actors.van.delivery_support import CROP, Van, alert, health, jpeg, make_van
from tests.actors.van.test_watchlist_board import AUTHORITY, EMBEDDER
from tests.console.support import (
    ATTACKER_SITE,
    OPERATOR,
    SUPERVISOR,
    Client,
    FakeClock,
    inline_code,
    make_users,
    signed_in,
)

NOW = 1_732_590_100.0
"""The van's clock in these tests: 100 s after ``alert(0)`` was captured."""
SUBJECT = "lin_manuel_miranda"
"""The subject of ``alert()``; the deployment holds a reference photo of it."""
REFERENCE = jpeg(90, 120)
"""The subject's reference photo."""
HTML = {"Accept": "text/html"}
WAIT_S = 30.0


@dataclass
class Parts:
    """The van's parts behind the console, and what the tests look at."""

    van: Van
    deployments: DeploymentStore
    board: WatchlistBoard
    reviews: ReviewStore
    feed: AlertFeed
    audit_path: Path
    audit_counts: AuditCounts
    sources: ConsoleSources

    def store_alert(self, seq: int, *, unit: str = "unit-1", **changes: object) -> None:
        body = alert(seq, **changes)
        assert self.van.store.store(unit, seq, "alert", body.captured_at,
                                    self.van.seal(body, seq, unit=unit))

    def store_health(self, seq: int, *, unit: str = "unit-1") -> None:
        assert self.van.store.store(unit, seq, "health", NOW, self.van.seal(health(), seq,
                                                                            unit=unit))

    def audit_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]


@pytest_asyncio.fixture
async def system() -> AsyncIterator[ActorSystem]:
    async with ActorSystem(SystemConfig(name="console-test", blocking_workers=2,
                                        shutdown_drain_s=1.0)) as started:
        yield started


@pytest.fixture
def feed_config() -> AlertFeedConfig:
    return AlertFeedConfig()


@pytest_asyncio.fixture
async def parts(tmp_path: Path, system: ActorSystem,
                feed_config: AlertFeedConfig) -> AsyncIterator[Parts]:
    van = make_van(tmp_path, "unit-1", "unit-2")
    deployments = DeploymentStore.open(van.state_dir / "deployments.sqlite", van.encryption)
    board = WatchlistBoard(deployments, system.blocking, authority=AUTHORITY.public(),
                           embedder=EMBEDDER, clock=lambda: NOW)
    await board.load()
    await board.start_deployment("dep-1", 0.6)
    deployments.put_reference_photo("dep-1", SUBJECT, REFERENCE)
    deployments.put_reference_photo("dep-1", "a/b c", REFERENCE)
    audit_path = tmp_path / "van-audit.log"
    trail = AuditLog.open(audit_path, "van-1")
    counts = AuditCounts()
    sink = AuditSink(await system.spawn("audit", lambda: AuditWriter(trail, counts),
                                        WRITER_MAILBOX), counts)
    links = UnitLinks(system, await system.spawn_supervisor("receivers"), van.store,
                      signers=van.enrolment.lookup, van_key=van.encryption)
    feed = AlertFeed(feed_config)
    reviews = ReviewStore.open(van.state_dir, clock=lambda: NOW + 5)
    sources = ConsoleSources("van-1", van.store, deployments, board, links, van.enrolment,
                             van.encryption, sink, audit_path, system.blocking, feed)
    try:
        yield Parts(van, deployments, board, reviews, feed, audit_path, counts, sources)
    finally:
        await links.stop()
        reviews.close()
        deployments.close()
        van.store.close()
        trail.close()


@pytest.fixture
def users(tmp_path: Path) -> Iterator[UserStore]:
    (tmp_path / "accounts").mkdir()
    store = make_users(tmp_path / "accounts")
    yield store
    store.close()


class VanLikeServer(TestServer):
    """The console served as ``lfr van`` serves it: a handler is not cancelled when its client
    goes (aiohttp's default, which ``TestServer`` changes), and a stop waits at most
    ``SHUTDOWN_S`` for handlers before cancelling them."""

    SHUTDOWN_S = 1.0

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        kwargs["handler_cancellation"] = False
        return web.AppRunner(self.app, shutdown_timeout=self.SHUTDOWN_S, **kwargs)


@pytest_asyncio.fixture
async def server(parts: Parts, users: UserStore) -> AsyncIterator[VanLikeServer]:
    pages = routes(parts.sources, parts.reviews, clock=lambda: NOW, keepalive_s=0.2)
    app = build_console_app(users, ConsoleConfig(), pages=pages, clock=FakeClock())
    served = VanLikeServer(app)
    yield served
    await served.close()


@pytest_asyncio.fixture
async def client(server: VanLikeServer) -> AsyncIterator[Client]:
    async with TestClient(server, cookie_jar=CookieJar(unsafe=True)) as browser:
        yield browser


async def operator(client: Client) -> str:
    """Sign the client in as the operator; the session's CSRF token."""
    return await signed_in(client, *OPERATOR)


async def decide(client: Client, token: str, path: str, body: object) -> ClientResponse:
    return await client.post(path, data=json.dumps(body),
                             headers={"Content-Type": "application/json",
                                      "X-CSRF-Token": token})


async def alerts(client: Client, query: str = "") -> dict[str, Any]:
    answer = await client.get(f"/alerts/list.json{query}")
    assert answer.status == 200, await answer.text()
    page: dict[str, Any] = await answer.json()
    return page


async def next_event(answer: ClientResponse) -> bytes:
    """The next server-sent event (or comment block) of a stream."""
    async with asyncio.timeout(WAIT_S):
        return await answer.content.readuntil(b"\n\n")


# -- the page --------------------------------------------------------------------------------


async def test_the_page_has_the_lists_a_live_region_and_the_keys_and_no_inline_code(
        client: Client) -> None:
    await operator(client)
    answer = await client.get("/alerts", headers=HTML)
    assert answer.status == 200
    page = await answer.text()
    checked = inline_code(page)
    assert checked.found == []
    assert "/static/alerts.js" in checked.scripts
    assert '<link rel="stylesheet" href="/static/alerts.css">' in page
    assert '<h1>Live alerts</h1>' in page
    assert 'aria-live="assertive"' in page
    for key in ("j", "k", "c", "d", "u"):
        assert f"<kbd>{key}</kbd>" in page
    for static in ("/static/alerts.js", "/static/alerts.css"):
        assert (await client.get(static)).status == 200


# -- the list --------------------------------------------------------------------------------


async def test_the_list_shows_alerts_newest_first_with_their_facts_and_never_the_crop(
        client: Client, parts: Parts) -> None:
    parts.store_alert(1)
    parts.store_health(2)
    parts.store_alert(3, subject_id="someone_else", camera_id="cam 2", score=0.81234)
    parts.store_alert(1, unit="unit-2")
    await operator(client)
    answer = await client.get("/alerts/list.json")
    text = await answer.text()
    for encoded in (base64.b64encode(CROP).decode(), CROP.hex(), base64.b64encode(REFERENCE)
                    .decode()):
        assert encoded[:64] not in text
    assert len(text) < 8 * 1024  # metadata only: a crop alone is larger than the whole list
    page = json.loads(text)
    assert page["now"] == NOW
    assert page["next_before_id"] is None
    assert [(a["unit"], a["seq"]) for a in page["alerts"]] == [
        ("unit-2", 1), ("unit-1", 3), ("unit-1", 1)]
    newest, other, first = page["alerts"]
    assert first == {
        "id": first["id"], "unit": "unit-1", "seq": 1, "readable": True, "problem": None,
        "camera": "cam0", "subject": SUBJECT, "score": 0.7312, "threshold": 0.6,
        "captured_at": 1_732_590_001.0, "received_at": first["received_at"],
        "age_s": 99.0, "decision": None, "crop_url": "/alerts/unit-1/1/crop.jpg",
        "photo_url": f"/subjects/{SUBJECT}/photo.jpg",
        "decision_url": "/alerts/unit-1/1/decision"}
    assert (other["subject"], other["camera"], other["score"]) == ("someone_else", "cam 2",
                                                                   0.8123)
    assert other["photo_url"] is None  # the deployment holds no photo of this subject
    assert newest["crop_url"] == "/alerts/unit-2/1/crop.jpg"


async def test_the_list_pages_by_before_id_and_skips_health_reports(
        client: Client, parts: Parts) -> None:
    for seq in range(1, 8):
        parts.store_alert(seq) if seq % 2 else parts.store_health(seq)
    await operator(client)
    first = await alerts(client, "?limit=2")
    assert [a["seq"] for a in first["alerts"]] == [7, 5]
    assert first["next_before_id"] == first["alerts"][-1]["id"]
    rest = await alerts(client, f"?limit=2&before_id={first['next_before_id']}")
    assert [a["seq"] for a in rest["alerts"]] == [3, 1]
    last = await alerts(client, f"?limit=2&before_id={rest['next_before_id']}")
    assert last == {"alerts": [], "next_before_id": None, "now": NOW}


async def test_undecided_lists_only_alerts_without_a_decision(client: Client,
                                                              parts: Parts) -> None:
    for seq in range(1, 5):
        parts.store_alert(seq)
    token = await operator(client)
    for seq in (2, 4):
        assert (await decide(client, token, f"/alerts/unit-1/{seq}/decision",
                             {"decision": "dismissed"})).status == 200
    assert [a["seq"] for a in (await alerts(client, "?undecided=1"))["alerts"]] == [3, 1]
    assert [a["seq"] for a in (await alerts(client))["alerts"]] == [4, 3, 2, 1]


@pytest.mark.parametrize(("query", "field"), [
    (f"?limit={MAX_LIST_LIMIT + 1}", "limit"),
    ("?limit=0", "limit"),
    ("?limit=-1", "limit"),
    ("?before_id=abc", "before_id"),
    ("?before_id=99999999999999999999", "before_id"),
    ("?undecided=yes", "undecided"),
])
async def test_bad_list_parameters_are_refused_naming_them(client: Client, query: str,
                                                           field: str) -> None:
    await operator(client)
    answer = await client.get(f"/alerts/list.json{query}")
    assert answer.status == 400
    assert (await answer.json())["field"] == field


async def test_one_alert_reads_as_in_the_list(client: Client, parts: Parts) -> None:
    parts.store_alert(4)
    await operator(client)
    answer = await client.get("/alerts/unit-1/4/alert.json")
    assert answer.status == 200
    assert await answer.json() == (await alerts(client))["alerts"][0]
    assert (await client.get("/alerts/unit-1/5/alert.json")).status == 404


async def test_an_alert_that_no_longer_opens_is_listed_without_a_crop(
        client: Client, parts: Parts) -> None:
    parts.store_alert(1, unit="unit-2")
    parts.van.enrolment.revoke("unit-2")  # the lookup fails closed: the envelope stays shut
    await operator(client)
    (listed,) = (await alerts(client))["alerts"]
    assert (listed["unit"], listed["readable"], listed["problem"]) == ("unit-2", False,
                                                                       "unknown_signer")
    assert (listed["subject"], listed["crop_url"], listed["photo_url"]) == (None, None, None)
    assert (await client.get("/alerts/unit-2/1/crop.jpg")).status == 404


# -- crops and photos ------------------------------------------------------------------------


async def test_the_crop_is_served_opened_and_never_cached(client: Client,
                                                          parts: Parts) -> None:
    parts.store_alert(2)
    parts.store_health(3)
    await operator(client)
    answer = await client.get("/alerts/unit-1/2/crop.jpg")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "image/jpeg"
    assert answer.headers["Cache-Control"] == "no-store"
    assert await answer.read() == CROP
    assert (await client.get("/alerts/unit-1/9/crop.jpg")).status == 404
    assert (await client.get("/alerts/unit-1/3/crop.jpg")).status == 404  # a health report
    assert (await client.get("/alerts/unit-9/2/crop.jpg")).status == 404


@pytest.mark.parametrize(("path", "field"), [
    ("/alerts/unit-1/0/crop.jpg", "seq"),
    ("/alerts/unit-1/01/crop.jpg", "seq"),
    ("/alerts/unit-1/-1/crop.jpg", "seq"),
    ("/alerts/unit-1/abc/crop.jpg", "seq"),
    ("/alerts/unit-1/9223372036854775808/crop.jpg", "seq"),
    ("/alerts/unit%0A1/1/crop.jpg", "unit"),
    (f"/alerts/{'u' * 65}/1/crop.jpg", "unit"),
    ("/alerts/%2A/1/alert.json", "unit"),
    ("/alerts/unit-1/1e3/decision", "seq"),
])
async def test_path_parameters_are_checked(client: Client, path: str, field: str) -> None:
    token = await operator(client)
    if path.endswith("/decision"):
        answer = await decide(client, token, path, {"decision": "confirmed"})
    else:
        answer = await client.get(path)
    assert answer.status == 400
    assert (await answer.json())["field"] == field


async def test_the_reference_photo_is_the_active_deployments(client: Client,
                                                             parts: Parts) -> None:
    await operator(client)
    answer = await client.get(f"/subjects/{SUBJECT}/photo.jpg")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "image/jpeg"
    assert answer.headers["Cache-Control"] == "no-store"
    assert await answer.read() == REFERENCE
    assert await (await client.get("/subjects/a%2Fb%20c/photo.jpg")).read() == REFERENCE
    assert (await client.get("/subjects/nobody/photo.jpg")).status == 404
    too_long = await client.get(f"/subjects/{'s' * 256}/photo.jpg")
    assert too_long.status == 400
    assert (await too_long.json())["field"] == "subject"
    assert (await client.get("/subjects/bell%07/photo.jpg")).status == 400
    await parts.board.end_deployment()  # the photos die with the deployment
    assert (await client.get(f"/subjects/{SUBJECT}/photo.jpg")).status == 404


# -- decisions -------------------------------------------------------------------------------


async def test_a_decision_is_recorded_audited_and_shown(client: Client,
                                                        parts: Parts) -> None:
    parts.store_alert(1)
    parts.store_alert(2)
    token = await operator(client)
    answer = await decide(client, token, "/alerts/unit-1/1/decision",
                          {"decision": "confirmed", "note": "  engaged at the north gate  "})
    assert answer.status == 200, await answer.text()
    shown = await answer.json()
    assert (shown["unit"], shown["seq"], shown["subject"]) == ("unit-1", 1, SUBJECT)
    assert shown["decision"] == {"decision": "confirmed", "note": "engaged at the north gate",
                                 "operator": "olive", "role": "operator",
                                 "decided_at": NOW + 5, "deployment": "dep-1"}
    listed = {a["seq"]: a["decision"] for a in (await alerts(client))["alerts"]}
    assert listed == {2: None, 1: shown["decision"]}
    assert parts.reviews.counts("dep-1").confirmed == 1
    assert (await decide(client, token, "/alerts/unit-1/2/decision",
                         {"decision": "cannot_tell"})).status == 200
    await eventually(lambda: parts.audit_counts.written == 2, timeout_s=WAIT_S)
    decisions = [r["fields"] for r in parts.audit_records() if r["kind"] == "operator_decision"]
    assert decisions == [
        {"unit": "unit-1", "seq": 1, "decision": "confirmed", "operator": "olive",
         "note": "engaged at the north gate"},
        {"unit": "unit-1", "seq": 2, "decision": "cannot_tell", "operator": "olive"}]


async def test_a_supervisor_corrects_and_the_latest_decision_is_shown(
        client: Client, parts: Parts, users: UserStore) -> None:
    parts.store_alert(1)
    token = await operator(client)
    assert (await decide(client, token, "/alerts/unit-1/1/decision",
                         {"decision": "confirmed"})).status == 200
    await client.post("/signout", headers={"X-CSRF-Token": token})
    token = await signed_in(client, *SUPERVISOR)
    answer = await decide(client, token, "/alerts/unit-1/1/decision",
                          {"decision": "dismissed", "note": "a poster, not a person"})
    assert answer.status == 200
    assert (await answer.json())["decision"]["operator"] == "sam"
    (listed,) = (await alerts(client))["alerts"]
    assert (listed["decision"]["decision"], listed["decision"]["role"]) == ("dismissed",
                                                                            "supervisor")
    history = parts.reviews.decisions("unit-1", 1)
    assert [(d.decision, d.operator) for d in history] == [("dismissed", "sam"),
                                                            ("confirmed", "olive")]
    counts = parts.reviews.counts("dep-1")
    assert (counts.confirmed, counts.dismissed) == (0, 1)


@pytest.mark.parametrize(("body", "field"), [
    ({"decision": "maybe"}, "decision"),
    ({}, "decision"),
    ({"decision": None}, "decision"),
    ({"decision": "confirmed", "note": "x" * 501}, "note"),
    ({"decision": "confirmed", "note": "two\nlines"}, "note"),
    ({"decision": "confirmed", "note": 5}, "note"),
    ({"decision": "confirmed", "operator": "someone else"}, "operator"),
    (["confirmed"], "body"),
    ("not json", "body"),
])
async def test_a_bad_decision_is_refused_naming_the_field(
        client: Client, parts: Parts, body: object, field: str) -> None:
    parts.store_alert(1)
    token = await operator(client)
    if body == "not json":
        answer = await client.post("/alerts/unit-1/1/decision", data=b"{decision",
                                   headers={"Content-Type": "application/json",
                                            "X-CSRF-Token": token})
    else:
        answer = await decide(client, token, "/alerts/unit-1/1/decision", body)
    assert answer.status == 400
    assert (await answer.json())["field"] == field
    assert parts.reviews.latest("unit-1", 1) is None


async def test_a_decision_on_an_alert_not_stored_is_404(client: Client, parts: Parts) -> None:
    parts.store_health(1)
    token = await operator(client)
    for path in ("/alerts/unit-1/2/decision", "/alerts/unit-1/1/decision",
                 "/alerts/unit-3/1/decision"):
        answer = await decide(client, token, path, {"decision": "dismissed"})
        assert answer.status == 404, path
    assert parts.reviews.latest_many([("unit-1", 1), ("unit-1", 2)]) == {}


async def test_a_decision_without_the_csrf_token_or_from_another_site_is_refused(
        client: Client, parts: Parts) -> None:
    parts.store_alert(1)
    token = await operator(client)
    body = json.dumps({"decision": "confirmed"})
    json_type = {"Content-Type": "application/json"}
    no_token = await client.post("/alerts/unit-1/1/decision", data=body, headers=json_type)
    assert no_token.status == 403
    wrong = await client.post("/alerts/unit-1/1/decision", data=body,
                              headers={**json_type, "X-CSRF-Token": token[::-1]})
    assert wrong.status == 403
    cross_site = await client.post("/alerts/unit-1/1/decision", data=body,
                                   headers={**json_type, "X-CSRF-Token": token,
                                            "Origin": ATTACKER_SITE})
    assert cross_site.status == 403
    assert parts.reviews.latest("unit-1", 1) is None


async def test_nothing_is_served_to_a_browser_that_is_not_signed_in(
        client: Client, parts: Parts) -> None:
    parts.store_alert(1)
    page = await client.get("/alerts", headers=HTML, allow_redirects=False)
    assert (page.status, page.headers["Location"]) == (303, "/signin")
    for path in ("/alerts/list.json", "/alerts/unit-1/1/crop.jpg", "/alerts/unit-1/1/alert.json",
                 f"/subjects/{SUBJECT}/photo.jpg", "/alerts/stream"):
        answer = await client.get(path, allow_redirects=False)
        assert answer.status == 401, path
    posted = await client.post("/alerts/unit-1/1/decision", data=b'{"decision":"confirmed"}',
                               headers={"Content-Type": "application/json"})
    assert posted.status == 401
    assert parts.reviews.latest("unit-1", 1) is None
    assert parts.feed.subscribers == 0


# -- the stream ------------------------------------------------------------------------------


def notice(seq: int) -> AlertNotice:
    return AlertNotice("unit-1", seq, "cam0", SUBJECT, 0.73121, 0.6, 1_732_590_000.0 + seq)


async def test_the_stream_delivers_each_new_alert_and_keeps_alive(client: Client,
                                                                  parts: Parts) -> None:
    await operator(client)
    answer = await client.get("/alerts/stream")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/event-stream")
    assert answer.headers["Cache-Control"] == "no-store"
    assert (await next_event(answer)).startswith(b"retry: ")
    assert parts.feed.subscribers == 1
    parts.feed.publish(notice(7))
    event = await next_event(answer)
    while event.startswith(b": keep-alive"):
        event = await next_event(answer)
    name, data = event.decode().strip().split("\n")
    assert name == "event: alert"
    assert json.loads(data.removeprefix("data: ")) == {
        "unit": "unit-1", "seq": 7, "camera": "cam0", "subject": SUBJECT, "score": 0.7312,
        "threshold": 0.6, "captured_at": 1_732_590_007.0,
        "alert_url": "/alerts/unit-1/7/alert.json"}
    assert await next_event(answer) == b": keep-alive\n\n"
    answer.close()
    # The client went: the next keep-alive fails to write and the subscription is closed.
    await eventually(lambda: parts.feed.subscribers == 0, timeout_s=WAIT_S)


async def test_a_stream_ends_when_the_console_stops(client: Client, server: VanLikeServer,
                                                     parts: Parts) -> None:
    await operator(client)
    answer = await client.get("/alerts/stream")
    await next_event(answer)
    assert parts.feed.subscribers == 1
    async with asyncio.timeout(WAIT_S):
        await server.close()  # as the van's stop: handlers are cancelled after SHUTDOWN_S
    assert parts.feed.subscribers == 0
    with contextlib.suppress(ClientPayloadError):  # cut off mid-stream: no last chunk
        async with asyncio.timeout(WAIT_S):  # the stream ends: no more to read
            while await answer.content.readany():
                pass


@pytest.mark.parametrize("feed_config", [AlertFeedConfig(queue_size=2)])
async def test_a_stream_that_missed_notices_is_told_to_reload(client: Client,
                                                              parts: Parts) -> None:
    await operator(client)
    answer = await client.get("/alerts/stream")
    await next_event(answer)
    for seq in range(1, 5):  # published at once: the view's queue of 2 drops the oldest two
        parts.feed.publish(notice(seq))
    seen: list[str] = []
    while len([e for e in seen if e.startswith("event: alert")]) < 2:
        seen.append((await next_event(answer)).decode())
    assert seen[0] == "event: reload\ndata: {}\n\n"
    alerts_seen = [json.loads(e.split("data: ")[1])["seq"] for e in seen
                   if e.startswith("event: alert")]
    assert alerts_seen == [3, 4]
    answer.close()


@pytest.mark.parametrize("feed_config", [AlertFeedConfig(max_subscribers=1)])
async def test_a_stream_beyond_the_feeds_bound_gets_503(client: Client, parts: Parts) -> None:
    await operator(client)
    first = await client.get("/alerts/stream")
    await next_event(first)
    second = await client.get("/alerts/stream")
    assert second.status == 503
    assert second.headers["Retry-After"] == "10"
    assert parts.feed.subscribers == 1
    head = await client.head("/alerts/stream")  # HEAD takes no subscription
    assert head.status == 200
    first.close()
    await eventually(lambda: parts.feed.subscribers == 0, timeout_s=WAIT_S)
    third = await client.get("/alerts/stream")
    assert third.status == 200
    third.close()


async def test_a_live_view_learns_nothing_more_once_its_session_ended(client: Client,
                                                                      parts: Parts) -> None:
    token = await operator(client)
    answer = await client.get("/alerts/stream")
    assert (await next_event(answer)).startswith(b"retry: ")
    signed_out = await client.post("/signout", headers={"X-CSRF-Token": token})
    assert signed_out.status in (200, 303)
    parts.feed.publish(notice(8))
    event = await next_event(answer)
    assert event.startswith(b"event: signed-out"), event
    assert b"unit-1" not in event
    await eventually(lambda: parts.feed.subscribers == 0, timeout_s=WAIT_S)
