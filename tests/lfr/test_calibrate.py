"""``lfr calibrate`` refuses what it cannot measure: bad flags, missing folders, malformed CSVs,
files that are not files; and its JSON is strict (null, never NaN)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lfr.calibrate import CalibrationError, ImageFaces, Pair, calibrate
from lfr.cli import main
from lfr.photo_faces import PhotoFaces
from tests.lfr.conftest import PHOTOS


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the models fails the test: these refusals come before the slow part."""
    def refuse(self: PhotoFaces, *args: object) -> None:
        raise AssertionError("the models were loaded before the input was refused")

    monkeypatch.setattr(PhotoFaces, "__init__", refuse)


def _strict(text: str) -> dict[str, object]:
    def no_constant(name: str) -> object:
        raise AssertionError(f"{name} is not JSON")

    value = json.loads(text, parse_constant=no_constant)
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize("fmr", ["0", "1", "-0.1", "1.5", "nan", "inf"])
def test_a_target_fmr_outside_zero_one_is_refused_first(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_models: None, fmr: str) -> None:
    code, out, err = _run(capsys, "calibrate", "--pairs", str(tmp_path / "missing.csv"),
                          f"--target-fmr={fmr}")
    assert code == 2
    assert out == ""
    assert "--target-fmr must lie strictly between 0 and 1" in err


def test_a_missing_root_is_refused_before_the_models_load(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_models: None) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b,same\nx.jpg,y.jpg,1\n")
    code, out, err = _run(capsys, "calibrate", "--pairs", str(pairs),
                          "--root", str(tmp_path / "nowhere"))
    assert code == 2
    assert out == ""
    assert "nowhere: not a folder" in err


def test_scores_out_that_is_not_a_file_is_refused_before_the_models_load(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_models: None) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b,same\nx.jpg,y.jpg,1\n")
    code, _, err = _run(capsys, "calibrate", "--pairs", str(pairs), "--root", str(tmp_path),
                        "--scores-out", str(tmp_path))
    assert code == 2
    assert "--scores-out" in err
    assert "is a directory" in err


def test_every_pair_skipped_is_an_error_not_a_report(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(np.zeros((120, 160, 3), np.uint8)).save(tmp_path / "blank.png")
    (tmp_path / "junk.jpg").write_bytes(b"not a photo")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b,same\nblank.png,junk.jpg,1\njunk.jpg,blank.png,0\n")
    code, out, err = _run(capsys, "calibrate", "--pairs", str(pairs), "--root", str(tmp_path),
                          "--json")
    assert code == 2
    assert out == ""
    assert "all 2 pairs were skipped" in err
    assert "blank.png: no face found" in err
    assert "junk.jpg" in err


def test_json_is_strict_when_a_figure_cannot_be_computed(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Only same-person pairs: no false match rate, no AUC. null, never NaN.
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b,same\nkit_harington/kit_1.jpeg,kit_harington/kit_2.jpeg,1\n")
    code, out, _ = _run(capsys, "calibrate", "--pairs", str(pairs), "--root", str(PHOTOS),
                        "--json")
    assert code == 0
    report = _strict(out)
    assert report["pairs"] == 1
    assert report["auc"] is None
    assert report["threshold_for_target_fmr"] is None
    assert report["fmr_at_default"] is None
    assert report["tar_at_default"] == 1.0


def test_an_unreadable_image_is_listed_apart_from_no_face(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(tmp_path / "stuck.jpg")
    (tmp_path / "kit.jpeg").symlink_to(PHOTOS / "kit_harington" / "kit_1.jpeg")
    (tmp_path / "kit2.jpeg").symlink_to(PHOTOS / "kit_harington" / "kit_2.jpeg")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b,same\nkit.jpeg,kit2.jpeg,1\nkit.jpeg,stuck.jpg,1\n")
    code, out, err = _run(capsys, "calibrate", "--pairs", str(pairs), "--root", str(tmp_path),
                          "--json")
    assert code == 0
    report = _strict(out)
    assert report["unreadable"] == ["stuck.jpg"]
    assert report["no_face"] == []
    assert "stuck.jpg: is a FIFO" in err


# --- malformed CSVs: each names the file and the line -------------------------------------------


@pytest.mark.parametrize(("content", "line", "problem"), [
    (b"a,b,same\nx.jpg,y.jpg,1\n" + b"x" * 200_000 + b",y.jpg,1\n", 3, "line longer than"),
    (b"a,b,same\nx.jpg,y.jpg,1\n" + b"x" * 5000 + b",y.jpg,1\n", 3, "longer than 4096"),
    (b"a,b,same\nx.jpg,y.jpg,1\nx\xff.jpg,y.jpg,0\n", 3, "not UTF-8"),
    (b"a,b,same\nx.jpg,y.jpg,1\nx.jpg,y.jpg,0\nx\x00.jpg,y.jpg,1\n", 4, "NUL byte"),
    (b"a,b,same\nx.jpg,y.jpg,maybe\n", 2, "same must be 0 or 1"),
    (b"a,b,same\nx.jpg,,1\n", 2, "both a and b"),
    (b"a,b,same,a\nx.jpg,y.jpg,1,z.jpg\n", 1, "header repeats column a"),
    (b"same,b,same,a,b\nx.jpg,y.jpg,1,z.jpg,w.jpg\n", 1, "header repeats column b, same"),
])
def test_a_malformed_csv_names_the_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_models: None, content: bytes,
        line: int, problem: str) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_bytes(content)
    code, out, err = _run(capsys, "calibrate", "--pairs", str(pairs))
    assert code == 2
    assert out == ""
    assert f"pairs.csv:{line}: " in err
    assert problem in err
    assert len(err) < 1000  # the huge field is not echoed


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_pairs_file_that_is_not_a_file_is_refused_at_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_models: None, kind: str) -> None:
    pairs = tmp_path / "pairs.csv"
    if kind == "fifo":
        os.mkfifo(pairs)
    elif kind == "device":
        pairs.symlink_to("/dev/zero")
    else:
        pairs.mkdir()
    started = time.monotonic()
    code, _, err = _run(capsys, "calibrate", "--pairs", str(pairs))
    assert time.monotonic() - started < 5
    assert code == 2
    assert "pairs.csv: is a" in err


def test_an_empty_or_headless_csv_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_models: None) -> None:
    pairs = tmp_path / "pairs.csv"
    for content, problem in ((b"", "needs a header"), (b"a,b,same\n", "no pairs"),
                             (b"x,y\n1,2\n", "needs a header")):
        pairs.write_bytes(content)
        code, _, err = _run(capsys, "calibrate", "--pairs", str(pairs))
        assert code == 2
        assert problem in err


