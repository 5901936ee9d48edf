"""``verify_audit_file``: every kind of tampering is caught and the first bad record named."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.kinds import AuditKind
from audit.lines import READ_CHUNK_BYTES
from audit.log import AuditLog
from audit.record import GENESIS_HASH, MAX_RECORD_BYTES, check_fields, make_record
from audit.verify import AuditVerification, HeadWitnessError, verify_audit_file
from guards.files import UserFileError
from guards.user_input import UserInputError


def ticking_clock(start: float = 1_700_000_000.0, step: float = 0.001) -> Callable[[], float]:
    ticks = itertools.count()
    return lambda: start + step * next(ticks)


def write_log(path: Path, records: int = 6, *, node: str = "unit-1",
              clock: Callable[[], float] | None = None) -> list[bytes]:
    """A valid log of ``records`` records at ``path``; its lines, newline included."""
    with AuditLog.open(path, node, clock=clock or ticking_clock()) as log:
        log.append(AuditKind.NODE_STARTED, role="unit", version="0.1.0")
        for i in range(2, records + 1):
            log.append(AuditKind.ALERT_RAISED, seq=i, camera="door", subject=f"s{i}",
                       score=0.5 + i / 100, deployment="op-7")
    return path.read_bytes().splitlines(keepends=True)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


@pytest.fixture
def original(path: Path) -> list[bytes]:
    return write_log(path)


def head_of(lines: list[bytes]) -> str:
    return make_hash_of(lines[-1])


def make_hash_of(line: bytes) -> str:
    return line.split(b'"hash":"')[1][:64].decode()


def tampered(path: Path, lines: list[bytes], **kwargs: str) -> AuditVerification:
    path.write_bytes(b"".join(lines))
    result = verify_audit_file(path, **kwargs)
    assert not result.ok
    assert result.problem is not None
    return result


def test_an_intact_log_verifies(path: Path, original: list[bytes]) -> None:
    result = verify_audit_file(path)
    assert result == AuditVerification(ok=True, records=6, head_hash=head_of(original),
                                       first_bad_seq=None, first_bad_line=None, problem=None,
                                       node="unit-1")


def test_an_empty_log_verifies(path: Path) -> None:
    path.write_bytes(b"")
    result = verify_audit_file(path, expected_head=GENESIS_HASH)
    assert (result.ok, result.records, result.head_hash) == (True, 0, GENESIS_HASH)


def test_a_modified_record(path: Path, original: list[bytes]) -> None:
    lines = [*original]
    lines[2] = lines[2].replace(b'"subject":"s3"', b'"subject":"s9"')
    result = tampered(path, lines)
    assert (result.first_bad_seq, result.first_bad_line, result.records) == (3, 3, 2)
    assert result.problem == "its hash does not match its content: the record was changed"


def test_a_modified_record_with_its_hash_recomputed(path: Path, original: list[bytes]) -> None:
    """Rehashing the changed record breaks the next record's prev."""
    forged = make_record(seq=3, time="2023-11-14T22:13:20.002000Z", node="unit-1",
                         kind=AuditKind.ALERT_RAISED, fields=check_fields({"subject": "s9"}),
                         prev=make_hash_of(original[1]))
    lines = [*original]
    lines[2] = forged.line()
    result = tampered(path, lines)
    assert (result.first_bad_seq, result.first_bad_line) == (4, 4)
    assert result.problem == ("its prev is not the hash of record 3: a record before it was "
                              "changed, removed, inserted or moved")


def test_a_rehashed_last_record_needs_the_witness(path: Path, original: list[bytes]) -> None:
    forged = make_record(seq=6, time="2023-11-14T22:13:20.005000Z", node="unit-1",
                         kind=AuditKind.ALERT_RAISED, fields=check_fields({"subject": "s9"}),
                         prev=make_hash_of(original[4]))
    path.write_bytes(b"".join([*original[:5], forged.line()]))
    assert verify_audit_file(path).ok  # nothing after it to break: what the witness is for
    result = tampered(path, [*original[:5], forged.line()], expected_head=head_of(original))
    assert (result.first_bad_seq, result.first_bad_line) == (7, 7)
    assert result.problem is not None
    assert "does not hold the witnessed head" in result.problem


@pytest.mark.parametrize(("removed", "seq", "reason"), [
    ([2], 4, "seq 4 where seq 3 was expected: record 3 removed or moved"),
    ([2, 3], 5, "seq 5 where seq 3 was expected: records 3 to 4 removed or moved"),
    ([0], 2, "seq 2 where seq 1 was expected: record 1 removed or moved"),
])
def test_a_removed_record(path: Path, original: list[bytes], removed: list[int], seq: int,
                          reason: str) -> None:
    lines = [line for i, line in enumerate(original) if i not in removed]
    result = tampered(path, lines)
    assert (result.first_bad_seq, result.first_bad_line) == (seq, removed[0] + 1)
    assert result.problem == reason


