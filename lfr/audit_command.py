"""``lfr audit verify`` and ``lfr audit show``: a node's audit log (``audit``) from the command
line; ``add_audit_commands`` adds both to the ``lfr`` parser.

``verify`` checks the whole chain (``audit.verify.verify_audit_file``) and prints one line:
``audit FILE: ok, N records, head HEX`` (exit 0) or ``audit FILE: TAMPERED at record seq S
(line L): REASON`` (exit 1, ``ExitCode.VERIFICATION_FAILED``). ``show`` prints the records,
checking the chain as it reads: at the first break it stops, says so on stderr and exits 1.
Both read streaming, one line at a time, whatever the log's size. A missing or unreadable file,
or a malformed ``--expect-head``, is bad input (exit 2) naming it. Every text from the file is
printed through ``guards.log_text.printable``.

The parser is built without importing ``audit``; each command imports it when it runs (the
``lfr`` command line's convention: ``lfr --help`` stays fast).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from guards.exit_codes import ExitCode
from guards.log_text import printable

if TYPE_CHECKING:
    from audit.kinds import AuditKind
    from audit.record import AuditRecord, FieldValue

# ruff: noqa: PLC0415 - the audit package is imported when a command runs, see the docstring


def add_audit_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``lfr audit verify`` and ``lfr audit show`` to ``commands``."""
    audit = commands.add_parser(
        "audit", help="check or read a node's hash-chained audit log",
        description="A node's audit log records what it did (deployments, watchlists, alerts, "
                    "refused input, starts and stops), each record holding the hash of the one "
                    "before: docs/AUDIT.md.")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="check the whole chain; name the first bad record (exit 1) if any")
    verify.add_argument("file", metavar="FILE", help="the audit log")
    verify.add_argument("--expect-head", metavar="HEX",
                        help="a head hash witnessed earlier (the van's copy from the unit's "
                             "signed health reports): the log must still hold it, so a log "
                             "cut short is caught")
    verify.set_defaults(func=_cmd_verify)
    show = actions.add_parser("show", help="print the records, checking the chain as it reads")
    show.add_argument("file", metavar="FILE", help="the audit log")
    show.add_argument("--json", action="store_true", help="one JSON object per record")
    show.add_argument("--kind", type=_kind, metavar="KIND",
                      help="only records of this kind (e.g. alert_raised)")
    show.add_argument("--limit", type=_limit, metavar="N",
                      help="stop after N records shown (the rest is not read)")
    show.set_defaults(func=_cmd_show)


def _kind(text: str) -> AuditKind:
    from audit.kinds import AuditKind

    try:
        return AuditKind(text)
    except ValueError:
        kinds = ", ".join(kind.value for kind in AuditKind)
        raise argparse.ArgumentTypeError(f"unknown kind {printable(text, max_chars=60)}; "
                                         f"one of: {kinds}") from None


def _limit(text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if limit < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {limit}")
    return limit


def _cmd_verify(args: argparse.Namespace) -> int:
    return verify_log(Path(args.file), expected_head=args.expect_head)


def _cmd_show(args: argparse.Namespace) -> int:
    return show_log(Path(args.file), as_json=args.json, kind=args.kind, limit=args.limit)


def verify_log(path: Path, *, expected_head: str | None = None) -> int:
    """``lfr audit verify FILE [--expect-head HEX]``: one line on stdout; the exit code."""
    from audit.verify import verify_audit_file

    result = verify_audit_file(path, expected_head=expected_head)
    if result.ok:
        print(f"audit {printable(path)}: ok, {result.records} "
              f"record{'' if result.records == 1 else 's'}, head {result.head_hash}")
        return ExitCode.OK
    print(f"audit {printable(path)}: TAMPERED at record seq {result.first_bad_seq} "
          f"(line {result.first_bad_line}): {printable(result.problem, max_chars=1000)}")
    return ExitCode.VERIFICATION_FAILED


def show_log(path: Path, *, as_json: bool = False, kind: AuditKind | None = None,
             limit: int | None = None) -> int:
    """``lfr audit show FILE``: each record (of ``kind``, the first ``limit``) on stdout while
    the chain holds; at a break, a line on stderr and exit 1."""
    import os

    from audit.lines import read_lines
    from audit.record import MAX_RECORD_BYTES
    from audit.verify import ChainWalk
    from guards.files import UserFileError, open_regular_file

    walk = ChainWalk()
    shown = 0
    fd = open_regular_file(path, "audit log")
    try:
        for record in walk.walk(read_lines(fd, max_line_bytes=MAX_RECORD_BYTES)):
            if kind is not None and record.kind is not kind:
                continue
            print(_json_line(record) if as_json else _readable_line(record))
            shown += 1
            if limit is not None and shown >= limit:
                return ExitCode.OK
    except OSError as exc:
        raise UserFileError(f"audit log {printable(path)}: cannot read: "
                            f"{exc.strerror or exc}") from None
    finally:
        os.close(fd)
    problem = walk.finish()
    if problem is None:
        return ExitCode.OK
    sys.stdout.flush()  # the records before the break come first
    print(f"audit {printable(path)}: TAMPERED at record seq {problem.seq} (line "
          f"{problem.line}): {printable(problem.reason, max_chars=1000)}; nothing from there on "
          "is shown", file=sys.stderr)
    return ExitCode.VERIFICATION_FAILED


def _json_line(record: AuditRecord) -> str:
    # ASCII escapes: valid JSON whatever the terminal's encoding
    return json.dumps(record.as_json(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)


def _readable_line(record: AuditRecord) -> str:
    values = " ".join(f"{key}={_readable_value(value)}"
                      for key, value in sorted(record.fields.items()))
    line = f"{record.seq} {record.time} {record.kind.value}"
    return f"{line} {values}" if values else line


def _readable_value(value: FieldValue) -> str:
    if isinstance(value, str):
        # quoted when bare text would be ambiguous: empty, spaces, "=", or a number's look
        plain = value and not any(c in value for c in ' ="') and not _looks_like_json(value)
        return printable(value if plain else json.dumps(value, ensure_ascii=False),
                         max_chars=2000)  # never cut: a value is at most 512 characters
    return json.dumps(value)


def _looks_like_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
