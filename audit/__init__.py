"""The audit trail: an append-only, hash-chained log each node keeps of what it did.

Layering: ``audit`` sits beside ``secure``, above ``guards`` and ``runtime``; the unit's and
the van's actors and the ``lfr`` commands write to it and read it. It holds counts, ids,
versions and hashes, never face data or embeddings (docs/AUDIT.md).

Modules, bottom up: ``kinds`` (``AuditKind``: what a record says happened), ``record`` (one
record: canonical line, hash, the privacy rule on fields, strict parsing), ``lines`` (a file's
lines streamed, bounded per line), ``verify`` (``ChainWalk``, ``verify_audit_file``: the first
place a chain breaks), ``log`` (``AuditLog``: the one writer of a node's log file).
"""
