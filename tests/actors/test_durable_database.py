"""``open_durable_database`` through both stores that use it: a path that cannot hold the store
is refused naming the file, and whatever is there is left alone."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actors.unit.outbox import Outbox, OutboxFileError
from actors.van.event_store import EventStore, EventStoreFileError
from guards.user_input import UserInputError

STORES = [
    pytest.param(Outbox.open, OutboxFileError, "outbox", id="outbox"),
    pytest.param(EventStore.open, EventStoreFileError, "event store", id="event-store"),
]
Opener = Callable[[Path], Any]


@pytest.mark.parametrize(("open_store", "error", "name"), STORES)
def test_a_directory_is_refused_naming_it(open_store: Opener, error: type[Exception],
                                          name: str, tmp_path: Path) -> None:
    with pytest.raises(error, match=f"{name} {tmp_path}: is a directory"):
        open_store(tmp_path)


@pytest.mark.parametrize(("open_store", "error", "name"), STORES)
def test_a_fifo_is_refused_without_blocking(open_store: Opener, error: type[Exception],
                                            name: str, tmp_path: Path) -> None:
    fifo = tmp_path / "store.db"
    os.mkfifo(fifo)
    with pytest.raises(error, match="FIFO"):
        open_store(fifo)


@pytest.mark.parametrize(("open_store", "error", "name"), STORES)
def test_a_missing_folder_is_named(open_store: Opener, error: type[Exception], name: str,
                                   tmp_path: Path) -> None:
    with pytest.raises(error, match="does not exist"):
        open_store(tmp_path / "absent" / "store.db")


@pytest.mark.parametrize("header", [b"", b"SQLite format 3\x00"], ids=["noise", "bad-sqlite"])
@pytest.mark.parametrize(("open_store", "error", "name"), STORES)
def test_a_garbage_file_is_refused_and_left_alone(open_store: Opener, error: type[Exception],
                                                  name: str, header: bytes,
                                                  tmp_path: Path) -> None:
    garbage = tmp_path / "store.db"
    content = header + bytes(range(256)) * 40
    garbage.write_bytes(content)
    with pytest.raises(error, match=f"{name} {garbage}: not a usable SQLite"):
        open_store(garbage)
    assert garbage.read_bytes() == content


@pytest.mark.parametrize(("open_store", "error", "name"), STORES)
def test_another_programs_database_is_refused_and_left_alone(
        open_store: Opener, error: type[Exception], name: str, tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (text TEXT)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(error, match=f"another program, not an lfr {name}"):
        open_store(path)
    assert path.read_bytes() == before


def test_one_store_is_not_the_other(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    Outbox.open(path).close()
    with pytest.raises(EventStoreFileError, match="another program"):
        EventStore.open(path)


@pytest.mark.parametrize(("open_store", "error", "name"), STORES)
def test_a_newer_schema_version_is_refused(open_store: Opener, error: type[Exception],
                                           name: str, tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    open_store(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(error, match="schema version 99"):
        open_store(path)


def test_file_errors_are_user_input_errors() -> None:
    assert issubclass(OutboxFileError, UserInputError)
    assert issubclass(EventStoreFileError, UserInputError)


def test_a_new_database_file_and_its_wal_are_private(tmp_path: Path) -> None:
    from actors.van.event_store import EventStore  # noqa: PLC0415 - one of the kinds

    path = tmp_path / "events.sqlite"
    with EventStore.open(path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        wal = path.with_name(path.name + "-wal")
        if wal.exists():
            assert stat.S_IMODE(wal.stat().st_mode) == 0o600
