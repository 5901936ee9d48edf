"""The console's Audit page: the van's audit trail, filtered and paged, with its verification,
and each unit's latest witnessed trail head (issue 10, "Audit").

Route (role operator): ``GET /audit?kind=KIND&q=TEXT&before=SEQ``.

**The van's trail** (``ConsoleSources.audit_file``) is read streaming, never whole: one pass
on the blocking pool through ``audit.lines.read_lines`` and ``audit.verify.ChainWalk`` (what
``verify_audit_file`` runs), which checks the chain and yields each good record; the page keeps
at most ``PAGE_RECORDS`` of the records that match the filter (kind, and text found in the
kind, node, time or a field), newest first, older pages by ``before`` (a seq). Memory: one
read chunk, one line and one page of records, whatever the file's size. The verdict is
``verify_audit_file``'s: ok with the record count and head hash, or the first bad record
(seq, line) and why; records from a break on are not listed (they cannot be trusted: the
verdict says so). A last line without its newline is reported as such: the van may have been
writing it as the page read the file. Scans run one at a time (``SCAN_WAIT_S`` for a turn,
``AUDIT_WAIT_S`` in all; 503 otherwise).

**Each unit's trail** lives on the unit; the van holds a witness of it: the head hash and
record count in the unit's newest health report that carries one (as ``lfr van audit-witness``
reads it, here through ``console.units_page.newest_health_report`` on the blocking pool, at
most ``WITNESS_EVENTS_BACK`` events back). The page shows it with the command that checks a
copy of the unit's trail against it: ``lfr audit verify FILE --expect-head HEAD``.

Records hold ids, hashes and counts only (the privacy rule of ``audit.record``); every text is
escaped before it is put in HTML. GET changes nothing.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web

from actors.van.event_store import MAX_PAGE
from actors.van.health_reports import HealthReport
from audit.kinds import AuditKind
from audit.lines import read_lines
from audit.record import MAX_RECORD_BYTES, AuditRecord
from audit.verify import AuditVerification, ChainWalk
from console.app import PageRoute, shell_page
from console.sources import ConsoleSources
from console.units_page import (
    age_text,
    known_units,
    newest_health_report,
    utc_text,
)
from guards.files import UserFileError, open_regular_file
from guards.log_text import printable

PAGE_RECORDS: Final = 50
"""Records listed per page."""
MAX_QUERY_CHARS: Final = 200
"""Longest text filter; longer is cut."""
WITNESS_EVENTS_BACK: Final = MAX_PAGE
"""A unit's newest events looked through for a health report carrying its trail's head."""
SCAN_WAIT_S: Final = 30.0
"""Longest a page waits for the scan before it (scans run one at a time); then 503."""
AUDIT_WAIT_S: Final = 120.0
"""Longest the page waits in all (a long trail is read through at each view); then 503."""

_SEQ_TEXT: Final = re.compile(r"[0-9]{1,19}")  # a record's seq is a 64-bit integer


@dataclass(frozen=True, slots=True)
class TrailPage:
    """One page of the van's trail and its verdict."""

    verification: AuditVerification
    """What ``verify_audit_file`` says of the whole file."""
    torn_tail: bool
    """The only problem is a last line without its newline."""
    records: tuple[AuditRecord, ...]
    """The page's matching records, newest first."""
    matched: int
    """Good records matching the filter, in the whole trail."""
    older: bool
    """Matching records older than this page exist."""


def _searchable(record: AuditRecord) -> str:
    fields = " ".join(f"{key}={value}" for key, value in record.fields.items())
    return f"{record.kind.value} {record.node} {record.time} {fields}".casefold()


def scan_trail(path: Path, *, kind: AuditKind | None = None, text: str = "",
               before: int | None = None, page: int = PAGE_RECORDS) -> TrailPage:
    """Verify the trail at ``path`` and keep the ``page`` newest records matching ``kind``
    and ``text`` (case-insensitive) below seq ``before``; blocking, streaming (module
    docstring). ``UserFileError`` when the file cannot be opened or read."""
    walk = ChainWalk()
    needle = text.casefold()
    kept: deque[AuditRecord] = deque(maxlen=page)
    matched = below = 0
    fd = open_regular_file(path, "audit trail")
    try:
        for record in walk.walk(read_lines(fd, max_line_bytes=MAX_RECORD_BYTES)):
            if (kind is not None and record.kind is not kind) or (
                    needle and needle not in _searchable(record)):
                continue
            matched += 1
            if before is None or record.seq < before:
                below += 1
                kept.append(record)
    except OSError as exc:
        raise UserFileError(f"audit trail {printable(path)}: cannot read: "
                            f"{exc.strerror or exc}") from None
    finally:
        os.close(fd)
    problem = walk.finish()
    verification = AuditVerification(
        ok=problem is None, records=walk.records, head_hash=walk.head_hash,
        first_bad_seq=None if problem is None else problem.seq,
        first_bad_line=None if problem is None else problem.line,
        problem=None if problem is None else problem.reason, node=walk.node)
    return TrailPage(verification, problem is not None and problem.torn_tail is not None,
                     tuple(reversed(kept)), matched, below > len(kept))


