"""The audit trail: an append-only, hash-chained log each node keeps of what it did.

Layering: ``audit`` sits beside ``secure``, above ``guards`` and ``runtime``; the unit's and
the van's actors and the ``lfr`` commands write to it and read it. It holds counts, ids,
versions and hashes, never face data or embeddings (docs/AUDIT.md).
"""
