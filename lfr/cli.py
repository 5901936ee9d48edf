"""``lfr``: the command line of an lfr-edge node."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

Command = Callable[[argparse.Namespace], int]


def _cmd_demo(args: argparse.Namespace) -> int:
    from lfr.runtime_demo import run_demo  # noqa: PLC0415 - keep `lfr --help` fast

    return run_demo(count=args.count)


def _cmd_bench_runtime(args: argparse.Namespace) -> int:
    from bench.runtime_bench import run_runtime_bench  # noqa: PLC0415 - keep `lfr --help` fast

    result = run_runtime_bench()
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")
    return 0 if result["ratio"] >= result["target"]["ratio_min"] else 1


def build_parser() -> argparse.ArgumentParser:
    """The full ``lfr`` argument parser."""
    parser = argparse.ArgumentParser(prog="lfr", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the demo pipeline and print what flows")
    demo.add_argument("--count", type=int, default=20, help="numbers to send (default 20)")
    demo.set_defaults(func=_cmd_demo)

    bench = commands.add_parser("bench", help="benchmarks against baselines in the same run")
    benches = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    runtime = benches.add_parser("runtime", help="actor messaging vs a bare asyncio.Queue")
    runtime.add_argument("--json", action="store_true", help="print one JSON object")
    runtime.set_defaults(func=_cmd_bench_runtime)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lfr`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    func: Command = args.func
    return func(args)
