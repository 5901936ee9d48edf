"""Messages, the service actor and the link configuration of the transport tests (also used
by ``peer_node``).

The transport speaks through the default registry (its own envelopes live there), so these
messages are registered there too, under codes far from any application's.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from runtime import Actor, LinkConfig, LinkKeys, message


@message(31001)
@dataclass(frozen=True, slots=True)
class Ping:
    text: str


@message(31002)
@dataclass(frozen=True, slots=True)
class Pong:
    text: str
    pid: int
    """The process that answered."""


@message(31003)
@dataclass(frozen=True, slots=True)
class Add:
    amount: int


@message(31004)
@dataclass(frozen=True, slots=True)
class GetTotal:
    pass


@message(31005)
@dataclass(frozen=True, slots=True)
class Total:
    value: int


@message(31006)
@dataclass(frozen=True, slots=True)
class Fail:
    reason: str


@message(31007)
@dataclass(frozen=True, slots=True)
class Hold:
    """Handled only once the service's ``release`` event is set."""


@message(31008)
@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    pixels: NDArray[np.uint8]


@message(31009)
@dataclass(frozen=True, slots=True)
class FrameSum:
    seq: int
    total: int
    shape: tuple[int, ...]


@message(31010)
@dataclass(frozen=True, slots=True)
class Unanswerable:
    """``Service`` answers this with a plain int, which cannot cross a link."""


class Service(Actor[Any]):
    """Keeps a running total; answers pings; fails asks on request; holds on ``Hold``."""

    def __init__(self, *, entered: asyncio.Event | None = None,
                 release: asyncio.Event | None = None) -> None:
        self.total = 0
        self.entered = entered or asyncio.Event()
        self.release = release or asyncio.Event()

    async def receive(self, message: Any) -> Any:
        match message:
            case Ping(text):
                return Pong(text, os.getpid())
            case Add(amount):
                self.total += amount
            case GetTotal():
                return Total(self.total)
            case Fail(reason):
                raise ValueError(reason)
            case Hold():
                self.entered.set()
                await self.release.wait()
            case Frame(seq, pixels):
                return FrameSum(seq, int(pixels.sum()), pixels.shape)
            case Unanswerable():
                return 42
            case _:
                raise TypeError(f"unexpected {message!r}")
        return None


SERVICE_ACCEPTS: tuple[type[Any], ...] = (Ping, Add, GetTotal, Fail, Hold, Frame, Unanswerable)
"""What a peer may send a ``Service`` (``Pong``, ``Total`` and ``FrameSum`` are answers only)."""
TEST_KEY = bytes(range(32))
"""The shared key of in-process tests (key files are tested in ``test_link_keys``)."""


def service_link_config(keys: LinkKeys | None = None, **limits: Any) -> LinkConfig:
    """Links exposing ``svc`` and ``csvc`` (each a ``Service``), with ``limits`` overridden."""
    return LinkConfig(keys or LinkKeys.shared(TEST_KEY),
                      exposed={"svc": SERVICE_ACCEPTS, "csvc": SERVICE_ACCEPTS}, **limits)
