"""``lfr``: the command line of an lfr-edge node.

Each command's work lives in its own module; this one only parses arguments and maps errors to
exit codes (``guards.exit_codes``): ``UserInputError`` is bad input (2), Ctrl-C and SIGTERM
end with 130/143, anything else is an internal error (70) with its traceback logged. Heavy
imports happen inside the command functions so ``lfr --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from guards.exit_codes import ExitCode, StoppedBySignal
from guards.log_text import printable
from lfr.audit_command import add_audit_commands
from lfr.command_output import OutputFailed, flush_quietly, guard_standard_streams, say
from lfr.console_users import add_user_commands
from lfr.provision import add_provision_command
from lfr.release.commands import add_release_commands, add_update_commands

# ruff: noqa: PLC0415 - command modules are imported lazily, see the module docstring

Command = Callable[[argparse.Namespace], int]
log = logging.getLogger("lfr")


def _threshold(text: str) -> float:
    from actors.unit.watchlist import check_threshold

    try:
        return check_threshold(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _subject_threshold(text: str) -> tuple[str, float]:
    subject, sep, value = text.partition("=")
    if not sep or not subject:
        raise argparse.ArgumentTypeError(f"expected SUBJECT=THRESHOLD, got {text!r}")
    return subject, _threshold(value)


def _demo_count(text: str) -> int:
    """The runtime demo fails on purpose on every multiple of 7, to show restarts: beyond 100
    numbers its failures would exhaust the root supervisor, which is not what it demonstrates."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= count <= 100:
        raise argparse.ArgumentTypeError(f"must be 1-100, got {count}")
    return count


def _demo_units(text: str) -> int:
    try:
        units = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= units <= 8:
        raise argparse.ArgumentTypeError(f"must be 1-8, got {units}")
    return units


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.runtime_only:
        from lfr.runtime_demo import run_demo

        return run_demo(count=args.count)
    if args.pipeline_only:
        from lfr.demo import run_recognition_demo

        return run_recognition_demo()
    from lfr.system_demo import run_system_demo

    return run_system_demo(units=args.units)


def _cmd_scan(args: argparse.Namespace) -> int:
    from actors.unit.camera import CameraConfig
    from lfr.scan import ScanConfig, check_scan_inputs, run_scan
    from runtime.node import run

    config = ScanConfig(CameraConfig(args.source, camera_id=args.camera_id, paced=args.paced),
                        Path(args.watchlist), threshold=args.threshold,
                        allow_unusual_thresholds=args.allow_unusual_thresholds)
    watchlist = check_scan_inputs(config)  # bad input fails here, before the node starts
    return run(lambda system: run_scan(system, config, watchlist, summary_json=args.jsonl))


def _cmd_verify(args: argparse.Namespace) -> int:
    from actors.unit.watchlist import DEFAULT_THRESHOLD
    from lfr.verify import verify

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    return verify(Path(args.image_a), Path(args.image_b), threshold=threshold,
                  as_json=args.json)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from lfr.calibrate import calibrate, check_target_fmr, read_pairs

    check_target_fmr(args.target_fmr)  # before reading anything
    pairs = read_pairs(Path(args.pairs))
    report = calibrate(pairs, Path(args.root), target_fmr=args.target_fmr,
                       scores_out=Path(args.scores_out) if args.scores_out else None)
    return _report(report, as_json=args.json)


def _cmd_watchlist_build(args: argparse.Namespace) -> int:
    from actors.unit.watchlist import ALLOW_UNUSUAL_FLAG, DEFAULT_THRESHOLD, save_watchlist
    from guards.files import check_output_target
    from guards.log_text import printable
    from lfr.photo_faces import PhotoFaces
    from lfr.watchlist_build import build_watchlist

    out = check_output_target(args.out, "--out")  # refused before minutes of enrolment
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    watchlist, report = build_watchlist(Path(args.photos_dir), PhotoFaces(), threshold,
                                        progress=not args.quiet,
                                        subject_thresholds=dict(args.subject_threshold),
                                        allow_unusual_thresholds=args.allow_unusual_thresholds)
    for line in report.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    save_watchlist(watchlist, out)
    used = ", ".join(f"{printable(s)} ({n} photo{'s' if n > 1 else ''})"
                     for s, n in report.used.items())
    count = len(watchlist.subjects)
    print(f"wrote {printable(out)}: {count} subject{'s' if count != 1 else ''}: {used}",
          file=sys.stderr)
    if report.unusual_thresholds:
        unusual = ", ".join(f"{printable(s)} ({t:.3f})" for s, t in report.unusual_thresholds)
        print(f"warning: thresholds outside the usual range, accepted by {ALLOW_UNUSUAL_FLAG}: "
              f"{unusual}; a scan must also be given {ALLOW_UNUSUAL_FLAG} to use this file",
              file=sys.stderr)
    return 0