def test_an_inserted_record_that_fits_breaks_the_next(path: Path, original: list[bytes]) -> None:
    inserted = make_record(seq=3, time="2023-11-14T22:13:20.001500Z", node="unit-1",
                           kind=AuditKind.OPERATOR_DECISION,
                           fields=check_fields({"decision": "dismissed"}),
                           prev=make_hash_of(original[1]))
    result = tampered(path, [*original[:2], inserted.line(), *original[2:]])
    assert (result.first_bad_seq, result.first_bad_line) == (3, 4)
    assert result.problem == ("seq 3 where seq 4 was expected: a record inserted, repeated or "
                              "moved")


def test_an_inserted_record_with_a_new_seq(path: Path, original: list[bytes]) -> None:
    inserted = make_record(seq=99, time="2023-11-14T22:13:20.001500Z", node="unit-1",
                           kind=AuditKind.OPERATOR_DECISION, fields=check_fields({}),
                           prev=GENESIS_HASH)
    result = tampered(path, [*original[:2], inserted.line(), *original[2:]])
    assert (result.first_bad_seq, result.first_bad_line) == (99, 3)


def test_a_repeated_record(path: Path, original: list[bytes]) -> None:
    result = tampered(path, [*original[:3], original[2], *original[3:]])
    assert (result.first_bad_seq, result.first_bad_line) == (3, 4)


def test_reordered_records(path: Path, original: list[bytes]) -> None:
    lines = [*original]
    lines[2], lines[3] = lines[3], lines[2]
    result = tampered(path, lines)
    assert (result.first_bad_seq, result.first_bad_line) == (4, 3)
    assert result.problem == "seq 4 where seq 3 was expected: record 3 removed or moved"


def test_a_log_cut_short_is_caught_by_the_witness_only(path: Path,
                                                       original: list[bytes]) -> None:
    path.write_bytes(b"".join(original[:4]))
    assert verify_audit_file(path).ok  # without a witness a cut at a line is invisible
    result = tampered(path, original[:4], expected_head=head_of(original))
    assert (result.first_bad_seq, result.first_bad_line, result.records) == (5, 5, 4)
    assert result.problem == (
        f"the log ends at seq 4 but does not hold the witnessed head {head_of(original)}: "
        "records after seq 4 were removed (the log was cut short), or the log was rewritten")


def test_an_older_witness_is_still_held(path: Path, original: list[bytes]) -> None:
    """The van's witness may be older than the log: the records after it are new."""
    result = verify_audit_file(path, expected_head=make_hash_of(original[2]).upper())
    assert result.ok
    assert result.records == 6


def test_a_witness_from_another_log(path: Path, original: list[bytes], tmp_path: Path) -> None:
    other = write_log(tmp_path / "other.log", 3, clock=ticking_clock(1_800_000_000.0))
    result = tampered(path, original, expected_head=head_of(other))
    assert (result.first_bad_seq, result.first_bad_line) == (7, 7)


def test_a_rewritten_log_is_caught_by_the_witness(path: Path, original: list[bytes],
                                                  tmp_path: Path) -> None:
    """A thief with the log (and the node) rewrites the whole chain: valid, but the van's
    witness of the old head is not in it."""
    rewritten = write_log(tmp_path / "rewritten.log", 6, clock=ticking_clock(1_700_000_000.5))
    path.write_bytes(b"".join(rewritten))
    assert verify_audit_file(path).ok
    tampered(path, rewritten, expected_head=head_of(original))


@pytest.mark.parametrize(("bad_line", "reason"), [
    (b"not json\n", "the line is not JSON"),
    (b"\n", "the line is not JSON"),
    (b'{"seq":3}\n', "not the keys of a record"),
    (b" " + b"x" * MAX_RECORD_BYTES + b"\n", f"longer than {MAX_RECORD_BYTES} bytes"),
])
def test_a_malformed_line(path: Path, original: list[bytes], bad_line: bytes,
                          reason: str) -> None:
    result = tampered(path, [*original[:2], bad_line, *original[2:]])
    assert (result.first_bad_seq, result.first_bad_line) == (3, 3)
    assert result.problem is not None
    assert reason in result.problem


