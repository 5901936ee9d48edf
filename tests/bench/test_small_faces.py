"""``python -m bench.small_faces`` on the shared photos: the report's structure and the invariants
every run must keep (counts follow from the photos and the gates, a looser eye gate admits a
superset, the per-face rows agree with the per-size figures), never the figures themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.unit.second_opinion import DEFAULT_SECOND_THRESHOLD
from bench.enrolment_templates import FURTHER_COPIES, LEFT_OUT_FOLDERS, LEFT_OUT_PHOTOS
from bench.small_faces import EYE_BANDS, EYE_GATES, FIRST_THRESHOLDS, SIZES, main
from guards.exit_codes import ExitCode
from models.face_quality import QualityConfig, QualityGate
from tests.bench.photo_bench_run import json_report

GATE_KEYS = [f"eye_gate_{g:g}px" for g in EYE_GATES]
GROUPS = [*GATE_KEYS, "no_gates"]
THRESHOLD_KEYS = [f"{t:.2f}" for t in FIRST_THRESHOLDS]
SECOND_KEY = f"{DEFAULT_SECOND_THRESHOLD:.2f}"
SECOND_THRESHOLD = DEFAULT_SECOND_THRESHOLD
ROUNDING = 2e-6  # figures are rounded to 6 decimals; a difference of two is off by 1e-6
FLOAT32_SLACK = 1e-5  # a float32 cosine of unit vectors may pass 1 by a few ulps


@pytest.fixture(scope="module")
def result(shared_data: Path) -> dict[str, Any]:
    """One run of the command on the shared photos, its stdout parsed."""
    return json_report(main, shared_data / "faces" / "photos")


def _rows(result: dict[str, Any], width: int | None) -> list[dict[str, Any]]:
    return [row for row in result["faces"] if row["width_px"] == width]


def test_the_report_names_what_it_left_out_and_every_size(result: dict[str, Any]) -> None:
    assert {"method", "templates", "first_threshold", "second_threshold", "todays_eye_gate_px",
            "quality_gates", "photos", "subjects", "sizes", "by_eye_distance", "faces",
            "left_out", "skipped", "elapsed_s"} <= set(result)
    assert result["todays_eye_gate_px"] == QualityConfig().min_eye_distance_px
    assert [size["width_px"] for size in result["sizes"]] == [None, *SIZES]
    for folder in LEFT_OUT_FOLDERS:
        assert any(line.startswith(f"{folder}:") for line in result["left_out"])
    for subject, name in LEFT_OUT_PHOTOS | FURTHER_COPIES:
        assert any(line.startswith(f"{subject}/{name}:") for line in result["left_out"])
    probes = {row["photo"] for row in result["faces"]}
    assert len(probes) == result["photos"]
    assert not probes & {f"{s}/{n}" for s, n in LEFT_OUT_PHOTOS | FURTHER_COPIES}


def test_the_original_size_is_every_enrolled_photo_passing_every_gate(
        result: dict[str, Any]) -> None:
    original = result["sizes"][0]
    assert original["photos"] == original["detected"] == result["photos"]
    assert original["passed_todays_gates"] == result["photos"]
    assert original["refused_by"] == {}
    assert original["eye_distance_px"]["min"] >= QualityConfig().min_eye_distance_px


def test_gate_counts_follow_from_the_detected_faces(result: dict[str, Any]) -> None:
    gates = {gate.value for gate in QualityGate}
    for size in result["sizes"]:
        assert size["detected"] <= size["photos"] <= result["photos"]
        assert set(size["refused_by"]) <= gates
        assert size["passed_todays_gates"] + sum(size["refused_by"].values()) == size["detected"]
        # Without the eye gate only the other gates can refuse.
        assert set(size["refused_without_the_eye_gate_by"]) <= gates - {"eye_distance"}
        admitted = [size["admitted"][key] for key in GATE_KEYS]
        assert admitted[0] == size["passed_todays_gates"]
        assert admitted == sorted(admitted), "a looser eye gate admits at least as many"
        assert admitted[-1] <= size["detected"] - sum(
            size["refused_without_the_eye_gate_by"].values())
        for key in GATE_KEYS:
            assert size["scored"][key]["faces"] == size["admitted"][key]
        assert size["scored"]["no_gates"]["faces"] == size["detected"]
        assert size["scored"]["no_gates"]["refused_by_todays_gates"] == (
            size["detected"] - size["passed_todays_gates"])
        assert size["scored"][GATE_KEYS[0]]["refused_by_todays_gates"] == 0
        if size["detected"]:
            assert size["eye_distance_px"]["min"] <= size["eye_distance_px"]["median"] <= (
                size["eye_distance_px"]["max"])


def test_pair_counts_follow_from_the_faces(result: dict[str, Any]) -> None:
    subjects = result["subjects"]
    for size in result["sizes"]:
        rows = [row for row in _rows(result, size["width_px"]) if row["detected"]]
        assert len(rows) == size["detected"]
        no_gates = size["scored"]["no_gates"]
        assert no_gates["different_pairs"] == len(rows) * (subjects - 1)
        assert no_gates["same_pairs"] == sum(1 for row in rows if row["own_cosine"] is not None)
        for key in GROUPS:
            group = size["scored"][key]
            assert group["different_pairs"] == group["faces"] * (subjects - 1)
            assert group["same_pairs"] <= group["faces"]


def _agrees(counted: bool, past_threshold: float) -> None:
    """A count of pairs past a threshold is non-zero exactly when the extreme pair is past it
    (``past_threshold`` >= 0), up to the report's rounding."""
    if abs(past_threshold) > ROUNDING:
        assert counted == (past_threshold > 0), past_threshold