def _cmd_bench_runtime(args: argparse.Namespace) -> int:
    from bench.runtime_bench import run_runtime_bench

    return _report(run_runtime_bench(), as_json=args.json)


def _cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from bench.pipeline_bench import run_pipeline_bench

    watchlist = Path(args.watchlist) if args.watchlist else None
    return _report(run_pipeline_bench(args.source, watchlist, args.runs, bare=args.bare,
                                      paced=args.paced,
                                      allow_unusual_thresholds=args.allow_unusual_thresholds),
                   as_json=args.json)


def _cmd_bench_gallery(args: argparse.Namespace) -> int:
    from bench.gallery_bench import run_gallery_bench

    return _report(run_gallery_bench(args.subjects), as_json=args.json)


def _cmd_bench_street(args: argparse.Namespace) -> int:
    from bench.street_bench import DEFAULT_SOURCE, DEFAULT_TRUTH, run_street_bench

    return _report(run_street_bench(
        Path(args.source) if args.source else DEFAULT_SOURCE,
        Path(args.truth) if args.truth else DEFAULT_TRUTH,
        watchlist_path=Path(args.watchlist) if args.watchlist else None,
        alerts_path=Path(args.alerts) if args.alerts else None), as_json=args.json)


def _cmd_bench_uplink(args: argparse.Namespace) -> int:
    from bench.uplink_bench import run_uplink_bench

    return _report(run_uplink_bench(args.units, alerts=args.alerts, rate=args.rate,
                                    burst=args.burst, crop_bytes=args.crop_bytes,
                                    burst_together=args.burst_together),
                   as_json=args.json)


def _cmd_bench_watchlist(args: argparse.Namespace) -> int:
    from bench.watchlist_bench import run_watchlist_bench

    return _report(run_watchlist_bench(args.subjects, args.units), as_json=args.json)


def _report(result: dict[str, object], *, as_json: bool) -> int:
    """Print a benchmark's or calibration's figures; ``TARGET_MISSED`` if it says so."""
    if as_json:
        print(json.dumps(result, allow_nan=False))  # strict JSON: a NaN here is a bug
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")
    return ExitCode.OK if result.get("target_met", True) else ExitCode.TARGET_MISSED


