"""``lfr bench gallery``: watchlist search time per face on one core, with exactness checked.

The gallery holds N random unit vectors (the search cost does not depend on what they encode);
each query is a noisy copy of a gallery row (a true match at ~0.7) so every search must find its
subject. Results are compared with a brute-force float32 search in the same run.

The memory a size needs is checked before anything is allocated: a size the machine cannot
hold is refused with the size, the estimate and the memory available, instead of swapping the
unit to a halt or dying of ``MemoryError`` half-way.
"""

from __future__ import annotations

import os
import statistics
import time

import faiss
import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from actors.unit.gallery import Gallery
from guards.user_input import UserInputError

DIMENSION = 192
ROUNDS = 30
TARGET_MS = {100_000: 5.0, 1_000_000: 50.0}
BYTES_PER_SUBJECT = 5 * 1024
"""Peak memory per subject, with a margin: measured 4.1-4.2 KiB (peak RSS at 100k and 400k
subjects: the rows, the gallery's copy, the sq8 codes, their decoded copy, the ids)."""
BASE_BYTES = 64 * 1024 * 1024
"""Memory the benchmark needs whatever the size (queries, interpreter growth)."""
MEMINFO = "/proc/meminfo"


def available_memory_bytes(meminfo: str = MEMINFO) -> int | None:
    """Memory the kernel can give without swapping (``MemAvailable``), or None if unknown."""
    try:
        with open(meminfo, encoding="ascii") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key == "MemAvailable":
                    return int(value.split()[0]) * 1024  # the file counts kB (KiB)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def check_memory(subjects: int, available: int | None) -> None:
    """Refuse ``subjects`` if its estimated peak memory exceeds ``available`` bytes."""
    needed = BASE_BYTES + subjects * BYTES_PER_SUBJECT
    if available is not None and needed > available:
        raise UserInputError(
            f"--subjects {subjects} needs about {needed / 2**30:.1f} GiB of memory "
            f"({BYTES_PER_SUBJECT // 1024} KiB per subject); {available / 2**30:.1f} GiB is "
            "available (MemAvailable): choose a smaller gallery")


ROWS_PER_CHUNK = 65_536
"""Rows made per numpy call: numpy holds the GIL through one call, and a signal handler only
runs between calls (one call for a million rows held Ctrl-C up for two seconds)."""


def _unit_rows(rng: np.random.Generator, n: int) -> NDArray[np.float32]:
    """``n`` random unit rows; the same rows whatever the chunking (the generator's stream is
    consumed in row order)."""
    rows = np.empty((n, DIMENSION), np.float32)
    for start in range(0, n, ROWS_PER_CHUNK):
        chunk = rows[start:start + ROWS_PER_CHUNK]
        rng.standard_normal(chunk.shape, dtype=np.float32, out=chunk)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
    return rows


def _median_ms(fn: object, rounds: int) -> float:
    assert callable(fn)
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def run_gallery_bench(subjects: int, seed: int = 0) -> dict[str, object]:
    """Build a gallery of ``subjects`` and time single and batch-of-4 searches on one core."""
    if subjects < 1:
        raise UserInputError(f"--subjects must be at least 1, got {subjects}")
    check_memory(subjects, available_memory_bytes())
    faiss.omp_set_num_threads(1)
    # One core for everything, the brute-force baseline's BLAS included.
    with threadpool_limits(limits=1):
        return _measure(subjects, seed)


def _measure(subjects: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    embeddings = _unit_rows(rng, subjects)
    names = [f"subject-{i}" for i in range(subjects)]
    started = time.perf_counter()
    gallery = Gallery(names, embeddings, np.full(subjects, 0.6, np.float32))
    build_s = time.perf_counter() - started
    targets = rng.choice(subjects, size=4, replace=subjects < 4)
    queries = embeddings[targets] + 0.06 * _unit_rows(rng, 4) * np.sqrt(DIMENSION) / 8
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)

    single_ms = _median_ms(lambda: gallery.search(queries[:1], k=1), ROUNDS)
    batch_ms = _median_ms(lambda: gallery.search(queries, k=1), ROUNDS) / 4
    brute_ms = _median_ms(lambda: embeddings @ queries[0], max(3, ROUNDS // 5))

    results = gallery.search(queries, k=5)
    exact = embeddings @ queries.T
    all_exact = True
    for column, found in enumerate(results):
        best = np.argsort(-exact[:, column])[:5]
        all_exact &= [m.subject for m in found] == [names[i] for i in best]
        all_exact &= all(abs(m.score - float(exact[i, column])) < 1e-5
                         for m, i in zip(found, best, strict=True))
    found_targets = all(r[0].subject == names[t] for r, t in zip(results, targets, strict=True))
    target = TARGET_MS.get(subjects)
    return {
        "subjects": subjects,
        "index": "sq8+exact rescoring" if len(gallery) > 20_000 else "exact float32",
        "ms_per_face_single": round(single_ms, 3),
        "ms_per_face_batch4": round(batch_ms, 3),
        "brute_force_float32_ms_per_face": round(brute_ms, 3),
        "results_exact": bool(all_exact),
        "true_subjects_found": bool(found_targets),
        "build_s": round(build_s, 2),
        "threads": 1,
        "target_ms": target,
        "target_met": bool(all_exact and found_targets
                           and (target is None or single_ms <= target)),
    }
