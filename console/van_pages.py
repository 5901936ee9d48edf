"""The console's pages for a running van: each page module's routes, in navigation order.

A page module exports ``routes(sources: ConsoleSources) -> list[PageRoute]``; this module lists
them, so ``lfr.van_node`` builds the console with every page and nothing else.
"""

from __future__ import annotations

from console import audit_page, units_page, watchlist_page
from console.app import PageRoute
from console.sources import ConsoleSources


def van_pages(sources: ConsoleSources) -> list[PageRoute]:
    """Every page's routes for the van described by ``sources``."""
    return [
        *units_page.routes(sources),
        *watchlist_page.routes(sources),
        *audit_page.routes(sources),
    ]