def _check_group(group: dict[str, Any]) -> None:
    first, second, both = group["first_model"], group["second_model"], group["both_models"]
    for name in ("same_at_or_above", "different_at_or_above"):
        counts = [first[name][key] for key in THRESHOLD_KEYS]
        assert counts == sorted(counts, reverse=True), "a higher threshold accepts fewer"
    assert first["same_at_or_above"][THRESHOLD_KEYS[0]] <= group["same_pairs"]
    assert first["different_at_or_above"][THRESHOLD_KEYS[0]] <= group["different_pairs"]
    assert second["same_within"][SECOND_KEY] <= group["same_pairs"]
    for key in THRESHOLD_KEYS:  # both models agree only where each one does
        assert both[key]["same"] <= min(first["same_at_or_above"][key],
                                        second["same_within"][SECOND_KEY])
        assert both[key]["different"] <= min(first["different_at_or_above"][key],
                                             second["different_within"][SECOND_KEY])
    highest = first["highest_different"]["score"]
    if highest is None:
        assert group["different_pairs"] == 0
    else:
        assert -1 - FLOAT32_SLACK <= highest <= 1 + FLOAT32_SLACK
        _agrees(first["different_at_or_above"][THRESHOLD_KEYS[-1]] > 0,
                highest - FIRST_THRESHOLDS[-1])
        nearest = second["lowest_different"]["score"]
        assert nearest >= 0
        _agrees(second["different_within"][SECOND_KEY] > 0, SECOND_THRESHOLD - nearest)
    for model in (first, second):
        assert (model["mean_same"] is None) == (group["same_pairs"] == 0)
        assert (model["mean_different"] is None) == (group["different_pairs"] == 0)
    if first["margin"] is not None:
        gap = first["lowest_same"]["score"] - first["highest_different"]["score"]
        assert first["margin"] == pytest.approx(gap, abs=ROUNDING)
        gap = second["lowest_different"]["score"] - second["highest_same"]["score"]
        assert second["margin"] == pytest.approx(gap, abs=ROUNDING)


def test_every_group_reports_consistent_figures(result: dict[str, Any]) -> None:
    for size in result["sizes"]:
        for key in GROUPS:
            _check_group(size["scored"][key])
    for band in result["by_eye_distance"].values():
        for group in band.values():
            _check_group(group)


def test_the_eye_distance_bands_hold_every_downscaled_face_once(result: dict[str, Any]) -> None:
    bands = result["by_eye_distance"]
    assert len(bands) == len(EYE_BANDS)
    detected = sum(size["detected"] for size in result["sizes"][1:])
    assert sum(band["no_gates"]["faces"] for band in bands.values()) == detected
    for band in bands.values():
        assert band["other_gates_pass"]["faces"] <= band["no_gates"]["faces"]


def test_each_face_row_agrees_with_its_gates(result: dict[str, Any]) -> None:
    eye_gate = QualityConfig().min_eye_distance_px
    gates = {gate.value for gate in QualityGate} | {"passed"}
    for row in result["faces"]:
        if not row["detected"]:
            assert "eye_distance_px" not in row
            continue
        assert row["todays_gates"] in gates
        assert row["admitted"][GATE_KEYS[0]] == (row["todays_gates"] == "passed")
        for gate, key in zip(EYE_GATES, GATE_KEYS, strict=True):
            if row["admitted"][key]:
                assert row["eye_distance_px"] >= gate
        if row["eye_distance_px"] < eye_gate and row["detector_score"] >= (
                QualityConfig().min_detector_score):
            assert row["todays_gates"] == "eye_distance"
        if row["own_cosine"] is not None:
            assert -1 - FLOAT32_SLACK <= row["own_cosine"] <= 1 + FLOAT32_SLACK
            assert row["own_distance"] >= 0
        assert row["best_other_subject"] != row["photo"].split("/")[0]


def test_a_missing_folder_is_refused_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--photos", str(tmp_path / "absent")]) == ExitCode.BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "not a folder of subject folders" in captured.err
