"""The van's control socket: how ``lfr van deployment ...`` and ``lfr watchlist push|purge|status``
reach a running ``lfr van``.

The van listens on a Unix socket in its state folder (``control.sock``, mode 0600) with a link
key of its own (``control.key``, 0600, made on the van's first start): whoever may read the
van's state folder may command it, nobody else. The link exposes the ``control`` actor with the
``actors.van.control_messages`` asks only. A command runs as its own small node: it links to the
socket, asks once, prints the answer and ends (``ask`` bounded by ``timeout_s``).

Exit codes of the commands: 0 done; 2 when the van refuses (with its reason: a signed watchlist
refused says why, a unit not enrolled is named) or no van answers on the socket (named).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from actors.van.control_messages import CONTROL_ACTOR, CONTROL_ASKS
from guards.log_text import printable
from guards.user_input import UserInputError
from runtime.codec import Codec
from runtime.errors import AskTimeout, LinkLost, RemoteError
from runtime.link_config import LinkConfig
from runtime.link_endpoints import LinkServer, connect_unix, serve_unix
from runtime.link_keys import KeyFileError, LinkKeys, write_shared_key_file
from runtime.node import run
from runtime.system import ActorSystem, SystemConfig

MAX_CONTROL_FRAME_BYTES: Final = 80 * 1024 * 1024
"""A push carries a signed watchlist of up to 64 MiB; the socket is local and keyed."""
CONNECT_TIMEOUT_S: Final = 5.0
"""How long a command waits for the van's socket to answer."""
DEFAULT_TIMEOUT_S: Final = 60.0
"""How long a command waits for the van's answer (a push verifies and stores megabytes)."""


class VanUnreachable(UserInputError):
    """No van answers on the control socket."""


def control_keys(key_file: Path, *, create: bool) -> LinkKeys:
    """The control socket's key; made (0600) when ``create`` and absent."""
    if create and not key_file.exists():
        write_shared_key_file(key_file)
    try:
        return LinkKeys.from_file(key_file)
    except KeyFileError as exc:
        raise UserInputError(f"the van's control key: {exc}") from None


def control_codec() -> Codec:
    """The control link's codec: its messages may carry a whole signed watchlist."""
    return Codec(max_message_bytes=MAX_CONTROL_FRAME_BYTES)


def server_config(keys: LinkKeys) -> LinkConfig:
    """The van's side of the control socket."""
    return LinkConfig(keys=keys, exposed={CONTROL_ACTOR: CONTROL_ASKS}, max_links=4,
                      max_frame_bytes=MAX_CONTROL_FRAME_BYTES, max_ask_timeout_s=120.0)


async def serve_control(system: ActorSystem, socket_path: Path, key_file: Path) -> LinkServer:
    """Listen for commands on ``socket_path`` (the ``control`` actor must be spawned)."""
    keys = control_keys(key_file, create=True)
    return await serve_unix(system, os.fspath(socket_path), server_config(keys),
                            codec=control_codec())


def ask_van(socket_path: Path, key_file: Path, messages: Sequence[Any], *,
            timeout_s: float = DEFAULT_TIMEOUT_S,
            show: Callable[[list[Any]], int]) -> int:
    """Ask the running van each of ``messages`` in turn (over one link) and hand the answers
    to ``show`` (which prints them and returns the exit code). ``UserInputError`` with the
    van's reason when it refuses one (the later ones are not sent)."""
    refused: list[UserInputError] = []

    async def asked(system: ActorSystem) -> int:
        try:
            return show(await ask_running_van(system, socket_path, key_file, messages,
                                              timeout_s=timeout_s))
        except UserInputError as exc:  # reported by the command line like any bad input
            refused.append(exc)
            return 0
    code = run(asked, SystemConfig(name="lfr-command"), use_uvloop=False)
    if refused:
        raise refused[0]
    return code


async def ask_running_van(system: ActorSystem, socket_path: Path, key_file: Path,
                          messages: Sequence[Any], *,
                          timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Any]:
    """From a running actor system: ask the van each of ``messages`` in turn over one link;
    the answers. ``UserInputError`` with the van's reason when it refuses one (the later ones
    are not sent), ``VanUnreachable`` when no van answers."""
    if not await asyncio.to_thread(socket_path.exists):
        raise VanUnreachable(f"no van runs with this state folder: {printable(socket_path)} "
                             "does not exist (start it with lfr van --config van.toml)")
    keys = await asyncio.to_thread(control_keys, key_file, create=False)
    config = LinkConfig(keys=keys, max_frame_bytes=MAX_CONTROL_FRAME_BYTES)
    client = connect_unix(system, os.fspath(socket_path), config, codec=control_codec())
    try:
        try:
            await client.wait_connected(CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise VanUnreachable(f"the van does not answer on {printable(socket_path)} within "
                                 f"{CONNECT_TIMEOUT_S:g} s (is lfr van running?)") from None
        answers = []
        for message in messages:
            try:
                answers.append(await client.ref(CONTROL_ACTOR).ask(message, timeout=timeout_s))
            except RemoteError as exc:
                raise UserInputError("the van refused: "
                                     f"{printable(exc.remote_message, max_chars=2000)}"
                                     ) from None
            except (AskTimeout, LinkLost) as exc:
                raise VanUnreachable(f"the van did not answer: {printable(exc)}") from None
        return answers
    finally:
        await client.stop()
