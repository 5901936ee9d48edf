"""``firmware/lfr-edge.service`` and its sysusers file, checked with systemd's own tools.

How the tools are run here (systemd 252, no systemd as PID 1 needed):

- ``systemd-analyze verify FILE`` loads the unit as the service manager would and checks that
  ExecStart's program exists and is executable. ``/opt/lfr-edge/current/bin/lfr`` does not
  exist on a build machine, and ``--root=DIR`` would need a whole systemd tree (sysinit.target
  and the rest) inside DIR, so the test verifies a copy whose ExecStart names this venv's own
  ``lfr`` (the same console script a release installs), every other line unchanged. Unknown or
  misspelt directives make verify print a warning while still exiting 0, so its output must be
  empty too.
- ``systemd-analyze security --offline=yes FILE`` scores the file itself, without a running
  manager; ``--threshold=19`` makes it fail above 1.9 (its scale is 0-100), and ``--json``
  names every check that is left open, which must be exactly the documented ones.
- ``systemd-sysusers --root=DIR`` creates the user in a scratch root.
- The unit's ``SystemCallFilter=``, ``SystemCallArchitectures=`` and
  ``RestrictAddressFamilies=`` are applied to the real code as systemd applies them (a seccomp
  filter installed before exec, built from the unit file's lines and systemd's own syscall
  lists): ``lfr edge`` starts, pings and dials under them, the WebRTC link transport works
  under them, and breaks under ``MemoryDenyWriteExecute=``'s rule, which is why the unit
  leaves that off (x86_64 only).

Each test is skipped, naming the package, where the tool is missing.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from secure.key_files import write_node_keys
from secure.node_keys import NodeKeys, NodeRole
from tests.lfr.cli_process import ENV
from tests.lfr.conftest import CLIP
from tests.lfr.test_edge_node import nobody_listening, unit_config

REPO: Final = Path(__file__).resolve().parents[2]
UNIT: Final = REPO / "firmware" / "lfr-edge.service"
SYSUSERS: Final = REPO / "firmware" / "lfr-edge.sysusers.conf"
INSTALLED_LFR: Final = "/opt/lfr-edge/current/bin/lfr"
TOOL_TIMEOUT_S: Final = 120.0

OPEN_CHECKS: Final = {
    "PrivateNetwork": "the unit talks to its van",
    "RestrictAddressFamilies_AF_INET_INET6": "HTTPS signaling and WebRTC",
    "RestrictAddressFamilies_AF_UNIX": "asyncio's self-pipe and sd_notify",
    "RestrictAddressFamilies_AF_NETLINK": "ICE lists the interfaces",
    "IPAddressDeny": "the van's address is site-specific (a drop-in pins it)",
    "PrivateDevices": "the cameras",
    "DeviceAllow": "the cameras (video4linux) and ProtectClock's rtc",
    "SupplementaryGroups": "video, the cameras' group",
    "PrivateUsers": "it would unmap the video group",
    "ProcSubset": "XNNPACK's cpuinfo reads /proc/cpuinfo on ARM",
    "MemoryDenyWriteExecute": "pyOpenSSL's cffi callback in aiortc's DTLS",
    "RootDirectoryOrRootImage": "the release is a venv under /opt, not an image",
}
"""Every check ``systemd-analyze security`` leaves open, with the reason (the unit file says
each at length). A hardening line removed opens another check and fails the test."""


def tool(name: str, package: str) -> str:
    """The tool's path, or skip naming the package that provides it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found: install the {package} package to check the systemd unit")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                          check=False)


