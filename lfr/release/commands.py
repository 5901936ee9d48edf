"""``lfr release build`` and ``lfr update apply``: their command lines.

``add_release_commands`` and ``add_update_commands`` add them to the ``lfr`` parser; each
command imports its work when it runs (``lfr --help`` stays fast). Both print one line per step
on stdout; a refusal or failure raises ``UserInputError`` (exit 2, the text naming what was
wrong), and an update rolled back after a failed health check exits 1
(``ExitCode.VERIFICATION_FAILED``): in both cases the installed release is unchanged.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from guards.exit_codes import ExitCode

# ruff: noqa: PLC0415 - the release modules are imported when a command runs, see above

DEFAULT_HEALTH_DEADLINE_S = 120.0
"""How long a restarted service has to report healthy: the node loads both models and opens
its cameras before READY=1 (tens of seconds on a Raspberry Pi 5)."""


def add_release_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``lfr release build`` to ``commands``."""
    release = commands.add_parser(
        "release", help="build signed release bundles for units",
        description="A release bundle holds the project wheel, every locked dependency as a "
                    "wheel for one architecture, the systemd unit and a manifest with the "
                    "sha256 of every file, signed by a release key: docs/RELEASES.md.")
    actions = release.add_subparsers(dest="release_command", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="build and sign a bundle from this source checkout")
    build.add_argument("--arch", required=True, choices=["x86_64", "aarch64"],
                       help="the units' architecture")
    build.add_argument("--key", required=True, type=Path, metavar="RELEASE_KEY",
                       help="the release key's signing.key (lfr keys init --role release)")
    build.add_argument("--version", required=True, metavar="V",
                       help="the release version (PEP 440, e.g. 0.2.0); units install only a "
                            "newer one")
    build.add_argument("--out", required=True, type=Path, metavar="FILE",
                       help="the bundle to write (never overwritten)")
    build.add_argument("--source", type=Path, default=Path(), metavar="DIR",
                       help="the source checkout (default: the current folder)")
    build.add_argument("--wheelhouse", type=Path, metavar="DIR",
                       help="take the dependency wheels from this folder instead of the "
                            "package index (still checked against the lock's hashes)")
    build.set_defaults(func=_cmd_release_build)


def add_update_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``lfr update apply`` to ``commands``."""
    update = commands.add_parser(
        "update", help="install a signed release bundle on this unit (A/B, with rollback)",
        description="Verifies a release bundle (signature and every file's sha256) before "
                    "touching anything, installs it beside the running release, switches "
                    "to it, restarts the service and switches back if it does not report "
                    "healthy in time: docs/RELEASES.md.")
    actions = update.add_subparsers(dest="update_command", required=True, metavar="ACTION")
    apply = actions.add_parser("apply", help="verify, install and switch to a bundle")
    apply.add_argument("bundle", type=Path, metavar="BUNDLE", help="the release bundle")
    apply.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                       help="the root of the install layout (default /)")
    apply.add_argument("--release-keys", type=Path, metavar="FILE",
                       help="the release key's public.keys (default "
                            "ROOT/etc/lfr-edge/release.keys)")
    apply.add_argument("--health-deadline", type=_seconds, default=DEFAULT_HEALTH_DEADLINE_S,
                       metavar="S", help="seconds the restarted service has to report healthy "
                                         f"(default {DEFAULT_HEALTH_DEADLINE_S:.0f})")
    apply.add_argument("--health-command", type=_command, metavar="CMD",
                       help="instead of systemd: a command run in the new current release; "
                            "exit 0 within the deadline means healthy (e.g. 'bin/lfr edge "
                            "--self-test --config /etc/lfr-edge/unit.toml')")
    apply.add_argument("--restart-command", type=_command, metavar="CMD",
                       help="with --health-command: the command that restarts the node after "
                            "each switch (default: none)")
    apply.add_argument("--reload-command", type=_command, metavar="CMD",
                       help="with --health-command: the command run when the release's "
                            "systemd files changed, before the restart (default: none; "
                            "without --health-command, systemd-sysusers and systemctl "
                            "daemon-reload)")
    apply.set_defaults(func=_cmd_update_apply)


def _command(text: str) -> list[str]:
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot split {text!r}: {exc}") from None
    if not argv:
        raise argparse.ArgumentTypeError("the command is empty")
    return argv


def _optional(argv: list[str] | None) -> tuple[str, ...] | None:
    return None if argv is None else tuple(argv)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be in (0, 3600] seconds, got {text}")
    return value


def _cmd_release_build(args: argparse.Namespace) -> int:
    from lfr.release.bundle_build import BuildRequest, build_release
    from lfr.release.target import Arch

    build_release(BuildRequest(arch=Arch(args.arch), key_file=args.key, version=args.version,
                               out=args.out, source=args.source, wheelhouse=args.wheelhouse))
    return ExitCode.OK


def _cmd_update_apply(args: argparse.Namespace) -> int:
    from guards.user_input import UserInputError
    from lfr.release.installer import UpdateRequest, apply_update
    from lfr.release.service_control import CommandServiceControl, SystemdServiceControl

    for given, flag in ((args.restart_command, "--restart-command"),
                        (args.reload_command, "--reload-command")):
        if given is not None and args.health_command is None:
            raise UserInputError(f"{flag} needs --health-command (without it, systemd "
                                 "reloads, restarts and checks the service)")
    if args.health_command is None and args.root.resolve() != Path("/"):
        raise UserInputError(f"--root {args.root} needs --health-command: systemd restarts "
                             "only this machine's own service (root /)")
    control = (SystemdServiceControl() if args.health_command is None else
               CommandServiceControl(health=tuple(args.health_command),
                                     restart=_optional(args.restart_command),
                                     reload=_optional(args.reload_command)))
    outcome = apply_update(UpdateRequest(
        bundle=args.bundle, root=args.root, release_keys=args.release_keys,
        health_deadline_s=args.health_deadline), control)
    return ExitCode.OK if outcome.healthy else ExitCode.VERIFICATION_FAILED
