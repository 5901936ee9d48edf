"""Scores a scan's alerts against the street clip's truth file (``street_1080p.truth.json``).

The rules are the shared data README's:

- an alert is **right** when an appearance of the subject it names is on screen, at a stream
  time ``t`` in [``enter``, ``leave`` + 0.5 s); any other alert is a **false alert**;
- an appearance is **found** when an alert naming its subject falls in [``enter`` - 5 s,
  ``leave`` + 0.5 s) (the same person back within 5 s of an alert is the same appearance, so one
  alert is expected). A person never comes back sooner than 6 s after leaving, so the windows of
  one identity never overlap and each alert counts for at most one appearance.

``score_alerts`` takes the alerts as ``lfr scan`` prints them (JSON objects with ``subject``
and ``t``) and returns a strict-JSON report. Pure Python: no model, no video.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from guards.files import read_user_file
from guards.log_text import printable
from guards.user_input import UserInputError

ON_SCREEN_GRACE_S = 0.5
"""An alert up to this long after ``leave`` is still right (decisions lag the frame)."""
FOUND_LEAD_S = 5.0
"""An alert up to this long before ``enter`` finds the appearance (same person back soon)."""
RECALL_TARGET = 0.95
"""Issue 12: share of watchlisted appearances with faces of ``TARGET_FACE_PX`` and more to find."""
TARGET_FACE_PX = 40
MAX_TRUTH_BYTES = 4 * 2**20
MAX_NAME_CHARS = 4096
"""Longest identity, subject or photo path in a truth or alerts file (a path's PATH_MAX)."""
_APPEARANCE_KEYS = ("identity", "on_watchlist", "enter", "leave", "face_px")

SIZE_BANDS: dict[str, tuple[float, float]] = {
    "lt32": (0.0, 32.0),
    "32_40": (32.0, 40.0),
    "ge40": (40.0, float("inf")),
    "26_32": (26.0, 32.0),
}
"""Face-width bands (px, [low, high)) recall is reported for."""


@dataclass(frozen=True, slots=True)
class Appearance:
    """One crossing of the street by one person, from the truth file."""

    identity: str
    """The person (a photo folder name, the subject id of a watchlist built from it)."""
    on_watchlist: bool
    """Whether the truth file counts this person as watchlisted."""
    enter: float
    """Stream time (s) any part of the photo is first on screen."""
    leave: float
    """Stream time (s) the photo is last on screen."""
    face_px: float
    """Width of the face in the frame (px)."""

    def on_screen(self, t: float) -> bool:
        """An alert at ``t`` naming this person is right."""
        return self.enter <= t < self.leave + ON_SCREEN_GRACE_S

    def finds(self, t: float) -> bool:
        """An alert at ``t`` naming this person finds this appearance."""
        return self.enter - FOUND_LEAD_S <= t < self.leave + ON_SCREEN_GRACE_S


@dataclass(frozen=True, slots=True)
class Truth:
    """The street clip's truth: every appearance and the watchlist's enrolment photos."""

    appearances: tuple[Appearance, ...]
    """Every appearance, in file order."""
    watchlist: dict[str, str]
    """Subject id -> enrolment photo, relative to the faces folder (``photos/...``)."""


class _NotJsonConstant(ValueError):
    """NaN, Infinity or -Infinity met while parsing: Python's json takes them, JSON does not."""


def _refuse_constant(name: str) -> object:
    raise _NotJsonConstant(name)


_CONSTANT_OR_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|(NaN|-?Infinity)')


def _line_of_constant(text: str) -> int:
    """The line of the first NaN/Infinity outside a string (1 if none is found)."""
    for match in _CONSTANT_OR_STRING.finditer(text):
        if match.group(1):
            return text.count("\n", 0, match.start()) + 1
    return 1


def strict_json(text: str, shown: str, *, line: int | None = None) -> object:
    """``text`` parsed as strict JSON; ``UserInputError`` naming ``shown`` and the line.

    NaN and +-Infinity are refused (``json`` accepts them, but a report holding one cannot be
    written as JSON), and so is nesting too deep for the parser (a ``RecursionError``).
    ``line`` is the line ``text`` starts on when it is one line of a bigger file.
    """
    def where(offset_line: int) -> str:
        return f"{shown}: line {offset_line if line is None else line}"

    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except _NotJsonConstant as exc:
        raise UserInputError(f"{where(_line_of_constant(text))}: {exc} is not a JSON number"
                             ) from None
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{where(exc.lineno)}: not JSON: {exc.msg} "
                             f"(column {exc.colno})") from None
    except RecursionError:
        raise UserInputError(f"{where(1)}: nested too deeply to be read") from None