@pytest.mark.parametrize("fmr", [0.0, 1.0, float("nan")])
def test_calibrate_itself_refuses_a_bad_target_fmr(tmp_path: Path, no_models: None,
                                                   fmr: float) -> None:
    with pytest.raises(CalibrationError, match="--target-fmr"):
        calibrate([Pair("x.jpg", "y.jpg", same=True)], tmp_path, target_fmr=fmr)


# --- --scores-out: replaced all or nothing ------------------------------------------------------


def _faces(first: list[float], second: list[float]) -> ImageFaces:
    return ImageFaces(np.array(first, np.float32), np.array(second, np.float32))


@pytest.fixture
def fake_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two images, x and y, with fixed embeddings: no models; a score of 0.6 for x,y and a
    second-model distance of 0.5."""
    def embed_all(pairs: list[Pair], root: Path) -> tuple[dict[str, object], list[str],
                                                            list[str]]:
        return {"x.jpg": _faces([1.0, 0.0], [0.0, 0.0]),
                "y.jpg": _faces([0.6, 0.8], [0.3, 0.4])}, [], []

    monkeypatch.setattr("lfr.calibrate._embed_all", embed_all)


def test_scores_out_holds_every_scored_pair(tmp_path: Path, fake_embeddings: None) -> None:
    scores = tmp_path / "scores.csv"
    calibrate([Pair("x.jpg", "y.jpg", same=True)], tmp_path, target_fmr=0.01,
              scores_out=scores)
    assert scores.read_bytes() == (b"a,b,same,score,second_distance\r\n"
                                   b"x.jpg,y.jpg,1,0.600000,0.500000\r\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]


def test_calibrate_reports_both_models_and_the_rule(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Four images: a1/a2 one person (first 0.70, second 0.40: both accept), b1/b2 another
    # (first 0.55: the first model refuses at 0.60), and a lookalike pair a1/c the first model
    # accepts (0.65) and the second refuses (0.80).
    images = {
        "a1": _faces([1.0, 0.0, 0.0], [0.0]),
        "a2": _faces([0.70, float(np.sqrt(1 - 0.49)), 0.0], [0.40]),
        "b1": _faces([0.0, 0.0, 1.0], [2.0]),
        "b2": _faces([0.0, float(np.sqrt(1 - 0.3025)), 0.55], [2.3]),
        "c": _faces([0.65, 0.0, float(np.sqrt(1 - 0.4225))], [0.80]),
    }
    pairs = [Pair("a1", "a2", same=True), Pair("b1", "b2", same=True),
             Pair("a1", "c", same=False), Pair("a2", "b1", same=False)]

    def embed_all(pairs: list[Pair], root: Path) -> tuple[dict[str, object], list[str],
                                                            list[str]]:
        return dict(images), [], []

    monkeypatch.setattr("lfr.calibrate._embed_all", embed_all)
    report = calibrate(pairs, tmp_path, target_fmr=0.01)
    assert report["tar_at_default"] == 0.5  # first model: a1/a2 only
    assert report["fmr_at_default"] == 0.5  # and the lookalike
    assert report["second_tar_at_default"] == 1.0  # distances 0.40 and 0.30
    assert report["second_fmr_at_default"] == 0.0  # 0.80 and 1.6 refused
    assert report["second_max_same_distance"] == pytest.approx(0.4)
    assert report["second_min_different_distance"] == pytest.approx(0.8)
    assert report["both_tar_at_defaults"] == 0.5
    assert report["both_fmr_at_defaults"] == 0.0  # the second model stopped the lookalike
    # No different pair passes the second model: the first threshold could come to 0 here,
    # and the rule then accepts both same pairs.
    assert report["both_first_threshold_for_target_fmr"] == 0.0
    assert report["both_tar_at_that_threshold"] == 1.0
    assert report["both_fmr_at_that_threshold"] == 0.0
    assert report["auc"] == 0.75  # 0.55 < 0.65: one same pair below one different pair
    assert report["second_auc"] == 1.0
    assert report["both_auc"] == 1.0
    assert all(not face.first.any() and not face.second.any() for face in images.values())


def test_a_full_disk_leaves_the_old_scores_whole_and_no_copy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_embeddings: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b,same\nx.jpg,y.jpg,1\n")
    scores = tmp_path / "scores.csv"
    scores.write_text("old scores\n")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    code, out, err = _run(capsys, "calibrate", "--pairs", str(pairs), "--root", str(tmp_path),
                          "--scores-out", str(scores))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert f"--scores-out {scores}: cannot write: No space left on device" in err
    assert scores.read_text() == "old scores\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.csv", "scores.csv"]