def build_parser() -> argparse.ArgumentParser:
    """The full ``lfr`` argument parser."""
    parser = argparse.ArgumentParser(prog="lfr", description="lfr-edge: live facial "
                                     "recognition on edge camera units")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="the whole system on this machine: a van, units "
                               "on the sample clip, a signed watchlist, the console")
    demo.add_argument("--units", type=_demo_units, default=1,
                      help="camera units to start (1-8; default 1)")
    demo.add_argument("--pipeline-only", action="store_true",
                      help="only one unit's recognition pipeline on the sample clip, alerts as "
                           "JSON lines (no van, no console)")
    demo.add_argument("--runtime-only", action="store_true",
                      help="run the runtime's own demo (actors printing what flows) instead")
    demo.add_argument("--count", type=_demo_count, default=20,
                      help="runtime demo: numbers to send (1-100; default 20)")
    demo.set_defaults(func=_cmd_demo)

    scan = commands.add_parser("scan", help="scan a file, RTSP URL or device; alerts as JSON")
    scan.add_argument("source", help="video file, rtsp:// URL or /dev/videoN")
    scan.add_argument("--watchlist", required=True, help="watchlist file (lfr watchlist build)")
    scan.add_argument("--threshold", type=_threshold, help="override every subject's threshold")
    scan.add_argument("--jsonl", action="store_true",
                      help="alerts are JSON lines on stdout either way; with this flag the "
                           "summary on stderr is one JSON object too")
    scan.add_argument("--paced", action="store_true",
                      help="files: replay at the frame rate (live) instead of as fast as possible")
    scan.add_argument("--camera-id", default="cam0", help="camera name in alerts (cam0)")
    scan.add_argument("--allow-unusual-thresholds", action="store_true",
                      help="accept thresholds outside 0.45-0.80 (see docs/THRESHOLDS.md); the "
                           "summary names them")
    scan.set_defaults(func=_cmd_scan)

    verify = commands.add_parser("verify", help="similarity of the faces in two photos")
    verify.add_argument("image_a")
    verify.add_argument("image_b")
    verify.add_argument("--threshold", type=_threshold, help="decision threshold")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(func=_cmd_verify)

    calibrate = commands.add_parser("calibrate", help="measure thresholds on labelled pairs")
    calibrate.add_argument("--pairs", required=True, help="CSV with columns a,b,same")
    calibrate.add_argument("--root", default=".", help="folder the CSV paths are relative to")
    calibrate.add_argument("--target-fmr", type=float, default=0.001,
                           help="false match rate to find a threshold for, strictly between "
                                "0 and 1 (0.001)")
    calibrate.add_argument("--scores-out", help="write every pair's score to this CSV")
    calibrate.add_argument("--json", action="store_true", help="print one JSON object")
    calibrate.set_defaults(func=_cmd_calibrate)

    _add_watchlist_commands(commands)
    _add_keys_commands(commands)
    _add_van_commands(commands)
    _add_edge_commands(commands)
    _add_bench_commands(commands)
    add_audit_commands(commands)
    add_release_commands(commands)  # lfr release build: a signed bundle for units
    add_update_commands(commands)  # lfr update apply: a unit installs one (A/B, rollback)
    return parser


def _add_watchlist_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                            ) -> None:
    watchlist = commands.add_parser("watchlist", help="build watchlist files")
    watchlist_commands = watchlist.add_subparsers(dest="watchlist_command", required=True,
                                                  metavar="ACTION")
    build = watchlist_commands.add_parser("build", help="enrol one subfolder per subject")
    build.add_argument("photos_dir", help="folder with one subfolder of photos per subject")
    build.add_argument("--out", required=True, help="watchlist file to write")
    build.add_argument("--threshold", type=_threshold, help="every subject's threshold")
    build.add_argument("--subject-threshold", action="append", default=[],
                       type=_subject_threshold, metavar="SUBJECT=T",
                       help="threshold for one subject (repeatable)")
    build.add_argument("--allow-unusual-thresholds", action="store_true",
                       help="accept thresholds outside the usual range 0.45-0.80 "
                            "(docs/THRESHOLDS.md)")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=_cmd_watchlist_build)
    from lfr.watchlist_sign import add_watchlist_sign_commands

    add_watchlist_sign_commands(watchlist_commands)  # sign, inspect
    _add_watchlist_van_commands(watchlist_commands)  # push, purge, status


def _cmd_keys_init(args: argparse.Namespace) -> int:
    from lfr.keys_init import keys_init
    from secure.node_keys import NodeRole

    return keys_init(NodeRole(args.role), args.id, Path(args.out))


def _add_keys_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="a node's signing and encryption keys")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    init = actions.add_parser("init", help="new key pairs: private files 0600, never "
                              "overwritten, and a public-keys file (docs/SECURITY.md)")
    init.add_argument("--role", required=True,
                      choices=["unit", "van", "authority", "release"],
                      help="unit: signing key; van: signing and encryption keys; "
                           "authority (signs watchlists) and release (signs release bundles, "
                           "docs/RELEASES.md): signing key")
    init.add_argument("--id", required=True, help="node id: 1-64 printable characters")
    init.add_argument("--out", required=True,
                      help="folder to write into (created 0700 if missing)")
    init.set_defaults(func=_cmd_keys_init)


def _cmd_van_enroll_unit(args: argparse.Namespace) -> int:
    from lfr.van_enrolment import enroll_unit

    return enroll_unit(Path(args.config), args.unit_id, Path(args.public_keys_file))


