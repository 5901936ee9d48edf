"""The console's accounts in the van's audit trail: ``follow_accounts`` records every account
when the van starts and each change made beside the running van (``lfr van user add``,
``lfr van user disable``) within ``ACCOUNT_CHECK_S``.

``lfr van user`` cannot write the trail itself while the van runs (the trail has one writer,
the van, holding its lock), so the van follows the accounts' file, as it follows the enrolment:
one ``UserStore.accounts`` read on the blocking pool per check (at most ``MAX_USERS`` rows).
Records (``console_account``): ``account``, ``role``, ``disabled``, ``created_at`` (ISO 8601,
when the account was made) and ``change``: ``present`` at start, then ``added``,
``disabled``, ``enabled`` or ``role_changed``. Changes made while the van is stopped show in
the next start's ``present`` records (with ``created_at``). Never a password or a hash: the
store never hands them out.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import sqlite3
from typing import Final

from audit.kinds import AuditKind
from console.sources import AuditRecorder
from console.users import UserAccount, UserStore
from runtime.blocking import BlockingPool
from runtime.log_budget import LogBudget

log = logging.getLogger("lfr.console")

ACCOUNT_CHECK_S: Final = 5.0
"""How often the running van reads the accounts for changes."""
READ_WAIT_S: Final = 30.0
"""A read of the accounts that takes longer is given up until the next check."""


def account_changes(before: dict[str, UserAccount] | None,
                    now: dict[str, UserAccount]) -> list[tuple[UserAccount, str]]:
    """(account, change) for each difference between two readings (``before`` None: every
    account, ``present``), in name order."""
    if before is None:
        return [(account, "present") for _, account in sorted(now.items())]
    changes = []
    for key, account in sorted(now.items()):
        old = before.get(key)
        if old is None:
            changes.append((account, "added"))
        elif old.disabled != account.disabled:
            changes.append((account, "disabled" if account.disabled else "enabled"))
        elif old.role is not account.role:
            changes.append((account, "role_changed"))
    return changes


def record_account(audit: AuditRecorder, account: UserAccount, change: str) -> None:
    """One ``console_account`` record."""
    created = datetime.datetime.fromtimestamp(account.created_at, datetime.UTC)
    audit.record(AuditKind.CONSOLE_ACCOUNT, account=account.name, role=account.role.value,
                 disabled=account.disabled, created_at=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 change=change)


async def follow_accounts(users: UserStore, blocking: BlockingPool, audit: AuditRecorder, *,
                          interval_s: float = ACCOUNT_CHECK_S) -> None:
    """For ever (owned by the van node, cancelled when it stops): the records of the module
    docstring. A read that fails or stalls is logged (within a budget) and tried again at
    the next check; nothing is recorded for it."""
    budget = LogBudget(log, "console accounts")
    known: dict[str, UserAccount] | None = None
    while True:
        try:
            async with asyncio.timeout(READ_WAIT_S):
                accounts = await blocking.run(users.accounts)
        except (OSError, TimeoutError, sqlite3.Error) as exc:  # the next check retries
            budget.warning("console: the accounts could not be read for the trail: %s", exc)
        else:
            now = {account.name.casefold(): account for account in accounts}
            for account, change in account_changes(known, now):
                record_account(audit, account, change)
            known = now
        await asyncio.sleep(interval_s)
