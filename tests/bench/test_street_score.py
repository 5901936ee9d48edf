"""The street scorer on hand-made truth and alerts: no video, no model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.street_score import (
    Appearance,
    Truth,
    load_truth,
    read_alert_lines,
    score_alerts,
)
from guards.user_input import UserInputError
from lfr.cli import main


def _truth(*appearances: Appearance) -> Truth:
    return Truth(appearances, {})


KIT = Appearance("kit", True, enter=10.0, leave=14.0, face_px=60)
ROSE = Appearance("rose", False, enter=10.0, leave=14.0, face_px=60)


def _alert(subject: str, t: float) -> dict[str, object]:
    return {"subject": subject, "t": t}


def test_an_alert_naming_someone_on_screen_is_right_and_finds_the_appearance() -> None:
    report = score_alerts([_alert("kit", 12.0)], _truth(KIT, ROSE))
    assert (report["alerts"], report["right_alerts"], report["false_alerts"]) == (1, 1, 0)
    assert (report["watchlisted_appearances"], report["found"], report["recall"]) == (1, 1, 1.0)
    assert report["missed"] == []
    assert report["target_met"] is True


def test_an_alert_naming_someone_not_on_screen_is_false() -> None:
    # Rose is on screen, but the alert names Kit after he has gone (and 0.5 s grace).
    report = score_alerts([_alert("kit", 20.0), _alert("obama", 12.0)], _truth(KIT, ROSE))
    assert report["false_alerts"] == 2
    assert report["false_alert_list"] == [{"subject": "kit", "t": 20.0},
                                          {"subject": "obama", "t": 12.0}]
    assert report["found"] == 0
    assert report["target_met"] is False


@pytest.mark.parametrize(("t", "right", "found"), [
    (10.0, True, True),      # enter: on screen
    (9.999, False, True),    # just before enter: false, but it finds the appearance
    (5.0, False, True),      # enter - 5 s: the found window's first instant
    (4.999, False, False),
    (14.499, True, True),    # leave + 0.5 s is excluded from both windows
    (14.5, False, False),
])
def test_window_edges(t: float, right: bool, found: bool) -> None:
    report = score_alerts([_alert("kit", t)], _truth(KIT))
    assert report["false_alerts"] == (0 if right else 1)
    assert report["found"] == (1 if found else 0)


def test_duplicates_are_counted_per_appearance() -> None:
    kit_back = Appearance("kit", True, enter=30.0, leave=33.0, face_px=60)
    alerts = [_alert("kit", 11.0), _alert("kit", 12.0), _alert("kit", 13.0),
              _alert("kit", 31.0)]
    report = score_alerts(alerts, _truth(KIT, kit_back))
    assert report["duplicate_alerts"] == 2
    assert report["max_alerts_per_appearance"] == 3
    assert report["found"] == 2
    assert report["false_alerts"] == 0
    assert report["target_met"] is False  # more than one alert for one appearance


def test_recall_by_face_size_band_and_missed_list() -> None:
    small = Appearance("kit", True, enter=30.0, leave=34.0, face_px=28)
    medium = Appearance("alex", True, enter=0.0, leave=4.0, face_px=32)
    large = Appearance("alex", True, enter=20.0, leave=24.0, face_px=40)
    report = score_alerts([_alert("alex", 21.0), _alert("kit", 12.0)],
                          _truth(KIT, small, medium, large, ROSE))
    bands = report["recall_by_face_px"]
    assert isinstance(bands, dict)
    assert bands["ge40"] == {"appearances": 2, "found": 2, "recall": 1.0}  # KIT (60) and large
    assert bands["32_40"] == {"appearances": 1, "found": 0, "recall": 0.0}  # 32 is in 32-40
    assert bands["lt32"] == {"appearances": 1, "found": 0, "recall": 0.0}
    assert bands["26_32"] == bands["lt32"]
    assert report["missed"] == [
        {"identity": "kit", "enter": 30.0, "leave": 34.0, "face_px": 28},
        {"identity": "alex", "enter": 0.0, "leave": 4.0, "face_px": 32},
    ]
    assert report["recall"] == 0.5
    assert report["target_met"] is True  # the target is on faces of 40 px and more


def test_target_missed_below_95_percent_of_large_faces() -> None:
    appearances = [Appearance("kit", True, enter=10.0 * i, leave=10.0 * i + 3, face_px=50)
                   for i in range(20)]
    alerts = [_alert("kit", 10.0 * i + 1) for i in range(19)]
    assert score_alerts(alerts, _truth(*appearances))["target_met"] is True  # 19 of 20
    assert score_alerts(alerts[:18], _truth(*appearances))["target_met"] is False


def test_a_band_with_no_appearance_reports_null_recall() -> None:
    report = score_alerts([], _truth(ROSE))
    assert report["recall"] is None
    json.dumps(report, allow_nan=False)


def test_truth_and_alert_files_are_read_with_named_errors(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"watchlist": {"kit": "photos/kit/kit_1.jpeg"}, "appearances": [
        {"identity": "kit", "on_watchlist": True, "enter": 1, "leave": 2, "face_px": 40}]}))
    loaded = load_truth(truth)
    assert loaded.appearances == (Appearance("kit", True, 1.0, 2.0, 40.0),)
    assert loaded.watchlist == {"kit": "photos/kit/kit_1.jpeg"}
    truth.write_text(json.dumps({"appearances": [{"identity": "kit"}]}))
    with pytest.raises(UserInputError, match=r"appearances\[0\]"):
        load_truth(truth)
    lines = ['{"subject": "kit", "t": 1.5, "score": 0.7}', "", '{"t": 2}']
    with pytest.raises(UserInputError, match="line 3: not an alert"):
        read_alert_lines(lines)
    assert read_alert_lines(lines[:2]) == [{"subject": "kit", "t": 1.5, "score": 0.7}]


def test_lfr_bench_street_scores_an_alerts_file_and_exits_1_on_a_missed_target(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"watchlist": {}, "appearances": [
        {"identity": "kit", "on_watchlist": True, "enter": 1, "leave": 4, "face_px": 60}]}))
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text('{"subject": "kit", "t": 2.0}\n')
    assert main(["bench", "street", "--truth", str(truth), "--alerts", str(alerts),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["found"] == 1
    alerts.write_text('{"subject": "kit", "t": 2.0}\n{"subject": "kit", "t": 9.0}\n')
    assert main(["bench", "street", "--truth", str(truth), "--alerts", str(alerts),
                 "--json"]) == 1  # a false alert
    assert json.loads(capsys.readouterr().out)["false_alerts"] == 1


# --- strict parsing: each refusal names the file and the line or field -------------------------


def _truth_file(tmp_path: Path, **overrides: object) -> Path:
    row: dict[str, object] = {"identity": "kit", "on_watchlist": True, "enter": 1, "leave": 4,
                              "face_px": 60}
    row.update(overrides)
    path = tmp_path / "truth.json"
    path.write_text(json.dumps({"watchlist": {"kit": "photos/kit/kit_1.jpeg"},
                                "appearances": [row]}))
    return path


def _bench_street(capsys: pytest.CaptureFixture[str], truth: Path,
                  alerts: Path) -> tuple[int, str]:
    code = main(["bench", "street", "--truth", str(truth), "--alerts", str(alerts), "--json"])
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1  # one line, no traceback
    return code, captured.err


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_an_alert_with_nan_or_infinity_is_refused_naming_the_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], constant: str) -> None:
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(f'{{"subject": "kit", "t": 2.0}}\n\n'
                      f'{{"subject": "joe_biden", "t": {constant}}}\n')
    code, err = _bench_street(capsys, _truth_file(tmp_path), alerts)
    assert code == 2
    assert f"alerts.jsonl: line 3: {constant} is not a JSON number" in err


def test_a_truth_file_with_infinity_is_refused_naming_the_line(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    truth.write_text('{"watchlist": {"kit": "NaN.jpg"},\n"appearances": [\n'
                     '{"identity": "NaN", "on_watchlist": true, "enter": 1,\n'
                     '"leave": Infinity, "face_px": 40}]}')
    with pytest.raises(UserInputError, match=r"truth\.json: line 4: Infinity is not a JSON"):
        load_truth(truth)


def test_deep_nesting_is_refused_not_a_recursion_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text('{"subject": "kit", "t": 2.0}\n')
    code, err = _bench_street(capsys, deep, alerts)
    assert code == 2
    assert "deep.json: line 1: nested too deeply" in err
    alerts.write_text('{"subject": "kit", "t": 2.0}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    code, err = _bench_street(capsys, _truth_file(tmp_path), alerts)
    assert code == 2
    assert "alerts.jsonl: line 2: nested too deeply" in err


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("identity", 5, "appearances[0].identity must be a string"),
    ("identity", "", "appearances[0].identity must be a string"),
    ("on_watchlist", "yes", "appearances[0].on_watchlist must be true or false"),
    ("on_watchlist", 1, "appearances[0].on_watchlist must be true or false"),
    ("enter", "1", "appearances[0].enter must be a number"),
    ("enter", True, "appearances[0].enter must be a number"),
    ("enter", -1, "appearances[0].enter must be a finite number >= 0"),
    ("leave", 0.5, "appearances[0].leave must be a finite number >= 1"),
    ("face_px", None, "appearances[0].face_px must be a number"),
    ("face_px", 1e400, "appearances[0].face_px must be a finite number"),
])
def test_every_truth_field_is_type_checked(tmp_path: Path, field: str, value: object,
                                           problem: str) -> None:
    path = _truth_file(tmp_path, **{field: value})
    if value == 1e400:  # json.dumps writes Infinity; 1e400 is how it can sneak in as a number
        path.write_text(path.read_text().replace("Infinity", "1e400"))
    with pytest.raises(UserInputError) as raised:
        load_truth(path)
    assert str(raised.value).startswith(f"{tmp_path / 'truth.json'}: ")
    assert problem in str(raised.value)


def test_a_truth_watchlist_must_map_names_to_paths(tmp_path: Path) -> None:
    path = tmp_path / "truth.json"
    path.write_text(json.dumps({"watchlist": {"kit": 3}, "appearances": []}))
    with pytest.raises(UserInputError, match=r"truth\.json: watchlist\[kit\] must be a string"):
        load_truth(path)
    path.write_text(json.dumps({"appearances": [7]}))
    with pytest.raises(UserInputError, match=r"appearances\[0\] must be an object"):
        load_truth(path)


@pytest.mark.parametrize(("line", "problem"), [
    ('{"subject": "kit", "t": true}', "line 2: t must be a number"),
    ('{"subject": "kit", "t": -1}', "line 2: t must be a finite number >= 0"),
    ('{"subject": "kit", "t": 1e999}', "line 2: t must be a finite number"),
    ('{"subject": "", "t": 1}', "line 2: subject must be a string"),
    ('{"subject": ["kit"], "t": 1}', "line 2: subject must be a string"),
    ('{"subject": "kit", "t": 1, "score": "high"}', "line 2: score must be a number"),
    ('{"subject": "kit", "t": 1, "track": 1.5}', "line 2: track must be an integer"),
    ('{"subject": "kit", "t": 1, "hits": false}', "line 2: hits must be an integer"),
    ('{"subject": "kit", "t": 1', "line 2: not JSON"),
    ('[1, 2]', "line 2: not an alert"),
])
def test_every_alert_field_is_type_checked(line: str, problem: str) -> None:
    with pytest.raises(UserInputError, match=f"^alerts.jsonl: {problem}"):
        read_alert_lines(['{"subject": "kit", "t": 0.5}', line], "alerts.jsonl")


def test_an_alerts_file_that_is_not_utf8_names_the_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_bytes(b'{"subject": "kit", "t": 2.0}\n{"subject": "k\xffit", "t": 2.0}\n')
    code, err = _bench_street(capsys, _truth_file(tmp_path), alerts)
    assert code == 2
    assert "alerts.jsonl: line 2: not UTF-8" in err
