"""``python -m bench.enrolment_templates`` on the shared photos: the report's structure and the
invariants every run must keep (pair counts follow from the photo counts, scores lie in their
ranges, a one-photo gallery scores the same by both rules), never the figures themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.enrolment_templates import FURTHER_COPIES, LEFT_OUT_FOLDERS, LEFT_OUT_PHOTOS, main
from guards.exit_codes import ExitCode
from lfr.watchlist_build import PHOTO_SUFFIXES
from tests.bench.photo_bench_run import json_report

RULES = {"first_model": ("mean", "max"), "second_model": ("mean", "min")}
RULE_KEYS = {"worst_same", "worst_same_pair", "worst_different", "worst_different_pair",
             "margin", "auc", "threshold", "true_match_rate", "false_match_rate", "mean_same",
             "mean_different"}
ROUNDING = 2e-6  # figures are rounded to 6 decimals; a difference of two is off by 1e-6
FLOAT32_SLACK = 1e-5  # a float32 cosine of unit vectors may pass 1 by a few ulps


@pytest.fixture(scope="module")
def photos(shared_data: Path) -> Path:
    """The shared photos folder."""
    return shared_data / "faces" / "photos"


@pytest.fixture(scope="module")
def result(photos: Path) -> dict[str, object]:
    """One run of the command, its stdout parsed (the models load once for the module)."""
    return json_report(main, photos)


def _view(result: dict[str, object], name: str) -> dict[str, object]:
    view = result[name]
    assert isinstance(view, dict)
    return view


def _counts(view: dict[str, object]) -> dict[str, int]:
    counts = view["photos_per_subject"]
    assert isinstance(counts, dict)
    return counts


def test_the_report_names_its_galleries_what_it_left_out_and_both_views(
        result: dict[str, object]) -> None:
    assert {"same_gallery", "different_gallery", "first_threshold", "second_threshold",
            "all_photos", "distinct", "left_out", "skipped", "elapsed_s"} <= set(result)
    left_out = result["left_out"]
    assert isinstance(left_out, list)
    for folder in LEFT_OUT_FOLDERS:
        assert any(line.startswith(f"{folder}:") for line in left_out)
    for subject, name in LEFT_OUT_PHOTOS:
        assert any(line.startswith(f"{subject}/{name}:") for line in left_out)


def test_every_photo_is_counted_or_skipped_and_no_copy_is_counted(
        result: dict[str, object], photos: Path) -> None:
    on_disk = {folder.name: sum(1 for p in folder.iterdir()
                                if p.suffix.lower() in PHOTO_SUFFIXES
                                and (folder.name, p.name) not in LEFT_OUT_PHOTOS)
               for folder in photos.iterdir()
               if folder.is_dir() and folder.name not in LEFT_OUT_FOLDERS}
    skipped = result["skipped"]
    assert isinstance(skipped, list)
    all_photos = _view(result, "all_photos")
    assert all_photos["photos"] == sum(_counts(all_photos).values())
    assert all_photos["photos"] + len(skipped) == sum(on_disk.values())
    assert all(_counts(all_photos).get(subject, 0) <= n for subject, n in on_disk.items())
    distinct = _view(result, "distinct")
    copies = distinct["left_out"]
    assert isinstance(copies, list)
    assert set(copies) <= {f"{subject}/{name}" for subject, name in FURTHER_COPIES}
    assert distinct["photos"] == all_photos["photos"] - len(copies)


@pytest.mark.parametrize("name", ["all_photos", "distinct"])
def test_pair_counts_follow_from_the_photo_counts(result: dict[str, object],
                                                  name: str) -> None:
    view = _view(result, name)
    counts = _counts(view)
    photos = sum(counts.values())
    assert view["subjects"] == len(counts)
    assert view["subjects_with_2_or_more_photos"] == sum(1 for n in counts.values() if n >= 2)
    # Leave-one-out: a probe meets its own subject when that subject has another photo, and
    # every other subject with all of its photos.
    assert view["same_pairs"] == sum(n for n in counts.values() if n >= 2)
    assert view["different_pairs"] == photos * (len(counts) - 1)
    assert view["same_pairs_with_2_or_more_templates"] == sum(n for n in counts.values()
                                                              if n >= 3)
    assert view["different_pairs_with_2_or_more_templates"] == sum(
        n * sum(1 for other, m in counts.items() if other != subject and m >= 2)
        for subject, n in counts.items())
    scores = view["same_pair_scores"]
    assert isinstance(scores, list)
    assert len(scores) == view["same_pairs"]


@pytest.mark.parametrize("name", ["all_photos", "distinct"])
def test_scores_lie_in_their_ranges_and_one_template_scores_alike(result: dict[str, object],
                                                                  name: str) -> None:
    scores = _view(result, name)["same_pair_scores"]
    assert isinstance(scores, list)
    for row in scores:
        for key in ("mean_cosine", "max_cosine"):
            assert -1 - FLOAT32_SLACK <= row[key] <= 1 + FLOAT32_SLACK, row
        for key in ("mean_distance", "min_distance"):
            assert row[key] >= 0, row
        assert row["gallery_photos"] >= 1
        if row["gallery_photos"] == 1:  # the mean of one photo is that photo
            assert row["mean_cosine"] == pytest.approx(row["max_cosine"], abs=FLOAT32_SLACK)
            assert row["mean_distance"] == pytest.approx(row["min_distance"],
                                                         abs=FLOAT32_SLACK)


@pytest.mark.parametrize("name", ["all_photos", "distinct"])
@pytest.mark.parametrize("subset", [None, "with_2_or_more_templates"])
def test_each_rule_reports_consistent_figures(result: dict[str, object], name: str,
                                              subset: str | None) -> None:
    view = _view(result, name)
    if subset is not None:
        view = _view(view, subset)
    for model, rules in RULES.items():
        reports = view[model]
        assert isinstance(reports, dict)
        assert set(reports) == set(rules)
        for rule in rules:
            figures = reports[rule]
            assert set(figures) == RULE_KEYS, (model, rule)
            for key in ("auc", "true_match_rate", "false_match_rate"):
                assert 0.0 <= figures[key] <= 1.0, (model, rule, key)
            gap = figures["worst_same"] - figures["worst_different"]
            expected = gap if model == "first_model" else -gap  # a distance: small is same
            assert figures["margin"] == pytest.approx(expected, abs=ROUNDING)
            if figures["margin"] > 0:  # every pair separated: the AUC cannot say otherwise
                assert figures["auc"] == 1.0
            if model == "first_model":
                assert -1 - FLOAT32_SLACK <= figures["worst_different"] <= 1 + FLOAT32_SLACK
            else:
                assert figures["worst_same"] >= 0


def test_the_further_copies_exist_in_the_shared_photos(photos: Path) -> None:
    for subject, name in FURTHER_COPIES | LEFT_OUT_PHOTOS:
        assert (photos / subject / name).is_file(), f"{subject}/{name}: the table is stale"


def test_a_missing_folder_is_refused_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--photos", str(tmp_path / "absent")]) == ExitCode.BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "not a folder of subject folders" in captured.err