def _cmd_van_revoke_unit(args: argparse.Namespace) -> int:
    from lfr.van_enrolment import revoke_unit

    return revoke_unit(Path(args.config), args.unit_id)


def _cmd_van_units(args: argparse.Namespace) -> int:
    from lfr.van_enrolment import list_units

    return list_units(Path(args.config), as_json=args.json)


def _cmd_van_audit_witness(args: argparse.Namespace) -> int:
    from lfr.audit_witness import audit_witness

    return audit_witness(Path(args.config), args.unit_id, as_json=args.json)


def _cmd_van_run(args: argparse.Namespace) -> int:
    from guards.user_input import UserInputError
    from lfr.van_node import run_van

    if args.config is None:
        raise UserInputError("give --config van.toml to run the van node, or an action "
                             "(lfr van --help)")
    return run_van(Path(args.config), print_alerts=args.print_alerts)


def _cmd_van_tls_init(args: argparse.Namespace) -> int:
    from lfr.van_tls import tls_init

    return tls_init(args.id, Path(args.out))


def _cmd_edge(args: argparse.Namespace) -> int:
    if args.self_test:
        from guards.user_input import UserInputError
        from lfr.self_test import run_self_test

        if args.check_config or args.print_alerts:
            raise UserInputError("--self-test runs alone: it checks the unit and exits, "
                                 "without --check-config or --print-alerts")
        return run_self_test(Path(args.config))
    from lfr.edge_node import run_edge

    return run_edge(Path(args.config), check_only=args.check_config,
                    print_alerts=args.print_alerts)


def _add_edge_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_provision_command(commands)  # lfr provision makes a unit, lfr edge runs it
    edge = commands.add_parser(
        "edge", help="run a camera unit: cameras, recognition, uplink to the van",
        description="Run a camera unit from its config (unit.toml; docs/DELIVERY.md "
                    "\"Configuration\"): each camera its own camera and detector pipeline, the "
                    "matcher, and the uplink that delivers sealed alerts to the van.")
    edge.add_argument("--config", required=True, help="the unit's config file (unit.toml)")
    edge.add_argument("--check-config", action="store_true",
                      help="only check the config (and the files it names), then exit")
    edge.add_argument("--print-alerts", action="store_true",
                      help="also print each alert, as the van gets it, as a JSON line on stdout")
    edge.add_argument("--self-test", action="store_true",
                      help="check this unit and exit: config, keys, models (sha256), "
                           "recognition on a bundled photo, each camera, the clock, the van; "
                           "one pass/FAIL line each, exit 0 only when all pass")
    edge.set_defaults(func=_cmd_edge)


