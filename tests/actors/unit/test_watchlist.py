"""The watchlist: strict round trip, model check, validation, and refusal of bad files.

The file format itself (checksum, file kinds, atomic writes) is tested in test_watchlist_file.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.unit.match_alert import MatchAlert
from actors.unit.second_opinion import TwoModelGallery
from actors.unit.watchlist import (
    ALLOW_UNUSUAL_FLAG,
    FORMAT_VERSION,
    MAX_WATCHLIST_BYTES,
    ThresholdError,
    Watchlist,
    WatchlistError,
    check_threshold,
    encode_watchlist,
    load_watchlist,
    save_watchlist,
)
from guards.user_input import UserInputError
from models.face_embedder import EMBEDDING_DIM
from runtime.codec import Codec
from tests.actors.support import toward, unit_rows

D = 192
MODEL_ID = "mobilefacenet-v1"
MODEL_SHA = hashlib.sha256(b"model bytes").hexdigest()


def make_watchlist(n: int = 4, *, seed: int = 0) -> Watchlist:
    """A valid watchlist of ``n`` subjects."""
    rng = np.random.default_rng(seed)
    return Watchlist(
        model_id=MODEL_ID, model_sha256=MODEL_SHA, created_at=1_700_000_000.25,
        subjects=tuple(f"subject_{i}" for i in range(n)),
        embeddings=unit_rows(rng, n, D),
        thresholds=rng.uniform(0.5, 0.7, n).astype(np.float32),
        photos=tuple(range(1, n + 1)),
    )


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Watchlist, Path]:
    """A watchlist and the file it was saved to."""
    watchlist = make_watchlist()
    path = tmp_path / "watchlist.lfrw"
    save_watchlist(watchlist, path)
    return watchlist, path


# --- round trip -------------------------------------------------------------------------------


def assert_same(a: Watchlist, b: Watchlist) -> None:
    """Field by field (``Watchlist`` compares by identity)."""
    assert (a.model_id, a.model_sha256, a.created_at, a.subjects, a.photos) == (
        b.model_id, b.model_sha256, b.created_at, b.subjects, b.photos)
    assert np.array_equal(a.embeddings, b.embeddings)
    assert np.array_equal(a.thresholds, b.thresholds)
    assert (a.second_model_id, a.second_model_sha256) == (b.second_model_id,
                                                          b.second_model_sha256)
    assert np.array_equal(a.second_embeddings, b.second_embeddings)
    assert np.array_equal(a.second_thresholds, b.second_thresholds)


def with_second_model(watchlist: Watchlist, *, seed: int = 1) -> Watchlist:
    """``watchlist`` with templates of the second model."""
    rng = np.random.default_rng(seed)
    n = len(watchlist.subjects)
    return replace(watchlist, second_model_id="dlib-resnet-v1-128",
                   second_model_sha256=hashlib.sha256(b"second").hexdigest(),
                   second_embeddings=(0.1 * rng.standard_normal((n, 128))).astype(np.float32),
                   second_thresholds=np.full(n, 0.6, np.float32))


def test_both_models_templates_round_trip_and_make_a_two_model_gallery(tmp_path: Path) -> None:
    watchlist = with_second_model(make_watchlist(3))
    path = tmp_path / "two.lfrw"
    save_watchlist(watchlist, path)
    loaded = load_watchlist(path)
    assert_same(watchlist, loaded)
    assert loaded.has_second_model
    gallery = loaded.gallery(0.55)
    assert isinstance(gallery, TwoModelGallery)
    assert gallery.second.rows == {"subject_0": 0, "subject_1": 1, "subject_2": 2}
    assert np.array_equal(gallery.second.embeddings, watchlist.second_embeddings)
    assert np.array_equal(gallery.second.thresholds, watchlist.second_thresholds)
    assert np.all(gallery.thresholds == np.float32(0.55))  # the override is the first model's
    first_only = make_watchlist(3)
    assert not first_only.has_second_model
    assert not isinstance(first_only.gallery(), TwoModelGallery)


@pytest.mark.parametrize(("changes", "fault"), [
    ({"second_embeddings": np.zeros((2, 128), np.float32)}, "shape"),
    ({"second_embeddings": np.zeros((3, 64), np.float32)}, "shape"),
    ({"second_thresholds": np.full(3, 0.0, np.float32)}, r"thresholds must lie in \(0, 1.5\]"),
    ({"second_thresholds": np.full(3, 1.6, np.float32)}, r"thresholds must lie in \(0, 1.5\]"),
    ({"second_thresholds": np.full(3, np.nan, np.float32)}, "finite"),
    ({"second_embeddings": np.zeros((3, 128), np.float32)}, "non-zero"),
    ({"second_model_sha256": ""}, "given together"),
    ({"second_model_id": ""}, "given together"),
])
def test_inconsistent_second_model_templates_are_refused(changes: dict[str, Any],
                                                        fault: str) -> None:
    with pytest.raises(WatchlistError, match=fault):
        replace(with_second_model(make_watchlist(3)), **changes)


def test_save_then_load_round_trips(saved: tuple[Watchlist, Path]) -> None:
    watchlist, path = saved
    loaded = load_watchlist(path)
    assert_same(loaded, watchlist)
    assert loaded.embeddings.dtype == np.float32
    assert loaded.thresholds.dtype == np.float32
    assert loaded.embeddings.shape == (4, D)
    assert isinstance(loaded.subjects, tuple)
    assert isinstance(loaded.photos, tuple)


def test_save_is_atomic_and_leaves_no_temporary_file(saved: tuple[Watchlist, Path]) -> None:
    _, path = saved
    replacement = make_watchlist(2, seed=1)
    save_watchlist(replacement, path)
    assert_same(load_watchlist(path), replacement)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_watchlist_without_subjects_is_refused() -> None:
    # It would load, scan for minutes and alert on nobody: refused where it is made (and so
    # also on load, which builds the object the same way).
    with pytest.raises(WatchlistError, match="at least one subject"):
        Watchlist(MODEL_ID, MODEL_SHA, 0.0, (), np.zeros((0, D), np.float32),
                  np.zeros(0, np.float32), ())


def test_whatever_can_be_saved_can_be_loaded(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((2, 8))
    try:
        watchlist = Watchlist(MODEL_ID, MODEL_SHA, 0.0, ("a", "b"),
                              rows / np.linalg.norm(rows, axis=1, keepdims=True),
                              np.array([0.5, 0.6]), (1, 1))
        save_watchlist(watchlist, tmp_path / "w.lfrw")
    except ValueError:
        return  # refusing such a watchlist up front is fine too
    assert_same(load_watchlist(tmp_path / "w.lfrw"), watchlist)


# --- model check ------------------------------------------------------------------------------


def test_check_model_accepts_the_same_model(saved: tuple[Watchlist, Path]) -> None:
    load_watchlist(saved[1]).check_model(MODEL_ID, MODEL_SHA, "watchlist.lfrw")


def test_check_model_refuses_another_model_naming_both() -> None:
    watchlist = make_watchlist()
    with pytest.raises(WatchlistError) as info:
        watchlist.check_model("arcface-r100", MODEL_SHA, "cam0.lfrw")
    text = str(info.value)
    assert "cam0.lfrw" in text
    assert MODEL_ID in text
    assert "arcface-r100" in text


def test_check_model_refuses_embeddings_of_another_dimension() -> None:
    # The right model id and sha, but 128-long rows: every face would be "no match" for 47 s.
    rng = np.random.default_rng(0)
    w = Watchlist(MODEL_ID, MODEL_SHA, 0.0, ("a", "b"), unit_rows(rng, 2, 128),
                  np.full(2, 0.6, np.float32), (1, 1))
    with pytest.raises(WatchlistError, match=r"128 dimensions.*makes 192") as info:
        w.check_model(MODEL_ID, MODEL_SHA, "cam0.lfrw")
    assert "cam0.lfrw" in str(info.value)
    make_watchlist().check_model(MODEL_ID, MODEL_SHA, "cam0.lfrw")  # D == EMBEDDING_DIM
    assert D == EMBEDDING_DIM
    w.check_model(MODEL_ID, MODEL_SHA, "cam0.lfrw", dimension=128)


def test_check_model_refuses_another_model_file_naming_both_hashes() -> None:
    watchlist = make_watchlist()
    other_sha = hashlib.sha256(b"retrained model").hexdigest()
    with pytest.raises(WatchlistError) as info:
        watchlist.check_model(MODEL_ID, other_sha, "cam0.lfrw")
    text = str(info.value)
    assert "cam0.lfrw" in text
    assert MODEL_SHA[:12] in text
    assert other_sha[:12] in text


# --- bad files --------------------------------------------------------------------------------


def assert_refused(path: Path, *, max_bytes: int = MAX_WATCHLIST_BYTES,
                   match: str | None = None) -> None:
    """``load_watchlist(path)`` raises ``WatchlistError`` naming the path."""
    with pytest.raises(WatchlistError, match=match) as info:
        load_watchlist(path, max_bytes=max_bytes)
    assert str(path) in str(info.value)


def test_encoded_bytes_start_with_the_header() -> None:
    data = encode_watchlist(make_watchlist())
    assert data[:4] == b"LFRW"
    assert data[38:] == Codec().encode(make_watchlist())
    assert data[6:38] == hashlib.sha256(data[38:]).digest()


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.99])
def test_truncated_file_is_refused(saved: tuple[Watchlist, Path], fraction: float) -> None:
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    assert_refused(path)


def test_trailing_garbage_is_refused(saved: tuple[Watchlist, Path]) -> None:
    _, path = saved
    path.write_bytes(path.read_bytes() + b"\x00")
    assert_refused(path)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=2048))
def test_random_bytes_are_refused(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "random.lfrw"
    path.write_bytes(data)
    assert_refused(path)


def test_random_bytes_of_realistic_size_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "random.lfrw"
    path.write_bytes(np.random.default_rng(0).bytes(100_000))
    assert_refused(path, match="not a watchlist file")


def with_checksum(payload: bytes) -> bytes:
    """``payload`` behind a header with its correct checksum (a file crafted, not damaged)."""
    return (b"LFRW" + FORMAT_VERSION.to_bytes(2, "little") + hashlib.sha256(payload).digest()
            + payload)


def test_file_holding_another_message_is_refused(tmp_path: Path) -> None:
    alert = MatchAlert("u/cam0/1/a/3", "a", 0.8, 0.6, 1, "cam0", 1.0, 2.0, 3,
                       (0.0, 0.0, 1.0, 1.0), 3, b"jpeg")
    path = tmp_path / "alert.lfrw"
    path.write_bytes(with_checksum(Codec().encode(alert)))
    assert_refused(path, match="MatchAlert")


def test_file_holding_an_invalid_watchlist_is_refused(tmp_path: Path) -> None:
    # Encode a valid watchlist, then swap its embeddings for non-unit ones in the bytes and
    # give the result a correct checksum: the checks on load are more than the checksum.
    watchlist = make_watchlist(2)
    data = Codec().encode(watchlist)
    good = watchlist.embeddings.tobytes()
    bad = (watchlist.embeddings * 2).tobytes()
    assert data.count(good) == 1
    path = tmp_path / "tampered.lfrw"
    path.write_bytes(with_checksum(data.replace(good, bad)))
    assert_refused(path, match="unit length")


@pytest.mark.parametrize(("subject", "problem"), [
    ("x\nCRITICAL fake", "cannot be printed"),
    ("bidi\u202eeman", "cannot be printed"),
    ("", "1 to 255 characters"),
    ("s" * 256, "1 to 255 characters"),
])
def test_a_crafted_file_with_a_bad_subject_id_is_refused(tmp_path: Path, subject: str,
                                                         problem: str) -> None:
    watchlist = make_watchlist(2)
    forged = object.__new__(Watchlist)  # around the constructor's checks, as an attacker would
    for name in Watchlist.__dataclass_fields__:
        object.__setattr__(forged, name, getattr(watchlist, name))
    object.__setattr__(forged, "subjects", ("subject_0", subject))
    data = Codec().encode(forged)
    path = tmp_path / "forged.lfrw"
    path.write_bytes(with_checksum(data))
    assert_refused(path, match=problem)
    with pytest.raises(WatchlistError) as info:
        load_watchlist(path)
    assert "\n" not in str(info.value)  # the id is escaped: it forges no log line


def test_oversize_file_is_refused(saved: tuple[Watchlist, Path]) -> None:
    _, path = saved
    size = path.stat().st_size
    assert_same(load_watchlist(path, max_bytes=size), saved[0])
    assert_refused(path, max_bytes=size - 1, match=f"over the limit of {size - 1} bytes")


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path / "nowhere" / "watchlist.lfrw", match="no such file")


def test_directory_instead_of_a_file_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path)


# --- validation -------------------------------------------------------------------------------


def test_duplicate_subject_ids_are_refused() -> None:
    w = make_watchlist(3)
    with pytest.raises(WatchlistError, match="unique"):
        Watchlist(MODEL_ID, MODEL_SHA, 0.0, ("a", "b", "a"), w.embeddings, w.thresholds, w.photos)


@pytest.mark.parametrize("subject", ["x\nCRITICAL fake", "bad\udcffname", "tab\there", ""])
def test_unprintable_subject_ids_are_refused_when_made(subject: str) -> None:
    # "bad\udcffname" is how Python names a folder whose name is not UTF-8.
    w = make_watchlist(2)
    with pytest.raises(WatchlistError, match="subject id"):
        Watchlist(MODEL_ID, MODEL_SHA, 0.0, ("ok", subject), w.embeddings, w.thresholds, w.photos)


def test_every_refusal_is_a_user_input_error() -> None:
    # The command line maps UserInputError, and only it, to exit 2.
    w = make_watchlist(3)
    with pytest.raises(UserInputError):
        Watchlist(MODEL_ID, MODEL_SHA, 0.0, w.subjects, w.embeddings * 2, w.thresholds, w.photos)
    with pytest.raises(UserInputError):
        check_threshold(1.5)


@pytest.mark.parametrize("threshold", [0.01, 0.3, 0.44, 0.81, 0.99])
def test_an_unusual_threshold_is_refused_on_load_unless_allowed(tmp_path: Path,
                                                                threshold: float) -> None:
    w = make_watchlist(3)
    thresholds = w.thresholds.copy()
    thresholds[1] = threshold
    unusual = Watchlist(MODEL_ID, MODEL_SHA, 0.0, w.subjects, w.embeddings, thresholds, w.photos)
    path = tmp_path / "low.lfrw"
    save_watchlist(unusual, path)
    with pytest.raises(ThresholdError, match=ALLOW_UNUSUAL_FLAG) as info:
        load_watchlist(path)
    assert "subject_1" in str(info.value)
    assert "subject_0" not in str(info.value)
    assert str(path) in str(info.value)
    loaded = load_watchlist(path, allow_unusual_thresholds=True)
    assert loaded.thresholds[1] == pytest.approx(threshold)
    assert [s for s, _ in loaded.unusual_thresholds("x", allow_unusual=True)] == ["subject_1"]


@pytest.mark.parametrize("threshold", [0.45, 0.6, 0.8])
def test_usual_thresholds_load_without_the_flag(tmp_path: Path, threshold: float) -> None:
    w = make_watchlist(2)
    path = tmp_path / "w.lfrw"
    save_watchlist(Watchlist(MODEL_ID, MODEL_SHA, 0.0, w.subjects, w.embeddings,
                             np.full(2, threshold, np.float32), w.photos), path)
    assert load_watchlist(path).unusual_thresholds("w", allow_unusual=False) == []


@pytest.mark.parametrize("scale", [0.5, 1.01, 0.0])
def test_non_unit_embeddings_are_refused(scale: float) -> None:
    w = make_watchlist(3)
    embeddings = w.embeddings.copy()
    embeddings[1] *= scale
    with pytest.raises(ValueError, match="unit length"):
        Watchlist(MODEL_ID, MODEL_SHA, 0.0, w.subjects, embeddings, w.thresholds, w.photos)


def test_non_finite_embeddings_are_refused() -> None:
    w = make_watchlist(3)
    embeddings = w.embeddings.copy()
    embeddings[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        Watchlist(MODEL_ID, MODEL_SHA, 0.0, w.subjects, embeddings, w.thresholds, w.photos)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5, np.nan, np.inf])
def test_thresholds_outside_zero_one_are_refused(bad: float) -> None:
    w = make_watchlist(3)
    thresholds = w.thresholds.copy()
    thresholds[2] = bad
    with pytest.raises(ValueError, match="thresholds"):
        Watchlist(MODEL_ID, MODEL_SHA, 0.0, w.subjects, w.embeddings, thresholds, w.photos)


@pytest.mark.parametrize(("embeddings_shape", "thresholds_len", "photos_len"), [
    ((2, D), 3, 3),     # too few rows
    ((4, D), 3, 3),     # too many rows
    ((3 * D,), 3, 3),   # not a matrix
    ((3, D), 2, 3),     # too few thresholds
    ((3, D), 3, 4),     # too many photo counts
])
def test_shape_mismatches_are_refused(embeddings_shape: tuple[int, ...], thresholds_len: int,
                                      photos_len: int) -> None:
    rng = np.random.default_rng(0)
    embeddings = unit_rows(rng, int(np.prod(embeddings_shape)) // D, D).reshape(embeddings_shape)
    with pytest.raises(ValueError, match=r"shape|thresholds"):
        Watchlist(MODEL_ID, MODEL_SHA, 0.0, ("a", "b", "c"), embeddings,
                  np.full(thresholds_len, 0.6, np.float32), tuple(range(photos_len)))


# --- gallery ----------------------------------------------------------------------------------


def test_gallery_keeps_each_subjects_threshold() -> None:
    w = make_watchlist()
    gallery = w.gallery()
    assert gallery.subjects == list(w.subjects)
    assert np.array_equal(gallery.thresholds, w.thresholds)
    best = gallery.search(w.embeddings[2:3], k=1)[0][0]
    assert best.subject == "subject_2"
    assert best.threshold == float(w.thresholds[2])


def test_gallery_threshold_overrides_every_subject() -> None:
    w = make_watchlist()
    gallery = w.gallery(0.9)
    assert np.array_equal(gallery.thresholds, np.full(4, 0.9, np.float32))
    # A face at 0.8 to subject_1 matches by the subject's own threshold, not by the override.
    query = toward(np.random.default_rng(1), w.embeddings[1], 0.8)[None, :]
    assert w.gallery().search(query, k=1)[0][0].is_match
    overridden = gallery.search(query, k=1)[0][0]
    assert overridden.subject == "subject_1"
    assert overridden.threshold == pytest.approx(0.9)
    assert not overridden.is_match
    assert np.array_equal(w.thresholds, make_watchlist().thresholds)  # the watchlist is unchanged


def test_gallery_of_a_loaded_watchlist_searches(saved: tuple[Watchlist, Path]) -> None:
    loaded = load_watchlist(saved[1])
    results = loaded.gallery().search(loaded.embeddings, k=1)
    assert [r[0].subject for r in results] == list(loaded.subjects)
    assert all(r[0].score == pytest.approx(1.0, abs=1e-5) for r in results)


@pytest.mark.parametrize("value", [0.01, 0.6, 0.99])
def test_check_threshold_accepts_values_strictly_inside(value: float) -> None:
    assert check_threshold(value) == value


@pytest.mark.parametrize("value", [0.0, 1.0, -1.0, 2.0, float("nan"), float("inf")])
def test_check_threshold_refuses_values_outside(value: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        check_threshold(value)
