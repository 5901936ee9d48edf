"""The watchlist file on disk: its checksum, the kinds of file refused, and atomic writes."""

from __future__ import annotations

import hashlib
import math
import os
import stat
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from actors.unit.watchlist import (
    FORMAT_VERSION,
    HEADER_BYTES,
    Watchlist,
    WatchlistError,
    encode_watchlist,
    load_watchlist,
    save_watchlist,
)
from guards.log_text import printable
from runtime.codec import Codec
from tests.actors.unit.test_watchlist import MODEL_ID, MODEL_SHA, assert_same, make_watchlist


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Watchlist, Path]:
    """A small watchlist and the file it was saved to."""
    watchlist = make_watchlist(2)
    path = tmp_path / "watchlist.lfrw"
    save_watchlist(watchlist, path)
    return watchlist, path


# --- checksum ---------------------------------------------------------------------------------


def test_every_single_flipped_byte_is_refused(saved: tuple[Watchlist, Path]) -> None:
    watchlist, path = saved
    data = path.read_bytes()
    assert_same(load_watchlist(path), watchlist)
    for offset in range(len(data)):
        damaged = bytearray(data)
        damaged[offset] ^= 0x01
        path.write_bytes(damaged)
        with pytest.raises(WatchlistError) as info:
            load_watchlist(path)
        assert str(path) in str(info.value), offset


def test_a_flipped_sign_bit_of_an_embedding_is_refused_as_corrupt(
        saved: tuple[Watchlist, Path]) -> None:
    # The incident: one flipped sign bit loaded silently and made a subject unmatchable.
    watchlist, path = saved
    data = bytearray(path.read_bytes())
    row = watchlist.embeddings[1].tobytes()
    start = bytes(data).index(row)
    data[start + 3] ^= 0x80  # the sign bit of the row's first float32 (little-endian)
    path.write_bytes(data)
    with pytest.raises(WatchlistError, match="checksum does not match"):
        load_watchlist(path)


@pytest.mark.parametrize("cut", [1, 2, 100])
def test_a_file_cut_short_is_refused_as_corrupt(saved: tuple[Watchlist, Path], cut: int) -> None:
    _, path = saved
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(WatchlistError, match="checksum does not match"):
        load_watchlist(path)


def test_an_old_file_without_a_checksum_is_refused_with_rebuild_advice(tmp_path: Path) -> None:
    path = tmp_path / "old.lfrw"
    path.write_bytes(Codec().encode(make_watchlist()))  # what the first format wrote
    with pytest.raises(WatchlistError, match=r"old format, without a checksum.*rebuild"):
        load_watchlist(path)


def test_another_format_version_is_refused_naming_it(saved: tuple[Watchlist, Path]) -> None:
    _, path = saved
    data = bytearray(path.read_bytes())
    data[4:6] = (3).to_bytes(2, "little")
    path.write_bytes(data)
    with pytest.raises(WatchlistError, match="format version 3 is not supported"):
        load_watchlist(path)


def test_a_version_1_file_of_the_first_model_only_is_refused_with_rebuild_advice(
        saved: tuple[Watchlist, Path]) -> None:
    _, path = saved
    data = bytearray(path.read_bytes())
    data[4:6] = (1).to_bytes(2, "little")
    path.write_bytes(data)
    with pytest.raises(WatchlistError, match=r"format version 1 \(the first face model only\); "
                                             r"rebuild it with `lfr watchlist build`"):
        load_watchlist(path)


def test_only_the_header_is_refused(saved: tuple[Watchlist, Path]) -> None:
    _, path = saved
    path.write_bytes(path.read_bytes()[:HEADER_BYTES])
    with pytest.raises(WatchlistError, match="checksum"):
        load_watchlist(path)


# --- what is read -----------------------------------------------------------------------------


def _refused_at_once(path: Path, match: str) -> None:
    started = time.monotonic()
    with pytest.raises(WatchlistError, match=match):
        load_watchlist(path)
    assert time.monotonic() - started < 5  # generous: the point is "does not hang or grow"


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "w.fifo"
    os.mkfifo(fifo)
    _refused_at_once(fifo, "FIFO")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_devices_are_refused_without_reading(device: str) -> None:
    if not Path(device).exists():
        pytest.skip(f"{device} missing")
    _refused_at_once(Path(device), "character device")


def test_a_symlink_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "w.lfrw"
    link.symlink_to("/dev/zero")
    _refused_at_once(link, "character device")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    _refused_at_once(tmp_path, "directory")


def test_a_file_name_cannot_forge_a_line_in_the_message(tmp_path: Path) -> None:
    path = tmp_path / "w\nCRITICAL fake.lfrw"
    path.write_bytes(b"junk")
    with pytest.raises(WatchlistError) as info:
        load_watchlist(path)
    assert "\n" not in str(info.value)
    assert printable(path) in str(info.value)


# --- atomic writes ----------------------------------------------------------------------------


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_directory_as_target_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(WatchlistError, match="directory"):
        save_watchlist(make_watchlist(), target)
    assert _files(tmp_path) == ["out"]
    assert _files(target) == []


def test_a_fifo_or_device_as_target_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    with pytest.raises(WatchlistError, match="FIFO"):
        save_watchlist(make_watchlist(), fifo)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    link = tmp_path / "full"
    link.symlink_to("/dev/null")  # /dev/full as root was replaced by a file
    with pytest.raises(WatchlistError, match="character device"):
        save_watchlist(make_watchlist(), link)
    assert link.is_symlink()
    assert _files(tmp_path) == ["full", "out.fifo"]


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WatchlistError, match="does not exist"):
        save_watchlist(make_watchlist(), tmp_path / "nowhere" / "w.lfrw")


