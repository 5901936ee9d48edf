"""``LinkConfig.routes``: one exposed name reaching a local actor of another name (the van's
fixed "receiver" reaching each unit's own receiver), without making the local name reachable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from guards.config_checks import ConfigError
from runtime import LinkConfig, LinkKeys, RemoteError
from runtime.link_messages import RemoteAsk, RemoteFailure, RemoteTell
from tests.runtime.helpers import settle
from tests.runtime.link_harness import Linked, RawPeer, linked
from tests.runtime.link_support import (
    SERVICE_ACCEPTS,
    TEST_KEY,
    Add,
    GetTotal,
    Ping,
    Pong,
    Service,
    Total,
    service_link_config,
)

ROUTED = "receiver.client"
"""The local actor the server's exposed name ``receiver`` routes to."""


def routed_config(**exposed: Any) -> LinkConfig:
    """The server's: ``svc`` as usual, ``receiver`` routed to ``ROUTED`` (accepting ``Ping``,
    ``Add`` and ``GetTotal`` only), plus ``exposed``."""
    return LinkConfig(LinkKeys.shared(TEST_KEY),
                      exposed={"svc": SERVICE_ACCEPTS, "receiver": (Ping, Add, GetTotal),
                               **exposed},
                      routes={"receiver": ROUTED})


@asynccontextmanager
async def routed_pair(tmp_path: Path, config: LinkConfig | None = None,
                      spawn_routed: bool = True) -> AsyncIterator[Linked]:
    async with linked("unix", tmp_path, server_config=config or routed_config(),
                      client_config=service_link_config()) as pair:
        if spawn_routed:
            await pair.server_system.spawn(ROUTED, Service)
        yield pair


async def test_an_ask_to_the_exposed_name_reaches_the_routed_actor(tmp_path: Path) -> None:
    async with routed_pair(tmp_path) as pair:
        receiver = pair.client.ref("receiver")
        pong = await receiver.ask(Ping("routed"))
        assert isinstance(pong, Pong)
        assert pong.text == "routed"
        await receiver.tell(Add(7))
        assert await receiver.ask(GetTotal()) == Total(7)
        # It was the routed actor that counted, not "svc".
        routed = pair.server_system.lookup(ROUTED)
        assert routed is not None
        assert await routed.ask(GetTotal()) == Total(7)
        assert await pair.client.ref("svc").ask(GetTotal()) == Total(0)
        assert pair.server.links["client"].refused_messages == 0


async def test_the_routed_to_name_is_not_reachable_directly(tmp_path: Path) -> None:
    async with routed_pair(tmp_path) as pair:
        direct = pair.client.ref(ROUTED)
        with pytest.raises(RemoteError) as caught:
            await direct.ask(Ping("direct"))
        assert caught.value.error_type == "ActorNotFound"
        # Exactly what a missing actor looks like.
        with pytest.raises(RemoteError) as missing:
            await pair.client.ref("ghost").ask(Ping("?"))
        assert (caught.value.remote_message.replace(ROUTED, "ghost")
                == missing.value.remote_message)
        await direct.tell(Add(1))
        assert await pair.client.ref("receiver").ask(GetTotal()) == Total(0)  # tell dropped
        assert pair.server.links["client"].refused_messages == 3


async def test_the_routed_to_name_is_reachable_when_exposed_itself(tmp_path: Path) -> None:
    async with routed_pair(tmp_path, routed_config(**{ROUTED: (GetTotal,)})) as pair:
        await pair.client.ref("receiver").tell(Add(3))
        # Both names reach one actor, each with its own classes.
        assert await pair.client.ref(ROUTED).ask(GetTotal()) == Total(3)
        with pytest.raises(RemoteError, match="does not accept Ping"):
            await pair.client.ref(ROUTED).ask(Ping("not listed for this name"))


async def test_the_exposed_names_classes_apply_to_the_routed_actor(tmp_path: Path) -> None:
    """``Service`` would handle ``Hold``; the route exposes only Ping, Add and GetTotal."""
    async with routed_pair(tmp_path) as pair:
        raw = await RawPeer.connect(pair.path)
        await raw.send(RemoteAsk(1, "receiver", Total(1), 5.0))
        assert await raw.receive() == RemoteFailure(
            1, "MessageRefused", "actor 'receiver' does not accept Total from peers")
        await raw.send(RemoteTell("receiver", Total(1)))
        await raw.send(RemoteAsk(2, "receiver", GetTotal(), 5.0))
        answer = await raw.receive()
        assert answer.payload == Total(0)
        await settle()
        assert pair.server.links["raw"].refused_messages == 2
        await raw.close()


async def test_a_route_to_a_missing_actor_looks_missing(tmp_path: Path) -> None:
    """The peer's answer names the exposed name, never the local one it routes to."""
    async with routed_pair(tmp_path, spawn_routed=False) as pair:
        with pytest.raises(RemoteError) as caught:
            await pair.client.ref("receiver").ask(Ping("anyone?"))
        assert caught.value.error_type == "ActorNotFound"
        assert caught.value.remote_message == "no actor named 'receiver' on 'server'"
        assert ROUTED not in str(caught.value)


def test_a_route_key_that_is_not_exposed_is_refused() -> None:
    with pytest.raises(ConfigError, match="'receiver' is not an exposed name"):
        LinkConfig(LinkKeys.shared(TEST_KEY), exposed={"svc": SERVICE_ACCEPTS},
                   routes={"receiver": ROUTED})


@pytest.mark.parametrize("target", ["", None, 3])
def test_a_route_must_name_a_local_actor(target: Any) -> None:
    with pytest.raises(ConfigError, match=r"routes\['svc'\] must name a local actor"):
        LinkConfig(LinkKeys.shared(TEST_KEY), exposed={"svc": SERVICE_ACCEPTS},
                   routes={"svc": target})


def test_routes_are_frozen_when_made() -> None:
    routes = {"receiver": ROUTED}
    config = LinkConfig(LinkKeys.shared(TEST_KEY), exposed={"receiver": (Ping,)}, routes=routes)
    routes["receiver"] = "svc"  # the caller's dict changes; the config does not
    assert config.local_name("receiver") == ROUTED
    assert config.local_name("svc") == "svc"  # not routed: the name itself
    with pytest.raises(TypeError):
        config.routes["receiver"] = "svc"  # type: ignore[index]
