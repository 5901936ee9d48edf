"""The console's Watchlist page (supervisors only): the active deployment, its signed
watchlists, which unit holds which version, the current list's subjects, and the supervisor's
actions: start a deployment, push a signed watchlist, purge, end the deployment (issue 10,
"Watchlist").

Routes, every one ``Role.SUPERVISOR`` (``PageRoute.role``: an operator gets 403, also on every
POST with a valid CSRF token):

- ``GET /watchlist``: the page;
- ``POST /watchlist/deployment``: start a deployment (form: ``deployment_id``, ``threshold``
  in the usual range ``USUAL_THRESHOLDS``; an unusual one needs ``lfr van deployment start
  --allow-unusual-thresholds``);
- ``POST /watchlist/push``: a signed watchlist file, multipart (``watchlist``, ``target``
  ``all`` or ``named``, ``unit`` per named unit), to ``WatchlistBoard.push``; answers JSON;
- ``GET /watchlist/purge?unit=U`` (empty: every unit) asks "Purge ... now?" and its form
  ``POST /watchlist/purge`` (``unit``, ``confirm=yes``) orders it;
- ``GET /watchlist/end`` asks "End deployment ... now?" and its form ``POST /watchlist/end``
  (``confirm=yes``) ends it (every unit purges; the van's sealed copies and photos go).

A POST without ``confirm=yes`` does nothing and points at its confirmation page. Given a
``WatchlistBuilder``, the page also has the build section and its routes
(``console.watchlist_build_page``: build from a folder of photos, sign, push).

**The upload stays in memory.** aiohttp's ``request.post()`` spools an uploaded file of more
than 1 MiB to a temporary file on disk, and a signed watchlist holds every subject's
embeddings, which the van keeps on disk only sealed (docs/PRIVACY.md). So the page's form is
not a multipart form: ``/static/watchlist.js`` sends the file as ``multipart/form-data`` with
the CSRF token in the ``X-CSRF-Token`` header (so the CSRF guard never parses the body), and
the handler reads the parts itself into one bounded ``bytearray`` (``MAX_UPLOAD_BYTES``), wiped
once the board is done with it. A browser without the script sends only the file's name and is
told the upload needs the page's script.

**What it records.** The board audits every start, push (or refusal), purge and end itself
(``deployment_started``, ``watchlist_pushed``, ``watchlist_refused``, ``watchlist_purged``,
``deployment_ended``); this page adds no record of its own, and logs each action with the
supervisor's name. The console's actions run one at a time (``actions``); the board's
mutating calls are not given a timeout, since cancelling one half way would leave the board
half changed: each is bounded by its own work (one verification of at most 64 MiB, a few
SQLite transactions).

**Subjects.** The ids of the current watchlist (``DeploymentStore.current_watchlist``: the
active deployment's highest version), read by verifying the signed file with the board's
authority and embedder (``Embedder.verify``, at its own ``not_before``, so an expired
list still lists its subjects), after which the opened file and the decoded embeddings are
overwritten; only the ids are kept, for the latest version. Each links to its reference photo
at ``/subjects/{subject}/photo.jpg`` (served by the alerts page); no page here embeds a photo,
a crop or an embedding.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from aiohttp import BodyPartReader, web

from actors.signed_watchlist import WatchlistRefused
from actors.unit.watchlist import USUAL_THRESHOLDS, check_threshold, is_usual_threshold
from actors.van.deployment_store import (
    MAX_SIGNED_BYTES,
    DeploymentError,
    DeploymentStore,
    SealedRowError,
    WatchlistFacts,
)
from actors.van.van_control import MAX_UNITS_NAMED
from actors.van.watchlist_board import ALL_UNITS, Embedder, UnitView
from console.app import PageRoute, csrf_field, outcome_page, shell_page
from console.photo_upload import PhotoUploadLimits
from console.security import CSRF_HEADER, current_session
from console.sources import ConsoleSources
from console.units_page import age_text, known_units, utc_text
from console.users import Role
from console.watchlist_build_job import WatchlistBuilder
from console.watchlist_build_page import BuildPage
from guards.log_text import printable
from guards.user_input import UserInputError
from secure.memory_wipe import wipe_buffer
from secure.node_keys import NodePublicKeys, check_node_id

log = logging.getLogger("lfr.console")

UPLOAD_OVERHEAD_BYTES: Final = 64 * 1024
"""Room in an upload for the multipart framing and the form's small fields."""
MAX_UPLOAD_BYTES: Final = MAX_SIGNED_BYTES + UPLOAD_OVERHEAD_BYTES
"""The push route's body limit: the largest signed watchlist the store keeps, and framing."""
READ_CHUNK_BYTES: Final = 256 * 1024
"""Bytes read from the upload at a time."""
MAX_FIELD_BYTES: Final = 1024
"""Largest small field of the upload (``target``, a unit id, the CSRF token)."""
MAX_UPLOAD_PARTS: Final = MAX_UNITS_NAMED + 8
"""Parts an upload may have: the file, the target, the token and the units named."""
UPLOAD_WAIT_S: Final = 300.0
"""Longest an upload may take to arrive (64 MiB even over a slow link); then 408."""
READ_WAIT_S: Final = 30.0
"""Longest the page waits for the stores (and for a subject list to be read); then 503."""
ACTION_QUEUE_WAIT_S: Final = 30.0
"""Longest an action waits for the one before it to finish; then 503."""
SUBJECTS_PER_PAGE: Final = 100
"""Subjects listed per page."""
MAX_FACTS_SHOWN: Final = 100
"""Watchlist versions of the deployment listed (newest first)."""


