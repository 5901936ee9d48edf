"""The command line the long fuzz runs share (``bench.fuzz_envelope``, ``bench.fuzz_signaling``,
``bench.fuzz_batches``): ``--inputs`` and ``--seed``, one JSON summary on stdout, exit 1 when
the summary's ``ok`` is false (anything unexpected happened)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping


def fuzz_main(description: str, run_fuzz: Callable[[int, int], Mapping[str, object]],
              argv: list[str] | None = None) -> int:
    """Parse ``argv`` (``description`` for ``--help``), run ``run_fuzz(inputs, seed)``, print
    its summary as JSON; the exit code."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs to try (100000)")
    parser.add_argument("--seed", type=int, default=2024, help="random seed (2024)")
    args = parser.parse_args(argv)
    summary = run_fuzz(args.inputs, args.seed)
    print(json.dumps(summary, allow_nan=False))
    return 0 if summary["ok"] else 1
