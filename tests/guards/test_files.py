"""``read_user_file``: only regular files, bounded by the bytes actually read."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from guards.files import (
    UserFileError,
    check_output_target,
    read_private_file,
    read_user_file,
    write_file_atomically,
    write_new_file,
)
from guards.user_input import UserInputError


def test_reads_a_regular_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 3000)
    assert read_user_file(path, "watchlist", max_bytes=3000) == b"x" * 3000


def test_a_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 3001)
    with pytest.raises(UserFileError, match=r"watchlist .*w\.bin: over the limit of 3000 bytes"):
        read_user_file(path, "watchlist", max_bytes=3000)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_devices_are_refused_without_reading(device: str) -> None:
    # stat() says 0 bytes for /dev/zero, which never ends: the limit must not come from stat.
    with pytest.raises(UserFileError, match="is a character device; only regular files"):
        read_user_file(device, "watchlist", max_bytes=1 << 20)


def test_a_symlink_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "innocent.watchlist"
    link.symlink_to("/dev/zero")
    with pytest.raises(UserFileError, match="is a character device"):
        read_user_file(link, "watchlist", max_bytes=1 << 20)


def test_a_fifo_is_refused_at_once_without_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_user_file(fifo, "pairs CSV", max_bytes=100)
        except UserFileError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "opening a FIFO blocked"
    assert len(outcome) == 1
    assert "is a FIFO (named pipe)" in str(outcome[0])


def test_a_directory_and_a_missing_file_are_named(tmp_path: Path) -> None:
    with pytest.raises(UserFileError, match=r"photo .*: is a directory"):
        read_user_file(tmp_path, "photo", max_bytes=10)
    with pytest.raises(UserFileError, match=r"photo .*nope.jpg: no such file"):
        read_user_file(tmp_path / "nope.jpg", "photo", max_bytes=10)


def test_an_unreadable_name_is_escaped_in_the_message(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as raised:
        read_user_file(tmp_path / "x\nCRITICAL fake", "photo", max_bytes=10)
    assert "\n" not in str(raised.value)
    assert "x\\nCRITICAL fake" in str(raised.value)


def test_output_targets_must_be_regular_files_or_new(tmp_path: Path) -> None:
    assert check_output_target(tmp_path / "new.bin", "--out") == tmp_path / "new.bin"
    existing = tmp_path / "old.bin"
    existing.write_bytes(b"1")
    assert check_output_target(existing, "--out") == existing
    with pytest.raises(UserFileError, match="is a character device; only a regular file"):
        check_output_target("/dev/full", "--out")
    with pytest.raises(UserFileError, match="is a directory"):
        check_output_target(tmp_path, "--out")
    with pytest.raises(UserFileError, match="does not exist"):
        check_output_target(tmp_path / "no" / "x.bin", "--out")


def test_a_private_file_must_be_0600_ours_and_no_link(tmp_path: Path) -> None:
    secret = tmp_path / "signing.key"
    secret.write_bytes(b"k" * 64)
    secret.chmod(0o600)
    assert read_private_file(secret, "key file", max_bytes=64) == b"k" * 64
    secret.chmod(0o640)
    with pytest.raises(UserFileError, match=r"mode 0640 lets others read or change it"):
        read_private_file(secret, "key file", max_bytes=64)
    secret.chmod(0o600)
    link = tmp_path / "link.key"
    link.symlink_to(secret)
    with pytest.raises(UserFileError, match="is a symbolic link"):
        read_private_file(link, "key file", max_bytes=64)
    with pytest.raises(UserFileError, match="over the limit of 63 bytes"):
        read_private_file(secret, "key file", max_bytes=63)
    if os.getuid() == 0:  # only root can give the file away
        os.chown(secret, 65534, 65534)
        with pytest.raises(UserFileError, match="owned by uid 65534"):
            read_private_file(secret, "key file", max_bytes=64)


# --- write_file_atomically ----------------------------------------------------------------------


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_an_atomic_write_creates_or_replaces_keeping_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "scores.csv"
    assert write_file_atomically(target, b"one", "--scores-out", mode=0o644) == target
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    target.chmod(0o640)
    write_file_atomically(target, b"two", "--scores-out")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    write_file_atomically(tmp_path / "new.bin", b"", "--out")
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o600
    assert _names(tmp_path) == ["new.bin", "scores.csv"]


_FULL_DISK_WRITE = """
import resource, sys
from guards.files import UserFileError, write_file_atomically
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    write_file_atomically(sys.argv[1], b"n" * 100_000, "--scores-out")
except UserFileError as exc:
    print(exc)
"""


def test_a_disk_full_midway_leaves_the_old_file_whole_and_no_copy(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes the write fail past 4 KiB, as a full disk would (EFBIG, not ENOSPC;
    # Python ignores SIGXFSZ), in a child so that pytest's own files are not limited.
    target = tmp_path / "scores.csv"
    target.write_bytes(b"old scores\n" * 10)
    done = subprocess.run([sys.executable, "-c", _FULL_DISK_WRITE, str(target)],
                          capture_output=True, text=True, timeout=60, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert "--scores-out" in done.stdout
    assert "cannot write: File too large; the file was left as it was" in done.stdout
    assert target.read_bytes() == b"old scores\n" * 10
    assert _names(tmp_path) == ["scores.csv"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_atomic_write_removes_its_temporary_file(
        tmp_path: Path, failing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def fail(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(UserFileError, match=r"out\.bin: cannot write: No space left"):
        write_file_atomically(target, b"new", "--out")
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == ["out.bin"]


def test_ctrl_c_during_an_atomic_write_removes_its_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_file_atomically(tmp_path / "out.bin", b"new", "--out")
    assert _names(tmp_path) == []


def test_an_atomic_write_refuses_targets_that_are_not_files(tmp_path: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    for target, kind in ((fifo, "FIFO"), (Path("/dev/null"), "character device"),
                         (tmp_path, "directory")):
        with pytest.raises(UserFileError, match=kind):
            write_file_atomically(target, b"x", "--out")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert _names(tmp_path) == ["out.fifo"]


def test_a_folder_that_takes_no_files_is_named_in_plain_words() -> None:
    with pytest.raises(UserFileError) as raised:
        write_file_atomically("/proc/self/status", b"x", "--out")
    message = str(raised.value)
    assert message.startswith("--out /proc/self/status: cannot be written there: folder "
                              "/proc/self does not take new files")
    assert "not an ordinary folder" in message


def test_a_new_file_gets_its_exact_mode_and_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "signing.key"
    old_umask = os.umask(0o077)
    try:
        write_new_file(target, b"secret", "key file", 0o640)
    finally:
        os.umask(old_umask)
    assert target.stat().st_mode & 0o777 == 0o640  # fchmod: the umask does not decide
    assert target.read_bytes() == b"secret"
    with pytest.raises(UserFileError, match="already exists; it is never overwritten"):
        write_new_file(target, b"other", "key file", 0o600)
    assert target.read_bytes() == b"secret"
    link = tmp_path / "link.key"
    link.symlink_to(tmp_path / "elsewhere.key")
    with pytest.raises(UserFileError):
        write_new_file(link, b"x", "key file", 0o600)
    assert not (tmp_path / "elsewhere.key").exists()


def test_a_failed_write_leaves_no_half_written_file(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "signing.key"

    def disk_full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(UserFileError, match="cannot write: No space left on device"):
        write_new_file(target, b"secret", "key file", 0o600)
    assert not target.exists()
