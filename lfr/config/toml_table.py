"""``ConfigTable``: one table of a TOML config file, read strictly (``read_toml`` reads the file).

An unknown key is refused as soon as the table is opened; every value is taken with its exact
type (``true`` is not an integer here); paths are taken from the file's folder and must exist.
Every refusal is a ``NodeConfigError`` naming the file and the key path (``cameras[1].source``).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from guards.config_checks import ConfigError, require_text
from guards.files import UserFileError, read_user_file
from guards.log_text import printable

MAX_CONFIG_BYTES: Final = 64 * 1024
"""A config file is a few hundred bytes; 64 KiB leaves room for many cameras and comments."""
T = TypeVar("T")


class NodeConfigError(ConfigError):
    """A config file cannot be used; the text names the file and, when one is at fault, the key
    path."""


class ConfigTable:
    """One TOML table: refuses unknown keys at once, then hands out typed values; every error
    names ``file`` and the key path."""

    def __init__(self, file: Path, data: dict[str, Any], where: str,
                 known: tuple[str, ...]) -> None:
        self.file, self.data, self.where = file, data, where
        for key in data:
            if key not in known:
                raise self.error(key, f"unknown key; known here: {', '.join(known)}")

    def path_of(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str | None, problem: str) -> NodeConfigError:
        where = f"{printable(self.path_of(key), max_chars=80)}: " if key is not None else ""
        return NodeConfigError(f"config file {printable(self.file)}: {where}{problem}")

    def value(self, key: str, kind: type[T], default: T | None = None) -> T:
        if key not in self.data:
            if default is None:
                raise self.error(key, "missing (required)")
            return default
        value = self.data[key]
        if type(value) is not kind:  # exact: a bool is not an int here
            raise self.error(key, f"must be {_TYPE_NAMES[kind]}, got {_type_name(value)}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.value(key, str, default)
        self.check(key, lambda: require_text("value", value))
        return value

    def table(self, key: str, known: tuple[str, ...], *, required: bool = True) -> ConfigTable:
        data = self.value(key, dict, None if required else {})
        return ConfigTable(self.file, data, self.path_of(key), known)

    def tables(self, key: str, known: tuple[str, ...], limit: int) -> list[ConfigTable]:
        items = self.value(key, list, [])
        if len(items) > limit:
            raise self.error(key, f"{len(items)} entries; at most {limit}")
        for i, item in enumerate(items):
            if type(item) is not dict:
                raise self.error(f"{key}[{i}]", f"must be a table, got {_type_name(item)}")
        return [ConfigTable(self.file, item, f"{self.path_of(key)}[{i}]", known)
                for i, item in enumerate(items)]

    def check(self, key: str, check: Callable[[], T]) -> T:
        """``check()``; a ``ValueError`` it raises becomes this key's error."""
        try:
            return check()
        except ValueError as exc:
            raise self.error(key, printable(exc, max_chars=300)) from None

    def path(self, key: str, *, kind: str) -> Path:
        """A path (relative to the file's folder) that exists: ``kind`` is "file" (a regular
        file), "folder", or "parent" (its folder exists; the file may not yet)."""
        path = self.file.parent / self.text(key)
        target = path.parent if kind == "parent" else path
        try:
            mode = os.stat(target).st_mode
        except OSError as exc:
            missing = isinstance(exc, FileNotFoundError | NotADirectoryError)
            raise self.error(key, f"{printable(target)}: "
                                  f"{'no such file or folder' if missing else exc.strerror}"
                             ) from None
        wanted, test = ("a folder", stat.S_ISDIR) if kind != "file" else ("a file", stat.S_ISREG)
        if not test(mode):
            raise self.error(key, f"{printable(target)} is not {wanted}")
        return path


_TYPE_NAMES: dict[type[Any], str] = {str: "a string", int: "an integer", bool: "true or false",
                                     dict: "a table", list: "an array", float: "a number"}


def _type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def read_toml(path: Path | str) -> tuple[Path, dict[str, Any]]:
    file = Path(os.path.abspath(path))
    try:
        data = read_user_file(file, "config file", MAX_CONFIG_BYTES)
    except UserFileError as exc:
        raise NodeConfigError(str(exc)) from None
    try:
        return file, tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise NodeConfigError(f"config file {printable(file)}: not UTF-8 text (byte "
                              f"{exc.start})") from None
    except tomllib.TOMLDecodeError as exc:  # its text gives line and column, not content
        raise NodeConfigError(f"config file {printable(file)}: not valid TOML: "
                              f"{printable(exc)}") from None
    except RecursionError:
        raise NodeConfigError(f"config file {printable(file)}: nested too deeply") from None




def config_sha256(path: Path) -> str:
    """sha256 (hex) of a config file's bytes, for the audit trail (a change between two starts
    shows as two different hashes); ``NodeConfigError`` when it cannot be read."""
    try:
        data = read_user_file(path, "config file", MAX_CONFIG_BYTES)
    except UserFileError as exc:
        raise NodeConfigError(str(exc)) from None
    return hashlib.sha256(data).hexdigest()
