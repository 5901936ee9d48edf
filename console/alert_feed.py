"""``AlertFeed``: stored alerts fanned out, as they arrive, to the console's open live views.

The van node publishes each newly stored alert (its ``AlertNotice``: metadata, never the crop);
every browser tab showing live alerts holds a ``Subscription`` and receives them in order. Each
subscription's queue is bounded (``queue_size``): a tab that does not read (a laptop asleep)
loses its oldest notices and is told so (``missed`` grows; the page then reloads its list from
the store), and the feed never waits for it. At most ``max_subscribers`` at once; one more is
refused (``FeedFull``), so no number of tabs can grow the van's memory without bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from actors.van.receiver import AlertNotice
from guards.config_checks import require_at_least


class FeedFull(Exception):
    """``max_subscribers`` live views are open already."""


@dataclass(frozen=True, slots=True)
class AlertFeedConfig:
    """Bounds of the live alert feed."""

    queue_size: int = 256
    """Notices one subscription holds unread; one more drops the oldest (counted in
    ``missed``)."""
    max_subscribers: int = 32
    """Live views open at once."""

    def __post_init__(self) -> None:
        require_at_least("AlertFeedConfig.queue_size", self.queue_size, 1)
        require_at_least("AlertFeedConfig.max_subscribers", self.max_subscribers, 1)


class Subscription:
    """One live view's notices, in order; ``close`` it when the view goes."""

    def __init__(self, feed: AlertFeed, size: int) -> None:
        self._feed = feed
        self._queue: deque[AlertNotice] = deque(maxlen=size)
        self._ready = asyncio.Event()
        self.missed = 0
        """Notices dropped because this view did not read them in time."""

    def _put(self, notice: AlertNotice) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.missed += 1
        self._queue.append(notice)
        self._ready.set()

    async def next(self, timeout_s: float) -> AlertNotice | None:
        """The next notice, or None after ``timeout_s`` without one (for keep-alives)."""
        if not self._queue:
            self._ready.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
            except TimeoutError:
                return None
        return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        """Stop receiving (idempotent)."""
        self._feed._subscriptions.discard(self)


class AlertFeed:
    """Fans notices out to subscriptions (module docstring). Event loop only."""

    def __init__(self, config: AlertFeedConfig | None = None) -> None:
        self.config = config or AlertFeedConfig()
        self._subscriptions: set[Subscription] = set()
        self.published = 0
        """Notices published since the van started."""

    def publish(self, notice: AlertNotice) -> None:
        """Give ``notice`` to every open subscription; never waits."""
        self.published += 1
        for subscription in self._subscriptions:
            subscription._put(notice)

    def subscribe(self) -> Subscription:
        """A new subscription; ``FeedFull`` when ``max_subscribers`` are open."""
        if len(self._subscriptions) >= self.config.max_subscribers:
            raise FeedFull(f"{len(self._subscriptions)} live views are open (at most "
                           f"{self.config.max_subscribers})")
        subscription = Subscription(self, self.config.queue_size)
        self._subscriptions.add(subscription)
        return subscription

    @property
    def subscribers(self) -> int:
        """Subscriptions open now."""
        return len(self._subscriptions)
