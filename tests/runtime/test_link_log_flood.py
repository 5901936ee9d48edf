"""An authenticated peer cannot flood the log: every line it can cause, message after message,
goes through a ``LogBudget`` (20 lines per 10 s, then one summary), and every event is still
counted exactly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime import LinkConfig, LinkDown, LinkKeys, MailboxConfig, MailboxPolicy
from runtime.link import Link
from runtime.link_handshake import NONCE_BYTES
from runtime.link_messages import Hello, RemoteAsk, RemoteReply, RemoteTell
from tests.runtime.link_harness import Linked, RawPeer, linked
from tests.runtime.link_support import (
    SERVICE_ACCEPTS,
    TEST_KEY,
    Add,
    Fail,
    GetTotal,
    Hold,
    Service,
    Total,
)

BUDGET = 20
"""Lines per window of every budget (``log_budget.LOG_LINES_PER_WINDOW``)."""
SUMMARY = "more warnings were not logged"


async def _connect(pair: Linked) -> tuple[RawPeer, Link]:
    """A fresh authenticated peer named ``raw`` and the server's link to it."""
    raw = await RawPeer.connect(pair.path)
    async with asyncio.timeout(5):
        while "raw" not in pair.server.links:  # noqa: ASYNC110 - no event for a new link
            await asyncio.sleep(0.002)
    return raw, pair.server.links["raw"]


async def _flood(raw: RawPeer, frame: bytes, count: int) -> None:
    """Send ``frame`` ``count`` times, then wait until the server has dispatched them all."""
    for _ in range(count):
        await raw.channel.write_frame(frame)
    # Frames are dispatched in order and svc's mailbox is FIFO: once this is answered, every
    # frame before it has been handled.
    await raw.send(RemoteAsk(1, "svc", GetTotal(), 30.0))
    assert await raw.receive() == RemoteReply(1, Total(0))


async def _close(pair: Linked, raw: RawPeer) -> None:
    """Close the peer and wait for the server to see the link go (its budget's summary)."""
    await raw.close()
    while not isinstance(await pair.server_events.get(), LinkDown):
        pass


def _lines(caplog: pytest.LogCaptureFixture, marker: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if marker in r.getMessage()]


FLOODS: dict[str, tuple[Callable[[RawPeer], bytes], str, str]] = {
    # kind: (one frame of it, the Link counter, what its log line says)
    "undecodable": (lambda raw: b"\xc1\xc1", "undecodable_frames", "undecodable frame"),
    "unknown actor": (lambda raw: raw.codec.encode(RemoteTell("nobody", Add(1))),
                      "refused_messages", "tell dropped: no actor named 'nobody'"),
    "refused class": (lambda raw: raw.codec.encode(RemoteTell("svc", Total(1))),
                      "refused_messages", "does not accept Total from peers"),
    "runtime frame": (lambda raw: raw.codec.encode(Hello("x", 2, bytes(NONCE_BYTES))),
                      "refused_messages", "unexpected Hello frame refused"),
}


@pytest.mark.parametrize("kind", FLOODS)
async def test_a_flood_of_bad_frames_logs_a_bounded_number_of_lines(
        kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make, counter, marker = FLOODS[kind]
    sent = 3000
    async with linked("unix", tmp_path) as pair:
        with caplog.at_level(logging.WARNING, logger="lfr.runtime"):
            raw, link = await _connect(pair)
            await _flood(raw, make(raw), sent)
            assert getattr(link, counter) == sent  # every one counted
            assert len(_lines(caplog, marker)) == BUDGET  # ... not every one logged
            await _close(pair, raw)
        assert _lines(caplog, SUMMARY) == [
            f"link to raw: {sent - BUDGET} {SUMMARY} (at most {BUDGET} per 10 s)"]
        assert link.undecodable_frames + link.refused_messages == sent  # and nothing else


async def test_a_flood_of_failing_tells_logs_a_bounded_number_of_lines(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sent = 500
    async with linked("unix", tmp_path) as pair:
        with caplog.at_level(logging.WARNING, logger="lfr.runtime"):
            raw, _ = await _connect(pair)
            await _flood(raw, raw.codec.encode(RemoteTell("svc", Fail("no"))), sent)
            svc = next(c for c in pair.server_system.cells() if c.name == "svc")
            assert svc.metrics.remote_failures == sent
            assert len(_lines(caplog, "a tell from a peer failed")) == BUDGET
            await _close(pair, raw)
    # The actor's budget sums up when the actor stops.
    assert _lines(caplog, SUMMARY) == [
        f"actor svc: {sent - BUDGET} {SUMMARY} (at most {BUDGET} per 10 s)"]


async def test_a_flood_of_undeliverable_tells_logs_a_bounded_number_of_lines(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Tells to an actor whose mailbox refuses them (full, ``REJECT``)."""
    config = LinkConfig(LinkKeys.shared(TEST_KEY),
                        exposed={"svc": SERVICE_ACCEPTS, "held": SERVICE_ACCEPTS})
    sent = 500
    async with linked("unix", tmp_path, server_config=config) as pair:
        entered, release = asyncio.Event(), asyncio.Event()
        await pair.server_system.spawn(
            "held", lambda: Service(entered=entered, release=release),
            MailboxConfig(capacity=1, policy=MailboxPolicy.REJECT))
        try:
            with caplog.at_level(logging.WARNING, logger="lfr.runtime"):
                raw, link = await _connect(pair)
                await raw.send(RemoteTell("held", Hold()))
                async with asyncio.timeout(5):
                    await entered.wait()
                # The first fills the mailbox; each one after it is refused.
                await _flood(raw, raw.codec.encode(RemoteTell("held", Add(1))), sent + 1)
                assert link.undelivered_tells == sent
                assert len(_lines(caplog, "tell to 'held' not delivered")) == BUDGET
                await _close(pair, raw)
            assert _lines(caplog, SUMMARY) == [
                f"link to raw: {sent - BUDGET} {SUMMARY} (at most {BUDGET} per 10 s)"]
        finally:
            release.set()
