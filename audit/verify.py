"""Checking an audit log's chain: ``ChainWalk`` record by record, ``verify_audit_file`` whole.

A log is valid when every line is a valid record (``audit.record.parse_record``: canonical,
its hash matching its content), the records are numbered 1, 2, 3... without a gap, each one's
``prev`` is the hash of the one before (64 zeros for the first), all belong to one node, and the
file ends with ``\\n``. With a **head witness** (a head hash the van was told earlier, in a
unit's signed health report) the log must also still hold the record with that hash.

What is found is the FIRST place where this fails, with the reason in plain words:

- a changed record: its hash no longer matches (or the line is no longer canonical JSON);
- a removed record: a gap in ``seq`` (or, for the last records, only the witness shows it);
- an inserted, repeated or moved record: ``seq`` out of order, or ``prev`` not the hash of the
  record before. An inserted record made to fit (right ``seq`` and ``prev``) is itself valid:
  the break shows at the record after it, whose ``seq`` or ``prev`` no longer follow;
- a log cut short: the witnessed head is not among its records;
- a malformed line, a line over ``MAX_RECORD_BYTES``, a record of another node, a last line
  without its ``\\n`` (a write cut short by a crash; ``AuditLog.open`` repairs that one).

A time earlier than the previous record's is not a fault: node clocks step.

The file is read streaming (``audit.lines``), so a log of any size is checked in bounded memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from audit.lines import FileLine, read_lines
from audit.record import (
    GENESIS_HASH,
    MAX_RECORD_BYTES,
    AuditRecord,
    AuditRecordError,
    parse_record,
)
from guards.files import UserFileError, open_regular_file
from guards.log_text import printable
from guards.user_input import UserInputError

_HEX_HASH = re.compile(r"[0-9a-fA-F]{64}")


class HeadWitnessError(UserInputError):
    """A head witness is not a sha256 in hex."""


def check_head_hash(text: str, what: str = "head witness") -> str:
    """``text`` as 64 lowercase hex digits, or ``HeadWitnessError`` naming ``what``."""
    if not _HEX_HASH.fullmatch(text):
        raise HeadWitnessError(f"{what} {printable(text, max_chars=80)} is not a sha256 hash "
                               "(64 hex digits)")
    return text.lower()


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first place where a log's chain fails."""

    seq: int
    """The seq of the bad record: the one it carries when it could be read, else the one
    expected at its place (one more than the last good record's)."""
    line: int
    """Its line in the file (1 for the first)."""
    reason: str
    """What is wrong, in plain words."""
    torn_tail: FileLine | None = None
    """The last line, when the problem is only that it has no ``\\n`` (a torn write)."""


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """What ``verify_audit_file`` found."""

    ok: bool
    """The whole file is a valid chain (holding the witnessed head, if one was given)."""
    records: int
    """Valid records before the first problem (all of them when ``ok``)."""
    head_hash: str
    """Hash of the last valid record; 64 zeros when there is none."""
    first_bad_seq: int | None
    """``ChainProblem.seq`` of the first problem; None when ``ok``."""
    first_bad_line: int | None
    """Line of the first problem; None when ``ok``."""
    problem: str | None
    """The first problem in plain words; None when ``ok``."""
    node: str | None = None
    """The node whose log it is (from its first record); None for an empty log."""


