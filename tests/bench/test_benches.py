"""The benchmarks run and report what they promise (no speed is asserted: the machine is shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

import bench.gallery_bench
from bench.gallery_bench import available_memory_bytes, run_gallery_bench
from bench.pipeline_bench import run_pipeline_bench
from bench.runtime_bench import run_runtime_bench
from guards.user_input import UserInputError
from tests.lfr.conftest import CLIP


def test_gallery_bench_checks_exactness_on_both_search_paths() -> None:
    for subjects in (500, 30_000):  # exact float32, then the quantised index
        result = run_gallery_bench(subjects)
        assert result["results_exact"] is True
        assert result["true_subjects_found"] is True
        assert float(str(result["ms_per_face_single"])) > 0


def test_gallery_bench_refuses_a_size_beyond_memory_before_allocating() -> None:
    # 10**12 subjects would need ~5 PB: refused with the size and the memory, not MemoryError.
    with pytest.raises(UserInputError, match=r"--subjects 1000000000000 needs about .* GiB "
                                             r"of memory .* GiB is available"):
        run_gallery_bench(10**12)


def test_gallery_bench_checks_the_memory_available_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.gallery_bench, "available_memory_bytes", lambda: 100 * 2**20)
    with pytest.raises(UserInputError, match=r"--subjects 100000 needs about 0\.5 GiB"):
        run_gallery_bench(100_000)


def test_available_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemFree:   100 kB\n"
                       "MemAvailable:    2048 kB\n")
    assert available_memory_bytes(str(meminfo)) == 2048 * 1024


def test_runtime_bench_reports_every_figure() -> None:
    result = run_runtime_bench()
    for key in ("tell_msgs_per_s", "queue_baseline_msgs_per_s", "ratio", "ask_rtt_us_p50",
                "ask_rtt_us_p99", "transport_msgs_per_s", "codec_frame_roundtrip_ms"):
        assert float(result[key]) > 0, key
    assert result["ratio"] == round(result["tell_msgs_per_s"]
                                    / result["queue_baseline_msgs_per_s"], 3)
    # The exit code follows target_met: below the target ratio the bench must say so.
    assert result["target_met"] is (result["tell_msgs_per_s"] / result["queue_baseline_msgs_per_s"]
                                     >= result["target_ratio"] == 0.5)


def test_pipeline_bench_counts_the_same_frames_in_both_phases(shared_data: Path) -> None:
    result = run_pipeline_bench(CLIP, runs=2, bare=True)
    assert result["runs"] == 2
    for key in ("ratios", "bare_ratios", "decode_and_models_ratios"):
        ratios = result[key]
        assert isinstance(ratios, list)
        assert len(ratios) == 2
        assert all(r > 0 for r in ratios)
    assert float(str(result["bare_fps"])) > 0
    assert result["frames"] == 275
    assert int(str(result["detector_invokes"])) >= 275
    assert int(str(result["faces_embedded"])) > 0
    for key in ("fps", "model_bound_fps", "ratio", "latency_ms_p50", "latency_ms_p99", "rss_mb"):
        assert float(str(result[key])) > 0, key
