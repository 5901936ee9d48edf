"""``VanDialer``: keeps one link from the unit to its van over WebRTC, redialling for ever.

One attempt: a ``DataOnlyPeerConnection`` (the configured ICE servers only), the link's data
channel (``create_link_channel``), signed signaling (``negotiate``: it returns this connection's
fresh 32-byte link key, sealed to the van inside the signed offer), the channel open within
``open_timeout_s``, then the link handshake as initiator with that key under the van's node id
(``open_link``), with heartbeats both ways. The link then runs until it ends: the van went away,
its heartbeats stopped, or a user of the link dropped it (``drop``: the uplink does so when the
van answers nonsense or stops answering).

Every way an attempt can fail (a ``SignalingFailed`` reason, a refused handshake, a channel that
does not open, any aiortc error) ends in the same place: the peer connection is closed (always:
nothing leaks per attempt), one line is logged, and the dialer sleeps with exponential backoff and
full jitter before the next attempt: the n-th failure in a row waits ``uniform(0, min(max_backoff_s,
initial_backoff_s * 2**(n-1)))``; a link that stayed up ``stable_s`` resets the count, so a van
that comes back after a long link is redialled at once. A link that ends early counts as a
failure. Jitter keeps a van's units from redialling in step after the van restarts.

Known library race (aioice 0.13): a peer connection closed in the instant its ICE checks complete
(``stop`` or a timeout at that moment) may leave aioice's consent-check task sleeping for ever;
it holds no socket and sends nothing (tests/actors/unit/test_van_dialer.py shows it).

The dialer is the uplink's ``LinkSource``: ``current``, ``wait_link`` and ``drop``. Its counters
(``attempts``, ``failures``, ``last_error``, ``connected``) are for health reports and logs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from actors.unit import signaling_client
from actors.unit.signaling_client import SignalingClientConfig, SignalingFailed
from guards.config_checks import ConfigError, require_positive
from guards.log_text import printable
from runtime.codec import Codec
from runtime.datachannel import (
    DATA_CHANNEL_MAX_MESSAGE_BYTES,
    DataChannelFrameChannel,
    DataChannelLimits,
    DataOnlyPeerConnection,
    create_link_channel,
    open_link,
)
from runtime.link import Link
from runtime.link_config import LinkConfig
from runtime.link_handshake import HandshakeRefused
from runtime.link_keys import MIN_KEY_BYTES, LinkKeys
from runtime.log_budget import LogBudget
from runtime.system import ActorSystem
from secure.node_keys import NodeKeys, NodeRole

log = logging.getLogger("lfr.unit.dialer")

Negotiate = Callable[[NodeKeys, SignalingClientConfig, DataOnlyPeerConnection],
                     Awaitable[bytes | None]]
"""Signaling for one peer connection: returns the link key (``signaling_client.negotiate``)."""

LINK_KEY_SOURCE: Final = "signaling"
"""How link keys from signaling are named in messages (never the key itself)."""
_MAX_DOUBLINGS: Final = 62
"""The backoff ceiling stops doubling here (it is capped by ``max_backoff_s`` long before)."""


@dataclass(frozen=True, slots=True)
class DialerConfig:
    """How often and how patiently the unit dials its van."""

    initial_backoff_s: float = 0.5
    """The first failure in a row waits up to this long (s) before the next attempt."""
    max_backoff_s: float = 30.0
    """No wait is longer than this (s), however many failures in a row."""
    stable_s: float = 30.0
    """A link that stayed up this long (s) resets the failure count."""
    open_timeout_s: float = 15.0
    """Seconds for the data channel to open once signaling is done (ICE, DTLS, SCTP)."""
    signaling_timeout_s: float = 60.0
    """Seconds for the whole of signaling; its own steps have shorter timeouts (together 35 s
    by default: ``SignalingClientConfig``), this is the last guard."""
    handshake_timeout_s: float = 5.0
    """Seconds for the link handshake over the open channel (``LinkConfig``)."""
    heartbeat_interval_s: float = 5.0
    """The link sends a heartbeat when it sent nothing for this long (s) (``LinkConfig``)."""
    heartbeat_timeout_s: float = 15.0
    """A link on which nothing arrived for this long (s) is closed as dead (``LinkConfig``);
    must exceed ``heartbeat_interval_s``."""
    data_channel: DataChannelLimits = field(default_factory=DataChannelLimits)
    """Queue, write and close bounds of the data channel; its ``close_timeout_s`` also bounds
    closing a peer connection whose channel never came (so ``stop`` ends within twice it)."""

    def __post_init__(self) -> None:
        for name in ("initial_backoff_s", "max_backoff_s", "stable_s", "open_timeout_s",
                     "signaling_timeout_s", "handshake_timeout_s", "heartbeat_interval_s",
                     "heartbeat_timeout_s"):
            require_positive(f"DialerConfig.{name}", getattr(self, name))
        if self.max_backoff_s < self.initial_backoff_s:
            raise ConfigError(f"DialerConfig.max_backoff_s ({self.max_backoff_s:g}) must be at "
                              f"least initial_backoff_s ({self.initial_backoff_s:g})")
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ConfigError(f"DialerConfig.heartbeat_timeout_s ({self.heartbeat_timeout_s:g}) "
                              "must exceed heartbeat_interval_s "
                              f"({self.heartbeat_interval_s:g})")
        if not isinstance(self.data_channel, DataChannelLimits):
            raise ConfigError("DialerConfig.data_channel must be DataChannelLimits")

    def backoff_ceiling_s(self, failures: int) -> float:
        """The longest wait after ``failures`` failures in a row (at least 1)."""
        doublings = min(max(failures, 1) - 1, _MAX_DOUBLINGS)
        return min(self.max_backoff_s, self.initial_backoff_s * 2.0**doublings)


class VanDialer:
    """Keeps the unit linked to its van (module docstring); the uplink's ``LinkSource``."""

    def __init__(self, system: ActorSystem, unit: NodeKeys, signaling: SignalingClientConfig,
                 codec: Codec, config: DialerConfig | None = None, *,
                 exposed: Mapping[str, Collection[type[Any]]] | None = None,
                 rng: random.Random | None = None,
                 negotiate: Negotiate = signaling_client.negotiate,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``exposed``: the unit's actors the van may reach over the link (none by default).
        ``rng`` draws the jitter; ``negotiate`` and ``clock`` (monotonic s) are for tests."""
        if unit.role is not NodeRole.UNIT:
            raise ValueError(f"a van dialer dials as a unit, not a {unit.role.value}")
        if system.name != unit.node_id:
            raise ValueError(f"the actor system is named {printable(system.name)}, the unit "
                             f"{printable(unit.node_id)}: the van knows the link by the unit's "
                             "node id")
        self._system = system
        self._unit = unit
        self._signaling = signaling
        self._codec = codec
        self.config = config or DialerConfig()
        self._exposed = dict(exposed or {})
        self._rng = rng or random.Random(secrets.randbits(64))  # noqa: S311 - jitter, not a secret
        self._negotiate = negotiate
        self._clock = clock
        self.van_id = signaling.van.node_id
        """The van's node id: the link's peer name."""
        # A bad allow-list fails here, not at every attempt: a throwaway key only builds the
        # config for the check, nothing is ever authenticated with it.
        self._link_config(secrets.token_bytes(MIN_KEY_BYTES)).check_registered(codec.registry)
        self.attempts = 0
        """Connection attempts started."""
        self.failures = 0
        """Failures in a row (attempts that failed, links that ended before ``stable_s``)."""
        self.last_error: str | None = None
        """Why the last attempt failed or the last link ended (printable), None before."""
        self.links = 0
        """Links that came up."""
        # The link that is up, or None; set only while its run is awaited, cleared by drop.
        self._link: Link | None = None
        self._link_up = asyncio.Event()
        self._dropped = asyncio.Event()
        self._drop_reason: str | None = None
        self._task: asyncio.Task[None] | None = None
        # Failure lines quote the van's refusals: the van decides how many there are.
        self._log = LogBudget(log, "van dialer")

    # -- LinkSource ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """A link to the van is up now."""
        return self.current() is not None

    def current(self) -> Link | None:
        """The link that is up now, or None."""
        link = self._link
        return link if link is not None and not link.closed else None

    async def wait_link(self, timeout_s: float) -> Link:
        """The link once one is up; ``TimeoutError`` after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while (link := self.current()) is None:
                self._link_up.clear()
                await self._link_up.wait()
        return link

    def drop(self, link: Link, reason: str) -> None:
        """Close ``link`` if it is the current one (``reason`` is logged); the dialer redials."""
        if link is self._link and not self._dropped.is_set():
            self._link = None
            self._drop_reason = reason
            self._dropped.set()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start dialling (one task, owned here)."""
        if self._task is None:
            self._task = asyncio.create_task(self._dial_loop(), name="van dialer")

    async def stop(self) -> None:
        """Stop dialling; closes the link and the peer connection (within twice the data
        channel's ``close_timeout_s``)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._log.flush()

    # -- dialling ------------------------------------------------------------------------------

    async def _dial_loop(self) -> None:
        while True:
            self.attempts += 1
            up_s: float | None = None
            try:
                reason, up_s = await self._attempt()
            except SignalingFailed as exc:
                reason = f"signaling failed ({exc.reason}): {exc}"
            except HandshakeRefused as exc:
                reason = f"the link handshake was refused: {exc}"
            except Exception as exc:  # noqa: BLE001 - supervision boundary: aiortc and the
                # network fail in many ways (ConnectionError, OSError, ValueError from an SDP,
                # ...): each one ends in a redial, never in a dead dialer
                reason = f"{type(exc).__name__}: {exc}"
            if up_s is not None and up_s >= self.config.stable_s:
                self.failures = 0
            self.failures += 1
            self.last_error = printable(reason)
            delay = self._rng.uniform(0.0, self.config.backoff_ceiling_s(self.failures))
            if up_s is None:
                self._log.warning("cannot link to van %s: %s; redialling in %.1f s",
                                  printable(self.van_id), self.last_error, delay)
            else:
                self._log.warning("van link down: %s; redialling in %.1f s", self.last_error,
                                  delay)
            await asyncio.sleep(delay)

    async def _attempt(self) -> tuple[str, float]:
        """One connection; returns why its link ended and how long it was up (s). Raises when
        no link came up. The peer connection is closed whatever happens."""
        peer_connection = DataOnlyPeerConnection(self._signaling.ice_servers)
        channel: DataChannelFrameChannel | None = None
        try:
            channel = create_link_channel(peer_connection, DATA_CHANNEL_MAX_MESSAGE_BYTES,
                                          self.config.data_channel)
            link_key = await self._signal(peer_connection)
            await channel.wait_open(self.config.open_timeout_s)
            link = await open_link(self._system, channel, self._link_config(link_key),
                                   self._codec, initiator=True)
            return await self._run(link, channel)
        finally:
            await self._close(peer_connection, channel)

    async def _signal(self, peer_connection: DataOnlyPeerConnection) -> bytes:
        """Signaling within ``signaling_timeout_s``; the link key it returned."""
        try:
            async with asyncio.timeout(self.config.signaling_timeout_s):
                link_key = await self._negotiate(self._unit, self._signaling, peer_connection)
        except TimeoutError:
            raise ConnectionError(f"signaling took over {self.config.signaling_timeout_s:g} s") \
                from None
        if not isinstance(link_key, bytes) or len(link_key) < MIN_KEY_BYTES:
            raise ConnectionError("signaling returned no link key (a van or signaling client "
                                  "without per-connection link keys)")
        return link_key

    def _link_config(self, link_key: bytes) -> LinkConfig:
        config = self.config
        return LinkConfig(keys=LinkKeys({self.van_id: link_key}, None, LINK_KEY_SOURCE),
                          exposed=self._exposed, handshake_timeout_s=config.handshake_timeout_s,
                          heartbeat_interval_s=config.heartbeat_interval_s,
                          heartbeat_timeout_s=config.heartbeat_timeout_s)

    async def _run(self, link: Link, channel: DataChannelFrameChannel) -> tuple[str, float]:
        """Offer ``link`` until it ends or is dropped; why it ended and for how long it ran.
        Unbounded on purpose: a link lives as long as it works, and its heartbeats end it
        within ``heartbeat_timeout_s`` once the van falls silent."""
        started = self._clock()
        self._dropped.clear()
        self._drop_reason = None
        self._link = link
        self.links += 1
        self._link_up.set()
        log.info("van link up (van %s)", printable(self.van_id))
        run = asyncio.create_task(link.run(), name=f"link {self.van_id}")
        dropped = asyncio.create_task(self._dropped.wait(), name="van link drop")
        try:
            await asyncio.wait({run, dropped}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():  # dropped: closing the channel ends the run at once
                await channel.close()
            reason = await run
        finally:
            self._link = None
            for task in (run, dropped):
                task.cancel()
            await asyncio.gather(run, dropped, return_exceptions=True)
        return self._drop_reason or reason, self._clock() - started

    async def _close(self, peer_connection: DataOnlyPeerConnection,
                     channel: DataChannelFrameChannel | None) -> None:
        """Close the channel and the peer connection, each within ``close_timeout_s``, also when
        ``stop`` cancels this: an aiortc close cut short leaves its transports running, and
        every later close of that peer connection waiting for the first."""
        closing = asyncio.ensure_future(self._close_now(peer_connection, channel))
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            await asyncio.wait({closing})  # bounded by the close timeouts
            raise

    async def _close_now(self, peer_connection: DataOnlyPeerConnection,
                         channel: DataChannelFrameChannel | None) -> None:
        timeout_s = self.config.data_channel.close_timeout_s
        try:
            if channel is not None:
                await channel.close()  # closes the peer connection too, both bounded
            else:
                async with asyncio.timeout(timeout_s):
                    await peer_connection.close()
        except TimeoutError:
            log.warning("the peer connection to van %s did not close within %g s",
                        printable(self.van_id), timeout_s)
        except asyncio.CancelledError:
            # Nobody cancels this task (it is shielded): aiortc re-raises the cancellation of
            # an earlier close of the same peer connection. It is as closed as it will get.
            log.warning("the peer connection to van %s: an earlier close was cut short",
                        printable(self.van_id))
        except Exception:  # supervision boundary: a close that fails must not end the dialer
            log.exception("closing the peer connection to van %s failed",
                          printable(self.van_id))
