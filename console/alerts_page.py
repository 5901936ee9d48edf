"""The console's live alerts page and the officers' decisions (issue 10, "Live alerts").

Routes (``routes(sources, reviews)``; every one needs a signed-in operator or supervisor):

==========================================  =================================================
 ``GET /alerts``                             the page: the alert lists (script
                                             ``/static/alerts.js``), a live region, the keys
 ``GET /alerts/list.json``                   a page of alerts, newest first (below)
 ``GET /alerts/{unit}/{seq}/alert.json``     one alert, as in the list
 ``GET /alerts/{unit}/{seq}/crop.jpg``       its face crop
 ``GET /subjects/{subject}/photo.jpg``       the active deployment's reference photo
 ``POST /alerts/{unit}/{seq}/decision``      ``{"decision": ..., "note": ...}``: record it
 ``GET /alerts/stream``                      server-sent events: new alerts as they arrive
==========================================  =================================================

**Opened on read, never stored opened.** The event store keeps each alert as the sealed
envelope its unit sent. Every route that shows one opens it on the worker pool with the van's
key (``open_envelope`` with the enrolment's signer lookup, then ``decode_body``), takes what
it shows and drops the rest: the lists carry metadata and URLs only, never crop bytes; the crop
goes out only as the body of ``crop.jpg``. An envelope that no longer opens (its unit was
revoked, say: the lookup fails closed) is listed with ``readable: false`` and its reason, and
has no crop. Reference photos are opened the same way from the deployment store. Every
response carries ``Cache-Control: no-store`` (``console.security``).

**The list** (``?before_id=N&limit=M``, M from 1 to ``MAX_LIST_LIMIT``, default
``DEFAULT_LIST_LIMIT``; ``&undecided=1`` for alerts without a decision only) reads at most
``MAX_SCANNED_EVENTS`` stored events per request (health reports are stored among the alerts)
and answers ``{"alerts": [...], "next_before_id": N or null, "now": van clock}``: ask again
with ``before_id=next_before_id`` for more; null means the store holds no older event. Each
alert: ``id`` (order of arrival), ``unit``, ``seq``, ``readable``, ``problem`` (why it does not
open, else null), ``camera``, ``subject``, ``score``, ``threshold``, ``captured_at`` (the
unit's clock), ``received_at``, ``age_s`` (van clock minus capture time), ``decision`` (the
latest, or null: ``decision``, ``note``, ``operator``, ``role``, ``decided_at``,
``deployment``), ``crop_url`` and ``photo_url`` (null when the active deployment holds no
reference photo of the subject).

**A decision** is checked (``decision`` one of ``confirmed``, ``dismissed``, ``cannot_tell``;
``note`` optional, at most 500 printable characters, trimmed; no other field): a bad one is 400
``{"error", "field"}`` naming the field, an alert the store does not hold 404. It is recorded in
the ``ReviewStore`` (who decided is the session's account and role; the deployment is the one
active now) and audited as ``operator_decision`` (unit, seq, decision, operator, and the note
if any), and the answer is the alert as the list shows it. A later decision supersedes an
earlier one; every one is kept and audited.

**The stream** is one ``AlertFeed`` subscription per connection (``FeedFull``: 503 with
``Retry-After``): ``event: alert`` with the notice's metadata (``unit``, ``seq``, ``camera``,
``subject``, ``score``, ``threshold``, ``captured_at``; the page then fetches the alert),
``event: reload`` when the subscription missed notices (the page reloads its lists), and a
comment every ``KEEPALIVE_S`` seconds, which is also how a closed connection is noticed. It ends
when the client goes (the write fails), and when the van stops (aiohttp's shutdown cancels
it); the subscription is closed however it ends.

Path parameters are checked before any store is read: a unit id as node ids are
(``check_node_id``), a sequence number of 1 to 19 digits in 1..2**63-1, a subject id of 1-255
printable characters; otherwise 400 naming the parameter.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from aiohttp import web

from actors.unit.event_body import MAX_SUBJECT_ID_CHARS, AlertBody, EventBodyError, decode_body
from actors.van.deployment_store import SealedRowError
from actors.van.event_store import MAX_PAGE, StoredEvent
from actors.van.receiver import AlertNotice
from actors.van.review_store import (
    MAX_KEYS,
    MAX_NOTE_CHARS,
    MAX_SEQ,
    AlertKey,
    Decision,
    ReviewError,
    ReviewStore,
    check_alert_key,
    check_decision,
    check_note,
)
from audit.kinds import AuditKind
from console.alert_feed import FeedFull
from console.app import PageRoute, live_view_signed_in, shell_page
from console.security import current_session
from console.sources import ConsoleSources
from guards.config_checks import require_positive
from guards.log_text import printable
from runtime.log_budget import LogBudget
from secure.envelope import EnvelopeRefused, open_envelope

log = logging.getLogger("lfr.console.alerts")

DEFAULT_LIST_LIMIT: Final = 20
"""Alerts a list request returns when it names no ``limit``."""
MAX_LIST_LIMIT: Final = 50
"""Most alerts one list request returns (each is opened: a signature check and a decryption)."""
MAX_SCANNED_EVENTS: Final = 2000
"""Most stored events one list request reads looking for alerts (pages of ``MAX_PAGE``)."""
KEEPALIVE_S: Final = 15.0
"""A stream with no new alert for this long gets a comment (so a gone client is noticed)."""
STREAM_RETRY_MS: Final = 3000
"""What the stream tells ``EventSource`` to wait before reconnecting by itself."""
FEED_FULL_RETRY_S: Final = 10
"""``Retry-After`` of the 503 a stream gets when every live view is taken."""
MAX_DECISION_BODY_BYTES: Final = 8192
"""Largest decision request: a 500-character note is at most 2 KB of UTF-8, 6 KB if every
character is escaped in the JSON."""
_SEQ_TEXT: Final = re.compile(r"[1-9][0-9]{0,18}")
_DECISION_FIELDS: Final = frozenset({"decision", "note"})


class _BadParameter(Exception):
    """A path or query parameter, or a body field, is malformed: 400 naming it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(problem)


