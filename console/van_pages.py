"""The console's pages for a running van: each page module's routes, in navigation order.

A page module exports ``routes(sources: ConsoleSources) -> list[PageRoute]``; this module lists
them, so ``lfr.van_node`` builds the console with every page and nothing else. The alerts and
report pages also take the van's ``ReviewStore`` (the officers' decisions), which the van node
opens; the Watchlist page its ``WatchlistBuilder`` (builds from uploaded photos), which the
van node owns and stops.
"""

from __future__ import annotations

from actors.van.review_store import ReviewStore
from console import alerts_page, audit_page, report_page, units_page, watchlist_page
from console.app import PageRoute
from console.sources import ConsoleSources
from console.watchlist_build_job import WatchlistBuilder


def van_pages(sources: ConsoleSources, reviews: ReviewStore,
              builder: WatchlistBuilder | None = None) -> list[PageRoute]:
    """Every page's routes for the van described by ``sources``; ``reviews`` holds the
    officers' decisions on alerts; ``builder`` (None: no build section) builds watchlists
    from photos."""
    return [
        *alerts_page.routes(sources, reviews),
        *units_page.routes(sources),
        *watchlist_page.routes(sources, builder=builder),
        *report_page.routes(sources, reviews),
        *audit_page.routes(sources),
    ]