def _add_van_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    van = commands.add_parser(
        "van", help="run the van node (--config van.toml), or manage its units and certificate",
        description="lfr van --config van.toml runs the van node: signaling over HTTPS, one "
                    "receiver per connected unit, the event store. The actions enrol, revoke "
                    "and list the units whose events this van accepts, and make its TLS "
                    "certificate.")
    van.add_argument("--config", help="the van's config file, to run the van node")
    van.add_argument("--print-alerts", action="store_true",
                     help="also print each newly stored alert as a JSON line on stdout "
                          "(metadata only: unit, seq, camera, subject, score, threshold, "
                          "captured_at; never the crop)")
    van.set_defaults(func=_cmd_van_run)
    actions = van.add_subparsers(dest="van_command", required=False, metavar="ACTION")
    tls = actions.add_parser("tls-init", help="make the van's self-signed TLS certificate and "
                             "print the fingerprint units pin")
    tls.add_argument("--id", required=True, help="the van's node id")
    tls.add_argument("--out", required=True,
                     help="folder to write tls.crt and tls.key into (never overwritten)")
    tls.set_defaults(func=_cmd_van_tls_init)
    config_help = "the van's config file (van.toml; docs/DELIVERY.md \"Configuration\")"
    enrol = actions.add_parser("enroll-unit", help="accept a unit's events, by its public keys")
    enrol.add_argument("unit_id", metavar="UNIT_ID", help="the unit's node id")
    enrol.add_argument("public_keys_file", metavar="PUBKEYS_FILE",
                       help="the unit's public.keys (lfr keys init --role unit)")
    enrol.add_argument("--config", required=True, help=config_help)
    enrol.set_defaults(func=_cmd_van_enroll_unit)
    revoke = actions.add_parser("revoke-unit", help="refuse a unit's events from now on")
    revoke.add_argument("unit_id", metavar="UNIT_ID", help="the unit's node id")
    revoke.add_argument("--config", required=True, help=config_help)
    revoke.set_defaults(func=_cmd_van_revoke_unit)
    units = actions.add_parser("units", help="list the enrolled units and their key ids")
    units.add_argument("--config", required=True, help=config_help)
    units.add_argument("--json", action="store_true", help="print one JSON object")
    units.set_defaults(func=_cmd_van_units)
    witness = actions.add_parser("audit-witness", help="the latest head of a unit's audit "
                                 "trail the van holds (from its signed health reports)")
    witness.add_argument("unit_id", metavar="UNIT_ID", help="the unit's node id")
    witness.add_argument("--config", required=True, help=config_help)
    witness.add_argument("--json", action="store_true", help="print one JSON object")
    witness.set_defaults(func=_cmd_van_audit_witness)
    deployment = actions.add_parser("deployment", help="start or end a deployment on the "
                                    "running van (every alert and watchlist is tied to one)")
    steps = deployment.add_subparsers(dest="deployment_command", required=True,
                                      metavar="ACTION")
    start = steps.add_parser("start", help="start a deployment")
    start.add_argument("--id", required=True, help="the deployment's id (used once)")
    start.add_argument("--threshold", required=True, type=_threshold,
                       help="its alert threshold: no subject alerts below it, nor below "
                            "its own signed threshold (docs/THRESHOLDS.md)")
    start.add_argument("--allow-unusual-thresholds", action="store_true",
                       help="accept a threshold outside the usual range 0.45-0.80 "
                            "(docs/THRESHOLDS.md)")
    start.add_argument("--config", required=True, help=config_help)
    start.add_argument("--json", action="store_true", help="print one JSON object")
    start.set_defaults(func=_cmd_deployment_start)
    end = steps.add_parser("end", help="end the active deployment: every unit purges its "
                           "watchlist, the van deletes its copies")
    end.add_argument("--config", required=True, help=config_help)
    end.add_argument("--json", action="store_true", help="print one JSON object")
    end.set_defaults(func=_cmd_deployment_end)
    add_user_commands(actions)


def _cmd_deployment_start(args: argparse.Namespace) -> int:
    from lfr.deployment_commands import deployment_start

    return deployment_start(Path(args.config), args.id, args.threshold,
                            allow_unusual=args.allow_unusual_thresholds, as_json=args.json)


def _cmd_deployment_end(args: argparse.Namespace) -> int:
    from lfr.deployment_commands import deployment_end

    return deployment_end(Path(args.config), as_json=args.json)


