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


def parse_truth(data: Mapping[str, object], shown: str = "truth") -> Truth:
    """The truth from its parsed JSON; ``UserInputError`` naming the field that is wrong."""
    rows = data.get("appearances")
    watchlist = data.get("watchlist", {})
    if not isinstance(rows, list) or not isinstance(watchlist, dict):
        raise UserInputError(f"{shown}: needs an 'appearances' list and a 'watchlist' object")
    appearances = []
    for i, row in enumerate(rows):
        try:
            appearances.append(Appearance(str(row["identity"]), bool(row["on_watchlist"]),
                                          float(row["enter"]), float(row["leave"]),
                                          float(row["face_px"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserInputError(f"{shown}: appearances[{i}]: {printable(exc)}") from None
    return Truth(tuple(appearances), {str(k): str(v) for k, v in watchlist.items()})


def load_truth(path: Path) -> Truth:
    """Read and parse a truth file (at most ``MAX_TRUTH_BYTES``)."""
    shown = printable(path)
    try:
        data = json.loads(read_user_file(path, "truth file", MAX_TRUTH_BYTES).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{shown}: cannot read the truth file: {printable(exc)}") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{shown}: not a JSON object")
    return parse_truth(data, shown)


def read_alert_lines(lines: Iterable[str], shown: str = "alerts") -> list[dict[str, object]]:
    """Alerts from ``lfr scan``'s JSON lines (blank lines skipped); each needs subject and t."""
    alerts: list[dict[str, object]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            alert = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{shown}: line {number}: not JSON: {printable(exc)}") from None
        if not (isinstance(alert, dict) and isinstance(alert.get("subject"), str)
                and isinstance(alert.get("t"), int | float)):
            raise UserInputError(f"{shown}: line {number}: not an alert (needs a 'subject' "
                                 "string and a 't' number)")
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
