"""A node in a process of its own for the cross-process link test.

``python -m tests.runtime.peer_node SOCKET_PATH`` serves a ``Service`` actor named ``svc`` on a
Unix socket, prints ``ready`` and runs until SIGTERM (exit code 0).
"""

from __future__ import annotations

import asyncio
import sys

from runtime import ActorSystem, SystemConfig, run, serve_unix
from tests.runtime.link_support import Service


async def main(system: ActorSystem) -> int:
    await system.spawn("svc", Service)
    server = await serve_unix(system, sys.argv[1])
    print("ready", flush=True)  # the parent test waits for this line
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main, SystemConfig(name="peer")))