def test_a_record_of_another_node(path: Path, original: list[bytes]) -> None:
    foreign = make_record(seq=3, time="2023-11-14T22:13:20.002000Z", node="unit-2",
                          kind=AuditKind.ALERT_RAISED, fields=check_fields({}),
                          prev=make_hash_of(original[1]))
    result = tampered(path, [*original[:2], foreign.line()])
    assert (result.first_bad_seq, result.first_bad_line) == (3, 3)
    assert result.problem == "it is a record of node unit-2, in the log of node unit-1"


def test_a_torn_last_line_is_reported(path: Path, original: list[bytes]) -> None:
    result = tampered(path, [*original[:5], original[5][:40]])
    assert (result.first_bad_seq, result.first_bad_line, result.records) == (6, 6, 5)
    assert result.problem is not None
    assert result.problem.startswith("the last line is incomplete (no newline at its end)")


def test_a_clock_stepping_back_is_not_tampering(path: Path) -> None:
    lines = write_log(path, 5, clock=ticking_clock(step=-10.0))
    assert verify_audit_file(path).ok
    assert b'"time":"2023-11-14T22:13:20.000000Z"' in lines[0]
    assert b'"time":"2023-11-14T22:13:10.000000Z"' in lines[1]


@pytest.mark.parametrize("witness", ["abc", "g" * 64, "0" * 63, "0" * 65, ""])
def test_a_malformed_witness_is_bad_input(path: Path, original: list[bytes],
                                          witness: str) -> None:
    with pytest.raises(HeadWitnessError, match="is not a sha256 hash"):
        verify_audit_file(path, expected_head=witness)
    assert issubclass(HeadWitnessError, UserInputError)


def test_what_is_not_a_readable_regular_file(tmp_path: Path) -> None:
    with pytest.raises(UserFileError, match=r"audit log .*missing\.log: no such file"):
        verify_audit_file(tmp_path / "missing.log")
    with pytest.raises(UserFileError, match="is a directory"):
        verify_audit_file(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UserFileError, match="is a FIFO"):
        verify_audit_file(fifo)


def test_reading_is_bounded_by_the_line_limit(path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    """50 MB without a newline: reading stops after one line's worth and a chunk."""
    with path.open("wb") as out:
        for _ in range(50):
            out.write(b"x" * 1_000_000)
    real_read = os.read
    read = 0

    def counting_read(fd: int, size: int) -> bytes:
        nonlocal read
        data = real_read(fd, size)
        read += len(data)
        return data

    monkeypatch.setattr(os, "read", counting_read)
    result = verify_audit_file(path)
    assert (result.ok, result.first_bad_line) == (False, 1)
    assert read <= MAX_RECORD_BYTES + READ_CHUNK_BYTES


def test_a_long_log_verifies_streaming(path: Path) -> None:
    with AuditLog.open(path, "van-1") as log:
        for i in range(3000):
            log.append(AuditKind.INPUT_REFUSED, source="envelope", peer=f"unit-{i % 7}",
                       reason="bad signature " + "x" * (i % 300))
        head = log.head_hash
    assert path.stat().st_size > 4 * READ_CHUNK_BYTES
    result = verify_audit_file(path, expected_head=head)
    assert (result.ok, result.records, result.head_hash) == (True, 3000, head)


SAMPLE_LOG: bytes | None = None


def sample_log() -> bytes:
    """A small log with text, numbers, booleans, null and non-ASCII, built once."""
    global SAMPLE_LOG  # noqa: PLW0603 - built lazily once for the property's many examples
    if SAMPLE_LOG is None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "sample.log"
            with AuditLog.open(path, "unit-1", clock=ticking_clock()) as log:
                log.append(AuditKind.NODE_STARTED, role="unit", version="0.1.0")
                log.append(AuditKind.ALERT_RAISED, seq=1, subject="s1", score=0.71,
                           camera="Zoë's door", confirmed=True, note=None)
                log.append(AuditKind.INPUT_REFUSED, source="offer", reason="stale: 31 s")
                log.append(AuditKind.NODE_STOPPED, reason="done", exit_code=0)
            SAMPLE_LOG = path.read_bytes()
    return SAMPLE_LOG


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_single_byte_change_is_caught(data: st.DataObject) -> None:
    log = sample_log()
    position = data.draw(st.integers(0, len(log) - 1), label="position")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != log[position]), label="byte")
    changed = log[:position] + bytes([byte]) + log[position + 1:]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audit.log"
        path.write_bytes(changed)
        result = verify_audit_file(path)
    assert not result.ok
    line = log[:position].count(b"\n") + 1
    assert result.first_bad_line == line  # the lines before it are untouched and valid