def directives(path: Path) -> dict[str, list[tuple[str, str]]]:
    """The unit file's ``Key=Value`` lines by section, in order, repeats kept."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"line {number}: no continuation lines, please"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, equals, value = line.partition("=")
        assert equals, f"line {number} is not Key=Value: {raw!r}"
        assert current is not None, f"line {number} is outside a section"
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [value for name, value in section if name == key]


def verifiable_copy(unit: Path, folder: Path) -> Path:
    """``unit`` with ExecStart's program replaced by this venv's ``lfr``."""
    lfr = Path(sys.executable).with_name("lfr")
    assert lfr.is_file(), f"{lfr} missing: install the project into this venv (pip install -e .)"
    text = unit.read_text(encoding="utf-8")
    assert text.count(INSTALLED_LFR) == 1, "ExecStart should name the installed lfr exactly once"
    copy = folder / unit.name
    copy.write_text(text.replace(INSTALLED_LFR, str(lfr)), encoding="utf-8")
    return copy


# -- systemd-analyze verify -------------------------------------------------------------------


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "systemd")
    result = run(analyze, "verify", str(verifiable_copy(UNIT, tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_reports_a_misspelt_directive(tmp_path: Path) -> None:
    # What the test above relies on: a warning is output even though verify exits 0.
    analyze = tool("systemd-analyze", "systemd")
    broken = tmp_path / "broken"
    broken.mkdir()
    copy = verifiable_copy(UNIT, broken)
    copy.write_text(copy.read_text(encoding="utf-8").replace("ProtectHome=yes",
                                                              "ProtectHomes=yes"),
                    encoding="utf-8")
    result = run(analyze, "verify", str(copy))
    assert "ProtectHomes" in result.stdout + result.stderr


# -- systemd-analyze security -----------------------------------------------------------------


def test_the_security_score_is_below_2() -> None:
    analyze = tool("systemd-analyze", "systemd")
    result = run(analyze, "security", "--offline=yes", str(UNIT))
    assert result.returncode == 0, result.stderr
    found = re.search(r"Overall exposure level for lfr-edge\.service: (\d+\.\d+)", result.stdout)
    assert found is not None, result.stdout[-2000:]
    assert float(found[1]) < 2.0, result.stdout
    # systemd's own judgement: exposure above 19 of 100 (1.9) fails.
    assert run(analyze, "security", "--offline=yes", "--threshold=19",
               str(UNIT)).returncode == 0


def test_only_the_documented_checks_are_left_open() -> None:
    analyze = tool("systemd-analyze", "systemd")
    result = run(analyze, "security", "--offline=yes", "--json=short", str(UNIT))
    assert result.returncode == 0, result.stderr
    checks = json.loads(result.stdout)
    open_checks = {check["json_field"] for check in checks
                   if not check["set"] or check["exposure"]}
    assert open_checks == set(OPEN_CHECKS)


# -- the directives the issue requires ----------------------------------------------------------


REQUIRED: Final = {
    "Type": "notify",
    "NotifyAccess": "main",
    "ExecStart": f"{INSTALLED_LFR} edge --config /etc/lfr-edge/unit.toml",
    "User": "lfr-edge",
    "Group": "lfr-edge",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "DevicePolicy": "closed",
    "DeviceAllow": "char-video4linux rw",
    "Restart": "always",
    "WatchdogSec": "30s",
    "RuntimeDirectory": "lfr-edge",
    "RuntimeDirectoryMode": "0700",
    "StateDirectory": "lfr-edge",
    "StateDirectoryMode": "0700",
    "ReadOnlyPaths": "-/etc/lfr-edge",
    "UMask": "0077",
    "LimitCORE": "0",
    "MemorySwapMax": "0",
    "ProtectProc": "invisible",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
    "SystemCallArchitectures": "native",
    "Environment": "TMPDIR=/run/lfr-edge",
}


@pytest.mark.parametrize("key", REQUIRED)
def test_a_required_directive_has_its_value(key: str) -> None:
    service = directives(UNIT)["Service"]
    assert REQUIRED[key] in values(service, key), (key, values(service, key))


def test_the_directives_without_a_fixed_value_are_set() -> None:
    unit = directives(UNIT)
    service = unit["Service"]
    assert values(service, "SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    assert values(service, "MemoryMax")
    assert values(service, "TasksMax")
    assert values(service, "DynamicUser") == []  # a static user: see the unit's comment
    assert values(service, "MemoryDenyWriteExecute") == []  # breaks DTLS: see the comment
    for hardening in ("ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
                      "ProtectControlGroups", "ProtectClock", "ProtectHostname",
                      "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
                      "LockPersonality", "PrivateMounts", "PrivateIPC", "RemoveIPC"):
        assert values(service, hardening) == ["yes"], hardening
    # A start limit, so a node that cannot run does not restart for ever.
    assert values(unit["Unit"], "StartLimitIntervalSec")
    assert values(unit["Unit"], "StartLimitBurst")
    assert values(unit["Install"], "WantedBy") == ["multi-user.target"]


# -- the service user ---------------------------------------------------------------------------


def test_sysusers_creates_the_service_user_and_the_cameras_group(tmp_path: Path) -> None:
    sysusers = tool("systemd-sysusers", "systemd")
    (tmp_path / "etc").mkdir()
    result = run(sysusers, f"--root={tmp_path}", str(SYSUSERS))
    assert result.returncode == 0, result.stderr
    passwd = {line.split(":")[0]: line.split(":")
              for line in (tmp_path / "etc" / "passwd").read_text().splitlines()}
    groups = {line.split(":")[0] for line in (tmp_path / "etc" / "group").read_text().splitlines()}
    user = passwd["lfr-edge"]
    assert 0 < int(user[2]) < 1000  # a system user
    assert user[6] in ("/usr/sbin/nologin", "/sbin/nologin")
    assert {"lfr-edge", "video"} <= groups


# -- the unit's seccomp rules, applied to the real code -----------------------------------
#
# No systemd runs here as PID 1, so the unit's SystemCallFilter=, SystemCallArchitectures=native
# and RestrictAddressFamilies= are applied the way systemd applies them: a seccomp filter the
# process installs (with no_new_privs) before it execs the command, built from the unit file's
# own lines and `systemd-analyze syscall-filter`'s lists (x86_64 numbers from the kernel
# headers). MemoryDenyWriteExecute= is systemd's rule on mmap/mprotect/pkey_mprotect/shmat.

SYSCALL_HEADERS: Final = (Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
                          Path("/usr/include/asm/unistd_64.h"))
AUDIT_ARCH_X86_64: Final = 0xC000003E
ALLOW: Final = 0x7FFF0000
KILL_PROCESS: Final = 0x80000000
_ERRNO: Final = 0x00050000
EPERM: Final = 1
EAFNOSUPPORT: Final = 97
_LD_ABS, _JEQ, _RET, _AND = 0x20, 0x15, 0x06, 0x54
NR_SOCKET, NR_MMAP, NR_MPROTECT, NR_SHMAT, NR_PKEY_MPROTECT = 41, 9, 10, 30, 329
PROT_WRITE, PROT_EXEC, SHM_EXEC = 2, 4, 0o100000
ARG0, ARG2 = 16, 32
"""Offsets in ``struct seccomp_data`` of the low 32 bits of the first and third argument."""

LAUNCH: Final = """
import ctypes, os, sys
program = bytes.fromhex(sys.argv[1])
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
buffer = ctypes.create_string_buffer(program, len(program))
fprog = SockFprog(len(program) // 8, ctypes.addressof(buffer))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
    sys.exit(f"seccomp unavailable: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[2], sys.argv[2:])
"""
"""Installs the filter given in hex (PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP), then execs."""


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _expand(analyze: str, group: str, seen: set[str]) -> set[str]:
    if group in seen:
        return set()
    seen.add(group)
    result = run(analyze, "syscall-filter", group)
    assert result.returncode == 0, result.stderr
    names: set[str] = set()
    for line in result.stdout.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            names |= _expand(analyze, item, seen) if item.startswith("@") else {item}
    return names


def unit_filter(*, deny_write_execute: bool = False) -> bytes:
    """The unit's system call and address family rules as one seccomp program (x86_64)."""
    if platform.machine() != "x86_64":
        pytest.skip("the seccomp emulation is written for x86_64")
    analyze = tool("systemd-analyze", "systemd")
    header = next((path for path in SYSCALL_HEADERS if path.is_file()), None)
    if header is None:
        pytest.skip("no unistd_64.h: install the linux-libc-dev package for system call numbers")
    numbers = {match[1]: int(match[2]) for match in re.finditer(
        r"#define __NR_(\w+) (\d+)", header.read_text(encoding="ascii"))}
    service = directives(UNIT)["Service"]
    assert values(service, "SystemCallArchitectures") == ["native"]
    allowed: set[str] = set()
    for line in values(service, "SystemCallFilter"):
        groups = line.removeprefix("~").split()
        names = set().union(*(_expand(analyze, group, set()) for group in groups))
        allowed = allowed - names if line.startswith("~") else allowed | names
    (families,) = values(service, "RestrictAddressFamilies")
    family_numbers = [int(getattr(socket, name)) for name in families.split()]
    program = [_op(_LD_ABS, 4), _op(_JEQ, AUDIT_ARCH_X86_64, 1, 0), _op(_RET, KILL_PROCESS),
               _op(_LD_ABS, 0)]
    # socket(family, ...): only the listed families, else EAFNOSUPPORT (as systemd answers).
    program += [_op(_JEQ, NR_SOCKET, 0, len(family_numbers) + 3), _op(_LD_ABS, ARG0)]
    program += [_op(_JEQ, family, len(family_numbers) - index, 0)
                for index, family in enumerate(family_numbers)]
    program += [_op(_RET, _ERRNO | EAFNOSUPPORT), _op(_LD_ABS, 0)]
    if deny_write_execute:
        for number, mask in ((NR_MMAP, PROT_WRITE | PROT_EXEC), (NR_MPROTECT, PROT_EXEC),
                             (NR_PKEY_MPROTECT, PROT_EXEC), (NR_SHMAT, SHM_EXEC)):
            program += [_op(_JEQ, number, 0, 5), _op(_LD_ABS, ARG2), _op(_AND, mask),
                        _op(_JEQ, mask, 0, 1), _op(_RET, _ERRNO | EPERM), _op(_LD_ABS, 0)]
    for number in sorted({numbers[name] for name in allowed if name in numbers}):
        program += [_op(_JEQ, number, 0, 1), _op(_RET, ALLOW)]
    program.append(_op(_RET, _ERRNO | EPERM))
    return b"".join(program)


def confined(program: bytes, *command: str) -> list[str]:
    """``command`` run under ``program`` (a seccomp filter installed before its exec)."""
    return [sys.executable, "-c", LAUNCH, program.hex(), *command]


@pytest.fixture
def unit_rules() -> bytes:
    """The unit's filter, or skip when this kernel or sandbox has no seccomp filters."""
    program = unit_filter()
    probe = run(*confined(program, sys.executable, "-c", "import os, socket; "
                          "socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM)"))
    if "seccomp unavailable" in probe.stderr:
        pytest.skip(probe.stderr.strip())
    # The filter is in force: a family the unit does not list is refused as systemd refuses it.
    assert "[Errno 97] Address family not supported by protocol" in probe.stderr, probe.stderr
    return program


def test_the_filter_refuses_what_the_unit_refuses(unit_rules: bytes) -> None:
    chown = run(*confined(unit_rules, sys.executable, "-c",
                          "import os; os.chown('/', 0, 0)"))  # @privileged
    assert "[Errno 1] Operation not permitted" in chown.stderr, chown.stderr
    limits = run(*confined(unit_rules, sys.executable, "-c",
                           "import os; os.sched_setaffinity(0, {0})"))  # @resources
    assert "[Errno 1] Operation not permitted" in limits.stderr, limits.stderr


DATA_CHANNEL: Final = """
import asyncio, sys
from aiortc import RTCPeerConnection

async def main():
    loop = asyncio.get_running_loop()
    got = loop.create_future()

    def report(_, context):
        print(context.get("exception"), file=sys.stderr)
        if "--end-at-first-error" in sys.argv and not got.done():
            got.set_exception(RuntimeError("the loop reported an error before the frame"))

    loop.set_exception_handler(report)
    offering, answering = RTCPeerConnection(), RTCPeerConnection()
    channel = offering.createDataChannel("lfr-link")
    answering.on("datachannel", lambda c: c.on("message", got.set_result))
    channel.on("open", lambda: channel.send(b"frame"))
    await offering.setLocalDescription(await offering.createOffer())
    await answering.setRemoteDescription(offering.localDescription)
    await answering.setLocalDescription(await answering.createAnswer())
    await offering.setRemoteDescription(answering.localDescription)
    try:
        print("received", await asyncio.wait_for(got, 30))
    finally:
        await offering.close()
        await answering.close()

asyncio.run(main())
"""
"""Two peer connections in one process: ICE over loopback, DTLS, SCTP, one data channel frame:
the transport of the unit's link to its van. Every error the loop reports is printed; with
``--end-at-first-error`` the first one also ends the wait for the frame (exit 1), instead of
the 30 s timeout."""


def test_the_link_transport_works_under_the_filter_but_not_without_writable_code(
        unit_rules: bytes) -> None:
    result = run(*confined(unit_rules, sys.executable, "-c", DATA_CHANNEL))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "received b'frame'\n"
    # Why the unit leaves MemoryDenyWriteExecute= off: pyOpenSSL's verify callback (aiortc's
    # DTLS) is a cffi ffi.callback(). Once no library needs writable code any more, this
    # fails: then turn MemoryDenyWriteExecute=yes on in the unit.
    # The first error ends the script: waiting out the 30 s for a frame that cannot come
    # proved nothing more (the test reads the error and the exit code).
    strict = run(*confined(unit_filter(deny_write_execute=True), sys.executable, "-c",
                           DATA_CHANNEL, "--end-at-first-error"))
    assert strict.returncode != 0
    assert "Cannot allocate write+execute memory for ffi.callback()" in strict.stderr, (
        strict.stderr[-3000:])


def test_lfr_edge_starts_and_pings_under_the_units_filter(
        unit_rules: bytes, tmp_path: Path) -> None:
    # The node as the service runs it, under the unit's system call and address family rules:
    # config, keys, models (LiteRT, XNNPACK), the worker threads, uvloop, the outbox (SQLite),
    # the audit trail, a looping camera, the dialer (no van listens) and sd_notify.
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found: the shared test data is needed")
    keys = NodeKeys.generate(NodeRole.VAN, "van-1")
    (tmp_path / "van").mkdir()
    write_node_keys(keys, tmp_path / "van" / "keys")
    camera = {"id": "gate", "source": str(CLIP), "paced": True, "loop": True}
    config = unit_config(tmp_path, [camera], van_url=nobody_listening())
    lfr = Path(sys.executable).with_name("lfr")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(tmp_path / "notify"))
        manager.settimeout(TOOL_TIMEOUT_S)
        env = {**ENV, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"}
        proc = subprocess.Popen(confined(unit_rules, str(lfr), "edge", "--config", str(config)),
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        try:
            said: list[list[str]] = []
            while not said or "WATCHDOG=1" not in said[-1] or not any(
                    "READY=1" in message for message in said):
                said.append(manager.recv(65536).decode().split("\n"))
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=TOOL_TIMEOUT_S)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stderr[-3000:]
    assert "Operation not permitted" not in stderr
    assert "cannot link to van van-1" in stderr  # it dialed: sockets work under the filter
