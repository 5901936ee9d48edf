"""``Gallery``: exact top-k cosine search, with and without the 8-bit quantised index.

The reference everywhere is brute force in float32: ``gallery.embeddings @ query`` (the rows the
gallery itself normalised), sorted best first. The exact path must reproduce it bit for bit. The
quantised path re-scores its candidates with a float32 product over just those rows, which BLAS
may round differently from the product over all rows (seen: 1 ulp), so its scores are compared
to ``SQ8_ATOL``; its subjects must still be exactly the brute-force top k wherever the top k+1
scores are further apart than that (closer scores are ties at float32 precision, and either order
is correct). Every returned subject's score is checked against that subject's exact score.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from actors.unit.gallery import Gallery, GalleryMatch
from tests.actors.support import toward, unit_rows

D = 192
"""MobileFaceNet's embedding length, the one the unit uses."""
BIG = 5_000
"""Subjects in the quantised-index galleries."""
NEAR = 2e-3
"""How far "just above / below a threshold" is: well inside the index's error bound (~1e-2),
far outside float32 rounding (~1e-7)."""
BELOW = 0.03
"""How far "clearly below a threshold" is: further than the index's error bound."""
SQ8_ATOL = 1e-6
"""Score tolerance of the quantised path: a few float32 ulps of re-scoring rounding."""

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
PROPERTY = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True, scope="module")
def single_threaded_faiss() -> Iterator[None]:
    """One OpenMP thread for faiss here: its spinning threads slow these small searches down
    several times on busy CI cores, and the results do not depend on the thread count."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def names(n: int) -> list[str]:
    """Subject ids ``s0 .. s{n-1}``."""
    return [f"s{i}" for i in range(n)]


def brute_force(gallery: Gallery, query: NDArray[np.float32]) -> NDArray[np.float32]:
    """Every subject's exact float32 score for ``query``."""
    scores: NDArray[np.float32] = gallery.embeddings @ query
    return scores


def assert_exact_top_k(result: list[GalleryMatch], gallery: Gallery,
                       query: NDArray[np.float32], k: int, *, atol: float = 0.0) -> None:
    """``result`` is the brute-force float32 top ``k`` of ``query`` (scores to ``atol``)."""
    scores = brute_force(gallery, query)
    order = np.argsort(-scores, kind="stable")
    expected = order[:min(k, len(gallery))]
    got = [(m.subject, m.score) for m in result]
    want = [(gallery.subjects[i], float(scores[i])) for i in expected]
    assert len(result) == len(expected), f"got {got}, expected {want}"
    assert np.allclose([m.score for m in result], [s for _, s in want], rtol=0.0, atol=atol), (
        f"top-{k} scores differ: got {got}, expected {want}")
    assert len({m.subject for m in result}) == len(result)
    index = {s: i for i, s in enumerate(gallery.subjects)}
    for m in result:
        i = index[m.subject]
        assert abs(m.score - float(scores[i])) <= atol, (
            f"{m.subject}: reported {m.score}, exact {scores[i]}")
        assert m.threshold == float(gallery.thresholds[i])
        assert m.is_match == (m.score >= m.threshold)
    top = scores[order[:k + 1]].astype(np.float64)
    if len(top) < 2 or np.min(-np.diff(top)) > 2 * atol:  # no ties: the subjects are determined
        assert [m.subject for m in result] == [s for s, _ in want], (
            f"top-{k} subjects differ: got {got}, expected {want}")


def assert_matches_kept(result: list[GalleryMatch], gallery: Gallery,
                        query: NDArray[np.float32], k: int) -> None:
    """What the index guarantees even when it stops early below every threshold.

    Every entry of the true top ``k`` that reaches the lowest threshold is returned at its rank
    with its exact score; every returned score is that subject's exact score.
    """
    scores = brute_force(gallery, query)
    order = np.argsort(-scores, kind="stable")[:min(k, len(gallery))]
    above_floor = [float(scores[i]) for i in order if scores[i] >= gallery.floor]
    assert len(result) == len(order)
    assert np.allclose([m.score for m in result[:len(above_floor)]], above_floor,
                       rtol=0.0, atol=SQ8_ATOL)
    index = {s: i for i, s in enumerate(gallery.subjects)}
    assert len({m.subject for m in result}) == len(result)
    for m in result:
        assert abs(m.score - float(scores[index[m.subject]])) <= SQ8_ATOL
    assert [m.score for m in result] == sorted((m.score for m in result), reverse=True)


