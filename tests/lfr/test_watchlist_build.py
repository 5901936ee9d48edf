"""``lfr watchlist build`` as a careless user and an attacker would call it: odd folder names,
files that are not photos, outputs that are not files, thresholds far from the measured ones."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from PIL import Image

from actors.unit.watchlist import ALLOW_UNUSUAL_FLAG, ThresholdError, load_watchlist
from lfr.cli import main
from lfr.photo_faces import PhotoFaces
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
    def refuse(self: PhotoFaces, path: Path) -> None:
        raise AssertionError(f"{path} was enrolled before the input was refused")

    monkeypatch.setattr(PhotoFaces, "embed_single", refuse)


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
