"""The command line of the measurements made on a folder of photos, one folder per subject
(``python -m bench.enrolment_templates``, ``python -m bench.small_faces``): ``--photos DIR``,
``--json`` for one JSON object on one line (else indented), exit 2 naming a bad input."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from guards.exit_codes import ExitCode
from guards.user_input import UserInputError

__all__ = ["photo_bench_main"]


def photo_bench_main(module: str, doc: str | None, run: Callable[[Path], dict[str, object]],
                     default_photos: Path, argv: list[str] | None = None) -> int:
    """Parse ``argv``, ``run`` on the photos folder, print its report; the exit code."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}",
                                     description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("--json", action="store_true", help="the JSON object on one line")
    parser.add_argument("--photos", type=Path, default=default_photos,
                        help="one folder per subject (default: the shared photos)")
    args = parser.parse_args(argv)
    try:
        result = run(args.photos)
    except UserInputError as exc:
        print(f"{module}: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    print(json.dumps(result, allow_nan=False, indent=None if args.json else 2))
    return ExitCode.OK
