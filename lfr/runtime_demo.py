"""``lfr demo`` until the recognition pipeline lands: a small actor pipeline printing what flows.

ticker -> squarer -> printer, under one supervisor. The squarer fails on every 7th number to show
supervision: it is restarted after a short backoff, its queued messages survive the restart, and
the printer keeps running. At the end the demo prints each actor's metrics.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from runtime.actor import Actor
from runtime.mailbox import MailboxConfig, MailboxPolicy
from runtime.message import message
from runtime.node import run
from runtime.ref import ActorRef
from runtime.supervisor import Backoff, Strategy, SupervisorConfig
from runtime.system import ActorSystem, SystemConfig


@message(950)
@dataclass(frozen=True, slots=True)
class Number:
    """A number flowing down the demo pipeline."""

    value: int
    """The number."""


@message(951)
@dataclass(frozen=True, slots=True)
class Square:
    """A number and its square."""

    value: int
    """The input number."""
    square: int
    """``value`` squared."""


class Printer(Actor[Square]):
    """Prints every result it receives."""

    async def receive(self, message: Square) -> None:
        print(f"  printer  <- Square({message.value}^2 = {message.square})", flush=True)


class Squarer(Actor[Number]):
    """Squares numbers; fails on multiples of 7 to show a supervised restart."""

    def __init__(self, printer: ActorRef[Square]) -> None:
        self.printer = printer

    async def on_start(self) -> None:
        print(f"  {self.context.name}  started", flush=True)

    async def receive(self, message: Number) -> None:
        if message.value % 7 == 0:
            print(f"  squarer  !! fails on {message.value}", flush=True)
            raise ValueError(f"the demo squarer refuses {message.value}")
        await self.printer.tell(Square(message.value, message.value * message.value))


async def _demo(system: ActorSystem, count: int, interval_s: float) -> int:
    pipeline = await system.spawn_supervisor(
        "pipeline",
        SupervisorConfig(strategy=Strategy.ONE_FOR_ONE, max_restarts=10, within_s=60,
                         backoff=Backoff(initial_s=0.05, max_s=0.5)),
    )
    # Consumers start before producers, so a stop (newest first) drains producers first.
    printer = await pipeline.spawn("printer", Printer, MailboxConfig(capacity=16))
    squarer = await pipeline.spawn("squarer", lambda: Squarer(printer),
                                   MailboxConfig(capacity=4, policy=MailboxPolicy.BLOCK))
    for value in range(1, count + 1):
        print(f"ticker   -> Number({value})", flush=True)
        await squarer.tell(Number(value))
        await asyncio.sleep(interval_s)
    await asyncio.sleep(0.3)
    print("\nmetrics (Prometheus text exposition, excerpt):")
    for line in system.metrics_text().splitlines():
        if line.startswith(("lfr_actor_messages_processed_total{", "lfr_actor_restarts_total{",
                            "lfr_mailbox_peak_depth{")):
            print(f"  {line}")
    return 0


def run_demo(count: int = 20, interval_s: float = 0.1) -> int:
    """Run the demo pipeline and return the process exit code."""
    return run(lambda system: _demo(system, count, interval_s), SystemConfig(name="demo"))