@dataclass(frozen=True, slots=True)
class _ListPage:
    """What one list request found."""

    events: list[StoredEvent]
    """The alert events to show, newest first (still sealed)."""
    next_before_id: int | None
    """Where the next page starts; None when no older event is stored."""


def routes(sources: ConsoleSources, reviews: ReviewStore, *,
           clock: Callable[[], float] = time.time,
           keepalive_s: float = KEEPALIVE_S) -> list[PageRoute]:
    """The live alerts page's routes (module docstring). ``reviews`` holds the decisions;
    ``clock`` (seconds since epoch) gives the alerts' ages; a stream without news gets a
    comment every ``keepalive_s``."""
    require_positive("keepalive_s", keepalive_s)
    page = _AlertsPage(sources, reviews, clock, keepalive_s)
    return [
        PageRoute("GET", "/alerts", page.page),
        PageRoute("GET", "/alerts/list.json", page.alert_list),
        PageRoute("GET", "/alerts/stream", page.stream),
        PageRoute("GET", "/alerts/{unit}/{seq}/alert.json", page.alert),
        PageRoute("GET", "/alerts/{unit}/{seq}/crop.jpg", page.crop),
        PageRoute("POST", "/alerts/{unit}/{seq}/decision", page.decide,
                  max_body_bytes=MAX_DECISION_BODY_BYTES),
        PageRoute("GET", "/subjects/{subject}/photo.jpg", page.photo),
    ]