def _number(value: object, what: str, *, minimum: float = -math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserInputError(f"{what} must be a number, got {printable(type(value).__name__)}")
    if not (math.isfinite(value) and value >= minimum):
        raise UserInputError(f"{what} must be a finite number >= {minimum:g}, got {value!r}")
    return float(value)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise UserInputError(f"{what} must be a string of 1 to {MAX_NAME_CHARS} characters")
    return value


def _appearance(row: object, what: str) -> Appearance:
    if not isinstance(row, dict):
        raise UserInputError(f"{what} must be an object")
    missing = [key for key in _APPEARANCE_KEYS if key not in row]
    if missing:
        raise UserInputError(f"{what}: missing {', '.join(missing)}")
    on_watchlist = row["on_watchlist"]
    if not isinstance(on_watchlist, bool):
        raise UserInputError(f"{what}.on_watchlist must be true or false")
    enter = _number(row["enter"], f"{what}.enter", minimum=0)
    leave = _number(row["leave"], f"{what}.leave", minimum=enter)
    return Appearance(_text(row["identity"], f"{what}.identity"), on_watchlist, enter, leave,
                      _number(row["face_px"], f"{what}.face_px", minimum=0))


def parse_truth(data: Mapping[str, object], shown: str = "truth") -> Truth:
    """The truth from its parsed JSON; ``UserInputError`` naming the field that is wrong."""
    rows = data.get("appearances")
    watchlist = data.get("watchlist", {})
    if not isinstance(rows, list) or not isinstance(watchlist, dict):
        raise UserInputError(f"{shown}: needs an 'appearances' list and a 'watchlist' object")
    appearances = tuple(_appearance(row, f"{shown}: appearances[{i}]")
                        for i, row in enumerate(rows))
    photos = {_text(subject, f"{shown}: watchlist key"):
              _text(photo, f"{shown}: watchlist[{printable(subject, max_chars=64)}]")
              for subject, photo in watchlist.items()}
    return Truth(appearances, photos)


def load_truth(path: Path) -> Truth:
    """Read and parse a truth file (at most ``MAX_TRUTH_BYTES``)."""
    shown = printable(path)
    data = strict_json(_utf8(read_user_file(path, "truth file", MAX_TRUTH_BYTES), shown), shown)
    if not isinstance(data, dict):
        raise UserInputError(f"{shown}: not a JSON object")
    return parse_truth(data, shown)


def _utf8(data: bytes, shown: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserInputError(f"{shown}: line {line}: not UTF-8 text") from None


def read_alert_file(path: Path, max_bytes: int) -> list[dict[str, object]]:
    """The alerts of a JSON-lines file (``lfr scan``'s output) of at most ``max_bytes``."""
    shown = printable(path)
    text = _utf8(read_user_file(path, "alerts file", max_bytes), shown)
    return read_alert_lines(text.splitlines(), shown)


def read_alert_lines(lines: Iterable[str], shown: str = "alerts") -> list[dict[str, object]]:
    """Alerts from ``lfr scan``'s JSON lines (blank lines skipped); each needs a ``subject``
    and a time ``t``; ``score``, ``track`` and ``hits``, when there, must have their types."""
    alerts: list[dict[str, object]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        alert = strict_json(line, shown, line=number)
        what = f"{shown}: line {number}"
        if not isinstance(alert, dict) or "subject" not in alert or "t" not in alert:
            raise UserInputError(f"{what}: not an alert (needs a 'subject' string and a 't' "
                                 "number)")
        _text(alert["subject"], f"{what}: subject")
        _number(alert["t"], f"{what}: t", minimum=0)
        if "score" in alert:
            _number(alert["score"], f"{what}: score")
        for key in ("track", "hits"):
            value = alert.get(key)
            if key in alert and (isinstance(value, bool) or not isinstance(value, int)):
                raise UserInputError(f"{what}: {key} must be an integer")
        alerts.append(alert)
    return alerts


def _recall(found: int, total: int) -> float | None:
    return round(found / total, 3) if total else None  # strict JSON: no NaN


def score_alerts(alerts: Sequence[Mapping[str, object]], truth: Truth) -> dict[str, object]:
    """The figures of one scan's alerts against ``truth`` (see the module docstring)."""
    by_appearance = [0] * len(truth.appearances)
    false_alerts: list[dict[str, object]] = []
    for alert in alerts:
        subject, t = str(alert["subject"]), float(str(alert["t"]))
        named = [i for i, a in enumerate(truth.appearances) if a.identity == subject]
        if not any(truth.appearances[i].on_screen(t) for i in named):
            false_alerts.append({"subject": subject, "t": t})
        for i in named:
            if truth.appearances[i].finds(t):
                by_appearance[i] += 1
    watched = [i for i, a in enumerate(truth.appearances) if a.on_watchlist]
    found = [i for i in watched if by_appearance[i] > 0]
    bands: dict[str, dict[str, object]] = {}
    for band, (low, high) in SIZE_BANDS.items():
        members = [i for i in watched if low <= truth.appearances[i].face_px < high]
        hits = sum(1 for i in members if by_appearance[i] > 0)
        bands[band] = {"appearances": len(members), "found": hits,
                       "recall": _recall(hits, len(members))}
    missed = [{"identity": a.identity, "enter": a.enter, "leave": a.leave,
               "face_px": a.face_px}
              for i in watched if by_appearance[i] == 0 for a in (truth.appearances[i],)]
    most = max(by_appearance, default=0)
    recall_ge40 = bands["ge40"]["recall"]
    return {
        "alerts": len(alerts),
        "right_alerts": len(alerts) - len(false_alerts),
        "false_alerts": len(false_alerts),
        "false_alert_list": false_alerts,
        "duplicate_alerts": sum(max(0, n - 1) for n in by_appearance),
        "max_alerts_per_appearance": most,
        "watchlisted_appearances": len(watched),
        "found": len(found),
        "recall": _recall(len(found), len(watched)),
        "recall_by_face_px": bands,
        "missed": missed,
        "target_met": (not false_alerts and most <= 1
                       and (recall_ge40 is None or float(str(recall_ge40)) >= RECALL_TARGET)),
    }
