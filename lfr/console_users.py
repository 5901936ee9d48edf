"""``lfr van user add``, ``list`` and ``disable``: the operator console's accounts
(``console.users``) from the command line; ``add_user_commands`` adds them under ``lfr van``.

Each command reads the van's config (``--config van.toml``) for its state folder, where the
accounts' file lives, does one thing and prints what it did: names, roles, when an account was
made and whether it is disabled, never a password or a hash. ``add`` reads the password from
the terminal twice (``getpass``: not echoed), or once from stdin with ``--password-stdin`` (for
scripts: one line, its line ending removed). A running van sees a new or disabled account at
its next lookup (a disabled account's sessions end within ``SessionConfig.account_recheck_s``).
A refusal is a ``UserInputError`` naming what is wrong (exit 2).

The van's audit trail records every change (``console_account``: ``console.account_trail``):
the running van within seconds, since the trail has one writer and it is the van; a van that
is stopped records every account, as it then is, when it starts. ``add`` and ``disable`` say
so.

The parser is built without importing ``console``; each command imports it when it runs (the
``lfr`` command line's convention: ``lfr --help`` stays fast).
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from guards.exit_codes import ExitCode
from guards.log_text import printable
from guards.user_input import UserInputError

if TYPE_CHECKING:
    from console.users import UserAccount

# ruff: noqa: PLC0415 - the console package is imported when a command runs, see the docstring

_CONFIG_HELP = "the van's config file (van.toml; docs/DELIVERY.md \"Configuration\")"
_TRAIL_NOTE = ("the van's audit trail records it (a running van within seconds, a stopped one "
               "when it starts)")
_STDIN_LIMIT = 1024 + 3  # characters read from stdin: the longest password, \r\n, one more


class PasswordInputError(UserInputError):
    """The password could not be read, or its two entries differ (its text never shown)."""


def add_user_commands(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``user add|list|disable`` to ``lfr van``'s ``actions``."""
    user = actions.add_parser(
        "user", help="the operator console's accounts: add, list, disable",
        description="Accounts of the van's operator console (docs/CONSOLE.md): an operator "
                    "sees and decides on alerts; a supervisor also manages watchlists.")
    steps = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = steps.add_parser("add", help="add an account; the password is asked for twice")
    add.add_argument("name", metavar="NAME",
                     help="the account's name: 1-64 printable characters, unique whatever "
                          "its case")
    add.add_argument("--role", required=True, choices=["operator", "supervisor"],
                     help="operator: alerts, units, reports, audit; supervisor: also the "
                          "watchlist")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from one line of stdin instead of the terminal")
    add.add_argument("--config", required=True, help=_CONFIG_HELP)
    add.set_defaults(func=_cmd_add)
    listed = steps.add_parser("list", help="the accounts, their roles, when made, disabled")
    listed.add_argument("--config", required=True, help=_CONFIG_HELP)
    listed.add_argument("--json", action="store_true", help="print one JSON object")
    listed.set_defaults(func=_cmd_list)
    disable = steps.add_parser("disable", help="an account can no longer sign in; its "
                               "sessions end")
    disable.add_argument("name", metavar="NAME", help="the account's name")
    disable.add_argument("--config", required=True, help=_CONFIG_HELP)
    disable.set_defaults(func=_cmd_disable)


def _cmd_add(args: argparse.Namespace) -> int:
    return add_user(Path(args.config), args.name, args.role, password_stdin=args.password_stdin)


def _cmd_list(args: argparse.Namespace) -> int:
    return list_users(Path(args.config), as_json=args.json)


def _cmd_disable(args: argparse.Namespace) -> int:
    return disable_user(Path(args.config), args.name)


def add_user(config_path: Path, name: str, role: str, *, password_stdin: bool) -> int:
    """Add account ``name`` with ``role``; the password from the terminal (twice) or stdin."""
    from console.users import UserError, UserStore, check_name, check_password, check_role
    from lfr.config import load_van_config

    config = load_van_config(config_path)
    check_name(name)
    account_role = check_role(role)
    store = UserStore.open(config.state_dir)
    try:
        existing = store.account(name)
        if existing is not None:  # said before asking for a password nobody will use
            raise UserError(f"account {printable(existing.name)} exists already; choose "
                            "another name (names are unique whatever their case)")
        password = _read_password(from_stdin=password_stdin)
        check_password(password)
        account = store.add(name, account_role, password)
    finally:
        store.close()
    print(f"added {account.role.value} {printable(account.name)} to the console of van "
          f"{printable(config.van_id)} ({printable(store.path)}); {_TRAIL_NOTE}")
    return ExitCode.OK


def _read_password(*, from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline(_STDIN_LIMIT)
        if len(line) == _STDIN_LIMIT and not line.endswith("\n"):
            raise PasswordInputError("the password on stdin is too long (at most 1024 "
                                     "characters)")
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise PasswordInputError("no password on stdin (one line expected)")
        return password
    if not sys.stdin.isatty():
        raise PasswordInputError("no terminal to ask for the password on; give "
                                 "--password-stdin and the password as one line of stdin")
    try:
        first = getpass.getpass("Password for the new account: ")
        again = getpass.getpass("The same password again: ")
    except EOFError:
        raise PasswordInputError("no password given") from None
    if first != again:
        raise PasswordInputError("the two passwords differ; nothing was added")
    return first


def list_users(config_path: Path, *, as_json: bool) -> int:
    """Print every account, sorted by name: one JSON object with ``as_json``."""
    from console.users import UserStore
    from lfr.config import load_van_config

    config = load_van_config(config_path)
    store = UserStore.open(config.state_dir)
    try:
        accounts = store.accounts()
    finally:
        store.close()
    if as_json:
        print(json.dumps({"van": config.van_id, "users": [_account_json(a) for a in accounts]},
                         allow_nan=False))
        return ExitCode.OK
    print(f"van {printable(config.van_id)}: {len(accounts)} console account"
          f"{'' if len(accounts) == 1 else 's'}")
    for account in accounts:
        state = "  DISABLED" if account.disabled else ""
        print(f"  {printable(account.name):24} {account.role.value:10} created "
              f"{_utc(account.created_at)}{state}")
    return ExitCode.OK


def disable_user(config_path: Path, name: str) -> int:
    """Disable account ``name``: it can no longer sign in and its sessions end."""
    from console.sessions import SessionConfig
    from console.users import UserStore
    from lfr.config import load_van_config

    config = load_van_config(config_path)
    store = UserStore.open(config.state_dir)
    try:
        account, changed = store.disable(name)
    finally:
        store.close()
    if not changed:
        print(f"account {printable(account.name)} is already disabled; nothing changed")
        return ExitCode.OK
    print(f"disabled account {printable(account.name)}: it can no longer sign in to the "
          f"console of van {printable(config.van_id)}, and a running van ends its sessions "
          f"within {SessionConfig().account_recheck_s:g} s; {_TRAIL_NOTE}")
    return ExitCode.OK


def _account_json(account: UserAccount) -> dict[str, object]:
    return {"name": account.name, "role": account.role.value,
            "created_at": _utc(account.created_at), "disabled": account.disabled}


def _utc(epoch_s: float) -> str:
    """ISO 8601 in UTC, to the second (``2025-01-31T12:00:00Z``)."""
    moment = datetime.datetime.fromtimestamp(epoch_s, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