def _verdict_html(page: TrailPage, path: Path) -> str:
    result = page.verification
    shown = html.escape(str(path))
    if result.ok:
        return (f'<p role="status"><strong>Verified</strong>: the van\'s trail '
                f"<code>{shown}</code> holds {result.records:,} records of node "
                f"{html.escape(result.node or '-')} in an unbroken chain; head "
                f"<code>{html.escape(result.head_hash)}</code>.</p>")
    if page.torn_tail:
        return (f'<p role="status"><strong>Verified up to record {result.records:,}</strong>'
                f" (head <code>{html.escape(result.head_hash)}</code>); its last line "
                f"(line {result.first_bad_line}) has no newline yet: the van was writing it as "
                "the page read the trail (reload), or a crash cut it (the van repairs that "
                "when it next opens its trail).</p>")
    return (f'<p class="error" role="alert"><strong>The chain breaks</strong> at record '
            f"{result.first_bad_seq} (line {result.first_bad_line}) of <code>{shown}</code>: "
            f"{html.escape(result.problem or '')}. The {result.records:,} records before it "
            "verify; records from the break on are not listed. Check a copy with "
            "<code>lfr audit verify FILE</code>.</p>")


def _fields_html(record: AuditRecord) -> str:
    return "<br>".join(f"{html.escape(key)}: {html.escape(str(value))}"
                       for key, value in sorted(record.fields.items())) or "-"


def _records_html(page: TrailPage) -> str:
    if not page.records:
        return "<p>No record matches.</p>"
    rows = "".join(
        f'<tr><th scope="row">{record.seq}</th><td>{html.escape(record.time)}</td>'
        f"<td>{html.escape(record.kind.value)}</td><td>{_fields_html(record)}</td></tr>"
        for record in page.records)
    return ('<table class="audit"><caption>Records, newest first</caption><thead><tr>'
            '<th scope="col">Seq</th><th scope="col">Time (UTC)</th><th scope="col">Kind</th>'
            f'<th scope="col">Fields</th></tr></thead><tbody>{rows}</tbody></table>')


def _filter_html(kind: AuditKind | None, text: str) -> str:
    options = "".join(
        f'<option value="{html.escape(k.value)}"{" selected" if k is kind else ""}>'
        f"{html.escape(k.value)}</option>" for k in AuditKind)
    return (
        '<form method="get" action="/audit" role="search">'
        '<label for="audit-kind">Kind</label>'
        f'<select id="audit-kind" name="kind"><option value="">every kind</option>{options}'
        "</select>"
        '<label for="audit-text">Text (in the kind, node, time or a field)</label>'
        f'<input id="audit-text" name="q" maxlength="{MAX_QUERY_CHARS}" '
        f'value="{html.escape(text)}">'
        '<button type="submit">Filter</button></form>')


def _paging_html(page: TrailPage, kind: AuditKind | None, text: str,
                 before: int | None) -> str:
    query = {"kind": kind.value if kind else "", "q": text}
    links = []
    if before is not None:
        links.append(f'<a href="/audit?{html.escape(urllib.parse.urlencode(query))}">Newest '
                     "records</a>")
    if page.older and page.records:
        older = urllib.parse.urlencode({**query, "before": page.records[-1].seq})
        links.append(f'<a href="/audit?{html.escape(older)}">Older records</a>')
    return (f'<nav aria-label="Record pages"><p>{" | ".join(links)}</p></nav>' if links
            else "")


