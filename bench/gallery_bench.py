"""``lfr bench gallery``: watchlist search time per face on one core, with exactness checked.

The gallery holds N random unit vectors (the search cost does not depend on what they encode);
each query is a noisy copy of a gallery row (a true match at ~0.7) so every search must find its
subject. Results are compared with a brute-force float32 search in the same run.

The memory a size needs is checked before anything is allocated: a size the machine cannot
hold is refused with the size, the estimate and the memory available, instead of swapping the
unit to a halt or dying of ``MemoryError`` half-way. "Available" is the smallest of three
limits: free memory (MemAvailable), the address space ``ulimit -v`` leaves, and the cgroup's
``memory.max`` (a container's limit).
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from pathlib import Path

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
PROC_STATUS = "/proc/self/status"
PROC_CGROUP = "/proc/self/cgroup"
CGROUP_ROOT = "/sys/fs/cgroup"


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


def address_space_left_bytes(status: str = PROC_STATUS) -> int | None:
    """Address space this process may still map under ``ulimit -v`` (the soft ``RLIMIT_AS``
    minus ``VmSize``), or None when unlimited or unknown. An allocation past it fails however
    much memory is free (faiss dies of ``std::bad_alloc``)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open(status, encoding="ascii") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key == "VmSize":
                    return max(0, soft - int(value.split()[0]) * 1024)  # kB (KiB)
    except (OSError, ValueError, IndexError):
        pass
    return soft  # the limit alone: an over-estimate, better than no check


def cgroup_memory_left_bytes(cgroup_root: str = CGROUP_ROOT,
                             own_cgroup: str = PROC_CGROUP) -> int | None:
    """Memory the cgroup (v2) still allows (``memory.max`` minus ``memory.current``), the
    smallest along the path from this process's cgroup up to the root; None if no limit is
    set ("max") or the files are absent. Past it the kernel's OOM killer ends the unit."""
    lefts = []
    for folder in _cgroup_folders(Path(cgroup_root), own_cgroup):
        try:
            limit = (folder / "memory.max").read_text(encoding="ascii").strip()
            if limit == "max":
                continue
            used = (folder / "memory.current").read_text(encoding="ascii").strip()
            lefts.append(max(0, int(limit) - int(used)))
        except (OSError, ValueError):
            continue
    return min(lefts, default=None)


def _cgroup_folders(root: Path, own_cgroup: str) -> list[Path]:
    """This process's cgroup folder and its ancestors up to ``root`` (``root`` alone when the
    cgroup is unknown, as in a container whose namespace starts at its own cgroup)."""
    relative = ""
    try:
        with open(own_cgroup, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("0::"):  # the v2 hierarchy
                    relative = line[3:].strip().strip("/")
    except OSError:
        pass
    folder = root.joinpath(*relative.split("/")) if relative else root
    folders = [folder]
    while folder != root and root in folder.parents:
        folder = folder.parent
        folders.append(folder)
    return folders


def memory_budget() -> tuple[int, str] | None:
    """The smallest of MemAvailable, the address space left under ``ulimit -v`` and the
    cgroup's memory left, with the name of the one that binds; None if none is known."""
    known = [(left, name) for left, name in (
        (available_memory_bytes(), "available (MemAvailable)"),
        (address_space_left_bytes(), "left under the address-space limit (ulimit -v)"),
        (cgroup_memory_left_bytes(), "left under the cgroup memory limit (memory.max)"),
    ) if left is not None]
    return min(known, key=lambda pair: pair[0], default=None)


def check_memory(subjects: int, available: int | None,
                 source: str = "available (MemAvailable)") -> None:
    """Refuse ``subjects`` if its estimated peak memory exceeds ``available`` bytes; ``source``
    says where that figure comes from."""
    needed = BASE_BYTES + subjects * BYTES_PER_SUBJECT
    if available is not None and needed > available:
        raise UserInputError(
            f"--subjects {subjects} needs about {needed / 2**30:.1f} GiB of memory "
            f"({BYTES_PER_SUBJECT // 1024} KiB per subject); {available / 2**30:.1f} GiB is "
            f"{source}: choose a smaller gallery")


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
    budget = memory_budget()
    if budget is not None:
        check_memory(subjects, *budget)
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
