"""The command line on the shared photos: watchlist build, verify, calibrate, errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from actors.unit.watchlist import (
    ALLOW_UNUSUAL_FLAG,
    DEFAULT_THRESHOLD,
    Watchlist,
    load_watchlist,
    save_watchlist,
)
from lfr.cli import main
from models.face_embedder import EMBEDDING_DIM
from models.model_file import MOBILEFACENET
from tests.lfr.conftest import PHOTOS


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_watchlist_build_skips_photos_without_exactly_one_face(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = tmp_path / "photos"
    (photos / "kit_harington").mkdir(parents=True)
    (photos / "nobody").mkdir()
    shutil.copy(PHOTOS / "kit_harington" / "kit_1.jpeg", photos / "kit_harington")
    shutil.copy(PHOTOS / "groups" / "kit_and_rose.jpg", photos / "kit_harington")
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(photos / "nobody" / "wall.png")
    (photos / "nobody" / "notes.txt").write_text("not a photo")
    out = tmp_path / "wl.watchlist"
    code, _, err = _run(capsys, "watchlist", "build", str(photos), "--out", str(out), "--quiet",
                        "--subject-threshold", "kit_harington=0.65")
    assert code == 0, err
    assert "kit_and_rose.jpg: 2 usable faces" in err
    assert "wall.png: no face found" in err
    assert "notes.txt: not a JPEG, PNG or WebP file" in err
    assert "nobody: no usable photo; subject left out" in err
    watchlist = load_watchlist(out)
    assert watchlist.subjects == ("kit_harington",)
    assert watchlist.photos == (1,)
    assert watchlist.thresholds[0] == pytest.approx(0.65)


def test_verify_same_and_different_people(shared_data: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "verify", str(PHOTOS / "joe_biden" / "biden_1.jpg"),
                        str(PHOTOS / "joe_biden" / "biden_2.jpg"), "--json")
    assert code == 0
    same = json.loads(out)
    assert same["same_person"] is True
    assert same["similarity"] >= DEFAULT_THRESHOLD
    code, out, _ = _run(capsys, "verify", str(PHOTOS / "joe_biden" / "biden_1.jpg"),
                        str(PHOTOS / "barack_obama" / "obama_1.jpg"), "--json")
    different = json.loads(out)
    assert code == 0
    assert different["same_person"] is False
    assert different["similarity"] < 0.4


def test_verify_exits_3_naming_the_photo_without_a_usable_face(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((120, 160, 3), np.uint8)).save(blank)
    code, out, err = _run(capsys, "verify", str(PHOTOS / "joe_biden" / "biden_1.jpg"),
                          str(blank))
    assert code == 3
    assert out == ""
    assert str(blank) in err


def test_verify_exits_2_for_an_unreadable_file(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8 this is not a JPEG")
    code, _, err = _run(capsys, "verify", str(junk), str(junk))
    assert code == 2
    assert "junk.jpg" in err


def test_calibrate_reports_rates_and_no_face(shared_data: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((120, 160, 3), np.uint8)).save(blank)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "a,b,same\n"
        f"{PHOTOS}/kit_harington/kit_1.jpeg,{PHOTOS}/kit_harington/kit_2.jpeg,1\n"
        f"{PHOTOS}/rose_leslie/rose_1.jpg,{PHOTOS}/rose_leslie/rose_2.jpg,1\n"
        f"{PHOTOS}/kit_harington/kit_1.jpeg,{PHOTOS}/rose_leslie/rose_1.jpg,0\n"
        f"{PHOTOS}/joe_biden/biden_1.jpg,{PHOTOS}/kit_harington/kit_2.jpeg,0\n"
        f"{blank},{PHOTOS}/kit_harington/kit_2.jpeg,0\n")
    scores = tmp_path / "scores.csv"
    code, out, _ = _run(capsys, "calibrate", "--pairs", str(pairs), "--root", "/",
                        "--json", "--scores-out", str(scores))
    assert code == 0
    report = json.loads(out)
    assert report["pairs"] == 4
    assert report["pairs_skipped"] == 1
    assert report["auc"] == 1.0
    assert report["tar_at_default"] == 1.0
    assert report["fmr_at_default"] == 0.0
    assert report["accuracy_at_default"] == 1.0
    assert report["no_face"] == [str(blank)]
    assert report["threshold_for_target_fmr"] <= DEFAULT_THRESHOLD
    assert len(scores.read_text().splitlines()) == 5  # header + 4 scored pairs


def test_calibrate_names_a_bad_csv_line(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b,same\nx.jpg,y.jpg,maybe\n")
    code, _, err = _run(capsys, "calibrate", "--pairs", str(pairs))
    assert code == 2
    assert "pairs.csv:2" in err
    assert "same must be 0 or 1" in err


def _random_watchlist(path: Path, *, model_id: str = MOBILEFACENET.model_id,
                      model_sha256: str = MOBILEFACENET.sha256, dimension: int = EMBEDDING_DIM,
                      threshold: float = DEFAULT_THRESHOLD) -> Path:
    """A valid watchlist file of two random subjects (no photos needed)."""
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((2, dimension))
    rows = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    save_watchlist(Watchlist(model_id, model_sha256, 0.0, ("a", "b"), rows,
                             np.full(2, threshold, np.float32), (1, 1)), path)
    return path


def test_scan_accepts_a_valid_watchlist_up_to_the_source_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The baseline of the refusals below: a valid file of this model gets as far as the source.
    path = _random_watchlist(tmp_path / "ok.watchlist")
    code, _, err = _run(capsys, "scan", str(tmp_path / "nothing.mp4"), "--watchlist", str(path))
    assert code == 2
    assert "nothing.mp4: no such" in err  # refused for the source, not for the watchlist


def test_scan_refuses_a_watchlist_of_another_model(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    other = _random_watchlist(tmp_path / "other.watchlist", model_id="arcface-r100",
                              model_sha256="ab" * 32)
    code, _, err = _run(capsys, "scan", str(tmp_path / "nothing.mp4"), "--watchlist", str(other))
    assert code == 2
    assert "other.watchlist: watchlist was built with model arcface-r100" in err
    assert f"this unit uses {MOBILEFACENET.model_id}" in err


def test_scan_refuses_a_watchlist_of_another_model_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = _random_watchlist(tmp_path / "retrained.watchlist", model_sha256="cd" * 32)
    code, _, err = _run(capsys, "scan", str(tmp_path / "nothing.mp4"), "--watchlist", str(other))
    assert code == 2
    assert "cd" * 32 in err


def test_scan_refuses_embeddings_of_another_dimension_up_front(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The right model id and sha but 128-long rows: this used to scan for 47 s and exit 0.
    wrong = _random_watchlist(tmp_path / "d128.watchlist", dimension=128)
    code, _, err = _run(capsys, "scan", str(tmp_path / "nothing.mp4"), "--watchlist", str(wrong))
    assert code == 2
    assert f"embeddings have 128 dimensions, model {MOBILEFACENET.model_id} makes 192" in err


def test_scan_refuses_a_corrupt_watchlist(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = _random_watchlist(tmp_path / "flipped.watchlist")
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x80
    path.write_bytes(data)
    code, _, err = _run(capsys, "scan", str(tmp_path / "nothing.mp4"), "--watchlist", str(path))
    assert code == 2
    assert "flipped.watchlist: watchlist is corrupt" in err


def test_scan_refuses_a_watchlist_with_an_unusual_threshold(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _random_watchlist(tmp_path / "low.watchlist", threshold=0.01)
    code, _, err = _run(capsys, "scan", str(tmp_path / "nothing.mp4"), "--watchlist", str(path))
    assert code == 2
    assert "outside the usual range" in err
    assert ALLOW_UNUSUAL_FLAG in err


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_scan_refuses_a_watchlist_that_is_not_a_regular_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    path = tmp_path / "w.watchlist"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    code, _, err = _run(capsys, "scan", str(tmp_path / "nothing.mp4"), "--watchlist", str(path))
    assert code == 2
    assert "w.watchlist: is a" in err
