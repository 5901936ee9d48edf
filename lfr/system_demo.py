"""``lfr demo`` / ``make demo``: the whole system on this machine, with one command.

What it starts, each a separate process, as a force would run them (everything real: keys,
signed signaling, WebRTC, sealing, the signed watchlist path, the audit trails):

1. a local deployment in a temporary folder (``lfr.local_deployment``): the watchlist
   authority's, the van's and ``units`` units' keys, the van's TLS certificate, the configs;
   each unit's camera is the sample clip (``demo/short_hamilton_clip.mp4``) played at its frame
   rate, looping, as a live camera would deliver it. The van's config names the demo
   authority's signing key (``[authority] signing_key``), so ``demo-supervisor`` can build a
   watchlist from a folder of photos on the console's Watchlist page, sign it there and push
   it. A real deployment keeps the authority's key off the van and signs elsewhere
   (docs/THREAT_MODEL.md);
2. the console's demo accounts, with one-time passwords printed once: ``demo-operator``
   (decides alerts) and ``demo-supervisor`` (also the watchlist pages);
3. ``lfr van --print-alerts``, then a deployment (``demo``), the sample watchlist built from
   ``demo/watchlist_photos`` and signed by the demo authority, pushed with the reference
   photos through the van's control socket, as ``lfr watchlist push --photos`` does;
4. ``lfr edge`` for each unit. The console's address is printed; each alert the van stores is
   printed as one line as it arrives.

Ctrl-C (or SIGTERM) stops everything cleanly: the deployment is ended (every unit is told to
purge its watchlist and says so), the units and the van stop, and the temporary folder with all
keys and stores is deleted. The child processes run in their own session, so the terminal's
Ctrl-C reaches only this command, which stops them in that order. Every wait is bounded; a child
that does not stop in time is killed. Nothing outside ``demo/`` is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from actors.signed_watchlist import sign_watchlist
from actors.unit.watchlist import Watchlist
from actors.van.control_messages import (
    EndDeployment,
    GetWatchlistStatus,
    PushWatchlist,
    StartDeployment,
    WatchlistStatus,
)
from console.users import Role, UserStore
from guards.exit_codes import ExitCode
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.config.van import load_van_config
from lfr.deployment_commands import photo_batches
from lfr.local_deployment import CameraPlan, LocalDeployment, create_local_deployment
from lfr.photo_faces import PhotoFaces
from lfr.reference_photos import reference_photos
from lfr.van_control import ask_running_van
from lfr.watchlist_build import build_watchlist
from runtime.node import run
from runtime.system import ActorSystem, SystemConfig
from secure.key_files import read_node_keys

DEMO_DIR: Final = Path(__file__).resolve().parent.parent / "demo"
DEPLOYMENT_ID: Final = "demo"
THRESHOLD: Final = 0.6
START_TIMEOUT_S: Final = 120.0
"""How long the van may take to listen (it loads nothing heavy: seconds)."""
STOP_TIMEOUT_S: Final = 20.0
"""How long each child gets to stop after SIGTERM before it is killed."""
PURGE_WAIT_S: Final = 15.0
"""How long the demo waits, at its end, for the units to say they purged their watchlist."""
MAX_UNITS: Final = 8
VAN_LINES_KEPT: Final = 50
"""The van's last output lines kept, to say why it ended if it does."""
Ask = Callable[..., Awaitable[list[object]]]
"""Asks the running van (``lfr.van_control.ask_running_van``) the messages given."""


