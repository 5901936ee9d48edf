"""``lfr watchlist build`` as a careless user and an attacker would call it: odd folder names,
files that are not photos, outputs that are not files, thresholds far from the measured ones."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from actors.unit.second_opinion import (
    DEFAULT_SECOND_THRESHOLD,
    TwoModelGallery,
    shared_second_model,
)
from actors.unit.watchlist import (
    ALLOW_UNUSUAL_FLAG,
    ThresholdError,
    load_watchlist,
    save_watchlist,
)
from lfr.cli import main
from lfr.photo_faces import PhotoFaces
from lfr.watchlist_build import build_watchlist, photo_descriptor
from models.second_opinion_model import DLIB_RESNET_V1
from tests.lfr.conftest import PHOTOS


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _kit(root: Path) -> Path:
    (root / "kit_harington").mkdir(parents=True)
    shutil.copy(PHOTOS / "kit_harington" / "kit_1.jpeg", root / "kit_harington")
    return root


@pytest.fixture
def no_enrolment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Enrolling any photo fails the test: refusals must come before the slow part."""
    def refuse(self: PhotoFaces, image: object, shown: str) -> None:
        raise AssertionError(f"{shown} was enrolled before the input was refused")

    monkeypatch.setattr(PhotoFaces, "one_face", refuse)


def _build(capsys: pytest.CaptureFixture[str], photos: Path, out: Path,
           *extra: str) -> tuple[int, str]:
    code, _, err = _run(capsys, "watchlist", "build", str(photos), "--out", str(out), "--quiet",
                        *extra)
    return code, err


def test_a_non_utf8_folder_is_refused_before_enrolling(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_enrolment: None) -> None:
    photos = _kit(tmp_path / "photos")
    os.mkdir(os.fsencode(photos) + b"/bad\xffname")
    code, err = _build(capsys, photos, tmp_path / "w.watchlist")
    assert code == 2
    assert "udcffname (not printable UTF-8 text)" in err
    assert "\udcff" not in err  # escaped, never raw
    assert not (tmp_path / "w.watchlist").exists()


def test_a_folder_name_cannot_forge_a_log_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_enrolment: None) -> None:
    photos = _kit(tmp_path / "photos")
    (photos / "x\nCRITICAL fake").mkdir()
    code, err = _build(capsys, photos, tmp_path / "w.watchlist")
    assert code == 2
    assert "CRITICAL fake" in err
    assert not any(line.startswith("CRITICAL") for line in err.splitlines())


def test_hidden_folders_and_loose_files_are_skipped_by_name(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = _kit(tmp_path / "photos")
    (photos / ".git").mkdir()
    shutil.copy(PHOTOS / "rose_leslie" / "rose_1.jpg", photos / ".git")
    (photos / "README.txt").write_text("one folder per subject")
    os.mkfifo(photos / "kit_harington" / "stuck.jpg")
    (photos / "kit_harington" / "nested").mkdir()
    out = tmp_path / "w.watchlist"
    code, err = _build(capsys, photos, out)
    assert code == 0, err
    assert ".git: hidden; not enrolled" in err
    assert "README.txt: not a folder" in err
    assert "stuck.jpg: not a regular file" in err
    assert "nested: not a regular file" in err
    assert load_watchlist(out).subjects == ("kit_harington",)


def test_webp_photos_are_enrolled(shared_data: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    photos = tmp_path / "photos"
    (photos / "kit_harington").mkdir(parents=True)
    with Image.open(PHOTOS / "kit_harington" / "kit_1.jpeg") as image:
        image.save(photos / "kit_harington" / "kit_1.webp", quality=95)
    code, err = _build(capsys, photos, tmp_path / "w.watchlist")
    assert code == 0, err
    assert "kit_harington (1 photo)" in err


@pytest.mark.parametrize("layout", ["empty", "files only", "empty subject"])
def test_folders_without_anything_to_enrol_are_refused(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        layout: str) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    if layout == "files only":
        shutil.copy(PHOTOS / "kit_harington" / "kit_1.jpeg", photos)
    elif layout == "empty subject":
        (photos / "nobody").mkdir()
    code, err = _build(capsys, photos, tmp_path / "w.watchlist")
    assert code == 2
    assert ("no subject folders" if layout != "empty subject" else "no subject has a usable "
            "photo") in err
    assert not (tmp_path / "w.watchlist").exists()


def test_a_directory_as_out_is_refused_before_enrolling_and_leaves_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_enrolment: None) -> None:
    photos = _kit(tmp_path / "photos")
    out = tmp_path / "out"
    out.mkdir()
    code, err = _build(capsys, photos, out)
    assert code == 2
    assert "is a directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "photos"]
    assert list(out.iterdir()) == []


def test_a_device_as_out_is_refused_and_left_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_enrolment: None) -> None:
    photos = _kit(tmp_path / "photos")
    out = tmp_path / "full"
    out.symlink_to("/dev/null")  # stands for /dev/full, which as root was replaced by a file
    code, err = _build(capsys, photos, out)
    assert code == 2
    assert "character device" in err
    assert out.is_symlink()
    assert stat.S_ISCHR(out.stat().st_mode)


