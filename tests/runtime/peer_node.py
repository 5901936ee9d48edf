"""A node in a process of its own for the cross-process link test.

``python -m tests.runtime.peer_node SOCKET_PATH KEY_FILE`` serves a ``Service`` actor named
``svc`` on a Unix socket to peers proving the key in ``KEY_FILE``, prints ``ready`` and runs
until SIGTERM (exit code 143).
"""

from __future__ import annotations

import asyncio
import sys

from runtime import ActorSystem, LinkKeys, SystemConfig, run, serve_unix
from tests.runtime.link_support import Service, service_link_config


async def main(system: ActorSystem) -> int:
    await system.spawn("svc", Service)
    config = service_link_config(LinkKeys.from_file(sys.argv[2]))
    server = await serve_unix(system, sys.argv[1], config)
    print("ready", flush=True)  # the parent test waits for this line
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main, SystemConfig(name="peer")))
