"""The second process of the transport benchmark: serves a counting actor on a Unix socket.

Run as ``python -m bench.runtime_peer SOCKET_PATH KEY_FILE``; prints ``ready`` once listening
and exits when its standard input closes. Peers must prove the key in ``KEY_FILE``; only
``counter`` is exposed, to ``Ping`` and ``CountQuery``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from bench.runtime_messages import Count, CountQuery, Ping
from runtime.actor import Actor
from runtime.link_config import LinkConfig
from runtime.link_endpoints import serve_unix
from runtime.link_keys import LinkKeys
from runtime.mailbox import MailboxConfig
from runtime.node import run
from runtime.system import ActorSystem, SystemConfig


class Counter(Actor[Ping | CountQuery]):
    """Counts pings; answers ``CountQuery`` with the count."""

    def __init__(self) -> None:
        self.count = 0

    async def receive(self, message: Ping | CountQuery) -> Any:
        if isinstance(message, Ping):
            self.count += 1
            return None
        return Count(self.count)


async def serve(system: ActorSystem) -> int:
    """Serve ``counter`` until standard input closes."""
    await system.spawn("counter", Counter, MailboxConfig(capacity=4096))
    config = LinkConfig(LinkKeys.from_file(sys.argv[2]), exposed={"counter": (Ping, CountQuery)})
    server = await serve_unix(system, sys.argv[1], config)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(run(serve, SystemConfig(name="bench-peer")))