# --- exact path -------------------------------------------------------------------------------


@PROPERTY
@given(seed=SEEDS, n=st.integers(1, 400), d=st.sampled_from([3, 16, D]), k=st.integers(1, 12))
def test_exact_search_equals_brute_force(seed: int, n: int, d: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    embeddings = unit_rows(rng, n, d)
    thresholds = rng.uniform(0.05, 0.95, n).astype(np.float32)
    gallery = Gallery(names(n), embeddings, thresholds)
    queries = np.concatenate([
        unit_rows(rng, 5, d),
        np.stack([toward(rng, embeddings[j], float(rng.uniform(0.3, 1.0)))
                  for j in rng.integers(0, n, 5)]),
    ])
    results = gallery.search(queries, k=k)
    assert len(results) == len(queries)
    for query, result in zip(queries, results, strict=True):
        assert_exact_top_k(result, gallery, query, k)


def test_exact_search_scores_are_cosines_of_unnormalised_rows() -> None:
    rng = np.random.default_rng(1)
    embeddings = unit_rows(rng, 50, 16)
    scales = rng.uniform(0.1, 10.0, (50, 1)).astype(np.float32)
    gallery = Gallery(names(50), embeddings * scales, np.full(50, 0.5, np.float32))
    query = unit_rows(rng, 1, 16)
    cosines = embeddings.astype(np.float64) @ query[0].astype(np.float64)
    for m in gallery.search(query, k=50)[0]:
        assert m.score == pytest.approx(cosines[int(m.subject[1:])], abs=1e-6)


# --- quantised path ---------------------------------------------------------------------------


def random_sq8(seed: int) -> tuple[Gallery, np.random.Generator]:
    """5,000 random unit vectors with per-subject thresholds in [0.5, 0.8], indexed.

    Unrelated subjects score about N(0, 1/192) against any query, so one at 0.5 is >6.9 sigma
    away: a query aimed at a subject near its threshold has that subject as its true best.
    """
    rng = np.random.default_rng(seed)
    embeddings = unit_rows(rng, BIG, D)
    thresholds = rng.uniform(0.5, 0.8, BIG).astype(np.float32)
    return Gallery(names(BIG), embeddings, thresholds, index="sq8"), rng


def clustered_sq8(seed: int, threshold: float = 0.6) -> tuple[Gallery, np.random.Generator]:
    """5,000 subjects in 5 clusters of near-duplicates (any query scores them within ~1e-3)."""
    rng = np.random.default_rng(seed)
    centres = unit_rows(rng, 5, D).astype(np.float64)
    members = centres[rng.integers(0, 5, BIG)] + 1e-4 * rng.standard_normal((BIG, D))
    embeddings = (members / np.linalg.norm(members, axis=1, keepdims=True)).astype(np.float32)
    thresholds = np.full(BIG, threshold, np.float32)
    return Gallery(names(BIG), embeddings, thresholds, index="sq8"), rng


def threshold_queries(gallery: Gallery, rng: np.random.Generator, count: int,
                      offsets: tuple[float, ...] = (NEAR, -NEAR)) -> NDArray[np.float32]:
    """Queries at exactly a random subject's threshold plus each of ``offsets`` in turn."""
    rows = []
    for i, j in enumerate(rng.integers(0, len(gallery), count)):
        cosine = float(gallery.thresholds[j]) + offsets[i % len(offsets)]
        rows.append(toward(rng, gallery.embeddings[j], cosine))
    return np.stack(rows)


@PROPERTY
@given(seed=SEEDS, k=st.sampled_from([1, 3, 5]))
def test_sq8_random_gallery_equals_brute_force(seed: int, k: int) -> None:
    gallery, rng = random_sq8(seed)
    targets = rng.integers(0, BIG, 10)
    just_above = np.stack([toward(rng, gallery.embeddings[j], float(gallery.thresholds[j]) + NEAR)
                           for j in targets])
    just_below = np.stack([toward(rng, gallery.embeddings[j], float(gallery.thresholds[j]) - NEAR)
                           for j in targets])
    near_duplicates = np.stack([toward(rng, gallery.embeddings[j], 0.95) for j in targets])
    unrelated = unit_rows(rng, 10, D)
    for queries, best_matches in ((just_above, True), (just_below, False),
                                  (near_duplicates, True), (unrelated, None)):
        results = gallery.search(queries, k=k)
        for query, result in zip(queries, results, strict=True):
            assert_exact_top_k(result, gallery, query, k, atol=SQ8_ATOL)
        if best_matches is not None:
            # The targeted subject is the true best and its own threshold decides the match.
            assert [r[0].subject for r in results] == [f"s{j}" for j in targets]
            assert [r[0].is_match for r in results] == [best_matches] * len(targets)


@PROPERTY
@given(seed=SEEDS, k=st.sampled_from([1, 3, 10]))
def test_sq8_clustered_gallery_equals_brute_force_above_threshold(seed: int, k: int) -> None:
    gallery, rng = clustered_sq8(seed)
    queries = np.stack([toward(rng, gallery.embeddings[j], 0.9)
                        for j in rng.integers(0, BIG, 20)])
    for query, result in zip(queries, gallery.search(queries, k=k), strict=True):
        top = np.sort(brute_force(gallery, query))[::-1][:10]
        assert top[0] - top[-1] < 0.01  # the near-duplicate regime this test is about
        assert_exact_top_k(result, gallery, query, k, atol=SQ8_ATOL)


@PROPERTY
@given(seed=SEEDS, k=st.sampled_from([1, 3, 10]))
def test_sq8_clustered_gallery_never_loses_a_match(seed: int, k: int) -> None:
    gallery, rng = clustered_sq8(seed)
    queries = threshold_queries(gallery, rng, 60, (NEAR, -NEAR, -BELOW))
    for query, result in zip(queries, gallery.search(queries, k=k), strict=True):
        top = np.sort(brute_force(gallery, query))[::-1][:10]
        assert top[0] - top[-1] < 0.01
        assert_matches_kept(result, gallery, query, k)
        assert result[0].is_match == bool(top[0] >= gallery.floor)


@PROPERTY
@given(seed=SEEDS, k=st.sampled_from([1, 3, 10]))
def test_sq8_clustered_gallery_equals_brute_force_just_above_and_below_threshold(
        seed: int, k: int) -> None:
    gallery, rng = clustered_sq8(seed)
    queries = threshold_queries(gallery, rng, 40)
    for query, result in zip(queries, gallery.search(queries, k=k), strict=True):
        top = np.sort(brute_force(gallery, query))[::-1][:10]
        assert top[0] - top[-1] < 0.01
        assert_exact_top_k(result, gallery, query, k, atol=SQ8_ATOL)


@settings(max_examples=4, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow])
@example(seed=0, k=3)
@example(seed=1, k=1)
@given(seed=SEEDS, k=st.sampled_from([1, 3]))
def test_sq8_clustered_gallery_equals_brute_force_clearly_below_threshold(
        seed: int, k: int) -> None:
    gallery, rng = clustered_sq8(seed)
    queries = threshold_queries(gallery, rng, 20, (-BELOW,))
    for query, result in zip(queries, gallery.search(queries, k=k), strict=True):
        assert_exact_top_k(result, gallery, query, k, atol=SQ8_ATOL)


