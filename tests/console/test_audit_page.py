"""The Audit page (``console.audit_page``): the van's trail newest first, filtered by kind and
text and paged, with the verdict ``verify_audit_file`` gives (ok, a changed record, a torn last
line, a line over the limit, a file that cannot be read), and each unit's latest witnessed
head from its sealed health reports with the command that checks a copy of its trail. The van
is built by ``tests.console.test_units_page``."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

from audit.kinds import AuditKind
from audit.log import AuditLog
from audit.record import MAX_RECORD_BYTES
from audit.verify import verify_audit_file
from console import audit_page
from console.audit_page import PAGE_RECORDS, scan_trail
from tests.console.support import OPERATOR, FakeClock, console_client, inline_code, signed_in
from tests.console.test_units_page import (
    ODD_UNIT,
    browser,
    console_van,
    health_body,
    page_text,
)

HEAD_A = "a" * 64
HEAD_B = "b" * 64


def seqs(page: str) -> list[int]:
    """The seqs of the records table's rows, in page order."""
    table = page[page.index('<table class="audit">'):] if '<table class="audit">' in page else ""
    return [int(seq) for seq in re.findall(r'<tr><th scope="row">(\d+)</th>', table)]


def fill(append: Callable[..., object], count: int) -> None:
    """``count`` records: unit_connected for even numbers, input_refused for odd ones."""
    for number in range(1, count + 1):
        if number % 2:
            append(AuditKind.INPUT_REFUSED, source="offer", peer=f"peer-{number:03d}",
                   reason="not enrolled")
        else:
            append(AuditKind.UNIT_CONNECTED, peer=f"peer-{number:03d}")


