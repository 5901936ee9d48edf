"""``lfr watchlist sign`` and ``lfr watchlist inspect``: a watchlist signed by the watchlist
authority, and what a signed file says (and whether a unit would take it).

``sign`` reads a watchlist file (``lfr watchlist build``) and the authority's private signing
key, and writes the signed file (``actors.signed_watchlist``) 0600 (it holds biometric data),
never over an existing file. Times are ISO 8601 *with* a timezone: a naive time would mean
different instants on the authority's laptop and on a unit. ``inspect`` prints the manifest
and, given the authority's public keys, checks the file as a unit of this lfr holding no
watchlist would, now.

Exit codes: 0 done (or verified), 1 (``ExitCode.VERIFICATION_FAILED``) ``inspect`` checked and
the file is refused (the reason is printed), 2 a bad argument or file, naming it. Nothing
private is printed: key ids, hashes, counts and ids only, never an embedding.

Heavy modules (numpy, the codec, cryptography) are imported inside the commands, so ``lfr
--help``, which builds every parser, stays fast.
"""

# ruff: noqa: PLC0415 - command modules are imported lazily, see the module docstring

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from guards.exit_codes import ExitCode
from guards.log_text import printable
from guards.user_input import UserInputError

if TYPE_CHECKING:
    from actors.signed_watchlist import WatchlistManifest

MAX_VERSION = 2**63 - 1
"""As ``actors.signed_watchlist.MAX_VERSION`` (repeated so the parser imports nothing heavy)."""
TIME_EXAMPLE = "2026-12-01T18:00:00+00:00 or 2026-12-01T18:00Z"
_EARLIEST, _LATEST = 0.0, 4_102_444_800.0
"""Times a manifest may hold (``actors.signed_watchlist.MAX_EPOCH_S``): 1970 to 2100 UTC."""


