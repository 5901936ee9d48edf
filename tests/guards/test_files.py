"""``read_user_file``: only regular files, bounded by the bytes actually read."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from guards.files import (
    UserFileError,
    check_output_target,
    read_private_file,
    read_user_file,
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