class ChainWalk:
    """Checks a log's lines in order and keeps its head: ``records`` yields each good record
    and stops at the first problem, which is then in ``problem``."""

    def __init__(self, *, node: str | None = None, witness: str | None = None) -> None:
        self._node = node  # every record's node; the first record's when None
        self._witness = witness
        self.witness_seen = witness is None or witness == GENESIS_HASH
        """The witnessed head is a record of the log (True when there is no witness)."""
        self.records = 0
        """Good records so far; the last one's seq."""
        self.head_hash = GENESIS_HASH
        """The last good record's hash."""
        self.problem: ChainProblem | None = None
        """The first problem, once ``records`` stopped at it."""

    @property
    def node(self) -> str | None:
        """The log's node: the expected one, else the first record's."""
        return self._node

    def walk(self, lines: Iterable[FileLine]) -> Iterator[AuditRecord]:
        """Each record of ``lines`` while the chain holds; stops at the first problem."""
        for line in lines:
            record = self._check(line)
            if record is None:
                return
            self.records = record.seq
            self.head_hash = record.hash
            if record.hash == self._witness:
                self.witness_seen = True
            yield record

    def finish(self) -> ChainProblem | None:
        """The problem after the last line: the first one met, or a witness not found."""
        if self.problem is None and not self.witness_seen:
            self.problem = ChainProblem(
                self.records + 1, self.records + 1,
                f"the log ends at seq {self.records} but does not hold the witnessed head "
                f"{self._witness}: records after seq {self.records} were removed (the log was "
                "cut short), or the log was rewritten")
        return self.problem

    def _check(self, line: FileLine) -> AuditRecord | None:
        expected = self.records + 1
        if line.over_limit:
            self._fail(expected, line, f"the line is longer than {MAX_RECORD_BYTES} bytes: "
                       "not a record this log writes")
            return None
        if not line.complete:
            self.problem = ChainProblem(
                expected, line.number, "the last line is incomplete (no newline at its end): "
                "a write cut short, e.g. by a crash; the node cuts it away and records that "
                "when it next opens the log", torn_tail=line)
            return None
        try:
            record = parse_record(line.data)
        except AuditRecordError as exc:
            self._fail(expected, line, str(exc))
            return None
        reason = self._chain_fault(record, expected)
        if reason is None:
            return record
        self._fail(record.seq, line, reason)
        return None

    def _chain_fault(self, record: AuditRecord, expected: int) -> str | None:
        if self._node is None:
            self._node = record.node
        elif record.node != self._node:
            return (f"it is a record of node {printable(record.node)}, in the log of node "
                    f"{printable(self._node)}")
        if record.seq > expected:
            missing = (f"record {expected}" if record.seq == expected + 1
                       else f"records {expected} to {record.seq - 1}")
            return (f"seq {record.seq} where seq {expected} was expected: {missing} "
                    "removed or moved")
        if record.seq < expected:
            return (f"seq {record.seq} where seq {expected} was expected: a record inserted, "
                    "repeated or moved")
        if record.prev != self.head_hash:
            before = ("64 zeros (it is the first record)" if expected == 1
                      else f"the hash of record {expected - 1}")
            return (f"its prev is not {before}: a record before it was changed, removed, "
                    "inserted or moved")
        return None

    def _fail(self, seq: int, line: FileLine, reason: str) -> None:
        self.problem = ChainProblem(seq, line.number, reason)


def verify_audit_file(path: Path, *, expected_head: str | None = None) -> AuditVerification:
    """Check the audit log at ``path`` (a regular file; a symbolic link is followed: reading
    changes nothing) from its first line to its last, streaming. ``expected_head``: a head hash
    witnessed earlier, which the log must still hold. A file that cannot be opened or read
    raises ``UserFileError``; a bad witness ``HeadWitnessError``."""
    witness = None if expected_head is None else check_head_hash(expected_head)
    walk = ChainWalk(witness=witness)
    fd = open_regular_file(path, "audit log")
    try:
        for _ in walk.walk(read_lines(fd, max_line_bytes=MAX_RECORD_BYTES)):
            pass
    except OSError as exc:
        raise UserFileError(f"audit log {printable(path)}: cannot read: "
                            f"{exc.strerror or exc}") from None
    finally:
        os.close(fd)
    problem = walk.finish()
    return AuditVerification(
        ok=problem is None, records=walk.records, head_hash=walk.head_hash,
        first_bad_seq=None if problem is None else problem.seq,
        first_bad_line=None if problem is None else problem.line,
        problem=None if problem is None else problem.reason, node=walk.node)
