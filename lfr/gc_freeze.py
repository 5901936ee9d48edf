"""``freeze_after_start``: keep what a node built at start-up out of every garbage collection.

A node's start-up leaves tens of thousands of objects the cyclic garbage collector tracks
(modules, aiortc, ``cryptography``, numpy, PIL, keys, configs, stores) that live as long as the
process. CPython scans all of them in every full (generation 2) collection, which it starts by
itself after enough allocations, holding the GIL: measured here in ``lfr bench uplink``'s
processes, 24-84 ms each (20-58 ms seen before in the unit during runs), wherever allocation
happens to trigger one, a burst of alerts included (docs/DELIVERY.md, "Latency end to end").

``gc.freeze()`` moves every object alive at that moment into the permanent generation, which no
collection scans; what the node allocates afterwards is collected exactly as before (a full
collection at the end of a benchmark run: 0.05 ms instead of 69-84 ms). The cost: a reference
cycle among the frozen objects is never freed, so a full collection runs first (what is garbage
at the end of start-up is freed, not frozen), once, before the node serves anything. Called once
per process: ``lfr edge`` and ``lfr van`` once everything is loaded and opened, just before the
node's event loop starts; the benchmark's unit (``bench.alert_burst_unit``) once linked. Never
in a process that runs many nodes in turn (a test run): what it froze would never be freed.
"""

from __future__ import annotations

import gc


def freeze_after_start() -> int:
    """Collect once, then freeze every object that survived; the number frozen (for tests)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