async def test_the_trail_is_verified_and_listed_newest_first_a_page_at_a_time(
        tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        fill(van.audit.append, 120)
        expected = verify_audit_file(van.audit.path)
        async with browser(van, OPERATOR) as (client, _):
            first = await page_text(client, "/audit")
            second = await page_text(client, "/audit?before=71")
            third = await page_text(client, "/audit?before=21")
    assert expected.ok
    assert (f"<strong>Verified</strong>: the van's trail <code>{van.audit.path}</code> "
            f"holds 120 records of node van-1 in an unbroken chain; head "
            f"<code>{expected.head_hash}</code>.") in first
    assert seqs(first) == list(range(120, 120 - PAGE_RECORDS, -1))
    assert 'href="/audit?kind=&amp;q=&amp;before=71">Older records</a>' in first
    assert "Newest records" not in first
    assert seqs(second) == list(range(70, 20, -1))
    assert 'href="/audit?kind=&amp;q=">Newest records</a>' in second
    assert seqs(third) == list(range(20, 0, -1))
    assert "Older records" not in third
    row = re.search(r'<tr><th scope="row">119</th><td>([^<]+)</td><td>input_refused</td>'
                    r"<td>peer: peer-119<br>reason: not enrolled<br>source: offer</td></tr>",
                    first)
    assert row is not None
    assert row.group(1).endswith("Z")


async def test_records_are_filtered_by_kind_and_by_text(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        fill(van.audit.append, 20)
        async with browser(van, OPERATOR) as (client, _):
            by_kind = await page_text(client, "/audit?kind=unit_connected")
            by_text = await page_text(client, "/audit?q=PEER-01")
            both = await page_text(client, "/audit?kind=input_refused&q=peer-01")
            unknown = await page_text(client, "/audit?kind=no_such_kind")
    assert seqs(by_kind) == list(range(20, 0, -2))
    assert "<p>10 of 20 records match.</p>" in by_kind
    assert '<option value="unit_connected" selected>unit_connected</option>' in by_kind
    assert seqs(by_text) == list(range(19, 9, -1))  # peer-010 to peer-019, case ignored
    assert 'value="PEER-01"' in by_text
    assert seqs(both) == [19, 17, 15, 13, 11]
    assert seqs(unknown) == list(range(20, 0, -1))  # an unknown kind filters nothing


async def test_a_changed_record_is_named_and_nothing_from_it_on_is_listed(
        tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        fill(van.audit.append, 30)
        data = van.audit.path.read_bytes()
        van.audit.path.write_bytes(data.replace(b'"peer":"peer-012"', b'"peer":"peer-0l2"'))
        expected = verify_audit_file(van.audit.path)
        async with browser(van, OPERATOR) as (client, _):
            page = await page_text(client, "/audit")
    assert not expected.ok
    assert (expected.first_bad_seq, expected.first_bad_line) == (12, 12)
    assert expected.problem is not None
    assert ("<strong>The chain breaks</strong> at record 12 (line 12) of "
            f"<code>{van.audit.path}</code>: {expected.problem}. The 11 records before it "
            "verify; records from the break on are not listed.") in page
    assert 'role="alert"' in page
    assert seqs(page) == list(range(11, 0, -1))


async def test_a_torn_last_line_and_an_overlong_line_are_told_apart(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        fill(van.audit.append, 3)
        with van.audit.path.open("ab") as trail:
            trail.write(b'{"fields":{},"hash"')
        async with browser(van, OPERATOR) as (client, _):
            torn = await page_text(client, "/audit")
            with van.audit.path.open("ab") as trail:
                trail.write(b"x" * MAX_RECORD_BYTES + b"\n")
            long = await page_text(client, "/audit")
    assert "<strong>Verified up to record 3</strong>" in torn
    assert "(line 4) has no newline yet" in torn
    assert seqs(torn) == [3, 2, 1]
    assert "<strong>The chain breaks</strong> at record 4 (line 4)" in long
    assert f"the line is longer than {MAX_RECORD_BYTES} bytes" in long


async def test_a_trail_that_cannot_be_read_is_said_so(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        sources = dataclasses.replace(van.sources, audit_file=tmp_path / "missing.log")
        pages = audit_page.routes(sources, clock=van.clock)
        async with console_client(van.users, FakeClock(), pages=pages) as client:
            await signed_in(client, *OPERATOR)
            page = await page_text(client, "/audit")
    assert "The van's trail cannot be read: audit trail " in page
    assert "missing.log: no such file" in page


async def test_each_unit_shows_its_latest_witnessed_head_and_how_to_check_it(
        tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1", "unit-2", ODD_UNIT) as van:
        van.store("unit-1", health_body(audit_head=HEAD_A, audit_records=40))
        van.store("unit-1", health_body(audit_head=HEAD_B, audit_records=42),
                  received_at=van.clock.now - 30)
        van.store("unit-1", health_body())  # newer, but carries no head
        van.store(ODD_UNIT, health_body(audit_head=HEAD_A, audit_records=7))
        async with browser(van, OPERATOR) as (client, _):
            page = await page_text(client, "/audit")
    assert ('<tr><th scope="row">unit-1</th>'
            f"<td><code>{HEAD_B}</code><br>42 records</td>"
            "<td>2027-01-15 08:00:00 UTC (unit clock)<br>received 30 s ago</td>"
            f"<td><code>lfr audit verify FILE --expect-head {HEAD_B}</code></td></tr>") in page
    assert ('<tr><th scope="row">unit-2</th><td colspan="3">no health report with a head '
            "among its newest 200 events</td></tr>") in page
    assert f'<tr><th scope="row">&lt;script&gt;alert(1)</th><td><code>{HEAD_A}' in page
    assert "<script>alert(1)" not in page
    assert "lfr audit verify FILE --expect-head HEAD" in page  # the general instruction


async def test_texts_in_records_and_the_filter_are_escaped(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        van.audit.append(AuditKind.INPUT_REFUSED, source="offer", peer="<b>x</b>",
                         reason='"><script>alert(3)</script>')
        async with browser(van, OPERATOR) as (client, _):
            page = await page_text(client, "/audit?q=%3Cscript%3E")
    assert "<script>alert(3)" not in page
    assert "reason: &quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in page
    assert "peer: &lt;b&gt;x&lt;/b&gt;" in page
    assert 'value="&lt;script&gt;"' in page
    assert seqs(page) == [1]
    found = inline_code(page)
    assert found.found == []
    assert found.scripts == ["/static/console.js"]


def test_the_scan_keeps_one_page_and_agrees_with_verify_audit_file(tmp_path: Path) -> None:
    with AuditLog.open(tmp_path / "audit.log", "van-1") as trail:
        fill(trail.append, 301)
    scanned = scan_trail(tmp_path / "audit.log", kind=AuditKind.UNIT_CONNECTED, page=7,
                         before=100)
    assert scanned.verification == verify_audit_file(tmp_path / "audit.log")
    assert [record.seq for record in scanned.records] == [98, 96, 94, 92, 90, 88, 86]
    assert scanned.matched == 150
    assert scanned.older
    last = scan_trail(tmp_path / "audit.log", kind=AuditKind.UNIT_CONNECTED, page=7, before=15)
    assert [record.seq for record in last.records] == [14, 12, 10, 8, 6, 4, 2]
    assert not last.older
