"""The ``lfr`` command line, configuration and node assembly (built on ``runtime`` and ``actors``)."""
