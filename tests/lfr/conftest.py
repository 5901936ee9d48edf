"""Fixtures for the command-line and end-to-end tests: shared data, models, watchlists."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.unit.watchlist import Watchlist, save_watchlist
from lfr.local_deployment import CameraPlan, LocalDeployment, create_local_deployment
from lfr.photo_faces import PhotoFaces
from lfr.watchlist_build import build_watchlist

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CLIP = SHARED_DATA / "faces" / "video" / "short_hamilton_clip.mp4"
PHOTOS = SHARED_DATA / "faces" / "photos"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository, or skip."""
    if not (SHARED_DATA / "faces").is_dir():
        pytest.skip(f"{SHARED_DATA} not found: the real-data tests need ../shared/data beside "
                    "the repository (CI always has it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def photo_faces() -> PhotoFaces:
    """The real models, loaded once."""
    return PhotoFaces()


def _subject_dir(root: Path, subjects: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for subject in subjects:
        link = root / subject
        if not link.exists():
            link.symlink_to(PHOTOS / subject, target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def clip_watchlist(shared_data: Path, photo_faces: PhotoFaces,
                   tmp_path_factory: pytest.TempPathFactory) -> tuple[Watchlist, Path]:
    """Lin-Manuel Miranda and Alex Lacamoire (in the clip), Kit Harington and Rose Leslie (not)."""
    root = _subject_dir(tmp_path_factory.mktemp("enrol-4"),
                        ["lin_manuel_miranda", "alex_lacamoire", "kit_harington", "rose_leslie"])
    watchlist, report = build_watchlist(root, photo_faces, progress=False)
    assert report.skipped == []
    path = root / "clip.watchlist"
    save_watchlist(watchlist, path)
    return watchlist, path


@pytest.fixture(scope="session")
def absent_watchlist(shared_data: Path, photo_faces: PhotoFaces,
                     tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only subjects who are not in the clip: a scan with it must match nobody."""
    root = _subject_dir(tmp_path_factory.mktemp("enrol-absent"),
                        ["kit_harington", "rose_leslie"])
    watchlist, _ = build_watchlist(root, photo_faces, progress=False)
    path = root.parent / "absent.watchlist"
    save_watchlist(watchlist, path)
    return path


@pytest.fixture
def clip_deployment(tmp_path: Path, shared_data: Path,
                    clip_watchlist: tuple[Watchlist, Path]) -> LocalDeployment:
    """A van and one unit (``unit-1``, camera ``door`` on the shared clip, the clip watchlist)
    provisioned in ``tmp_path`` by ``lfr.local_deployment``, ready to start as processes."""
    return create_local_deployment(tmp_path / "deployment", units=1,
                                   cameras=[CameraPlan("door", CLIP)],
                                   watchlist=clip_watchlist[1])
