"""``runtime.service_notify``: sd_notify datagrams to a real AF_UNIX socket, bad sockets and
environments handled without raising, and ``$WATCHDOG_USEC`` read as sd_watchdog_enabled does."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.service_notify import (
    MAX_DATAGRAM_BYTES,
    MAX_VALUE_CHARS,
    ServiceNotifier,
    WatchdogTimeout,
    socket_address,
    watchdog_timeout,
)

RECEIVE_TIMEOUT_S = 10.0


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's notify socket (bound at ``tmp_path/notify``)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(RECEIVE_TIMEOUT_S)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    """The next datagram's lines."""
    return sock.recv(65536).decode("utf-8").split("\n")


def nothing_waiting(sock: socket.socket) -> bool:
    """No datagram is queued (everything the notifier sent was received before)."""
    sock.settimeout(0.0)
    try:
        sock.recv(65536)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(RECEIVE_TIMEOUT_S)
    return False


def test_ready_watchdog_status_and_stopping_reach_the_socket(
        manager: socket.socket, tmp_path: Path) -> None:
    notifier = ServiceNotifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert notifier.enabled
    assert notifier.problem is None
    assert notifier.ready("running: 2 cameras")
    assert received(manager) == ["READY=1", "STATUS=running: 2 cameras"]
    assert notifier.watchdog()
    assert received(manager) == ["WATCHDOG=1"]
    assert notifier.status("waiting for a watchlist")
    assert received(manager) == ["STATUS=waiting for a watchlist"]
    assert notifier.stopping()
    assert received(manager) == ["STOPPING=1"]
    assert notifier.statistics.sent == 4
    assert notifier.statistics.failed == 0


def test_an_abstract_socket_name_is_reached_with_its_leading_nul() -> None:
    name = f"lfr-notify-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(RECEIVE_TIMEOUT_S)
        notifier = ServiceNotifier.from_environment({"NOTIFY_SOCKET": f"@{name}"})
        assert notifier.watchdog()
        assert received(sock) == ["WATCHDOG=1"]


def test_a_status_text_stays_one_line_and_cannot_add_a_key(
        manager: socket.socket, tmp_path: Path) -> None:
    notifier = ServiceNotifier(socket_address(str(tmp_path / "notify")))
    assert notifier.status("camera gate\nREADY=1\x1b[2J")
    lines = received(manager)
    assert len(lines) == 1
    assert lines[0].startswith("STATUS=camera gate\\nREADY=1\\x1b")
    assert notifier.status("x" * 10_000)
    (line,) = received(manager)
    assert len(line) < len("STATUS=") + MAX_VALUE_CHARS + 64  # cut, with a note of the cut


def test_a_message_over_the_datagram_bound_is_refused_before_sending(
        manager: socket.socket, tmp_path: Path) -> None:
    notifier = ServiceNotifier(socket_address(str(tmp_path / "notify")))
    fields = [("STATUS", "y" * MAX_VALUE_CHARS)] * (MAX_DATAGRAM_BYTES // MAX_VALUE_CHARS + 1)
    assert not notifier.send(fields)
    assert notifier.statistics.refused == 1
    assert nothing_waiting(manager)


def test_a_key_that_is_not_a_name_is_a_programming_error(tmp_path: Path) -> None:
    notifier = ServiceNotifier(socket_address(str(tmp_path / "notify")))
    with pytest.raises(ValueError, match="not an sd_notify key"):
        notifier.send([("READY=1\nWATCHDOG", "1")])


def test_without_notify_socket_nothing_is_sent_and_nothing_is_said(
        caplog: pytest.LogCaptureFixture) -> None:
    notifier = ServiceNotifier.from_environment({})
    assert not notifier.enabled
    assert notifier.problem is None
    assert not notifier.ready("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert notifier.statistics.sent == notifier.statistics.failed == 0
    assert caplog.records == []


BAD_VALUES = {
    "empty": ("", "it is empty"),
    "relative": ("run/notify", "not an absolute path nor an @abstract name"),
    "vsock": ("vsock:2:9999", "not an absolute path nor an @abstract name"),
    "an empty abstract name": ("@", "an abstract socket name is empty"),
    "too long": ("/" + "x" * 200, "longer than 107 bytes"),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_a_notify_socket_that_names_no_socket_disables_the_notifier_with_its_reason(
        case: str, caplog: pytest.LogCaptureFixture) -> None:
    value, reason = BAD_VALUES[case]
    notifier = ServiceNotifier.from_environment({"NOTIFY_SOCKET": value})
    assert not notifier.enabled
    assert notifier.problem is not None
    assert notifier.problem.endswith(reason)
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert [record.levelno for record in caplog.records] == [logging.WARNING]


def _stream_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()
    return sock


@pytest.mark.parametrize("target", ["missing", "a regular file", "a stream socket"])
def test_a_socket_that_cannot_take_the_datagram_is_a_counted_failure(
        target: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "notify"
    stream = None
    if target == "a regular file":
        path.write_text("")
    elif target == "a stream socket":
        stream = _stream_socket(path)
    try:
        notifier = ServiceNotifier.from_environment({"NOTIFY_SOCKET": str(path)})
        assert notifier.enabled
        for _ in range(50):
            assert not notifier.watchdog()
    finally:
        if stream is not None:
            stream.close()
    assert notifier.statistics.failed == 50
    assert notifier.statistics.sent == 0
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert "cannot notify the service manager" in warnings[0].getMessage()
    assert len(warnings) <= 21  # a LogBudget: 20 lines a window, then one summary


def test_a_manager_that_reads_nothing_never_blocks_the_sender(
        manager: socket.socket, tmp_path: Path) -> None:
    notifier = ServiceNotifier(socket_address(str(tmp_path / "notify")))
    # The kernel queues a bounded number of datagrams (net.unix.max_dgram_qlen); past it a
    # send fails at once instead of waiting for the reader.
    for _ in range(2000):
        notifier.watchdog()
    assert notifier.statistics.sent >= 1
    assert notifier.statistics.failed >= 1
    assert notifier.statistics.sent + notifier.statistics.failed == 2000


# -- WATCHDOG_USEC and WATCHDOG_PID --------------------------------------------------------------


def test_the_watchdog_timeout_is_read_from_watchdog_usec() -> None:
    assert watchdog_timeout({}) is None
    timeout = watchdog_timeout({"WATCHDOG_USEC": "30000000"})
    assert timeout == WatchdogTimeout(30.0)
    assert timeout.ping_interval_s == 15.0
    own = {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_timeout(own) == WatchdogTimeout(0.2)


def test_a_watchdog_for_another_process_is_not_this_ones() -> None:
    assert watchdog_timeout({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=4242) is None
    assert watchdog_timeout({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"},
                            pid=4242) == WatchdogTimeout(30.0)


@pytest.mark.parametrize("environ", [
    {"WATCHDOG_USEC": "thirty"}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "-5"},
    {"WATCHDOG_USEC": "\u00b2"}, {"WATCHDOG_USEC": ""},
    {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"},
])
def test_a_bad_watchdog_setting_is_logged_and_read_as_none(
        environ: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    assert watchdog_timeout(environ) is None
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