class _AlertsPage:
    """The handlers, over the van's sources and the review store."""

    def __init__(self, sources: ConsoleSources, reviews: ReviewStore,
                 clock: Callable[[], float], keepalive_s: float) -> None:
        self._sources = sources
        self._reviews = reviews
        self._clock = clock
        self._keepalive_s = keepalive_s
        self._unreadable = LogBudget(log, "console alerts")

    # -- the page ---------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        """GET /alerts: the lists (filled by the script), the connection's state, a live
        region for new alerts and the keyboard's keys."""
        return shell_page(request, "Live alerts", _PAGE_HTML, scripts=("/static/alerts.js",))

    # -- reading ----------------------------------------------------------------------------

    async def alert_list(self, request: web.Request) -> web.StreamResponse:
        """GET /alerts/list.json (module docstring)."""
        try:
            before_id = _query_int(request, "before_id", 1, 2**63 - 1)
            limit = _query_int(request, "limit", 1, MAX_LIST_LIMIT)
            undecided = _query_flag(request, "undecided")
        except _BadParameter as exc:
            return _bad(exc.field, str(exc))
        deployment = self._deployment_id()
        now = self._clock()
        found = await self._sources.blocking.run(
            self._read_list, before_id, DEFAULT_LIST_LIMIT if limit is None else limit,
            undecided=undecided)
        alerts = await self._sources.blocking.run(self._describe, found.events, deployment, now)
        return web.json_response({"alerts": alerts, "next_before_id": found.next_before_id,
                                  "now": now})

    async def alert(self, request: web.Request) -> web.StreamResponse:
        """GET /alerts/{unit}/{seq}/alert.json: one alert as the list shows it."""
        try:
            unit, seq = _alert_key(request)
        except _BadParameter as exc:
            return _bad(exc.field, str(exc))
        event = await self._sources.blocking.run(self._find, unit, seq)
        if event is None:
            return _not_found(unit, seq)
        described = await self._sources.blocking.run(
            self._describe, [event], self._deployment_id(), self._clock())
        return web.json_response(described[0])

    async def crop(self, request: web.Request) -> web.StreamResponse:
        """GET /alerts/{unit}/{seq}/crop.jpg: the crop, opened for this response only."""
        try:
            unit, seq = _alert_key(request)
        except _BadParameter as exc:
            return _bad(exc.field, str(exc))
        crop = await self._sources.blocking.run(self._crop, unit, seq)
        if crop is None:
            raise web.HTTPNotFound(text="no such alert, or it does not open\n")
        return _jpeg(crop)

    async def photo(self, request: web.Request) -> web.StreamResponse:
        """GET /subjects/{subject}/photo.jpg: the active deployment's reference photo."""
        subject = request.match_info["subject"]
        if not 0 < len(subject) <= MAX_SUBJECT_ID_CHARS or not subject.isprintable():
            return _bad("subject", f"a subject id is 1-{MAX_SUBJECT_ID_CHARS} printable "
                                   "characters")
        deployment = self._deployment_id()
        if not deployment:
            raise web.HTTPNotFound(text="no deployment is active\n")
        try:
            photo = await self._sources.blocking.run(
                self._sources.deployments.reference_photo, deployment, subject)
        except SealedRowError as exc:
            self._unreadable.warning("console: %s", exc)
            raise web.HTTPInternalServerError(text="the stored photo does not open\n") from None
        if photo is None:
            raise web.HTTPNotFound(text="the active deployment holds no photo of this "
                                        "subject\n")
        return _jpeg(photo)

    # -- deciding ---------------------------------------------------------------------------

    async def decide(self, request: web.Request) -> web.StreamResponse:
        """POST /alerts/{unit}/{seq}/decision (module docstring)."""
        session = current_session(request)
        try:
            unit, seq = _alert_key(request)
            decision, note = _decision_body(await request.read())
        except _BadParameter as exc:
            return _bad(exc.field, str(exc))
        event = await self._sources.blocking.run(self._find, unit, seq)
        if event is None:
            return _not_found(unit, seq)
        deployment = self._deployment_id()
        try:
            await self._sources.blocking.run(
                lambda: self._reviews.record(unit, seq, decision, operator=session.account,
                                             role=session.role.value, deployment_id=deployment,
                                             note=note))
        except ReviewError as exc:
            return _bad(exc.field, str(exc))
        self._sources.audit.record(AuditKind.OPERATOR_DECISION, unit=unit, seq=seq,
                                   decision=decision, operator=session.account,
                                   **({"note": note} if note else {}))
        log.info("console: %s decided %s on alert %s/%d", printable(session.account), decision,
                 printable(unit), seq)
        described = await self._sources.blocking.run(self._describe, [event], deployment,
                                                     self._clock())
        return web.json_response(described[0])

    # -- the stream -------------------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """GET /alerts/stream: server-sent events (module docstring)."""
        headers = {"Content-Type": "text/event-stream; charset=utf-8",
                   "X-Accel-Buffering": "no"}
        if request.method == "HEAD":
            return web.Response(headers=headers)
        try:
            subscription = self._sources.feed.subscribe()
        except FeedFull as exc:
            raise web.HTTPServiceUnavailable(
                text=f"{exc}; close another live view and try again\n",
                headers={"Retry-After": str(FEED_FULL_RETRY_S)}) from None
        try:
            response = web.StreamResponse(headers=headers)
            await response.prepare(request)
            await response.write(f"retry: {STREAM_RETRY_MS}\n: live\n\n".encode())
            missed = subscription.missed
            while True:
                notice = await subscription.next(self._keepalive_s)
                if not await live_view_signed_in(request):
                    # Signed out, expired or disabled meanwhile: the view learns nothing more.
                    await response.write(b"event: signed-out\ndata: {}\n\n")
                    return response
                if subscription.missed != missed:
                    missed = subscription.missed
                    await response.write(b"event: reload\ndata: {}\n\n")
                if notice is None:
                    await response.write(b": keep-alive\n\n")
                else:
                    data = json.dumps(_notice_json(notice), ensure_ascii=True)
                    await response.write(f"event: alert\ndata: {data}\n\n".encode())
        except ConnectionError:  # the client went: aiohttp's writer says the transport closed
            return response
        finally:
            subscription.close()

    # -- on the worker pool -----------------------------------------------------------------

    def _read_list(self, before_id: int | None, limit: int, *, undecided: bool) -> _ListPage:
        """Up to ``limit`` alert events older than ``before_id`` (without a decision when
        ``undecided``), reading at most ``MAX_SCANNED_EVENTS`` events."""
        kept: list[StoredEvent] = []
        cursor = before_id
        scanned = 0
        size = min(MAX_PAGE, max(limit, 20))
        while scanned < MAX_SCANNED_EVENTS:
            events = self._sources.events.recent(
                before_id=cursor, limit=min(size, MAX_SCANNED_EVENTS - scanned))
            scanned += len(events)
            alerts = [event for event in events if event.kind == "alert"]
            decided: dict[AlertKey, Decision] = {}
            if undecided and alerts:
                decided = self._reviews.latest_many([(e.unit, e.seq) for e in alerts])
            for event in events:
                cursor = event.id
                if event.kind == "alert" and (event.unit, event.seq) not in decided:
                    kept.append(event)
                    if len(kept) == limit:
                        return _ListPage(kept, cursor)
            if len(events) < size:
                return _ListPage(kept, None)  # the store holds nothing older
            size = min(MAX_PAGE, size * 2)  # health reports between the alerts: read faster
        return _ListPage(kept, cursor)

    def _find(self, unit: str, seq: int) -> StoredEvent | None:
        """The stored alert (``unit``, ``seq``), or None."""
        if seq >= MAX_SEQ:  # by_unit pages below a number: the highest one cannot be asked for
            return None
        found = self._sources.events.by_unit(unit, before_seq=seq + 1, limit=1)
        if not found or found[0].seq != seq or found[0].kind != "alert":
            return None
        return found[0]

    def _open(self, event: StoredEvent) -> AlertBody | str:
        """The alert in ``event``, opened with the van's key; or why it does not open."""
        try:
            opened = open_envelope(event.sealed, signers=self._sources.enrolment.lookup,
                                   van_key=self._sources.van_key)
            body = decode_body(opened.body)
        except EnvelopeRefused as exc:
            problem = exc.reason
        except EventBodyError:
            problem = "bad_body"
        else:
            if (isinstance(body, AlertBody) and opened.header.unit_id == event.unit
                    and opened.header.sequence == event.seq):
                return body
            problem = "not_this_alert"
        self._unreadable.warning("console: alert %s/%d does not open: %s",
                                 printable(event.unit), event.seq, problem)
        return problem

    def _crop(self, unit: str, seq: int) -> bytes | None:
        event = self._find(unit, seq)
        if event is None:
            return None
        body = self._open(event)
        return body.crop_jpeg if isinstance(body, AlertBody) else None

    def _describe(self, events: list[StoredEvent], deployment: str,
                  now: float) -> list[dict[str, object]]:
        """Each event as the list shows it: opened, the crop dropped."""
        decisions = self._reviews.latest_many([(e.unit, e.seq) for e in events][:MAX_KEYS])
        photos: dict[str, bool] = {}
        described: list[dict[str, object]] = []
        for event in events:
            body = self._open(event)
            item: dict[str, object] = {
                "id": event.id, "unit": event.unit, "seq": event.seq,
                "readable": isinstance(body, AlertBody),
                "problem": None if isinstance(body, AlertBody) else body,
                "camera": None, "subject": None, "score": None, "threshold": None,
                "captured_at": event.captured_at, "received_at": event.received_at,
                "age_s": round(now - event.captured_at, 3),
                "decision": _decision_json(decisions.get((event.unit, event.seq))),
                "crop_url": None, "photo_url": None,
                "decision_url": f"{_alert_path(event.unit, event.seq)}/decision",
            }
            if isinstance(body, AlertBody):
                subject = body.subject_id
                if subject not in photos:
                    photos[subject] = self._has_photo(deployment, subject)
                item.update(
                    camera=body.camera_id, subject=subject, score=round(body.score, 4),
                    threshold=round(body.threshold, 4), captured_at=body.captured_at,
                    age_s=round(now - body.captured_at, 3),
                    crop_url=f"{_alert_path(event.unit, event.seq)}/crop.jpg",
                    photo_url=(f"/subjects/{quote(subject, safe='')}/photo.jpg"
                               if photos[subject] else None))
            described.append(item)
        return described

    def _has_photo(self, deployment: str, subject: str) -> bool:
        if not deployment:
            return False
        try:
            photo = self._sources.deployments.reference_photo(deployment, subject)
        except SealedRowError as exc:
            self._unreadable.warning("console: %s", exc)
            return False
        return photo is not None

    # -- on the event loop ------------------------------------------------------------------

    def _deployment_id(self) -> str:
        deployment = self._sources.board.deployment
        return deployment.id if deployment is not None else ""


