"""``Gallery``: the watchlist's embeddings, searched with one matrix product per frame.

Small galleries are searched exactly (float32 matrix product). Large ones use an 8-bit scalar
quantised index (faiss ``IndexScalarQuantizer``) to find candidates and re-score them exactly in
float32. The results are exact: the index's worst-case score error for a query is bounded
(``_error_bound``), and the candidate list is widened until no subject outside it could reach
the k-th exact score, so no match is lost to the approximation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import faiss

EXACT_SEARCH_MAX_SUBJECTS = 20_000
"""Up to this many subjects a float32 matrix product is as fast as the index (~1 ms)."""
_FLOAT_SLACK = 1e-4  # float32 rounding in the index's own dot products


@dataclass(frozen=True, slots=True)
class GalleryMatch:
    """One candidate subject for one face."""

    subject: str
    """Subject id (the watchlist folder name)."""
    score: float
    """Exact cosine similarity in float32, in [-1, 1]."""
    threshold: float
    """The subject's own alert threshold."""

    @property
    def is_match(self) -> bool:
        """True if the score reaches the subject's threshold."""
        return self.score >= self.threshold


BUILD_ROWS_PER_CALL = 65_536
"""Rows handed to faiss per call while the index is built."""


def _unit_length_rows(embeddings: NDArray[np.float32]) -> NDArray[np.float32]:
    """A float32 copy of ``embeddings`` with every row scaled to unit length, made in chunks
    (one numpy call over a million rows holds the GIL, and so a signal, for seconds)."""
    rows = np.array(embeddings, dtype=np.float32, order="C")
    for start in range(0, len(rows), BUILD_ROWS_PER_CALL):
        chunk = rows[start:start + BUILD_ROWS_PER_CALL]
        norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))[:, None]
        if not np.all(norms > 0):
            raise ValueError("gallery embeddings must be non-zero")
        chunk /= norms
    return rows


class Gallery:
    """Top-k cosine search over L2-normalised embeddings, exact in its final scores."""

    def __init__(self, subjects: Sequence[str], embeddings: NDArray[np.float32],
                 thresholds: NDArray[np.float32], *, index: str = "auto") -> None:
        n = len(subjects)
        if embeddings.ndim != 2 or embeddings.shape[0] != n or thresholds.shape != (n,):
            raise ValueError(f"gallery of {n} subjects needs embeddings of shape ({n}, d) and "
                             f"{n} thresholds, got {embeddings.shape} and {thresholds.shape}")
        self.subjects = list(subjects)
        # Invariant: rows are unit length (cosine similarity is a dot product).
        self.embeddings = _unit_length_rows(embeddings)
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        self.floor = float(self.thresholds.min()) if n else 1.0
        """The lowest subject threshold: a score below it is nobody's match."""
        if index not in ("auto", "exact", "sq8"):
            raise ValueError(f"gallery index must be 'auto', 'exact' or 'sq8', got {index!r}")
        use_index = index == "sq8" or (index == "auto" and n > EXACT_SEARCH_MAX_SUBJECTS)
        self._index: faiss.IndexScalarQuantizer | None = None
        self._component_error: NDArray[np.float32] | None = None
        if use_index and n:
            self._build_index()

    def __len__(self) -> int:
        return len(self.subjects)

    @property
    def dimension(self) -> int:
        """Embedding length."""
        return int(self.embeddings.shape[1])

    def wipe(self) -> None:
        """Overwrite every embedding with zeros and forget the subjects and the index: the
        gallery finds nobody afterwards (a purged or expired watchlist)."""
        self.embeddings.fill(0.0)
        self.thresholds.fill(1.0)
        self.floor = 1.0
        self.subjects.clear()
        if self._index is not None:
            # faiss holds 8-bit codes of the rows: overwritten through its own reset.
            self._index.reset()
            self._index = None
        if self._component_error is not None:
            self._component_error.fill(0.0)

    def search(self, queries: NDArray[np.float32], k: int = 3) -> list[list[GalleryMatch]]:
        """For each unit-length query row, the ``k`` best subjects, best first."""
        if queries.ndim != 2 or queries.shape[1] != self.dimension:
            raise ValueError(f"queries must have shape (m, {self.dimension}), got {queries.shape}")
        if k < 0:
            raise ValueError(f"k must not be negative, got {k}")
        k = min(k, len(self))
        if k == 0:
            return [[] for _ in range(len(queries))]
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self._index is None:
            # One matrix-vector product per face: for a handful of faces this beats a
            # matrix-matrix product, whose BLAS threads cost more to wake than they save.
            ids = np.arange(len(self))
            return [self._top(self.embeddings @ q, ids, k) for q in queries]
        return [self._search_indexed(q, k) for q in queries]

    # --- exact re-scoring on top of the quantised index ---------------------------------------

    def _build_index(self) -> None:
        d = self.dimension
        # Imported here, by the large galleries that use it: 15 MB of a unit's RSS otherwise.
        import faiss  # noqa: PLC0415

        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit,
                                           faiss.METRIC_INNER_PRODUCT)
        index.train(self.embeddings)
        error = np.zeros(d, np.float32)
        # In chunks: faiss holds the GIL through each call, and a process stopped by a signal
        # must not wait for a million rows (the handler only runs between calls).
        for start in range(0, len(self), BUILD_ROWS_PER_CALL):
            rows = self.embeddings[start:start + BUILD_ROWS_PER_CALL]
            index.add(rows)
            decoded = index.sa_decode(index.sa_encode(rows))
            # Worst quantisation error per component over the whole gallery.
            np.maximum(error, np.abs(decoded - rows).max(axis=0), out=error)
        self._component_error = error
        self._index = index

    def _error_bound(self, query: NDArray[np.float32]) -> float:
        assert self._component_error is not None
        # |q.g - q.g'| <= sum_i |q_i| |g_i - g'_i| <= sum_i |q_i| max_err_i
        return float(np.abs(query) @ self._component_error) + _FLOAT_SLACK

    def _search_indexed(self, query: NDArray[np.float32], k: int) -> list[GalleryMatch]:
        assert self._index is not None
        n = len(self)
        bound = self._error_bound(query)
        width = min(n, max(4 * k, 32))
        while True:
            approx, ids = self._index.search(query[None, :], width)
            candidates = ids[0][ids[0] >= 0]
            exact = self.embeddings[candidates] @ query
            top = self._top(exact, candidates, k)
            kth = top[-1].score if len(top) == k else -np.inf
            # Anything outside the candidates scores at most (last approx score + bound): once
            # that is below the k-th exact score, the top k are exact.
            outside_best = float(approx[0][-1]) + bound
            if width >= n or outside_best < kth:
                return top
            width = min(n, width * 4)

    def _top(self, scores: NDArray[np.float32], ids: NDArray[np.int64],
             k: int) -> list[GalleryMatch]:
        if k == 1:  # the matcher's case: argmax is much cheaper than a partition
            part = np.array([int(np.argmax(scores))])
        elif len(scores) > k:
            part = np.argpartition(-scores, k - 1)[:k]
        else:
            part = np.arange(len(scores))
        order = part[np.argsort(-scores[part], kind="stable")]
        return [GalleryMatch(self.subjects[int(ids[i])], float(scores[i]),
                             float(self.thresholds[int(ids[i])])) for i in order]
