"""The console's pages for a running van: each page module's routes, in navigation order.

A page module exports ``routes(sources: ConsoleSources) -> list[PageRoute]``; this module lists
them, so ``lfr.van_node`` builds the console with every page and nothing else.
"""

from __future__ import annotations

from console.app import PageRoute
from console.sources import ConsoleSources


def van_pages(sources: ConsoleSources) -> list[PageRoute]:
    """Every page's routes for the van described by ``sources``."""
    del sources  # the pages come with issue 10's page modules
    return []