# -- parameters -------------------------------------------------------------------------------


def _alert_key(request: web.Request) -> AlertKey:
    """The path's (unit, seq), checked; ``_BadParameter`` naming the bad one."""
    unit, seq_text = request.match_info["unit"], request.match_info["seq"]
    if not _SEQ_TEXT.fullmatch(seq_text) or int(seq_text) > MAX_SEQ:
        raise _BadParameter("seq", "a sequence number is an integer in 1..2**63-1")
    try:
        return check_alert_key(unit, int(seq_text))
    except ReviewError as exc:
        raise _BadParameter(exc.field, str(exc)) from None


def _query_int(request: web.Request, name: str, low: int, high: int) -> int | None:
    """The query's ``name`` as an integer in ``low..high``; None when absent or empty."""
    text = request.query.get(name)
    if text is None or text == "":
        return None
    if not re.fullmatch(r"[0-9]{1,19}", text) or not low <= int(text) <= high:
        raise _BadParameter(name, f"{name} must be an integer in {low}..{high}")
    return int(text)


def _query_flag(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "0")
    if text not in ("0", "1"):
        raise _BadParameter(name, f"{name} must be 0 or 1")
    return text == "1"


def _decision_body(raw: bytes) -> tuple[str, str]:
    """The decision and the trimmed note of a decision request's JSON body."""
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _BadParameter("body", "the body must be a JSON object") from None
    if not isinstance(payload, dict):
        raise _BadParameter("body", "the body must be a JSON object")
    for key in payload:
        if key not in _DECISION_FIELDS:
            raise _BadParameter(printable(key, max_chars=40),
                                "unknown field; a decision has decision and note")
    note = payload.get("note")
    try:
        decision = check_decision(payload.get("decision"))
        return decision, check_note("" if note is None else (
            note.strip() if isinstance(note, str) else note))
    except ReviewError as exc:
        raise _BadParameter(exc.field, str(exc)) from None