def _witness_html(witnesses: Sequence[tuple[str, HealthReport | None]], now: float) -> str:
    intro = ("<p>Each unit keeps its own trail on the unit. Every health report carries the "
             "head hash of that trail, and the van keeps the reports: below is the newest head "
             "the van witnessed for each unit. Copy a unit's trail off the unit and check it "
             "with <code>lfr audit verify FILE --expect-head HEAD</code>: a trail cut short or "
             "rewritten since no longer holds the head.</p>")
    if not witnesses:
        return f"<h2>Units' trails</h2>{intro}<p>No unit is enrolled.</p>"
    rows = []
    for unit, report in witnesses:
        if report is None:
            rows.append(f'<tr><th scope="row">{html.escape(unit)}</th><td colspan="3">no '
                        f"health report with a head among its newest {WITNESS_EVENTS_BACK} "
                        "events</td></tr>")
            continue
        body = report.body
        command = f"lfr audit verify FILE --expect-head {body.audit_head}"
        rows.append(
            f'<tr><th scope="row">{html.escape(unit)}</th>'
            f"<td><code>{html.escape(body.audit_head)}</code><br>{body.audit_records:,} "
            f"records</td><td>{html.escape(utc_text(body.unit_time))} (unit clock)<br>"
            f"received {html.escape(age_text(report.received_at, now))}</td>"
            f"<td><code>{html.escape(command)}</code></td></tr>")
    return (f"<h2>Units' trails</h2>{intro}"
            '<table class="witnesses"><caption>Latest witnessed head of each unit\'s trail'
            '</caption><thead><tr><th scope="col">Unit</th><th scope="col">Head and records'
            '</th><th scope="col">Reported</th><th scope="col">Check a copy with</th></tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table>')


class AuditPage:
    """``GET /audit`` (module docstring)."""

    def __init__(self, sources: ConsoleSources, clock: Callable[[], float]) -> None:
        self._sources = sources
        self._clock = clock
        self._scans = asyncio.Semaphore(1)  # one pass over the trail at a time

    async def _scan(self, kind: AuditKind | None, text: str,
                    before: int | None) -> TrailPage | str:
        """The page of the trail, or why it cannot be read."""
        try:
            async with asyncio.timeout(SCAN_WAIT_S):
                await self._scans.acquire()
        except TimeoutError:
            raise web.HTTPServiceUnavailable(text="the audit trail is being read for another "
                                                  "view; try again\n",
                                             headers={"Retry-After": "5"}) from None
        try:
            return await self._sources.blocking.run(
                lambda: scan_trail(self._sources.audit_file, kind=kind, text=text,
                                   before=before))
        except UserFileError as exc:
            return str(exc)
        finally:
            self._scans.release()

    async def _witnesses(self) -> list[tuple[str, HealthReport | None]]:
        _, units = await known_units(self._sources)
        return [(unit, await newest_health_report(self._sources, unit,
                                                  max_events=WITNESS_EVENTS_BACK,
                                                  with_audit_head=True)) for unit in units]

    async def page(self, request: web.Request) -> web.StreamResponse:
        """GET /audit."""
        query = request.query
        try:
            kind: AuditKind | None = AuditKind(query.get("kind", ""))
        except ValueError:
            kind = None
        text = query.get("q", "")[:MAX_QUERY_CHARS]
        before_text = query.get("before", "")
        before = (int(before_text) if _SEQ_TEXT.fullmatch(before_text) and int(before_text) > 0
                  else None)
        now = self._clock()
        try:
            async with asyncio.timeout(AUDIT_WAIT_S):
                scanned = await self._scan(kind, text, before)
                witnesses = await self._witnesses()
        except TimeoutError:
            raise web.HTTPServiceUnavailable(text="the audit trail took too long to read; try "
                                                  "again\n",
                                             headers={"Retry-After": "10"}) from None
        if isinstance(scanned, str):
            trail = (f'<p class="error" role="alert">The van\'s trail cannot be read: '
                     f"{html.escape(scanned)}</p>")
        else:
            filtered = kind is not None or text != ""
            count = (f"<p>{scanned.matched:,} of {scanned.verification.records:,} records "
                     "match.</p>" if filtered else "")
            trail = (f"{_verdict_html(scanned, self._sources.audit_file)}"
                     f"{_filter_html(kind, text)}{count}{_records_html(scanned)}"
                     f"{_paging_html(scanned, kind, text, before)}")
        return shell_page(request, "Audit", f"<h2>The van's trail</h2>{trail}"
                                            f"{_witness_html(witnesses, now)}")


def routes(sources: ConsoleSources, *,
           clock: Callable[[], float] = time.time) -> list[PageRoute]:
    """The Audit page's route; ``clock`` gives the van's time (s since the epoch)."""
    return [PageRoute("GET", "/audit", AuditPage(sources, clock).page)]