@pytest.mark.parametrize("n", [1, 2, 3, 31, 33])
def test_sq8_small_galleries_equal_brute_force(n: int) -> None:
    rng = np.random.default_rng(n)
    embeddings = unit_rows(rng, n, 16)
    gallery = Gallery(names(n), embeddings, np.full(n, 0.5, np.float32), index="sq8")
    queries = np.concatenate([unit_rows(rng, 10, 16), embeddings[:3]])
    for query, result in zip(queries, gallery.search(queries, k=5), strict=True):
        assert_exact_top_k(result, gallery, query, 5, atol=SQ8_ATOL)


# --- thresholds, k, shapes, invalid rows ------------------------------------------------------


@pytest.mark.parametrize("index", ["auto", "sq8"])
def test_is_match_uses_the_subjects_own_threshold(index: str) -> None:
    rng = np.random.default_rng(7)
    embeddings = unit_rows(rng, 3, D)
    thresholds = np.array([0.3, 0.6, 0.9], np.float32)
    gallery = Gallery(["low", "mid", "high"], embeddings, thresholds, index=index)
    queries = np.stack([toward(rng, embeddings[0], 0.5),   # over 0.3 (but under 0.6 and 0.9)
                        toward(rng, embeddings[1], 0.5),   # under 0.6 (though over 0.3)
                        toward(rng, embeddings[2], 0.8),   # under 0.9 (though over 0.6)
                        toward(rng, embeddings[2], 0.95)])
    best = [r[0] for r in gallery.search(queries, k=1)]
    assert [m.subject for m in best] == ["low", "mid", "high", "high"]
    assert [m.threshold for m in best] == pytest.approx([0.3, 0.6, 0.9, 0.9])
    assert [m.is_match for m in best] == [True, False, False, True]