@dataclass(frozen=True, slots=True)
class SubjectList:
    """The subject ids of one stored watchlist (ids only, never embeddings)."""

    deployment_id: str
    """Its deployment."""
    version: int
    """Its version."""
    payload_sha256: str
    """Its payload's sha256: the cache key, with the two above."""
    subjects: tuple[str, ...]
    """Subject ids in the list's order."""


def read_subjects(store: DeploymentStore, authority: NodePublicKeys,
                  embedder: Embedder) -> SubjectList | None:
    """The subjects of the active deployment's current watchlist (module docstring), or None
    when it has none. Blocking. ``WatchlistRefused`` when the stored file no longer verifies
    (e.g. the authority's key changed), ``SealedRowError`` when its row does not open."""
    stored = store.current_watchlist()
    if stored is None:
        return None
    facts = stored.facts
    try:
        # At its own start: the list is listed whether or not it expired since.
        verified = embedder.verify(stored.signed, authority, now=facts.not_before,
                                   deployment_id=facts.deployment_id)
        subjects = verified.watchlist.subjects
        wipe_buffer(verified.watchlist.embeddings)
        wipe_buffer(verified.watchlist.second_embeddings)
    finally:
        wipe_buffer(stored.signed)  # the opened copy; the store keeps it sealed
    return SubjectList(facts.deployment_id, facts.version, facts.payload_sha256, subjects)


def photo_url(subject: str) -> str:
    """Where the alerts page serves ``subject``'s reference photo."""
    return f"/subjects/{urllib.parse.quote(subject, safe='')}/photo.jpg"


class _Refusal(Exception):
    """An action refused before the board was asked: its HTTP status and the reason."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class _Upload:
    """A push upload read part by part into memory (module docstring); ``wipe`` it after."""

    def __init__(self) -> None:
        self.signed = bytearray()
        """The signed watchlist file."""
        self.files = 0
        """File parts seen (one is allowed)."""
        self.target = ""
        """``all`` or ``named``."""
        self.units: list[str] = []
        """The units ticked."""

    async def read(self, request: web.Request) -> None:
        """Read every part; ``_Refusal`` for anything a push form does not send."""
        reader = await request.multipart()
        parts = 0
        while (part := await reader.next()) is not None:
            parts += 1
            if parts > MAX_UPLOAD_PARTS or not isinstance(part, BodyPartReader):
                raise _Refusal(400, "the upload holds more parts than a push form has")
            if part.name == "watchlist":
                self.files += 1
                if self.files > 1:
                    raise _Refusal(400, "the upload holds two files; push one at a time")
                await _read_into(part, self.signed, MAX_SIGNED_BYTES, "signed watchlist file")
            else:
                self._field(part.name, await _field_text(part))
        if not self.signed:
            raise _Refusal(400, "choose a signed watchlist file to push")

    def _field(self, name: str | None, value: str) -> None:
        if name == "target":
            self.target = value
        elif name == "unit":
            self.units.append(value)
        elif name != "csrf_token":
            raise _Refusal(400, f"unknown form field {printable(name, max_chars=40)}")

    def wipe(self) -> None:
        """Overwrite the file's bytes."""
        wipe_buffer(self.signed)


