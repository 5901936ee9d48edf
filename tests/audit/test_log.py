"""``AuditLog``: append-only writing, reopening, torn-tail repair, threads, and what it refuses."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from audit.kinds import AuditKind
from audit.log import AuditHead, AuditLog, AuditLogClosed, AuditLogError
from audit.record import GENESIS_HASH, AuditFieldError, FieldValue, parse_record
from audit.verify import verify_audit_file
from guards.user_input import UserInputError


def ticking_clock(start: float = 1_700_000_000.0) -> Callable[[], float]:
    """A clock one millisecond later at each reading."""
    ticks = itertools.count()
    return lambda: start + next(ticks) / 1000


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


@pytest.fixture
def log(log_path: Path) -> Iterator[AuditLog]:
    with AuditLog.open(log_path, "unit-1", clock=ticking_clock()) as opened:
        yield opened


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_a_new_log_is_an_empty_0600_file(log: AuditLog, log_path: Path) -> None:
    assert log_path.read_bytes() == b""
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    assert (log.count, log.head_hash, log.path) == (0, GENESIS_HASH, log_path)


def test_a_new_log_is_0600_whatever_the_umask(log_path: Path) -> None:
    old = os.umask(0o277)  # would make it read-only for its owner
    try:
        AuditLog.open(log_path, "unit-1").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600


def test_append_writes_one_chained_line_per_record(log: AuditLog, log_path: Path) -> None:
    first = log.append(AuditKind.NODE_STARTED, role="unit", version="0.1.0")
    second = log.append(AuditKind.ALERT_RAISED, seq=1, camera="door", subject="s1", score=0.71)
    assert log_path.read_bytes() == first.line() + second.line()
    assert (first.seq, first.prev, second.seq, second.prev) == (1, GENESIS_HASH, 2, first.hash)
    assert (log.count, log.head_hash) == (2, second.hash)
    assert log.head() == AuditHead(2, second.hash)
    assert [r["time"] for r in lines(log_path)] == ["2023-11-14T22:13:20.000000Z",
                                                   "2023-11-14T22:13:20.001000Z"]
    assert all(r["node"] == "unit-1" for r in lines(log_path))
    # a field named "kind" is a field: the record's kind is positional-only
    assert log.append(AuditKind.INPUT_REFUSED, kind="offer").fields == {"kind": "offer"}


def test_reopening_continues_the_chain(log_path: Path) -> None:
    with AuditLog.open(log_path, "unit-1") as log:
        for i in range(5):
            log.append(AuditKind.UNIT_CONNECTED, peer=f"van-{i}")
        head = log.head_hash
    with AuditLog.open(log_path, "unit-1") as log:
        assert (log.count, log.head_hash) == (5, head)
        sixth = log.append(AuditKind.NODE_STOPPED, reason="done", exit_code=0)
    assert (sixth.seq, sixth.prev) == (6, head)
    result = verify_audit_file(log_path)
    assert (result.ok, result.records, result.head_hash) == (True, 6, sixth.hash)


def test_a_refused_field_writes_nothing(log: AuditLog, log_path: Path) -> None:
    log.append(AuditKind.NODE_STARTED, role="unit")
    before = log_path.read_bytes()
    embedding = np.ones(192, dtype=np.float32)
    for bad in ({"embedding": embedding}, {"crop": b"\xff\xd8jpeg"},
                {"embedding": embedding.tobytes().hex()}):
        with pytest.raises(AuditFieldError):
            log.append(AuditKind.ALERT_RAISED, subject="s1", **bad)
    with pytest.raises(TypeError, match="kind must be an AuditKind"):
        log.append("alert_raised", subject="s1")  # type: ignore[arg-type]
    assert log_path.read_bytes() == before
    assert log.count == 1


def test_a_record_over_the_line_limit_is_refused(log: AuditLog, log_path: Path) -> None:
    fields = {f"f{i}": "é" * 512 for i in range(32)}  # each field allowed, 32 KiB together
    with pytest.raises(AuditFieldError, match=r"would be \d+ bytes, over the limit of 16384"):
        log.append(AuditKind.OPERATOR_DECISION, **fields)
    assert log_path.read_bytes() == b""


def test_concurrent_appends_keep_the_chain(log: AuditLog, log_path: Path) -> None:
    def append_many(worker: int) -> None:
        for i in range(50):
            log.append(AuditKind.INPUT_REFUSED, source="envelope", worker=worker, i=i)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(append_many, range(8)))
    result = verify_audit_file(log_path)
    assert (result.ok, result.records, log.count) == (True, 400, 400)
    assert result.head_hash == log.head_hash
    written = {(r["fields"]["worker"], r["fields"]["i"]) for r in lines(log_path)}  # type: ignore[index]
    assert written == {(w, i) for w in range(8) for i in range(50)}


def test_a_torn_last_line_is_cut_away_and_recorded(log_path: Path) -> None:
    with AuditLog.open(log_path, "unit-1") as log:
        log.append(AuditKind.NODE_STARTED, role="unit")
        kept = log.append(AuditKind.ALERT_RAISED, subject="s1")
        torn = log.append(AuditKind.ALERT_SENT, seq=1).line()[:-25]  # the crash's half line
    whole = log_path.read_bytes()
    log_path.write_bytes(whole[: len(whole) - len(torn) - 25] + torn)
    assert not verify_audit_file(log_path).ok
    with AuditLog.open(log_path, "unit-1") as log:
        assert log.count == 3
        assert log.head_hash != kept.hash
    records = lines(log_path)
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[2]["kind"] == "log_repaired"
    assert records[2]["prev"] == kept.hash
    assert records[2]["fields"] == {"torn_bytes": len(torn),
                                    "torn_sha256": hashlib.sha256(torn).hexdigest()}
    assert verify_audit_file(log_path).ok


def test_a_broken_chain_is_never_appended_to(log_path: Path) -> None:
    with AuditLog.open(log_path, "unit-1") as log:
        for i in range(4):
            log.append(AuditKind.UNIT_CONNECTED, peer=f"van-{i}")
    log_path.write_bytes(log_path.read_bytes().replace(b"van-2", b"van-9"))
    before = log_path.read_bytes()
    with pytest.raises(AuditLogError, match=r"audit log .*audit\.log: the chain is broken at "
                                            r"record seq 3 \(line 3\): its hash does not "
                                            r"match its content"):
        AuditLog.open(log_path, "unit-1")
    assert log_path.read_bytes() == before
    assert issubclass(AuditLogError, UserInputError)


def test_another_nodes_log_is_refused(log_path: Path) -> None:
    with AuditLog.open(log_path, "unit-1") as log:
        log.append(AuditKind.NODE_STARTED, role="unit")
    with pytest.raises(AuditLogError, match=r"record seq 1 \(line 1\): it is a record of node "
                                            r"unit-1, in the log of node unit-2"):
        AuditLog.open(log_path, "unit-2")


def test_a_bad_node_id_is_refused(log_path: Path) -> None:
    with pytest.raises(AuditLogError, match=r"node id .* is not 1-64 printable characters"):
        AuditLog.open(log_path, "unit\n1")
    assert not log_path.exists()


def test_one_writer_at_a_time(log: AuditLog, log_path: Path) -> None:
    with pytest.raises(AuditLogError, match="already open for writing"):
        AuditLog.open(log_path, "unit-1")
    log.close()
    AuditLog.open(log_path, "unit-1").close()


def test_a_closed_log_refuses_appends(log: AuditLog) -> None:
    log.close()
    log.close()  # idempotent
    with pytest.raises(AuditLogClosed, match="is closed"):
        log.append(AuditKind.NODE_STOPPED, reason="done")


def test_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "real.log"
    AuditLog.open(target, "unit-1").close()
    link = tmp_path / "link.log"
    link.symlink_to(target)
    with pytest.raises(AuditLogError, match="is a symbolic link"):
        AuditLog.open(link, "unit-1")
    dangling = tmp_path / "dangling.log"
    dangling.symlink_to(tmp_path / "nowhere.log")
    with pytest.raises(AuditLogError, match="is a symbolic link"):
        AuditLog.open(dangling, "unit-1")
    assert not (tmp_path / "nowhere.log").exists()


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "audit.log"
    os.mkfifo(fifo)
    with pytest.raises(AuditLogError, match="is a FIFO"):
        AuditLog.open(fifo, "unit-1")
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # with a reader it opens: still refused
    try:
        with pytest.raises(AuditLogError, match=r"is a FIFO \(named pipe\)"):
            AuditLog.open(fifo, "unit-1")
    finally:
        os.close(reader)


def test_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(AuditLogError, match="is a FIFO or a socket"):
            AuditLog.open(path, "unit-1")


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: None, "folder .* does not exist"),
])
def test_a_directory_or_missing_folder_is_refused(tmp_path: Path, make: Callable[[Path], None],
                                                   reason: str) -> None:
    path = tmp_path / "audit.log"
    make(path)
    target = path if path.exists() else tmp_path / "missing" / "audit.log"
    with pytest.raises(AuditLogError, match=reason):
        AuditLog.open(target, "unit-1")


def test_a_device_is_refused() -> None:
    with pytest.raises(AuditLogError, match="is a character device"):
        AuditLog.open(Path("/dev/null"), "unit-1")


def test_a_log_others_may_change_is_refused(log_path: Path) -> None:
    AuditLog.open(log_path, "unit-1").close()
    log_path.chmod(0o620)
    with pytest.raises(AuditLogError, match=r"mode 0620 lets others change it"):
        AuditLog.open(log_path, "unit-1")


def test_a_failed_write_leaves_the_file_as_it_was(log: AuditLog, log_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    log.append(AuditKind.NODE_STARTED, role="unit")
    before = log_path.read_bytes()
    real_write = os.write
    calls = itertools.count()

    def half_then_full(fd: int, data: bytes) -> int:  # half a line, then a full disk
        if next(calls) == 0:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        log.append(AuditKind.ALERT_RAISED, subject="s1")
    monkeypatch.undo()
    assert log_path.read_bytes() == before
    assert log.count == 1
    third = log.append(AuditKind.ALERT_RAISED, subject="s1")
    assert third.seq == 2
    assert verify_audit_file(log_path).ok


def test_a_write_that_cannot_be_undone_closes_the_log(log: AuditLog, log_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail)
    monkeypatch.setattr(os, "ftruncate", fail)
    with pytest.raises(OSError, match="Input/output error"):
        log.append(AuditKind.NODE_STARTED, role="unit")
    monkeypatch.undo()
    with pytest.raises(AuditLogClosed, match=r"closed after a failed write .*; reopen it"):
        log.append(AuditKind.NODE_STARTED, role="unit")
    with AuditLog.open(log_path, "unit-1") as reopened:  # the whole line was written: kept
        assert reopened.count == 1
        assert parse_record(log_path.read_bytes()[:-1]).seq == 1


def test_appends_from_threads_while_another_thread_reads_the_head(log: AuditLog) -> None:
    stop = threading.Event()
    seen: list[AuditHead] = []

    def watch() -> None:
        while not stop.is_set():
            seen.append(log.head())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        records = [log.append(AuditKind.ALERT_SENT, seq=i) for i in range(30)]
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert seen, "the watcher read no head"
    hashes = {GENESIS_HASH: 0} | {r.hash: r.seq for r in records}
    assert all(hashes[head.hash] == head.count for head in seen)  # never a torn pair


def test_a_group_is_chained_in_order_with_one_fsync_and_a_refused_record_left_out(
        log: AuditLog, log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log.append(AuditKind.NODE_STARTED, role="unit")
    real_fsync = os.fsync
    fsyncs = itertools.count()

    def counted(fd: int) -> None:
        next(fsyncs)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counted)
    results = log.append_all([
        (AuditKind.ALERT_RAISED, {"seq": 1}),
        (AuditKind.ALERT_RAISED, cast("dict[str, FieldValue]", {"crop": b"\xff\xd8"})),  # bytes
        (AuditKind.ALERT_RAISED, {f"k{i}": "x" * 500 for i in range(32)}),  # over 16 KiB
        (AuditKind.ALERT_SENT, {"seq": 1, "acknowledged": True}),
    ])
    assert next(fsyncs) == 1  # the group's one fsync
    monkeypatch.undo()
    assert [type(result).__name__ for result in results] == [
        "AuditRecord", "AuditFieldError", "AuditFieldError", "AuditRecord"]
    assert "'crop'" in str(results[1])
    written = lines(log_path)
    assert [(row["seq"], row["kind"]) for row in written] == [
        (1, "node_started"), (2, "alert_raised"), (3, "alert_sent")]
    assert written[2]["prev"] == written[1]["hash"]
    assert log.head() == AuditHead(3, str(written[2]["hash"]))
    assert verify_audit_file(log_path).ok


def test_a_group_that_fails_to_write_leaves_the_file_as_it_was(
        log: AuditLog, log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log.append(AuditKind.NODE_STARTED, role="unit")
    before = log_path.read_bytes()
    real_write = os.write
    calls = itertools.count()

    def part_then_full(fd: int, data: bytes) -> int:  # a record and a half, then a full disk
        if next(calls) == 0:
            return real_write(fd, bytes(data[: len(data) * 3 // 4]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", part_then_full)
    with pytest.raises(OSError, match="No space left"):
        log.append_all([(AuditKind.ALERT_RAISED, {"seq": n}) for n in range(2)])
    monkeypatch.undo()
    assert log_path.read_bytes() == before
    assert log.count == 1
    assert [r.seq for r in log.append_all([(AuditKind.ALERT_RAISED, {"seq": 0})])
            if not isinstance(r, AuditFieldError)] == [2]
    assert verify_audit_file(log_path).ok


def test_a_group_over_the_limit_is_refused_whole(log: AuditLog, log_path: Path) -> None:
    with pytest.raises(ValueError, match="257 records in one group"):
        log.append_all([(AuditKind.ALERT_RAISED, {"seq": n}) for n in range(257)])
    assert log_path.read_bytes() == b""