def test_a_folder_that_takes_no_files_is_explained_in_plain_words() -> None:
    # /proc/self/status is a "regular file", but /proc/self makes no new files (ENOENT).
    with pytest.raises(WatchlistError) as raised:
        save_watchlist(make_watchlist(), Path("/proc/self/status"))
    assert str(raised.value) == (
        "watchlist /proc/self/status: cannot be written there: folder /proc/self does not take "
        "new files (No such file or directory); it is not an ordinary folder on a disk (such "
        "as /proc or /sys) or was removed")


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_removes_the_temporary_file(tmp_path: Path, failing: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "w.lfrw"
    save_watchlist(make_watchlist(2), target)
    before = target.read_bytes()

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(WatchlistError, match="No space left"):
        save_watchlist(make_watchlist(3), target)
    assert _files(tmp_path) == ["w.lfrw"]
    assert target.read_bytes() == before  # the old file is untouched


def test_ctrl_c_while_writing_removes_the_temporary_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_watchlist(make_watchlist(), tmp_path / "w.lfrw")
    assert _files(tmp_path) == []


def test_the_temporary_file_is_in_the_targets_folder(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: object) -> None:
        seen.append(src)
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", spy)
    save_watchlist(make_watchlist(), tmp_path / "w.lfrw")
    assert len(seen) == 1
    assert Path(seen[0]).parent == tmp_path


def test_a_new_file_is_private_and_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "w.lfrw"
    save_watchlist(make_watchlist(), target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # biometric data
    target.chmod(0o640)
    save_watchlist(make_watchlist(3), target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_saved_bytes_are_the_encoding(saved: tuple[Watchlist, Path]) -> None:
    watchlist, path = saved
    assert path.read_bytes() == encode_watchlist(watchlist)
    assert np.array_equal(load_watchlist(path).embeddings, watchlist.embeddings)


# --- crafted files with a valid checksum: the data checks on load -------------------------------


def _crafted(tmp_path: Path, n: int = 3, **fields: object) -> Path:
    """A watchlist file with ``fields`` replaced around the constructor's checks, as an
    attacker would, and a correct checksum."""
    watchlist = make_watchlist(n)
    forged = object.__new__(Watchlist)
    for name in Watchlist.__dataclass_fields__:
        object.__setattr__(forged, name, fields.get(name, getattr(watchlist, name)))
    payload = Codec().encode(forged)
    path = tmp_path / "crafted.lfrw"
    path.write_bytes(b"LFRW" + FORMAT_VERSION.to_bytes(2, "little")
                     + hashlib.sha256(payload).digest() + payload)
    return path


def _refused(path: Path, *parts: str) -> None:
    with pytest.raises(WatchlistError) as raised:
        load_watchlist(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    for part in parts:
        assert part in message


@pytest.mark.parametrize("count", [-3, 0, 10_001, 2**62])
def test_a_photo_count_outside_1_to_10000_is_refused(tmp_path: Path, count: int) -> None:
    _refused(_crafted(tmp_path, photos=(1, count, 2)),
             f"subject subject_1: photo count must be 1 to 10000, got {count}")


def test_photo_counts_at_the_limits_load(tmp_path: Path) -> None:
    assert load_watchlist(_crafted(tmp_path, photos=(1, 10_000, 5))).photos == (1, 10_000, 5)


@pytest.mark.parametrize("created_at", [math.nan, math.inf, -math.inf])
def test_a_created_at_that_is_not_finite_is_refused(tmp_path: Path, created_at: float) -> None:
    _refused(_crafted(tmp_path, created_at=created_at), "created_at must be a finite time")


def test_a_created_at_more_than_a_day_ahead_is_refused(tmp_path: Path) -> None:
    _refused(_crafted(tmp_path, created_at=time.time() + 2 * 86_400),
             "more than a day in the future")
    soon = time.time() + 3600  # a clock an hour fast: accepted
    assert load_watchlist(_crafted(tmp_path, created_at=soon)).created_at == soon


def test_two_subjects_with_one_embedding_are_refused_naming_both(tmp_path: Path) -> None:
    rows = make_watchlist(3).embeddings.copy()
    rows[2] = rows[0]
    _refused(_crafted(tmp_path, embeddings=rows),
             "subjects subject_0 and subject_2 have the same embedding")


def test_nearly_identical_embeddings_are_refused_and_close_ones_kept(tmp_path: Path) -> None:
    rows = make_watchlist(3).embeddings.copy()
    other = rows[1] - float(rows[1] @ rows[0]) * rows[0]
    other /= np.linalg.norm(other)  # orthogonal to rows[0], unit length

    def at_cosine(cosine: float) -> npt.NDArray[np.float32]:
        row: npt.NDArray[np.float32] = (cosine * rows[0] + math.sqrt(1 - cosine**2) * other
                                        ).astype(np.float32)
        return row

    rows[1] = at_cosine(0.99995)
    _refused(_crafted(tmp_path, embeddings=rows), "subject_0 and subject_1")
    rows[1] = at_cosine(0.999)  # near, but not one face: a twin, the same person twice
    assert load_watchlist(_crafted(tmp_path, embeddings=rows)).subjects == (
        "subject_0", "subject_1", "subject_2")


def test_a_large_watchlist_refuses_rows_equal_bit_for_bit() -> None:
    watchlist = make_watchlist(4100)  # above the pairwise search's limit
    rows = watchlist.embeddings.copy()
    rows[4099] = rows[17]
    with pytest.raises(WatchlistError, match="subject_17 and subject_4099 have the same"):
        Watchlist(MODEL_ID, MODEL_SHA, 0.0, watchlist.subjects, rows, watchlist.thresholds,
                  watchlist.photos)