class Child:
    """One child process whose output lines are read on the event loop, in its own session."""

    def __init__(self, name: str, process: asyncio.subprocess.Process,
                 on_line: Callable[[str, str], None]) -> None:
        self.name = name
        self.process = process
        self._on_line = on_line
        self._readers = [asyncio.create_task(self._read(stream, kind), name=f"{name}:{kind}")
                         for stream, kind in ((process.stdout, "stdout"),
                                              (process.stderr, "stderr"))
                         if stream is not None]

    @classmethod
    async def start(cls, name: str, args: list[str],
                    on_line: Callable[[str, str], None]) -> Child:
        """Start ``python -m lfr ARGS`` as ``name``."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lfr", *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return cls(name, process, on_line)

    async def _read(self, stream: asyncio.StreamReader, kind: str) -> None:
        while line := await stream.readline():
            self._on_line(kind, line.decode("utf-8", "replace").rstrip("\n"))

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``; its exit code."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await self.process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return self.process.returncode


def run_system_demo(units: int = 1, demo_dir: Path = DEMO_DIR) -> int:
    """``lfr demo``: see the module docstring. Exit 130/143 when stopped by a signal."""
    if not 1 <= units <= MAX_UNITS:
        raise UserInputError(f"--units must be 1-{MAX_UNITS}, got {units}")
    clip, photos = demo_dir / "short_hamilton_clip.mp4", demo_dir / "watchlist_photos"
    if not clip.is_file() or not photos.is_dir():
        raise UserInputError(f"{printable(demo_dir)}: the demo files are missing (see NOTICE)")
    with tempfile.TemporaryDirectory(prefix="lfr-demo-") as tmp:
        root = Path(tmp)
        say("building the sample watchlist from demo/watchlist_photos ...")
        watchlist, _report = build_watchlist(photos, PhotoFaces(), progress=False)
        made = create_local_deployment(root / "deployment", units=units,
                                       cameras=[CameraPlan("door", clip, paced=True,
                                                           loop=True)],
                                       authority_key_on_van=True)
        accounts = _demo_accounts(made)
        return run(lambda system: _serve(system, made, watchlist, photos, accounts),
                   SystemConfig(name="lfr-demo"))


def _demo_accounts(made: LocalDeployment) -> dict[str, str]:
    """The demo's console accounts and their one-time passwords."""
    passwords = {"demo-operator": secrets.token_urlsafe(12),
                 "demo-supervisor": secrets.token_urlsafe(12)}
    state_dir = load_van_config(made.van_config).state_dir
    users = UserStore.open(state_dir)
    try:
        users.add("demo-operator", Role.OPERATOR, passwords["demo-operator"])
        users.add("demo-supervisor", Role.SUPERVISOR, passwords["demo-supervisor"])
    finally:
        users.close()
    return passwords


def say(text: str) -> None:
    """One line for the person running the demo (stderr: stdout carries the alerts)."""
    print(f"demo: {text}", file=sys.stderr, flush=True)


async def _serve(system: ActorSystem, made: LocalDeployment, watchlist: Watchlist,
                 photos: Path, accounts: dict[str, str]) -> int:
    config = load_van_config(made.van_config)
    listening = asyncio.Event()
    children: list[Child] = []

    van_said: deque[str] = deque(maxlen=VAN_LINES_KEPT)

    def van_line(kind: str, line: str) -> None:
        van_said.append(line)
        if kind == "stdout" and line.startswith("{"):
            alert = json.loads(line)
            print(f"ALERT unit {alert['unit']} camera {alert['camera']}: {alert['subject']} "
                  f"(score {alert['score']:.3f}, threshold {alert['threshold']:.3f})",
                  flush=True)
        elif kind == "stdout":
            if " listening on " in line:
                listening.set()
            say(f"van: {line}")

    async def ask(*messages: object) -> list[object]:
        answers: list[object] = await ask_running_van(system, config.control_socket,
                                                      config.control_key, list(messages))
        return answers

    try:
        children.append(await Child.start("van", ["van", "--config", str(made.van_config),
                                                  "--print-alerts"], van_line))
        await _started(children[0], listening, van_said)
        await _deploy(made, watchlist, photos, ask)
        for index, unit_config in enumerate(made.unit_configs):
            children.append(await Child.start(made.unit_ids[index],
                                              ["edge", "--config", str(unit_config)],
                                              lambda _kind, _line: None))
        say(f"console: {made.console_url}  (sign in as demo-operator, password "
            f"{accounts['demo-operator']}; or demo-supervisor, password "
            f"{accounts['demo-supervisor']}: these accounts die with the demo)")
        say("the demo authority's signing key is on this van (never on a real one): "
            "demo-supervisor can build a watchlist from a folder of photos (e.g. "
            "demo/watchlist_photos) on the console's Watchlist page, sign it and push it")
        say(f"{len(made.unit_ids)} unit(s) scan the sample clip, looping; alerts appear below "
            "and in the console. Ctrl-C ends the deployment and stops everything.")
        await _watch(children)
        return ExitCode.OK
    finally:
        await _stop(children, made, ask)