def add_watchlist_sign_commands(
        watchlist_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sign`` and ``inspect`` to ``lfr watchlist``'s actions."""
    sign = watchlist_commands.add_parser(
        "sign", help="wrap a watchlist in a manifest signed by the watchlist authority "
                     "(docs/WATCHLIST_SIGNING.md)")
    sign.add_argument("file", metavar="FILE", help="watchlist file (lfr watchlist build)")
    sign.add_argument("--key", required=True, metavar="SIGNING_KEY",
                      help="the authority's signing.key (lfr keys init --role authority)")
    sign.add_argument("--version", required=True, metavar="N",
                      help="watchlist version, 1 to 2**63-1: units take only a version higher "
                           "than the one they hold")
    sign.add_argument("--deployment", required=True, metavar="ID",
                      help="the deployment it is compiled for (1-64 printable characters)")
    sign.add_argument("--not-after", required=True, metavar="ISO8601",
                      help=f"end of validity, with a timezone ({TIME_EXAMPLE}); units drop it "
                           "then")
    sign.add_argument("--not-before", metavar="ISO8601",
                      help="start of validity, with a timezone (default: now)")
    sign.add_argument("--out", required=True, metavar="SIGNED_FILE",
                      help="signed watchlist to write (0600, never overwritten)")
    sign.add_argument("--allow-unusual-thresholds", action="store_true",
                      help="accept a watchlist with thresholds outside 0.45-0.80 "
                           "(docs/THRESHOLDS.md)")
    sign.set_defaults(func=_cmd_sign)

    inspect = watchlist_commands.add_parser(
        "inspect", help="print a signed watchlist's manifest; with --authority-keys, check it "
                        "as a unit would")
    inspect.add_argument("signed_file", metavar="SIGNED_FILE",
                         help="signed watchlist (lfr watchlist sign)")
    inspect.add_argument("--authority-keys", metavar="PUBLIC_KEYS",
                         help="the authority's public.keys: verify the signature, payload, "
                              "model and validity now (exit 1 and the reason if refused)")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.set_defaults(func=_cmd_inspect)


# -- sign --------------------------------------------------------------------------------------


def _cmd_sign(args: argparse.Namespace) -> int:
    from actors.signed_watchlist import read_signed_watchlist, sign_watchlist
    from actors.unit.watchlist import load_watchlist
    from guards.files import check_output_target, write_new_file
    from secure.key_files import read_node_keys
    from secure.node_keys import NodeRole, check_node_id

    out = Path(args.out)
    if os.path.lexists(out):  # before the key and the watchlist are even read
        raise UserInputError(f"--out {printable(out)} already exists; a signed watchlist is "
                             "never overwritten (choose another name or move it away)")
    check_output_target(out, "--out")  # its folder exists
    version = parse_version(args.version)
    deployment = check_node_id(args.deployment, "--deployment")
    now = time.time()
    not_after = parse_time(args.not_after, "--not-after")
    not_before = None if args.not_before is None else parse_time(args.not_before,
                                                                 "--not-before")
    if not_after <= now:
        raise UserInputError(f"--not-after {printable(args.not_after)} has already passed (now "
                             f"{utc(now)}): units would refuse the watchlist as expired")
    if not_before is not None and not_after <= not_before:
        raise UserInputError(f"--not-after {printable(args.not_after)} must be later than "
                             f"--not-before {printable(args.not_before)}")
    authority = read_node_keys(args.key)
    if authority.role is not NodeRole.AUTHORITY:
        raise UserInputError(
            f"--key {printable(args.key)}: the signing key of {authority.role.value} "
            f"{printable(authority.node_id)}, not of an authority; watchlists are signed with "
            "the authority's key (lfr keys init --role authority)")
    watchlist = load_watchlist(Path(args.file),
                               allow_unusual_thresholds=args.allow_unusual_thresholds)
    data = sign_watchlist(watchlist, authority=authority, deployment_id=deployment,
                          version=version, not_after=not_after, not_before=not_before, now=now)
    write_new_file(out, data, "--out", 0o600)
    manifest = read_signed_watchlist(data).manifest
    print(f"signed watchlist {printable(out)}: {len(data)} bytes, mode 0600 (biometric data)")
    for label, value in manifest_lines(manifest):
        print(f"  {label:15} {value}")
    return ExitCode.OK


def parse_version(text: str) -> int:
    """``--version``: a whole number in 1..2**63-1, else ``UserInputError`` naming it."""
    try:
        version = int(text, 10)
    except ValueError:
        version = 0
    if not 1 <= version <= MAX_VERSION:
        raise UserInputError(f"--version {printable(text, max_chars=40)}: must be a whole "
                             f"number from 1 to {MAX_VERSION}")
    return version


def parse_time(text: str, flag: str) -> float:
    """An ISO 8601 time with a timezone as seconds since the epoch; ``UserInputError`` naming
    ``flag`` for anything else, a naive time included."""
    shown = f"{flag} {printable(text, max_chars=60)}"
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UserInputError(f"{shown}: not an ISO 8601 time (e.g. {TIME_EXAMPLE})") from None
    if moment.utcoffset() is None:
        raise UserInputError(f"{shown}: has no timezone, so it would mean another instant on "
                             f"each machine; add one (e.g. {TIME_EXAMPLE})")
    try:
        epoch_s = moment.timestamp()
    except (OverflowError, ValueError):  # year 1 shifted by its offset leaves datetime's range
        epoch_s = -1.0
    if not _EARLIEST <= epoch_s <= _LATEST:
        raise UserInputError(f"{shown}: must lie between 1970 and 2100")
    return epoch_s


# -- inspect -----------------------------------------------------------------------------------


def _cmd_inspect(args: argparse.Namespace) -> int:
    from actors.signed_watchlist import (
        MAX_SIGNED_WATCHLIST_BYTES,
        WatchlistRefused,
        read_signed_watchlist,
        verify_signed_watchlist,
    )
    from guards.files import read_user_file
    from models.model_file import MOBILEFACENET
    from models.second_opinion_model import DLIB_RESNET_V1
    from secure.key_files import read_public_keys
    from secure.node_keys import NodeRole

    path = Path(args.signed_file)
    authority = (None if args.authority_keys is None
                 else read_public_keys(args.authority_keys, NodeRole.AUTHORITY))
    data = read_user_file(path, "signed watchlist", MAX_SIGNED_WATCHLIST_BYTES)
    try:
        signed = read_signed_watchlist(data)
    except WatchlistRefused as exc:
        raise UserInputError(f"signed watchlist {printable(path)}: {exc.reason}: {exc}"
                             ) from None
    manifest = signed.manifest
    verdict: dict[str, object] | None = None
    if authority is not None:
        try:
            verified = verify_signed_watchlist(
                signed, authority=authority, model_id=MOBILEFACENET.model_id,
                model_sha256=MOBILEFACENET.sha256, second_model_id=DLIB_RESNET_V1.model_id,
                second_model_sha256=DLIB_RESNET_V1.sha256, held_version=None, now=time.time())
        except WatchlistRefused as exc:
            verdict = {"ok": False, "reason": str(exc.reason), "message": str(exc)}
        else:
            verdict = {"ok": True, "payload_sha256": verified.payload_sha256}
    if args.json:
        report: dict[str, object] = {"file": str(path), "bytes": len(data),
                                     "manifest": manifest_json(manifest)}
        if verdict is not None:
            report["verification"] = verdict
        print(json.dumps(report, allow_nan=False))
    else:
        print(f"signed watchlist {printable(path)}: {len(data)} bytes")
        for label, value in manifest_lines(manifest):
            print(f"  {label:15} {value}")
        if verdict is not None:
            print(_verdict_line(verdict, manifest))
    if verdict is not None and not verdict["ok"]:
        print(f"lfr watchlist inspect: {printable(path)} refused: {verdict['reason']}",
              file=sys.stderr)
        return ExitCode.VERIFICATION_FAILED
    return ExitCode.OK


def _verdict_line(verdict: dict[str, object], manifest: WatchlistManifest) -> str:
    if verdict["ok"]:
        return (f"verification: ok (both signature halves of authority "
                f"{printable(manifest.authority_id)}, payload sha256, model, valid now)")
    return (f"verification: refused: {verdict['reason']}: "
            f"{printable(verdict['message'], max_chars=2000)}")


# -- shared ------------------------------------------------------------------------------------


def manifest_lines(manifest: WatchlistManifest) -> list[tuple[str, str]]:
    """(label, value) lines people read: ids, counts, times in UTC, hashes, key ids."""
    second = ("none" if not manifest.second_model_id else
              f"{printable(manifest.second_model_id)} (sha256 "
              f"{printable(manifest.second_model_sha256)})")
    model = f"{printable(manifest.model_id)} (sha256 {printable(manifest.model_sha256)})"
    authority = (f"{printable(manifest.authority_id)}, signing key "
                 f"{manifest.authority_key_id.hex()}")
    return [
        ("deployment", printable(manifest.deployment_id)),
        ("version", str(manifest.version)),
        ("subjects", str(manifest.subject_count)),
        ("valid", f"{utc(manifest.not_before)} to {utc(manifest.not_after)}"),
        ("model", model),
        ("second model", second),
        ("payload", f"{manifest.payload_bytes} bytes, sha256 {manifest.payload_sha256.hex()}"),
        ("authority", authority),
        ("signed at", utc(manifest.signed_at)),
    ]


def manifest_json(manifest: WatchlistManifest) -> dict[str, object]:
    """The manifest as JSON values: times as UTC ISO 8601 and as epoch seconds, bytes as hex."""
    return {
        "deployment_id": manifest.deployment_id, "version": manifest.version,
        "subject_count": manifest.subject_count,
        "not_before": utc(manifest.not_before), "not_after": utc(manifest.not_after),
        "not_before_epoch_s": manifest.not_before, "not_after_epoch_s": manifest.not_after,
        "model_id": manifest.model_id, "model_sha256": manifest.model_sha256,
        "second_model_id": manifest.second_model_id,
        "second_model_sha256": manifest.second_model_sha256,
        "payload_bytes": manifest.payload_bytes,
        "payload_sha256": manifest.payload_sha256.hex(),
        "authority_id": manifest.authority_id,
        "authority_key_id": manifest.authority_key_id.hex(),
        "signed_at": utc(manifest.signed_at),
    }


def utc(epoch_s: float) -> str:
    """ISO 8601 in UTC, to the second (``2026-12-01T18:00:00Z``)."""
    moment = datetime.datetime.fromtimestamp(epoch_s, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
