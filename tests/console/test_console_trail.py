"""The console's account events in the van's audit trail: sign-in (who), failed sign-in (the
name only when it is an account, never the password), throttled (once per lockout), sign-out
(``console.app`` with the van's ``AuditSink``), failures and refusals of names that are no
account bounded however many there are (once per address per window, with exact counts), and
the accounts followed from the accounts' file (``console.account_trail``: every account at
start, then additions and disablings made by ``lfr van user`` beside the running van)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import CookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from audit.kinds import AuditKind
from audit.record import FieldValue
from audit.refusals import MAX_KINDS, OTHER
from console.account_trail import (
    UNKNOWN_NAME_WINDOW_S,
    SignInTrail,
    account_changes,
    follow_accounts,
)
from console.app import ConsoleConfig, build_console_app
from console.users import Role, UserAccount
from tests.actors.van.test_watchlist_board import read_audit
from tests.console.support import OPERATOR, SUPERVISOR, Client, FakeClock, sign_in, signed_in
from tests.console.test_units_page import ConsoleVan, console_van

WRONG = "not-the-password-7"
"""A wrong password: it must never reach the trail."""


@asynccontextmanager
async def console(van: ConsoleVan, clock: FakeClock, *,
                  remote: str | None = None) -> AsyncIterator[Client]:
    """The van's console (its pages) recording into the van's trail; ``remote``: the
    address every request seems to come from (default: the test's own, loopback)."""
    app = build_console_app(van.users, ConsoleConfig(), pages=van.routes(), clock=clock,
                            audit=van.sources.audit)
    if remote is not None:
        @web.middleware
        async def from_remote(request: web.Request,
                              handler: Callable[[web.Request], Any]) -> web.StreamResponse:
            answer: web.StreamResponse = await handler(request.clone(remote=remote))
            return answer

        app.middlewares.append(from_remote)  # innermost: the console's own clone requests
    async with TestClient(TestServer(app), cookie_jar=CookieJar(unsafe=True)) as client:
        yield client


async def records(van: ConsoleVan, kind: AuditKind, count: int) -> list[dict[str, Any]]:
    """The trail's records of ``kind`` once they stand for ``count`` occurrences at least
    (each its ``count`` field, else one); the console's records reach it through the audit
    writer: bounded wait."""
    async with asyncio.timeout(10.0):
        while True:
            found: list[dict[str, Any]] = [dict(record.fields)
                                           for record in read_audit(van.audit.path)
                                           if record.kind is kind]
            if sum(int(r.get("count", 1)) for r in found) >= count:
                return found
            await asyncio.sleep(0.02)


def random_name() -> str:
    """A name that is no account (it could be someone's password)."""
    return f"pw-{secrets.token_hex(8)}"


async def test_sign_in_and_sign_out_are_recorded_with_the_account(tmp_path: Path) -> None:
    async with console_van(tmp_path) as van, console(van, FakeClock()) as client:
        token = await signed_in(client, *SUPERVISOR)
        answer = await client.post("/signout", data={"csrf_token": token},
                                   allow_redirects=False)
        assert answer.status == 303
        signed = await records(van, AuditKind.CONSOLE_SIGNED_IN, 1)
        out = await records(van, AuditKind.CONSOLE_SIGNED_OUT, 1)
    assert signed == [{"account": "sam", "role": "supervisor", "address": ""}]
    assert out == [{"account": "sam"}]


async def test_a_failed_sign_in_names_only_an_account_and_never_the_password(
        tmp_path: Path) -> None:
    async with console_van(tmp_path) as van, console(van, FakeClock()) as client:
        assert (await sign_in(client, "Olive", WRONG)).status == 401
        # People type their password into the name field: a name that is no account is not
        # written down.
        assert (await sign_in(client, OPERATOR[1], WRONG)).status == 401
        failed = await records(van, AuditKind.CONSOLE_SIGN_IN_FAILED, 2)
        trail = van.audit.path.read_bytes()
    assert failed == [{"account": "Olive", "known": True, "address": ""},
                      {"account": "", "known": False, "address": "", "count": 1}]
    assert WRONG.encode() not in trail
    assert OPERATOR[1].encode() not in trail


async def test_a_lockout_is_recorded_once_not_per_refused_attempt(tmp_path: Path) -> None:
    clock = FakeClock()
    async with console_van(tmp_path) as van, console(van, clock) as client:
        for _ in range(5):
            assert (await sign_in(client, OPERATOR[0], WRONG)).status == 401
        for _ in range(3):
            assert (await sign_in(client, *OPERATOR)).status == 429
        first = await records(van, AuditKind.CONSOLE_SIGN_IN_THROTTLED, 1)
        clock.advance(61)  # the first lockout (60 s) is over; one more failure locks again
        assert (await sign_in(client, OPERATOR[0], WRONG)).status == 401
        assert (await sign_in(client, *OPERATOR)).status == 429
        both = await records(van, AuditKind.CONSOLE_SIGN_IN_THROTTLED, 2)
        failed = await records(van, AuditKind.CONSOLE_SIGN_IN_FAILED, 6)
    assert first == [{"account": "olive", "known": True, "address": "",
                      "retry_after_s": 60.0}]
    assert len(both) == 2
    assert both[1]["retry_after_s"] == 120.0
    assert len(failed) == 6  # each failure, not each refusal of a locked name


async def test_many_failed_sign_ins_with_random_names_write_few_records_counting_all(
        tmp_path: Path) -> None:
    """Random names never trip the per-name throttle and loopback has no per-address one, so
    each is a scrypt and a failure: the trail gets one record per window, with the count
    (60 failures over 30 s: each is a real scrypt, about 0.1 s of CPU here)."""
    clock, names = FakeClock(), [random_name() for _ in range(60)]
    async with console_van(tmp_path) as van:
        async with console(van, clock) as client:
            for batch in range(10):  # 6 failures every 3 s: 30 s in all
                answers = await asyncio.gather(*(sign_in(client, name, WRONG)
                                                  for name in names[batch * 6:][:6]))
                assert {answer.status for answer in answers} == {401}
                if batch == 4:  # an account's failure is still a record of its own
                    assert (await sign_in(client, "olive", WRONG)).status == 401
                clock.advance(3.0)
        # The console stopped: what was still counted is in the trail now.
        failed = await records(van, AuditKind.CONSOLE_SIGN_IN_FAILED, 61)
        trail = van.audit.path.read_bytes()
    unknown = [r for r in failed if not r["known"]]
    assert [r for r in failed if r["known"]] == [{"account": "olive", "known": True,
                                                  "address": ""}]
    assert sum(int(r["count"]) for r in unknown) == 60
    # One at once, at most one per window over the 30 s, one when the console stopped.
    assert len(unknown) <= 2 + 30 / UNKNOWN_NAME_WINDOW_S
    assert all(r["account"] == "" and r["address"] == "" for r in unknown)
    assert not any(name.encode() in trail for name in names)
    assert WRONG.encode() not in trail


async def test_refusals_of_random_names_from_a_locked_address_are_counted_not_each_recorded(
        tmp_path: Path) -> None:
    """From an address that is not loopback, failures lock the address out: every further
    random name is refused at once, and would be a lockout of its own (name, address)."""
    clock = FakeClock()
    async with console_van(tmp_path) as van:
        async with console(van, clock, remote="192.0.2.7") as client:
            for _ in range(5):
                assert (await sign_in(client, random_name(), WRONG)).status == 401
            for minute in range(2):
                answers = await asyncio.gather(*(sign_in(client, random_name(), WRONG)
                                                  for _ in range(100)))
                assert {answer.status for answer in answers} == {429}
                if minute == 0:
                    clock.advance(UNKNOWN_NAME_WINDOW_S + 1)  # still locked (60 s)
            # An account's lockout on the same address is recorded once, as before.
            assert (await sign_in(client, "olive", WRONG)).status == 429
            assert (await sign_in(client, "olive", WRONG)).status == 429
        throttled = await records(van, AuditKind.CONSOLE_SIGN_IN_THROTTLED, 201)
        failed = await records(van, AuditKind.CONSOLE_SIGN_IN_FAILED, 5)
    unknown = [r for r in throttled if not r["known"]]
    assert sum(int(r["count"]) for r in unknown) == 200
    assert len(unknown) <= 3  # at once, after the window, when the console stopped
    assert all(r["address"] == "192.0.2.7" and r["account"] == "" for r in unknown)
    assert [(r["account"], r["known"]) for r in throttled if r["known"]] == [("olive", True)]
    assert sum(int(r["count"]) for r in failed) == 5
    assert len(failed) <= 2


class _Collect:
    """An audit sink that keeps the records (kind, fields)."""

    def __init__(self) -> None:
        self.records: list[tuple[AuditKind, dict[str, FieldValue]]] = []

    def record(self, kind: AuditKind, /, **fields: FieldValue) -> None:
        self.records.append((kind, fields))


def test_failures_from_ever_new_addresses_are_folded_into_other_past_the_bound() -> None:
    sink, clock = _Collect(), FakeClock()
    trail = SignInTrail(sink, clock=clock)
    addresses = [f"198.51.100.{i % 250}/{i // 250}" for i in range(MAX_KINDS + 100)]
    for _ in range(3):
        for address in addresses:
            trail.failed("", address)
    trail.flush()
    kept = {str(fields["address"]) for _, fields in sink.records}
    assert len(kept) == MAX_KINDS + 1
    assert OTHER in kept
    assert {kind for kind, _ in sink.records} == {AuditKind.CONSOLE_SIGN_IN_FAILED}
    assert sum(int(fields["count"] or 0) for _, fields in sink.records) == 3 * len(addresses)
    # The clock stands still: each address (and other) once at first, once on flush.
    assert len(sink.records) == 2 * (MAX_KINDS + 1)


def test_account_changes_start_with_every_account_then_each_difference() -> None:
    olive = UserAccount("olive", Role.OPERATOR, 1.0, False)
    sam = UserAccount("sam", Role.SUPERVISOR, 2.0, False)
    start = account_changes(None, {"sam": sam, "olive": olive})
    assert start == [(olive, "present"), (sam, "present")]
    pat = UserAccount("Pat", Role.OPERATOR, 3.0, False)
    later = {"olive": UserAccount("olive", Role.OPERATOR, 1.0, True),
             "sam": UserAccount("sam", Role.OPERATOR, 2.0, False), "pat": pat}
    assert account_changes({"olive": olive, "sam": sam}, later) == [
        (later["olive"], "disabled"), (pat, "added"), (later["sam"], "role_changed")]
    assert account_changes(later, later) == []


async def test_the_running_van_records_accounts_added_and_disabled_beside_it(
        tmp_path: Path) -> None:
    async with console_van(tmp_path) as van:
        following = asyncio.create_task(follow_accounts(van.users, van.sources.blocking,
                                                        van.sources.audit, interval_s=0.05))
        try:
            present = await records(van, AuditKind.CONSOLE_ACCOUNT, 2)
            van.users.add("pat", Role.OPERATOR, "a-long-password-9")  # lfr van user add
            van.users.disable("olive")  # lfr van user disable
            changed = await records(van, AuditKind.CONSOLE_ACCOUNT, 4)
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
        trail = van.audit.path.read_bytes()
    assert [(r["account"], r["role"], r["disabled"], r["change"]) for r in present] == [
        ("olive", "operator", False, "present"), ("sam", "supervisor", False, "present")]
    assert {(r["account"], r["change"], r["disabled"]) for r in changed[2:]} == {
        ("pat", "added", False), ("olive", "disabled", True)}
    assert all(r["created_at"].endswith("Z") for r in changed)
    assert b"a-long-password-9" not in trail
