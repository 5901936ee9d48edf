"""Where a node listens: a Unix socket only its user can use, gone when the node stops; TCP on
loopback only (links are not encrypted yet)."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from guards.config_checks import ConfigError
from runtime import ActorSystem, SystemConfig, connect_tcp, serve_tcp, serve_unix
from runtime.link_addresses import bind_private_unix_socket
from tests.runtime.link_harness import linked, socket_path
from tests.runtime.link_support import service_link_config


def _exists(path: str) -> bool:
    return os.path.lexists(path)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would leave a socket open to everyone if the server relied on it."""
    previous = os.umask(0)
    yield
    os.umask(previous)


@pytest.mark.usefixtures("open_umask")
async def test_the_unix_socket_is_private_and_removed_on_stop(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    async with ActorSystem(SystemConfig(name="server")) as system:
        server = await serve_unix(system, path, service_link_config())
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        await server.stop()
        assert not _exists(path)


async def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)  # left behind by a node that died: bound, nobody listening
    stale.close()
    async with ActorSystem(SystemConfig(name="server")) as system:
        server = await serve_unix(system, path, service_link_config())
        await server.stop()


async def test_a_live_socket_or_another_file_is_not_replaced(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    async with linked("unix", tmp_path) as pair, ActorSystem(SystemConfig(name="2nd")) as system:
        with pytest.raises(ConfigError, match="another process is listening on it"):
            await serve_unix(system, path, service_link_config())
        assert await pair.client.wait_connected()  # the first server still owns it
    other = tmp_path / "notes.txt"
    other.write_text("precious")
    async with ActorSystem(SystemConfig(name="server")) as system:
        with pytest.raises(ConfigError, match="exists and is not a socket; refusing to replace"):
            await serve_unix(system, str(other), service_link_config())
    assert other.read_text() == "precious"


async def test_stop_leaves_a_later_nodes_socket_alone(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    async with ActorSystem(SystemConfig(name="server")) as system:
        first = await serve_unix(system, path, service_link_config())
        os.unlink(path)  # an operator removed it and another node took the path
        later = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        later.bind(path)
        await first.stop()
        assert _exists(path)
        later.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "192.168.1.20", "localhost", "example.com",
                                  "127.0.0.1\nCRITICAL"])
async def test_tcp_is_refused_off_loopback(host: str) -> None:
    async with ActorSystem(SystemConfig(name="server")) as system:
        with pytest.raises(ConfigError) as served:
            await serve_tcp(system, host, 0, service_link_config())
        with pytest.raises(ConfigError) as dialled:
            connect_tcp(system, host, 9, service_link_config())
    for caught in (served, dialled):
        assert str(caught.value).startswith(
            "TCP links use loopback IP addresses only (127.0.0.1, ::1) until they are encrypted")
        assert "\n" not in str(caught.value)


async def test_tcp_on_loopback_works(tmp_path: Path) -> None:
    async with linked("tcp", tmp_path) as pair:
        assert sorted(pair.server.links) == ["client"]


def test_a_unix_socket_path_too_long_for_the_kernel_is_refused_naming_it(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    with pytest.raises(ConfigError, match="at most 107"):
        bind_private_unix_socket(str(deep / "control.sock"))
    assert not (deep / "control.sock").exists()