async def _started(van: Child, listening: asyncio.Event, van_said: deque[str]) -> None:
    """Wait until the van listens; ``UserInputError`` with its last words if it ends first or
    takes longer than ``START_TIMEOUT_S``."""
    ended = asyncio.create_task(van.process.wait())
    ready = asyncio.create_task(listening.wait())
    try:
        await asyncio.wait({ended, ready}, timeout=START_TIMEOUT_S,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (ended, ready):
            task.cancel()
        await asyncio.gather(ended, ready, return_exceptions=True)
    if not listening.is_set():
        last = "; ".join(printable(line) for line in list(van_said)[-5:])
        raise UserInputError(f"the demo's van did not start (exit {van.process.returncode}): "
                             f"{last}")


async def _deploy(made: LocalDeployment, watchlist: Watchlist, photos: Path,
                  ask: Ask) -> None:
    """Start the deployment and push the signed sample watchlist with its reference photos."""
    authority = await asyncio.to_thread(read_node_keys, made.authority_signing_key)
    signed = await asyncio.to_thread(lambda: sign_watchlist(
        watchlist, authority=authority, deployment_id=DEPLOYMENT_ID, version=1,
        not_after=time.time() + 24 * 3600))
    pictures = await asyncio.to_thread(reference_photos, photos, watchlist.subjects)
    await ask(StartDeployment(DEPLOYMENT_ID, THRESHOLD))
    await ask(*photo_batches(DEPLOYMENT_ID, pictures.photos), PushWatchlist(signed, ()))
    say(f"deployment {DEPLOYMENT_ID} started; watchlist version 1 ({len(watchlist.subjects)} "
        f"subjects, {len(pictures.photos)} reference photos) signed by the demo authority and "
        "pushed to every unit")


async def _watch(children: list[Child]) -> None:
    """Until a signal cancels it: a child that ends by itself ends the demo (with its name)."""
    ended = await asyncio.wait([asyncio.create_task(child.process.wait())
                                for child in children], return_when=asyncio.FIRST_COMPLETED)
    for task in ended[1]:
        task.cancel()
    gone = [child.name for child in children if child.process.returncode is not None]
    raise UserInputError(f"the demo's {', '.join(gone)} stopped by itself; see its messages "
                         "above")


async def _stop(children: list[Child], made: LocalDeployment, ask: Ask) -> None:
    """End the deployment (units purge), then stop the units and the van; all bounded."""
    van = next((child for child in children if child.name == "van"), None)
    if van is not None and van.process.returncode is None:
        with contextlib.suppress(UserInputError, TimeoutError):
            async with asyncio.timeout(PURGE_WAIT_S):
                await ask(EndDeployment())
                say(f"deployment {DEPLOYMENT_ID} ended: every unit is told to purge its "
                    "watchlist")
                # Polled: the units' reports reach the van's board, which has no event for it.
                while not await _all_purged(made, ask):  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
                say("every unit has purged its watchlist")
    for child in reversed(children):  # the units, then the van
        code = await child.stop()
        say(f"{child.name} stopped (exit {code})")


async def _all_purged(made: LocalDeployment, ask: Ask) -> bool:
    (status,) = await ask(GetWatchlistStatus())
    assert isinstance(status, WatchlistStatus)
    states = {row.unit_id: row.state for row in status.units}
    return all(states.get(unit) in ("purged", "none") for unit in made.unit_ids)
