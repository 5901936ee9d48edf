"""The console's account events in the van's audit trail: sign-in (who), failed sign-in (the
name only when it is an account, never the password), throttled (once per lockout), sign-out
(``console.app`` with the van's ``AuditSink``), and the accounts followed from the accounts'
file (``console.account_trail``: every account at start, then additions and disablings made
by ``lfr van user`` beside the running van)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer

from audit.kinds import AuditKind
from console.account_trail import account_changes, follow_accounts
from console.app import ConsoleConfig, build_console_app
from console.users import Role, UserAccount
from tests.actors.van.test_watchlist_board import read_audit
from tests.console.support import OPERATOR, SUPERVISOR, Client, FakeClock, sign_in, signed_in
from tests.console.test_units_page import ConsoleVan, console_van

WRONG = "not-the-password-7"
"""A wrong password: it must never reach the trail."""


@asynccontextmanager
async def console(van: ConsoleVan, clock: FakeClock) -> AsyncIterator[Client]:
    """The van's console (its pages) recording into the van's trail."""
    app = build_console_app(van.users, ConsoleConfig(), pages=van.routes(), clock=clock,
                            audit=van.sources.audit)
    async with TestClient(TestServer(app), cookie_jar=CookieJar(unsafe=True)) as client:
        yield client


async def records(van: ConsoleVan, kind: AuditKind, count: int) -> list[dict[str, Any]]:
    """The trail's records of ``kind`` once it holds ``count`` of them (the console's records
    reach it through the audit writer: bounded wait)."""
    async with asyncio.timeout(10.0):
        while True:
            found = [dict(record.fields) for record in read_audit(van.audit.path)
                     if record.kind is kind]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)


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
                      {"account": "", "known": False, "address": ""}]
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
