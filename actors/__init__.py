"""The actors of lfr-edge: ``actors/unit/`` runs on a camera unit, ``actors/van/`` in the van.

Each actor lives in ``actors/<side>/<name>.py`` with its messages beside it; they talk only
through ``runtime`` refs, never by calling each other.
"""