async def _read_into(part: BodyPartReader, data: bytearray, limit: int, what: str) -> None:
    """Append ``part``'s bytes to ``data``, at most ``limit`` of them (413 beyond)."""
    while chunk := await part.read_chunk(READ_CHUNK_BYTES):
        if len(data) + len(chunk) > limit:
            raise _Refusal(413, f"the {what} is over the limit of {limit} bytes")
        data += chunk


async def _field_text(part: BodyPartReader) -> str:
    raw = bytearray()
    await _read_into(part, raw, MAX_FIELD_BYTES, f"field {printable(part.name, max_chars=40)}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refusal(400, "a form field is not UTF-8 text") from None


def _facts_table(facts: Sequence[WatchlistFacts]) -> str:
    if not facts:
        return "<p>No watchlist has been pushed in this deployment.</p>"
    rows = "".join(
        f'<tr><th scope="row">{fact.version}</th><td>{fact.subject_count:,}</td>'
        f"<td><code>{html.escape(fact.payload_sha256)}</code></td>"
        f"<td>{html.escape(utc_text(fact.not_before))}</td>"
        f"<td>{html.escape(utc_text(fact.not_after))}</td>"
        f"<td>{html.escape(utc_text(fact.pushed_at))}</td><td>{fact.signed_bytes:,}</td>"
        f"<td>{'yes (sealed)' if fact.stored else 'no (deleted)'}</td></tr>" for fact in facts)
    return (
        '<table class="watchlists"><caption>Signed watchlists of this deployment, newest first'
        '</caption><thead><tr><th scope="col">Version</th><th scope="col">Subjects</th>'
        '<th scope="col">Payload sha256</th><th scope="col">Not before</th>'
        '<th scope="col">Not after</th><th scope="col">Pushed at</th>'
        '<th scope="col">Bytes</th><th scope="col">Kept by the van</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>")


def _holding_text(view: UnitView | None) -> str:
    if view is None:
        return "never polled"
    if view.version:
        return (f"{view.state.value}: version {view.version} of {view.deployment_id}, "
                f"{view.subjects:,} subjects")
    return view.state.value


class WatchlistPage:
    """The Watchlist page's handlers (module docstring)."""

    def __init__(self, sources: ConsoleSources, clock: Callable[[], float]) -> None:
        self._sources = sources
        self._clock = clock
        self.actions = asyncio.Lock()  # the console's watchlist actions, one at a time
        self._subjects: SubjectList | None = None  # the latest version's ids only
        self.build: BuildPage | None = None
        """The build section (``routes`` sets it when the van has a builder)."""

    # -- reading --------------------------------------------------------------------------

    async def _read(self) -> tuple[tuple[str, ...], tuple[str, ...], list[WatchlistFacts],
                                   SubjectList | None, str]:
        """(enrolled units, units to show, facts, subjects, why the subjects are missing)."""
        sources = self._sources
        enrolled, units = await known_units(sources)
        deployment = sources.board.deployment
        facts: list[WatchlistFacts] = []
        subjects, problem = None, ""
        if deployment is None:
            self._subjects = None  # ended (here or by lfr van deployment end): forget the ids
        else:
            facts = await sources.blocking.run(
                lambda: sources.deployments.watchlist_facts(deployment.id,
                                                            limit=MAX_FACTS_SHOWN))
            subjects, problem = await self._current_subjects(facts)
        return enrolled, units, facts, subjects, problem

    async def _current_subjects(self, facts: Sequence[WatchlistFacts]
                                ) -> tuple[SubjectList | None, str]:
        if not facts or not facts[0].stored:
            return None, ""
        newest = facts[0]
        cached = self._subjects
        if cached is not None and (cached.deployment_id, cached.version,
                                   cached.payload_sha256) == (newest.deployment_id,
                                                              newest.version,
                                                              newest.payload_sha256):
            return cached, ""
        board = self._sources.board
        try:
            found = await self._sources.blocking.run(
                read_subjects, self._sources.deployments, board.authority, board.embedder)
        except (WatchlistRefused, SealedRowError) as exc:
            return None, f"its subjects cannot be listed: {exc}"
        self._subjects = found
        return found, ""

    # -- the page -------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        """GET /watchlist."""
        now = self._clock()
        try:
            async with asyncio.timeout(READ_WAIT_S):
                enrolled, units, facts, subjects, problem = await self._read()
        except TimeoutError:
            raise web.HTTPServiceUnavailable(text="the van's stores did not answer in time; "
                                                  "try again\n",
                                             headers={"Retry-After": "5"}) from None
        board = self._sources.board
        deployment = board.deployment
        if self.build is not None:
            self.build.drop_stale()
        sections = [self._deployment_html(request, now)]
        if deployment is not None:
            sections.append(f"<h2>Signed watchlists</h2>{_facts_table(facts)}")
        sections.append(self._units_html(units, now))
        if deployment is not None:
            sections.append(self._push_html(request, enrolled))
            if self.build is not None:
                sections.append(await self.build.section_html(request))
        sections.append(self._purge_html(enrolled))
        if deployment is not None:
            sections.append(self._subjects_html(request, subjects, problem))
        scripts = ("/static/watchlist.js",) + (
            ("/static/watchlist_build.js",) if self.build is not None else ())
        return shell_page(request, "Watchlist", "".join(sections), scripts=scripts)

    def _deployment_html(self, request: web.Request, now: float) -> str:
        deployment = self._sources.board.deployment
        if deployment is None:
            low, high = USUAL_THRESHOLDS
            return (
                "<h2>Deployment</h2><p>No deployment is active: units hold no watchlist.</p>"
                '<form method="post" action="/watchlist/deployment">'
                f"{csrf_field(request)}"
                '<label for="deployment-id">Deployment id</label>'
                '<input id="deployment-id" name="deployment_id" required maxlength="64" '
                'autocomplete="off">'
                f'<label for="deployment-threshold">Alert threshold ({low:.2f} to {high:.2f})'
                "</label>"
                f'<input id="deployment-threshold" name="threshold" type="number" '
                f'min="{low}" max="{high}" step="0.01" value="0.60" required>'
                '<button type="submit">Start the deployment</button></form>')
        return (
            "<h2>Deployment</h2><dl>"
            f"<dt>Id</dt><dd>{html.escape(deployment.id)}</dd>"
            f"<dt>Threshold</dt><dd>{deployment.threshold:.3f}</dd>"
            f"<dt>Started</dt><dd>{html.escape(utc_text(deployment.started_at))} "
            f"({html.escape(age_text(deployment.started_at, now))})</dd></dl>"
            '<p><a href="/watchlist/end">End the deployment and purge every unit ...</a></p>')

    def _units_html(self, units: Sequence[str], now: float) -> str:
        board = self._sources.board
        views = board.views()
        linked = set(self._sources.links.linked_units())
        rows = []
        for unit in units:
            view = views.get(unit)
            wanted = board.wanted(unit)
            refused = ""
            if view is not None and view.refused_version:
                refused = (f"version {view.refused_version}: "
                           f"{view.refused_reason or 'no reason'}")
            poll = (age_text(view.last_poll, now) if view is not None and view.last_poll
                    else "never")
            rows.append(
                f'<tr><th scope="row">{html.escape(unit)}</th>'
                f"<td>{'online' if unit in linked else 'offline'}</td>"
                f"<td>{f'version {wanted}' if wanted else 'none'}</td>"
                f"<td>{html.escape(_holding_text(view))}</td>"
                f"<td>{html.escape(refused) or 'none'}</td><td>{html.escape(poll)}</td></tr>")
        if not rows:
            return "<h2>Units</h2><p>No unit is enrolled.</p>"
        return (
            '<h2>Units</h2><table class="unit-watchlists"><caption>Which unit holds which '
            'version</caption><thead><tr><th scope="col">Unit</th><th scope="col">Link</th>'
            '<th scope="col">Must hold</th><th scope="col">Holds (last poll)</th>'
            '<th scope="col">Last refusal</th><th scope="col">Last poll</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")

    def _push_html(self, request: web.Request, enrolled: Sequence[str]) -> str:
        boxes = "".join(
            f'<li><input type="checkbox" id="push-unit-{index}" name="unit" '
            f'value="{html.escape(unit)}"><label for="push-unit-{index}">'
            f"{html.escape(unit)}</label></li>" for index, unit in enumerate(enrolled))
        named = (f'<ul class="push-units">{boxes}</ul>' if boxes
                 else "<p>No unit is enrolled yet.</p>")
        # Not enctype="multipart/form-data": without the script only the file's name is sent
        # (module docstring: the file must not be spooled to disk).
        return (
            "<h2>Push a signed watchlist</h2>"
            '<form id="push-form" method="post" action="/watchlist/push">'
            f"{csrf_field(request)}"
            '<label for="push-file">Signed watchlist file (from lfr watchlist sign)</label>'
            '<input id="push-file" name="watchlist" type="file" required>'
            "<fieldset><legend>Push it to</legend>"
            '<input type="radio" id="push-all" name="target" value="all" checked>'
            '<label for="push-all">every unit, also units enrolled later</label>'
            '<input type="radio" id="push-named" name="target" value="named">'
            '<label for="push-named">only the units ticked below</label>'
            f"{named}</fieldset>"
            '<button type="submit">Push the watchlist</button>'
            '<p id="push-result" role="status" aria-live="polite"></p></form>')

    def _purge_html(self, enrolled: Sequence[str]) -> str:
        options = "".join(f'<option value="{html.escape(unit)}">{html.escape(unit)}</option>'
                          for unit in enrolled)
        return (
            "<h2>Purge</h2><p>A purge tells units to drop their watchlist at once; they scan "
            "nothing until a new push.</p>"
            '<form method="get" action="/watchlist/purge">'
            '<label for="purge-unit">Units to purge</label>'
            f'<select id="purge-unit" name="unit"><option value="">every unit</option>'
            f"{options}</select>"
            '<button type="submit">Purge ...</button></form>')

    def _subjects_html(self, request: web.Request, subjects: SubjectList | None,
                       problem: str) -> str:
        if subjects is None:
            text = (f"The current watchlist is stored, but {problem}" if problem
                    else "No watchlist is stored for this deployment.")
            return f"<h2>Subjects</h2><p>{html.escape(text)}</p>"
        total = len(subjects.subjects)
        pages = max(1, -(-total // SUBJECTS_PER_PAGE))
        try:
            number = min(max(1, int(request.query.get("subjects_page", "1"))), pages)
        except ValueError:
            number = 1
        first = (number - 1) * SUBJECTS_PER_PAGE
        shown = subjects.subjects[first:first + SUBJECTS_PER_PAGE]
        items = "".join(
            f'<li><img class="subject-photo" src="{html.escape(photo_url(subject))}" '
            f'alt="Reference photo of {html.escape(subject)}" width="96" height="96" '
            f'loading="lazy"> <span>{html.escape(subject)}</span></li>' for subject in shown)
        links = []
        if number > 1:
            links.append(f'<a href="/watchlist?subjects_page={number - 1}#subjects">Previous '
                         "subjects</a>")
        if number < pages:
            links.append(f'<a href="/watchlist?subjects_page={number + 1}#subjects">Next '
                         "subjects</a>")
        nav = (f'<nav aria-label="Subject pages"><p>{" | ".join(links)}</p></nav>' if links
               else "")
        return (
            f'<h2 id="subjects">Subjects</h2><p>Version {subjects.version}: {total:,} subjects'
            f"; {first + 1:,} to {first + len(shown):,} shown (page {number} of {pages}).</p>"
            f'<ul class="subjects">{items}</ul>{nav}')

    # -- actions --------------------------------------------------------------------------

    async def _acting(self) -> None:
        try:
            async with asyncio.timeout(ACTION_QUEUE_WAIT_S):
                await self.actions.acquire()
        except TimeoutError:
            raise web.HTTPServiceUnavailable(text="another watchlist action is still running; "
                                                  "try again\n",
                                             headers={"Retry-After": "5"}) from None

    async def _enrolled(self) -> tuple[str, ...]:
        try:
            async with asyncio.timeout(READ_WAIT_S):
                return (await known_units(self._sources))[0]
        except TimeoutError:
            raise web.HTTPServiceUnavailable(text="the enrolment did not answer in time; try "
                                                  "again\n",
                                             headers={"Retry-After": "5"}) from None

    async def start(self, request: web.Request) -> web.StreamResponse:
        """POST /watchlist/deployment."""
        account = current_session(request).account
        form = await request.post()
        deployment_id, threshold_text = form.get("deployment_id"), form.get("threshold")
        if not isinstance(deployment_id, str) or not isinstance(threshold_text, str):
            return _problem(request, "Deployment not started", "Give the deployment's id and "
                            "its threshold.", 400)
        try:
            check_node_id(deployment_id, "the deployment id")
            threshold = check_threshold(float(threshold_text), "the threshold")
        except UserInputError as exc:  # a ValueError too: first
            return _problem(request, "Deployment not started", str(exc), 400)
        except ValueError:
            return _problem(request, "Deployment not started", "The threshold must be a "
                            "number such as 0.60.", 400)
        if not is_usual_threshold(threshold):
            low, high = USUAL_THRESHOLDS
            return _problem(request, "Deployment not started",
                            f"The threshold {threshold:.3f} is outside the usual range {low} to "
                            f"{high} (docs/THRESHOLDS.md). An unusual threshold can only be set "
                            "with lfr van deployment start --allow-unusual-thresholds.", 400)
        await self._acting()
        try:
            deployment = await self._sources.board.start_deployment(
                deployment_id, threshold, operator=f"console {account}")
        except UserInputError as exc:
            return _problem(request, "Deployment not started", str(exc),
                            409 if isinstance(exc, DeploymentError) else 400)
        finally:
            self.actions.release()
        log.info("console: %s started deployment %s (threshold %.3f)", printable(account),
                 printable(deployment.id), deployment.threshold)
        return _done(request, "Deployment started",
                     f"Deployment {deployment.id} started with threshold "
                     f"{deployment.threshold:.3f}. Push a signed watchlist next.")

    async def end_form(self, request: web.Request) -> web.StreamResponse:
        """GET /watchlist/end: the confirmation step."""
        deployment = self._sources.board.deployment
        if deployment is None:
            return _problem(request, "End the deployment", "No deployment is active.", 409)
        return shell_page(request, "End the deployment", (
            f"<p>End deployment <strong>{html.escape(deployment.id)}</strong> now? Every unit "
            "is told to purge its watchlist, and the van deletes its sealed copies of the "
            "deployment's watchlists and reference photos. This cannot be undone.</p>"
            f'<form method="post" action="/watchlist/end">{csrf_field(request)}'
            f'<input type="hidden" name="deployment_id" value="{html.escape(deployment.id)}">'
            '<input type="hidden" name="confirm" value="yes">'
            '<button type="submit">Yes, end the deployment</button></form>'
            '<p><a href="/watchlist">No, back to the watchlist</a></p>'))

    async def end(self, request: web.Request) -> web.StreamResponse:
        """POST /watchlist/end (``confirm=yes``)."""
        account = current_session(request).account
        form = await request.post()
        if form.get("confirm") != "yes":
            return _problem(request, "Deployment not ended", "Confirm first: use the button "
                            "on the confirmation page (/watchlist/end).", 400)
        shown = form.get("deployment_id")
        deployment = self._sources.board.deployment
        if deployment is not None and isinstance(shown, str) and shown != deployment.id:
            return _problem(request, "Deployment not ended", "The deployment confirmed is no "
                            "longer the active one; look again.", 409)
        await self._acting()
        try:
            ended = await self._sources.board.end_deployment(operator=f"console {account}")
        except UserInputError as exc:
            return _problem(request, "Deployment not ended", str(exc),
                            409 if isinstance(exc, DeploymentError) else 400)
        finally:
            self.actions.release()
        self._subjects = None
        log.info("console: %s ended deployment %s", printable(account), printable(ended.id))
        return _done(request, "Deployment ended",
                     f"Deployment {ended.id} ended. Every unit is told to purge its watchlist "
                     "at its next poll; the Units page shows when each has.")

    async def _purge_target(self, unit: object) -> tuple[str, ...] | None:
        """The units a purge names, or None when ``unit`` is not enrolled."""
        if not isinstance(unit, str) or unit == "":
            return ALL_UNITS
        return (unit,) if unit in await self._enrolled() else None

    async def purge_form(self, request: web.Request) -> web.StreamResponse:
        """GET /watchlist/purge?unit=U: the confirmation step."""
        unit = request.query.get("unit", "")
        units = await self._purge_target(unit)
        if units is None:
            return _problem(request, "Purge", f"Unit {unit} is not enrolled at this van.", 400)
        question = ("Purge every unit's watchlist now?" if not units
                    else f"Purge the watchlist of unit {unit} now?")
        return shell_page(request, "Purge", (
            f"<p>{html.escape(question)} The units drop it at once and scan nothing until a "
            "new push.</p>"
            f'<form method="post" action="/watchlist/purge">{csrf_field(request)}'
            f'<input type="hidden" name="unit" value="{html.escape(unit)}">'
            '<input type="hidden" name="confirm" value="yes">'
            '<button type="submit">Yes, purge</button></form>'
            '<p><a href="/watchlist">No, back to the watchlist</a></p>'))

    async def purge(self, request: web.Request) -> web.StreamResponse:
        """POST /watchlist/purge (``unit``, ``confirm=yes``)."""
        account = current_session(request).account
        form = await request.post()
        unit = form.get("unit", "")
        if form.get("confirm") != "yes":
            return _problem(request, "Nothing purged", "Confirm first: use the button on the "
                            "confirmation page (/watchlist/purge).", 400)
        units = await self._purge_target(unit)
        if units is None:
            return _problem(request, "Nothing purged",
                            f"Unit {printable(unit)} is not enrolled at this van.", 400)
        await self._acting()
        try:
            await self._sources.board.purge(units, operator=f"console {account}")
        finally:
            self.actions.release()
        named = ", ".join(units) if units else "every unit"
        log.info("console: %s ordered a watchlist purge of %s", printable(account),
                 printable(named))
        return _done(request, "Purge ordered",
                     f"Purge ordered for {named}: each drops its watchlist at its next poll.")

    async def push(self, request: web.Request) -> web.StreamResponse:
        """POST /watchlist/push: JSON ``{ok, message, reason?, version?, subjects?}``."""
        if request.content_type != "multipart/form-data" or CSRF_HEADER not in request.headers:
            return _problem(request, "Watchlist not pushed", "Pushing a watchlist needs the "
                            "page's script (it sends the file straight to the van's memory): "
                            "turn JavaScript on for the console, or use lfr watchlist push.",
                            400)
        upload = _Upload()
        try:
            try:
                async with asyncio.timeout(UPLOAD_WAIT_S):
                    await upload.read(request)
            except TimeoutError:
                return _push_answer(408, "The upload took too long; try again.")
            return await self._push(current_session(request).account, upload)
        except _Refusal as refusal:
            return _push_answer(refusal.status, refusal.text)
        finally:
            upload.wipe()

    async def _push(self, account: str, upload: _Upload) -> web.Response:
        units = await self._push_units(upload)
        await self._acting()
        signed = b""
        try:
            # bytes, not the bytearray: the store would copy a bytearray where it cannot be
            # wiped; this copy is wiped below.
            signed = bytes(upload.signed)
            result = await self._sources.board.push(signed, units,
                                                    operator=f"console {account}")
        except WatchlistRefused as exc:
            log.info("console: %s pushed a watchlist the van refused (%s)", printable(account),
                     exc.reason.value)
            return _push_answer(400, str(exc), reason=exc.reason.value)
        except UserInputError as exc:
            return _push_answer(409 if isinstance(exc, DeploymentError) else 400, str(exc))
        finally:
            self.actions.release()
            wipe_buffer(signed)
        named = ", ".join(result.units) if result.units else "every unit"
        log.info("console: %s pushed watchlist version %d of deployment %s (%d subjects) to %s",
                 printable(account), result.version, printable(result.deployment_id),
                 result.subjects, printable(named))
        photos = "" if self.build is None else await self.build.after_push(result, account)
        return web.json_response({
            "ok": True, "version": result.version, "subjects": result.subjects,
            "message": f"Version {result.version} of deployment {result.deployment_id} "
                       f"({result.subjects:,} subjects) pushed to {named}.{photos} Reload the "
                       "page to follow the units taking it."})

    async def _push_units(self, upload: _Upload) -> tuple[str, ...]:
        if upload.target == "all":
            return ALL_UNITS
        if upload.target != "named":
            raise _Refusal(400, "choose every unit or the units named")
        if not upload.units:
            raise _Refusal(400, "tick at least one unit, or push to every unit")
        if len(upload.units) > MAX_UNITS_NAMED:
            raise _Refusal(400, f"{len(upload.units)} units named; at most {MAX_UNITS_NAMED}")
        enrolled = set(await self._enrolled())
        unknown = sorted(set(upload.units) - enrolled)
        if unknown:
            shown = ", ".join(printable(unit, max_chars=64) for unit in unknown[:10])
            raise _Refusal(400, f"not enrolled at this van: {shown}")
        return tuple(upload.units)


def _push_answer(status: int, message: str, *, reason: str = "") -> web.Response:
    return web.json_response({"ok": False, "message": message, "reason": reason},
                             status=status)


def _problem(request: web.Request, title: str, text: str, status: int) -> web.Response:
    return outcome_page(request, title, text, back="/watchlist", back_label="the watchlist",
                        status=status)


def _done(request: web.Request, title: str, text: str) -> web.Response:
    return outcome_page(request, title, text, back="/watchlist", back_label="the watchlist")


def routes(sources: ConsoleSources, *, clock: Callable[[], float] = time.time,
           builder: WatchlistBuilder | None = None,
           limits: PhotoUploadLimits | None = None) -> list[PageRoute]:
    """The Watchlist page's routes, every one for supervisors only; ``clock`` gives the van's
    time (s since the epoch). With a ``builder``, the build section's routes too, its uploads
    bounded by ``limits`` (default ``PhotoUploadLimits()``)."""
    page = WatchlistPage(sources, clock)
    supervisor = Role.SUPERVISOR
    if builder is not None:
        page.build = BuildPage(sources, builder, page.actions,
                               limits=limits or PhotoUploadLimits(), clock=clock)
    return [*(page.build.routes() if page.build is not None else ()),
        PageRoute("GET", "/watchlist", page.page, role=supervisor),
        PageRoute("POST", "/watchlist/deployment", page.start, role=supervisor),
        PageRoute("POST", "/watchlist/push", page.push, role=supervisor,
                  max_body_bytes=MAX_UPLOAD_BYTES),
        PageRoute("GET", "/watchlist/purge", page.purge_form, role=supervisor),
        PageRoute("POST", "/watchlist/purge", page.purge, role=supervisor),
        PageRoute("GET", "/watchlist/end", page.end_form, role=supervisor),
        PageRoute("POST", "/watchlist/end", page.end, role=supervisor),
    ]