def test_is_match_includes_the_threshold_itself() -> None:
    assert GalleryMatch("a", 0.6, 0.6).is_match
    assert not GalleryMatch("a", float(np.nextafter(np.float32(0.6), np.float32(0))), 0.6).is_match


@pytest.mark.parametrize("index", ["auto", "sq8"])
def test_k_larger_than_the_gallery_returns_every_subject(index: str) -> None:
    rng = np.random.default_rng(3)
    embeddings = unit_rows(rng, 4, 8)
    gallery = Gallery(names(4), embeddings, np.full(4, 0.5, np.float32), index=index)
    queries = unit_rows(rng, 3, 8)
    for query, result in zip(queries, gallery.search(queries, k=50), strict=True):
        assert sorted(m.subject for m in result) == names(4)
        assert_exact_top_k(result, gallery, query, 50, atol=SQ8_ATOL if index == "sq8" else 0.0)
    assert gallery.search(queries, k=0) == [[], [], []]


def test_empty_gallery_finds_nothing() -> None:
    gallery = Gallery([], np.zeros((0, 8), np.float32), np.zeros(0, np.float32))
    assert len(gallery) == 0
    assert gallery.dimension == 8
    assert gallery.search(unit_rows(np.random.default_rng(0), 2, 8), k=3) == [[], []]


@pytest.mark.parametrize(("embeddings_shape", "thresholds_shape"), [
    ((2, 8), (3,)),      # too few rows
    ((4, 8), (3,)),      # too many rows
    ((3, 8), (2,)),      # too few thresholds
    ((3, 8), (3, 1)),    # thresholds not a vector
    ((24,), (3,)),       # embeddings not a matrix
])
def test_constructor_shape_errors_name_the_shapes(embeddings_shape: tuple[int, ...],
                                                  thresholds_shape: tuple[int, ...]) -> None:
    embeddings = np.ones(embeddings_shape, np.float32)
    thresholds = np.full(thresholds_shape, 0.5, np.float32)
    with pytest.raises(ValueError, match="shape") as info:
        Gallery(names(3), embeddings, thresholds)
    assert str(embeddings_shape) in str(info.value)
    assert str(thresholds_shape) in str(info.value)


@pytest.mark.parametrize("index", ["auto", "sq8"])
@pytest.mark.parametrize("shape", [(2, 7), (2, 9), (8,), (1, 2, 8)])
def test_query_shape_errors_name_the_shapes(index: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    gallery = Gallery(names(40), unit_rows(rng, 40, 8), np.full(40, 0.5, np.float32),
                      index=index)
    with pytest.raises(ValueError, match=r"\(m, 8\)") as info:
        gallery.search(np.ones(shape, np.float32))
    assert str(shape) in str(info.value)


@pytest.mark.parametrize("index", ["auto", "sq8"])
@pytest.mark.parametrize("bad", [0.0, np.nan])
def test_zero_and_nan_rows_are_refused(index: str, bad: float) -> None:
    embeddings = unit_rows(np.random.default_rng(0), 40, 8)
    embeddings[17] = bad
    with pytest.raises(ValueError, match="non-zero"):
        Gallery(names(40), embeddings, np.full(40, 0.5, np.float32), index=index)


def test_a_small_gallery_does_not_load_faiss() -> None:
    # faiss adds about 15 MB to a unit's RSS; only a gallery with an index needs it.
    program = (
        "import sys\n"
        "import numpy as np\n"
        "import lfr.scan\n"
        "from actors.unit.gallery import Gallery\n"
        "rows = np.eye(4, 8, dtype=np.float32)\n"
        "Gallery(['a', 'b', 'c', 'd'], rows, np.full(4, 0.6, np.float32)).search(rows[:1])\n"
        "assert 'faiss' not in sys.modules, 'faiss was imported'\n"
        "Gallery(['a', 'b', 'c', 'd'], rows, np.full(4, 0.6, np.float32), index='sq8')\n"
        "assert 'faiss' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=120, check=False, cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stderr