@pytest.mark.parametrize("flags", [("--threshold", "0.01"),
                                   ("--subject-threshold", "kit_harington=0.95")])
def test_an_unusual_threshold_is_refused_before_enrolling(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_enrolment: None,
        flags: tuple[str, str]) -> None:
    photos = _kit(tmp_path / "photos")
    code, err = _build(capsys, photos, tmp_path / "w.watchlist", *flags)
    assert code == 2
    assert "outside the usual range [0.45, 0.8]" in err
    assert ALLOW_UNUSUAL_FLAG in err


def test_an_unusual_threshold_with_the_flag_is_written_and_said_in_the_summary(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = _kit(tmp_path / "photos")
    out = tmp_path / "w.watchlist"
    code, err = _build(capsys, photos, out, "--threshold", "0.3", ALLOW_UNUSUAL_FLAG)
    assert code == 0, err
    assert f"accepted by {ALLOW_UNUSUAL_FLAG}: kit_harington (0.300)" in err
    with pytest.raises(ThresholdError):
        load_watchlist(out)
    assert load_watchlist(out, allow_unusual_thresholds=True).thresholds[0] == pytest.approx(0.3)


def test_a_subject_threshold_for_a_missing_folder_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_enrolment: None) -> None:
    photos = _kit(tmp_path / "photos")
    code, err = _build(capsys, photos, tmp_path / "w.watchlist",
                       "--subject-threshold", "ghost=0.6")
    assert code == 2
    assert "names subjects with no folder: ghost" in err


def test_both_face_models_are_enrolled_from_each_photo(shared_data: Path, tmp_path: Path,
                                                       photo_faces: PhotoFaces) -> None:
    photos = tmp_path / "photos"
    for subject, names in (("kit_harington", ("kit_1.jpeg", "kit_2.jpeg")),
                           ("rose_leslie", ("rose_1.jpg",))):
        (photos / subject).mkdir(parents=True)
        for name in names:
            shutil.copy(PHOTOS / subject / name, photos / subject)
    second = shared_second_model()
    watchlist, report = build_watchlist(photos, photo_faces, progress=False,
                                        second_model=second)
    assert report.used == {"kit_harington": 2, "rose_leslie": 1}
    assert watchlist.has_second_model
    assert (watchlist.second_model_id, watchlist.second_model_sha256) == (
        DLIB_RESNET_V1.model_id, DLIB_RESNET_V1.sha256)
    assert watchlist.second_embeddings.shape == (2, 128)
    assert np.all(watchlist.second_thresholds == np.float32(DEFAULT_SECOND_THRESHOLD))
    # Kit's template is the mean of his two photos' descriptors; Rose's is her one photo's.
    kit = [photo_descriptor(photos / "kit_harington" / n, photo_faces, second)
           for n in ("kit_1.jpeg", "kit_2.jpeg")]
    rose = photo_descriptor(photos / "rose_leslie" / "rose_1.jpg", photo_faces, second)
    assert np.allclose(watchlist.second_embeddings[0], np.mean(kit, axis=0), atol=1e-6)
    assert np.allclose(watchlist.second_embeddings[1], rose, atol=1e-6)
    # Saved and loaded, it makes a gallery of both models.
    save_watchlist(watchlist, tmp_path / "w.watchlist")
    assert isinstance(load_watchlist(tmp_path / "w.watchlist").gallery(), TwoModelGallery)