# -- answers ----------------------------------------------------------------------------------


def _bad(field: str, problem: str) -> web.Response:
    return web.json_response({"error": printable(problem, max_chars=300), "field": field},
                             status=400)


def _not_found(unit: str, seq: int) -> web.Response:
    return web.json_response({"error": f"no alert {printable(unit)}/{seq} is stored"},
                             status=404)


def _jpeg(data: bytes) -> web.Response:
    return web.Response(body=data, content_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})


def _alert_path(unit: str, seq: int) -> str:
    return f"/alerts/{quote(unit, safe='')}/{seq}"


def _decision_json(decision: Decision | None) -> dict[str, object] | None:
    if decision is None:
        return None
    return {"decision": decision.decision, "note": decision.note,
            "operator": decision.operator, "role": decision.role,
            "decided_at": decision.decided_at, "deployment": decision.deployment_id}


def _notice_json(notice: AlertNotice) -> dict[str, object]:
    return {"unit": notice.unit_id, "seq": notice.seq, "camera": notice.camera_id,
            "subject": notice.subject_id, "score": round(notice.score, 4),
            "threshold": round(notice.threshold, 4), "captured_at": notice.captured_at,
            "alert_url": f"{_alert_path(notice.unit_id, notice.seq)}/alert.json"}


def _keys_html(keys: Iterable[tuple[str, str]]) -> str:
    return "".join(f"<dt><kbd>{html.escape(key)}</kbd></dt><dd>{html.escape(what)}</dd>"
                   for key, what in keys)


