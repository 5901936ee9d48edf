"""Bounded mailboxes: the three overflow policies and the statistics they keep."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runtime import (
    ActorStopped,
    ActorSystem,
    MailboxConfig,
    MailboxFull,
    MailboxPolicy,
    MessageDropped,
)
from runtime.envelope import Envelope
from runtime.mailbox import Mailbox
from tests.runtime.helpers import WAIT_S, Gate, GatedRecorder, Inbox, eventually, settle


def _tell(message: Any) -> Envelope:
    return Envelope(message, None)


async def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MailboxConfig(capacity=0)


async def test_block_waits_for_room_then_delivers(system: ActorSystem) -> None:
    inbox, gate = Inbox(), Gate()
    ref = await system.spawn("slow", lambda: GatedRecorder(inbox, gate),
                             MailboxConfig(capacity=2, policy=MailboxPolicy.BLOCK))
    await ref.tell(0)
    assert await inbox.get() == 0  # the actor is inside receive(0); the mailbox is empty
    await ref.tell(1)
    await ref.tell(2)  # now full
    sender = asyncio.create_task(ref.tell(3))
    await settle()
    assert not sender.done(), "a full BLOCK mailbox must hold the sender back"
    stats = ref.statistics()
    assert stats.depth == 2
    assert stats.waiting_senders == 1
    gate.open()  # the actor takes message 1: room for the waiting sender
    await asyncio.wait_for(sender, WAIT_S)
    await eventually(lambda: inbox.items == [0, 1, 2, 3])
    stats = ref.statistics()
    assert (stats.received, stats.dropped, stats.rejected, stats.waiting_senders) == (4, 0, 0, 0)
    assert stats.peak_depth == 2


async def test_block_tell_nowait_on_full_mailbox_raises_mailbox_full(system: ActorSystem) -> None:
    inbox, gate = Inbox(), Gate()
    ref = await system.spawn("slow", lambda: GatedRecorder(inbox, gate),
                             MailboxConfig(capacity=1, policy=MailboxPolicy.BLOCK))
    ref.tell_nowait(0)
    await inbox.get()
    ref.tell_nowait(1)
    with pytest.raises(MailboxFull) as caught:
        ref.tell_nowait(2)
    assert (caught.value.actor, caught.value.capacity) == ("slow", 1)
    assert ref.statistics().rejected == 1
    gate.open()
    await eventually(lambda: inbox.items == [0, 1])


async def test_cancelled_sender_in_line_gives_up_its_place() -> None:
    mailbox = Mailbox("m", MailboxConfig(capacity=1, policy=MailboxPolicy.BLOCK))
    mailbox.put_nowait(_tell("queued"))
    first = asyncio.create_task(mailbox.put(_tell("first")))
    second = asyncio.create_task(mailbox.put(_tell("second")))
    await settle()
    assert mailbox.statistics().waiting_senders == 2
    first.cancel()
    await settle()
    assert mailbox.statistics().waiting_senders == 1
    taken = await mailbox.get()
    assert taken is not None
    assert taken.message == "queued"
    await asyncio.wait_for(second, WAIT_S)
    assert first.cancelled()
    rest = await mailbox.get()
    assert rest is not None
    assert rest.message == "second"


async def test_sender_cancelled_after_its_wakeup_passes_the_wakeup_on() -> None:
    mailbox = Mailbox("m", MailboxConfig(capacity=1, policy=MailboxPolicy.BLOCK))
    mailbox.put_nowait(_tell("queued"))
    first = asyncio.create_task(mailbox.put(_tell("first")))
    second = asyncio.create_task(mailbox.put(_tell("second")))
    await settle()
    # ``get`` wakes ``first`` (FIFO), but ``first`` is cancelled before it can use the room.
    await mailbox.get()
    first.cancel()
    # Without passing the wake-up on, ``second`` would wait forever although there is room.
    await asyncio.wait_for(second, WAIT_S)
    assert first.cancelled()
    assert [e.message for e in mailbox.take_all()] == ["second"]


async def test_closing_wakes_waiting_senders_with_actor_stopped() -> None:
    mailbox = Mailbox("m", MailboxConfig(capacity=1, policy=MailboxPolicy.BLOCK))
    mailbox.put_nowait(_tell("queued"))
    sender = asyncio.create_task(mailbox.put(_tell("late")))
    await settle()
    mailbox.close()
    with pytest.raises(ActorStopped, match="'m'"):
        await asyncio.wait_for(sender, WAIT_S)
    # Queued messages stay for draining; then the consumer sees the end.
    queued = await mailbox.get()
    assert queued is not None
    assert queued.message == "queued"
    assert await mailbox.get() is None


async def test_drop_oldest_keeps_newest_and_fails_dropped_ask(system: ActorSystem) -> None:
    inbox, gate = Inbox(), Gate()
    ref = await system.spawn("latest", lambda: GatedRecorder(inbox, gate),
                             MailboxConfig(capacity=3, policy=MailboxPolicy.DROP_OLDEST))
    await ref.tell(0)
    assert await inbox.get() == 0  # held inside receive(0)
    asked = asyncio.create_task(ref.ask("question"))
    await eventually(lambda: ref.statistics().depth == 1)
    async with asyncio.timeout(WAIT_S):  # DROP_OLDEST never makes a sender wait
        for i in range(1, 6):
            await ref.tell(i)
    with pytest.raises(MessageDropped) as caught:
        await asyncio.wait_for(asked, WAIT_S)
    assert caught.value.actor == "latest"
    stats = ref.statistics()
    assert stats.depth == 3
    assert stats.peak_depth == 3
    assert stats.received == 7  # 0, the ask, 1..5
    assert stats.dropped == 3  # the ask, 1 and 2
    assert stats.rejected == 0
    gate.open()
    await eventually(lambda: len(inbox.items) == 4)
    assert inbox.items == [0, 3, 4, 5]


async def test_reject_raises_mailbox_full_at_sender(system: ActorSystem) -> None:
    inbox, gate = Inbox(), Gate()
    ref = await system.spawn("strict", lambda: GatedRecorder(inbox, gate),
                             MailboxConfig(capacity=2, policy=MailboxPolicy.REJECT))
    await ref.tell(0)
    await inbox.get()
    await ref.tell(1)
    await ref.tell(2)
    with pytest.raises(MailboxFull, match="'strict' is full"):
        await ref.tell(3)
    with pytest.raises(MailboxFull):
        await ref.ask(4)
    stats = ref.statistics()
    assert (stats.depth, stats.received, stats.rejected, stats.dropped) == (2, 3, 2, 0)
    gate.open()
    await eventually(lambda: inbox.items == [0, 1, 2])
    await ref.tell(5)  # room again
    await eventually(lambda: inbox.items == [0, 1, 2, 5])
    stats = ref.statistics()
    assert (stats.depth, stats.peak_depth, stats.received, stats.rejected) == (0, 2, 4, 2)


async def test_statistics_of_a_raw_mailbox() -> None:
    mailbox = Mailbox("m", MailboxConfig(capacity=2, policy=MailboxPolicy.DROP_OLDEST))
    for i in range(5):
        mailbox.put_nowait(_tell(i))
    stats = mailbox.statistics()
    assert (stats.capacity, stats.depth, stats.peak_depth) == (2, 2, 2)
    assert (stats.received, stats.dropped, stats.rejected, stats.waiting_senders) == (5, 3, 0, 0)
    assert len(mailbox) == 2
    assert [e.message for e in mailbox.take_all()] == [3, 4]
    assert mailbox.statistics().depth == 0
    assert mailbox.statistics().peak_depth == 2