def _add_watchlist_van_commands(
        watchlist_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config_help = "the van's config file (van.toml): the command asks the running van"
    units_help = "'all' (every unit, also those enrolled later) or UNIT_ID,UNIT_ID,..."
    push = watchlist_commands.add_parser("push", help="give a signed watchlist to units, "
                                         "through the running van")
    push.add_argument("signed_file", metavar="SIGNED_FILE", help="made by lfr watchlist sign")
    push.add_argument("--units", default="all", help=units_help)
    push.add_argument("--photos", metavar="DIR",
                      help="also give the van one reference photo per subject (one subfolder "
                           "per subject, as for build): re-encoded JPEG, sealed at rest, "
                           "deleted when the deployment ends")
    push.add_argument("--config", required=True, help=config_help)
    push.add_argument("--json", action="store_true", help="print one JSON object")
    push.set_defaults(func=_cmd_watchlist_push)
    purge = watchlist_commands.add_parser("purge", help="make units drop their watchlist now")
    purge.add_argument("--units", required=True, help=units_help)
    purge.add_argument("--config", required=True, help=config_help)
    purge.add_argument("--json", action="store_true", help="print one JSON object")
    purge.set_defaults(func=_cmd_watchlist_purge)
    status = watchlist_commands.add_parser("status", help="which unit holds which watchlist")
    status.add_argument("--config", required=True, help=config_help)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(func=_cmd_watchlist_status)


def _cmd_watchlist_push(args: argparse.Namespace) -> int:
    from lfr.deployment_commands import watchlist_push

    return watchlist_push(Path(args.config), Path(args.signed_file), args.units,
                          photos_dir=Path(args.photos) if args.photos else None,
                          as_json=args.json)


def _cmd_watchlist_purge(args: argparse.Namespace) -> int:
    from lfr.deployment_commands import watchlist_purge

    return watchlist_purge(Path(args.config), args.units, as_json=args.json)


def _cmd_watchlist_status(args: argparse.Namespace) -> int:
    from lfr.deployment_commands import watchlist_status

    return watchlist_status(Path(args.config), as_json=args.json)


def _add_bench_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser("bench", help="benchmarks against baselines in the same run")
    benches = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    runtime = benches.add_parser("runtime", help="actor messaging vs a bare asyncio.Queue")
    runtime.add_argument("--json", action="store_true", help="print one JSON object")
    runtime.set_defaults(func=_cmd_bench_runtime)
    pipeline = benches.add_parser("pipeline", help="end-to-end fps vs model-bound fps")
    pipeline.add_argument("--source", required=True, help="video file")
    pipeline.add_argument("--watchlist", help="watchlist file (default: one random subject)")
    pipeline.add_argument("--runs", type=int, default=5,
                          help="runs of both phases; medians are reported and the guard "
                               "applies to them: median ratio >= 0.72 and RSS <= 250 MB; for "
                               "frames larger than 640x480, median fps >= the source's rate "
                               "and RSS <= 350 MB (default 5)")
    pipeline.add_argument("--allow-unusual-thresholds", action="store_true",
                          help="accept a watchlist with thresholds outside 0.45-0.80")
    mode = pipeline.add_mutually_exclusive_group()
    mode.add_argument("--bare", action="store_true",
                      help="also time the same steps with no actor runtime (bare_ratio)")
    mode.add_argument("--paced", action="store_true",
                      help="play the file at its frame rate, as a live camera (the newest "
                           "frame wins): capture-to-decision latency p50/p99 and RSS; target "
                           "p99 <= 250 ms")
    pipeline.add_argument("--json", action="store_true", help="print one JSON object")
    pipeline.set_defaults(func=_cmd_bench_pipeline)
    gallery = benches.add_parser("gallery", help="watchlist search time per face")
    gallery.add_argument("--subjects", type=int, required=True, help="gallery size")
    gallery.add_argument("--json", action="store_true", help="print one JSON object")
    gallery.set_defaults(func=_cmd_bench_gallery)
    street = benches.add_parser("street", help="scan the street clip and score its alerts "
                                "against the truth file")
    street.add_argument("--source", help="video file (../shared/data/faces/video/"
                        "street_1080p.mp4)")
    street.add_argument("--truth", help="truth file (street_1080p.truth.json beside the clip)")
    street.add_argument("--watchlist", help="watchlist file (default: built from the truth "
                        "file's enrolment photos)")
    street.add_argument("--alerts", help="score this file of alert JSON lines (lfr scan's "
                        "output) instead of scanning")
    street.add_argument("--json", action="store_true", help="print one JSON object")
    street.set_defaults(func=_cmd_bench_street)
    uplink = benches.add_parser("uplink", help="a van and N units as processes: alerts end to "
                                "end over WebRTC, lost/duplicates/latency")
    uplink.add_argument("--units", type=int, default=1, help="unit processes (1-32; 1)")
    uplink.add_argument("--alerts", type=int, default=60,
                        help="alerts per unit at the steady rate (60)")
    uplink.add_argument("--rate", type=float, default=2.0,
                        help="alerts per second per unit (2)")
    uplink.add_argument("--burst", type=int, default=10,
                        help="alerts per unit at once after the steady part (10)")
    uplink.add_argument("--burst-together", action="store_true",
                        help="every unit's burst at the same moment (a stress figure), not "
                             "spread over the run")
    uplink.add_argument("--crop-bytes", type=int, default=20_000,
                        help="face crop JPEG size in bytes (20000)")
    uplink.add_argument("--json", action="store_true", help="print one JSON object")
    uplink.set_defaults(func=_cmd_bench_uplink)
    watchlist = benches.add_parser("watchlist", help="a signed watchlist pushed to N units "
                                   "(real van and unit processes): time until each holds it")
    watchlist.add_argument("--subjects", type=int, default=10_000,
                           help="subjects in the synthetic watchlist (1-50000; 10000)")
    watchlist.add_argument("--units", type=int, default=1, help="unit processes (1-16; 1)")
    watchlist.add_argument("--json", action="store_true", help="print one JSON object")
    watchlist.set_defaults(func=_cmd_bench_watchlist)


def _refuse_unknown_flags(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Name a flag no parser on the command's path knows (exit 2). argparse alone reports a
    missing command or argument first, so ``lfr --bogus`` never said which flag was wrong."""
    current = parser
    for token in argv:
        if token == "--":  # noqa: S105 - the end-of-options marker, not a password
            return
        subparsers = next((a for a in current._actions
                           if isinstance(a, argparse._SubParsersAction)), None)
        if subparsers is not None and token in subparsers.choices:
            current = subparsers.choices[token]
            continue
        if token.startswith("-") and len(token) > 1 and not _is_number(token):
            flag = token.split("=", 1)[0]
            if flag not in current._option_string_actions:
                current.error(f"unrecognized argument: {printable(flag)}")


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``lfr`` command; returns its ``ExitCode`` (``entry`` exits with it)."""
    from lfr.stop_signals import install_stop_signals

    install_stop_signals()  # first: from here on a signal stops the command cleanly
    guard_standard_streams()
    command = "lfr"
    try:
        parser = build_parser()
        arguments = list(sys.argv[1:] if argv is None else argv)
        _refuse_unknown_flags(parser, arguments)
        args = parser.parse_args(arguments)
        command = f"lfr {args.command}"
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        logging.getLogger("faiss").setLevel(logging.WARNING)  # it announces its CPU features
        # aioice logs every ICE candidate pair (addresses) at INFO: noise for an operator
        logging.getLogger("aioice").setLevel(logging.WARNING)
        func: Command = args.func
        return int(func(args))
    except BaseException as exc:  # noqa: BLE001 - the process's supervision boundary
        return _exit_code_for(command, exc)


def _exit_code_for(command: str, exc: BaseException) -> int:
    """How a command that raised ends: one line for the user, a traceback only for our bugs."""
    from guards.user_input import UserInputError

    if isinstance(exc, SystemExit):  # argparse's usage errors (exit 2) and --help (exit 0)
        return exc.code if isinstance(exc.code, int) else ExitCode.BAD_INPUT
    if isinstance(exc, UserInputError):
        say(f"{command}: {printable(exc, max_chars=2000)}")
        return ExitCode.BAD_INPUT
    if isinstance(exc, OutputFailed):
        say(f"{command}: {exc}; nothing more was written")
        return ExitCode.OUTPUT_FAILED
    stopped = _stop_behind(exc)
    if stopped is not None:
        say(f"{command}: stopped by {stopped}")
        return stopped.exit_code
    if not isinstance(exc, Exception):
        raise exc  # GeneratorExit and the like are not a command's outcome
    # Anything else is our bug, never the user's mistake: its traceback goes to the log.
    log.error("%s: internal error", command, exc_info=exc)
    return ExitCode.INTERNAL_ERROR


def _stop_behind(exc: BaseException) -> StoppedBySignal | None:
    """The stop signal that ended the command, if one did. After a stop signal, whatever failed
    failed because of it (a library may turn the interrupt into an error of its own)."""
    from lfr.stop_signals import stop_signal_received

    if isinstance(exc, StoppedBySignal):
        return exc
    received = stop_signal_received()
    if isinstance(exc, KeyboardInterrupt):
        return StoppedBySignal(received if received is not None else signal.SIGINT)
    return StoppedBySignal(received) if received is not None else None


def run_and_exit() -> NoReturn:
    """The ``lfr`` console script: run the command, then leave at once with its exit code.

    ``os._exit`` after flushing: the interpreter's own teardown would wait for a blocked stdout
    and could be hit by a late signal; every resource a command holds is released by then."""
    code = main()
    from lfr.stop_signals import quiet_stop_signals

    quiet_stop_signals()
    flush_quietly()
    logging.shutdown()
    os._exit(code)
