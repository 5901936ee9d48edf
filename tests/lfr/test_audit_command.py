"""``lfr audit verify`` and ``lfr audit show``: output and exit codes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from audit.kinds import AuditKind
from audit.log import AuditLog
from guards.exit_codes import ExitCode
from lfr.cli import main
from tests.lfr.cli_process import lfr


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    """A valid log of 4 records (times 1 ms apart from 2023-11-14T22:13:20Z)."""
    path = tmp_path / "audit.log"
    ticks = itertools.count()
    with AuditLog.open(path, "unit-1", clock=lambda: 1_700_000_000.0 + next(ticks) / 1000) as log:
        log.append(AuditKind.NODE_STARTED, role="unit", version="0.1.0")
        log.append(AuditKind.ALERT_RAISED, seq=1, camera="front door", subject="s1", score=0.71,
                   confirmed=True, note=None, empty="", looks_like="42")
        log.append(AuditKind.INPUT_REFUSED, source="offer", reason="stale: 31 s")
        log.append(AuditKind.ALERT_RAISED, seq=2, camera="door", subject="s2", score=0.66)
    return path


def head(path: Path) -> str:
    return str(json.loads(path.read_bytes().splitlines()[-1])["hash"])


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_an_intact_log(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "audit", "verify", str(log_file)) == (
        ExitCode.OK, f"audit {log_file}: ok, 4 records, head {head(log_file)}\n", "")
    assert run(capsys, "audit", "verify", str(log_file), "--expect-head",
               head(log_file).upper()) == (
        ExitCode.OK, f"audit {log_file}: ok, 4 records, head {head(log_file)}\n", "")


def test_verify_a_tampered_log(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_file.write_bytes(log_file.read_bytes().replace(b'"subject":"s2"', b'"subject":"s3"'))
    assert run(capsys, "audit", "verify", str(log_file)) == (
        ExitCode.VERIFICATION_FAILED,
        (f"audit {log_file}: TAMPERED at record seq 4 (line 4): its hash does not match its "
         "content: the record was changed\n"), "")
    assert int(ExitCode.VERIFICATION_FAILED) == 1


def test_verify_a_log_cut_short_against_the_witness(log_file: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    witness = head(log_file)
    log_file.write_bytes(b"".join(log_file.read_bytes().splitlines(keepends=True)[:2]))
    assert run(capsys, "audit", "verify", str(log_file))[0] == ExitCode.OK
    code, out, _ = run(capsys, "audit", "verify", str(log_file), "--expect-head", witness)
    assert code == ExitCode.VERIFICATION_FAILED
    assert out.startswith(f"audit {log_file}: TAMPERED at record seq 3 (line 3): the log ends "
                          f"at seq 2 but does not hold the witnessed head {witness}")


def test_verify_names_what_is_bad_input(tmp_path: Path, log_file: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.log"
    assert run(capsys, "audit", "verify", str(missing)) == (
        ExitCode.BAD_INPUT, "", f"lfr audit: audit log {missing}: no such file\n")
    code, out, err = run(capsys, "audit", "verify", str(log_file), "--expect-head", "beef")
    assert (code, out) == (ExitCode.BAD_INPUT, "")
    assert err == "lfr audit: head witness beef is not a sha256 hash (64 hex digits)\n"
    code, _, err = run(capsys, "audit", "verify", str(tmp_path))
    assert code == ExitCode.BAD_INPUT
    assert "is a directory" in err


def test_show_prints_readable_lines(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "audit", "show", str(log_file))
    assert (code, err) == (ExitCode.OK, "")
    assert out.splitlines() == [
        "1 2023-11-14T22:13:20.000000Z node_started role=unit version=0.1.0",
        ('2 2023-11-14T22:13:20.001000Z alert_raised camera="front door" confirmed=true '
         'empty="" looks_like="42" note=null score=0.71 seq=1 subject=s1'),
        '3 2023-11-14T22:13:20.002000Z input_refused reason="stale: 31 s" source=offer',
        "4 2023-11-14T22:13:20.003000Z alert_raised camera=door score=0.66 seq=2 subject=s2",
    ]


def test_show_json_kind_and_limit(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "show", str(log_file), "--json")
    assert code == ExitCode.OK
    assert [json.loads(line) for line in out.splitlines()] == [
        json.loads(line) for line in log_file.read_bytes().splitlines()]
    code, out, _ = run(capsys, "audit", "show", str(log_file), "--kind", "alert_raised",
                       "--limit", "1", "--json")
    assert code == ExitCode.OK
    shown = [json.loads(line) for line in out.splitlines()]
    assert [(r["seq"], r["kind"]) for r in shown] == [(2, "alert_raised")]


@pytest.mark.parametrize(("argv", "message"), [
    (["--kind", "face_saved"], "unknown kind face_saved; one of: node_started"),
    (["--limit", "0"], "must be at least 1, got 0"),
    (["--limit", "x"], "expected a whole number"),
])
def test_show_refuses_bad_flags(log_file: Path, capsys: pytest.CaptureFixture[str],
                                argv: list[str], message: str) -> None:
    code, _, err = run(capsys, "audit", "show", str(log_file), *argv)
    assert code == ExitCode.BAD_INPUT
    assert message in err


def test_show_stops_at_the_first_break(log_file: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    lines = log_file.read_bytes().splitlines(keepends=True)
    log_file.write_bytes(b"".join([lines[0], lines[2], lines[1], lines[3]]))
    code, out, err = run(capsys, "audit", "show", str(log_file))
    assert code == ExitCode.VERIFICATION_FAILED
    assert [line.split()[0] for line in out.splitlines()] == ["1"]
    assert err == (f"audit {log_file}: TAMPERED at record seq 3 (line 2): seq 3 where seq 2 "
                   "was expected: record 2 removed or moved; nothing from there on is shown\n")


def test_show_escapes_what_it_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path, "van-1") as log:
        log.append(AuditKind.INPUT_REFUSED, peer="unit\u00e9", reason="a=b \\x1b[2J")
    code, out, _ = run(capsys, "audit", "show", str(path))
    assert code == ExitCode.OK
    assert out.endswith('input_refused peer=unit\u00e9 reason="a=b \\\\x1b[2J"\n')


def test_the_commands_as_a_process(log_file: Path) -> None:
    done = lfr("audit", "verify", str(log_file), timeout_s=60)
    assert (done.returncode, done.stdout) == (
        0, f"audit {log_file}: ok, 4 records, head {head(log_file)}\n")
    log_file.write_bytes(log_file.read_bytes()[:-1])  # a torn last line
    done = lfr("audit", "verify", str(log_file), timeout_s=60)
    assert done.returncode == 1
    assert done.stdout.startswith(f"audit {log_file}: TAMPERED at record seq 4 (line 4): the "
                                  "last line is incomplete")
    done = lfr("audit", "show", str(log_file), "--limit", "2", timeout_s=60)
    assert (done.returncode, len(done.stdout.splitlines())) == (0, 2)