KEYS: Final = (
    ("j", "next alert"),
    ("k", "previous alert"),
    ("c", "confirm the focused alert (the officer engages)"),
    ("d", "dismiss the focused alert as a false alert"),
    ("u", "cannot tell from the pictures"),
    ("n", "write a note on the focused alert (Escape returns to the alert)"),
    ("s", "sound cue on or off"),
)
"""The page's keyboard shortcuts (``/static/alerts.js`` implements them), as the page lists
them."""

_PAGE_HTML: Final = (
    '<link rel="stylesheet" href="/static/alerts.css">'
    '<p id="alerts-connection" class="alerts-connection" role="status">'
    "Connecting to the live feed...</p>"
    '<noscript><p class="error">This page needs JavaScript to show alerts as they arrive.'
    "</p></noscript>"
    '<div class="alerts-options"><input type="checkbox" id="alerts-sound" checked>'
    '<label for="alerts-sound">Sound cue on a new alert</label></div>'
    '<section aria-labelledby="alerts-waiting-title">'
    '<h2 id="alerts-waiting-title">Waiting for a decision '
    '<span id="alerts-waiting-count" class="alerts-count"></span></h2>'
    '<p id="alerts-waiting-empty" class="alerts-empty">No alert is waiting for a decision.</p>'
    '<ol id="alerts-waiting" class="alert-list" aria-labelledby="alerts-waiting-title"></ol>'
    '<button type="button" id="alerts-waiting-more" class="alerts-more" hidden>'
    "Load older undecided alerts</button></section>"
    '<section aria-labelledby="alerts-decided-title">'
    '<h2 id="alerts-decided-title">Decided</h2>'
    '<p id="alerts-decided-empty" class="alerts-empty">No decided alert is shown.</p>'
    '<ol id="alerts-decided" class="alert-list" aria-labelledby="alerts-decided-title"></ol>'
    '<button type="button" id="alerts-decided-more" class="alerts-more" hidden>'
    "Load older alerts</button></section>"
    '<section class="alerts-keys" aria-labelledby="alerts-keys-title">'
    '<h2 id="alerts-keys-title">Keyboard</h2>'
    "<p>Move to an alert with Tab or the keys below, then decide. Decided alerts are "
    "changed with their Change decision button. Notes are plain text, at most "
    f"{MAX_NOTE_CHARS} characters, and hold no names of people.</p>"
    f'<dl class="alerts-key-list">{_keys_html(KEYS)}</dl></section>'
    '<div id="alerts-live" class="visually-hidden" aria-live="assertive" aria-atomic="true">'
    "</div>"
)

