"""``AlertFeed``: every live view gets the notices in order; a view that does not read loses
its oldest and knows it; the feed never waits; views are bounded."""

from __future__ import annotations

import pytest

from actors.van.receiver import AlertNotice
from console.alert_feed import AlertFeed, AlertFeedConfig, FeedFull


def notice(seq: int) -> AlertNotice:
    return AlertNotice("unit-1", seq, "door", "subject-a", 0.7, 0.6, 1_800_000_000.0)


async def test_each_view_gets_every_notice_in_order() -> None:
    feed = AlertFeed()
    first, second = feed.subscribe(), feed.subscribe()
    for seq in (1, 2, 3):
        feed.publish(notice(seq))
    for view in (first, second):
        got = [await view.next(1.0) for _ in range(3)]
        assert [n.seq for n in got if n is not None] == [1, 2, 3]
        assert await view.next(0.01) is None  # nothing more: a keep-alive is due
    first.close()
    feed.publish(notice(4))
    assert feed.subscribers == 1
    assert (await second.next(1.0)) == notice(4)


async def test_a_view_that_does_not_read_loses_its_oldest_and_knows_it() -> None:
    feed = AlertFeed(AlertFeedConfig(queue_size=2))
    view = feed.subscribe()
    for seq in range(1, 6):
        feed.publish(notice(seq))  # never waits
    assert view.missed == 3
    assert [(await view.next(1.0)).seq for _ in range(2)] == [4, 5]  # type: ignore[union-attr]


def test_live_views_are_bounded() -> None:
    feed = AlertFeed(AlertFeedConfig(max_subscribers=2))
    views = [feed.subscribe(), feed.subscribe()]
    with pytest.raises(FeedFull, match="at most 2"):
        feed.subscribe()
    views[0].close()
    views[0].close()  # twice is fine
    feed.subscribe()
