"""The console's accounts in the van's audit trail: ``follow_accounts`` records every account
when the van starts and each change made beside the running van (``lfr van user add``,
``lfr van user disable``) within ``ACCOUNT_CHECK_S``; ``SignInTrail`` records sign-ins,
sign-outs, failed and throttled sign-ins (``console.app``).

``lfr van user`` cannot write the trail itself while the van runs (the trail has one writer,
the van, holding its lock), so the van follows the accounts' file, as it follows the enrolment:
one ``UserStore.accounts`` read on the blocking pool per check (at most ``MAX_USERS`` rows).
Records (``console_account``): ``account``, ``role``, ``disabled``, ``created_at`` (ISO 8601,
when the account was made) and ``change``: ``present`` at start, then ``added``,
``disabled``, ``enabled`` or ``role_changed``. Changes made while the van is stopped show in
the next start's ``present`` records (with ``created_at``). Never a password or a hash: the
store never hands them out.

Sign-ins (``SignInTrail``): ``console_signed_in`` (account, role, address),
``console_signed_out`` (account); a failed sign-in ``console_sign_in_failed`` and a refused one
of a locked-out name or address ``console_sign_in_throttled`` (account, known, address,
retry_after_s). A name as typed is recorded (printable) only when it is an account: people
type passwords into the name field; never the password. Anyone who reaches the form can make
failures, so the trail is bounded whatever they send:

- **A name that is an account**: each failure is a record (the throttle locks the name out
  after ``ThrottleConfig.max_failures``, so they are few), each lockout one record at its
  first refused attempt (remembered: at most ``MAX_LOCKOUTS_REMEMBERED``, oldest forgotten).
- **A name that is no account** (random names never trip the per-name throttle, and on
  loopback there is no per-address one): through ``audit.refusals.RepeatRecorder``, one record
  per address at once, then at most one per ``UNKNOWN_NAME_WINDOW_S`` with ``count``, the
  exact number of failures (or refusals) it stands for; ``flush`` (when the console stops)
  records what is still counted. Such records carry ``account`` "" and ``known`` false.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Final

from audit.kinds import AuditKind
from audit.refusals import RepeatRecorder
from console.sources import AuditRecorder
from console.users import UserAccount, UserStore
from runtime.blocking import BlockingPool
from runtime.log_budget import LogBudget

log = logging.getLogger("lfr.console")

ACCOUNT_CHECK_S: Final = 5.0
"""How often the running van reads the accounts for changes."""
READ_WAIT_S: Final = 30.0
"""A read of the accounts that takes longer is given up until the next check."""
UNKNOWN_NAME_WINDOW_S: Final = 10.0
"""Failed and throttled sign-ins with names that are no account: at most one record per
address per this many seconds (each with its count)."""
MAX_LOCKOUTS_REMEMBERED: Final = 10_000
"""Lockouts whose first refusal was recorded, remembered so the next refusals are not (as many
as the throttle remembers names and addresses); beyond it the oldest is forgotten."""


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


class SignInTrail:
    """Sign-ins, sign-outs, failed and throttled sign-ins in the van's trail (module
    docstring). Used from the event loop only."""

    def __init__(self, audit: AuditRecorder, *, clock: Callable[[], float] = time.monotonic,
                 window_s: float = UNKNOWN_NAME_WINDOW_S) -> None:
        """``clock``: monotonic seconds (the console's)."""
        self._audit = audit
        self._clock = clock
        self._unknown_failed = RepeatRecorder(audit, AuditKind.CONSOLE_SIGN_IN_FAILED,
                                              window_s=window_s, clock=clock)
        self._unknown_throttled = RepeatRecorder(audit, AuditKind.CONSOLE_SIGN_IN_THROTTLED,
                                                 window_s=window_s, clock=clock)
        # (casefolded name, address) -> end of the lockout whose first refusal was recorded;
        # insertion order, oldest first; at most MAX_LOCKOUTS_REMEMBERED entries.
        self._lockouts: dict[tuple[str, str], float] = {}

    def signed_in(self, account: UserAccount, address: str) -> None:
        """``account`` signed in from ``address`` (printable; "" on loopback)."""
        self._audit.record(AuditKind.CONSOLE_SIGNED_IN, account=account.name,
                           role=account.role.value, address=address)

    def signed_out(self, account: str) -> None:
        """``account`` signed out."""
        self._audit.record(AuditKind.CONSOLE_SIGNED_OUT, account=account)

    def failed(self, typed: str, address: str) -> None:
        """A failed sign-in from ``address``; ``typed``: the name as typed (printable) when
        it is an account, else ""."""
        if typed:
            self._audit.record(AuditKind.CONSOLE_SIGN_IN_FAILED, account=typed, known=True,
                               address=address)
        else:
            self._unknown_failed.occurred({"address": address}, account="", known=False)

    def lockout_is_new(self, name: str, address: str, wait_s: float) -> bool:
        """Whether a refusal of ``name`` from ``address``, locked out for ``wait_s`` more,
        is the first of its lockout (then it is remembered, and ``throttled`` is to record
        it)."""
        now = self._clock()
        key = (name.casefold(), address)
        if self._lockouts.get(key, 0.0) > now:
            return False
        self._lockouts.pop(key, None)
        while len(self._lockouts) >= MAX_LOCKOUTS_REMEMBERED:
            del self._lockouts[next(iter(self._lockouts))]
        self._lockouts[key] = now + wait_s
        return True

    def throttled(self, typed: str, address: str, wait_s: float) -> None:
        """The first refusal of a lockout (``lockout_is_new``); ``typed`` as for ``failed``."""
        if typed:
            self._audit.record(AuditKind.CONSOLE_SIGN_IN_THROTTLED, account=typed, known=True,
                               address=address, retry_after_s=round(wait_s, 1))
        else:
            self._unknown_throttled.occurred({"address": address}, account="", known=False,
                                             retry_after_s=round(wait_s, 1))

    def flush(self) -> None:
        """Record the failures and refusals of names that are no account still counted."""
        self._unknown_failed.flush()
        self._unknown_throttled.flush()
