"""The ``lfr`` command line, configuration and node assembly (on ``runtime`` and ``actors``)."""
