"""``lfr bench watchlist``: the list really reaches a real unit, and the figures say so.

A small run (50 subjects, one unit, real ``lfr van`` and ``lfr edge`` processes) checks the
result's fields and that the unit held exactly what was pushed; no speed is asserted (the
machine is shared). The synthetic watchlist and the argument checks are tested on their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actors.signed_watchlist import read_signed_watchlist
from actors.unit.watchlist import save_watchlist
from bench.watchlist_bench import (
    DEPLOYMENT_ID,
    BenchPlan,
    run_watchlist_bench,
    sign_bench_watchlist,
    synthetic_watchlist,
)
from guards.exit_codes import ExitCode
from guards.user_input import UserInputError
from lfr.cli import main
from models.face_embedder import EMBEDDING_DIM
from models.model_file import MOBILEFACENET
from models.second_opinion_model import DESCRIPTOR_DIM, DLIB_RESNET_V1
from secure.key_files import write_node_keys
from secure.node_keys import NodeKeys, NodeRole


def test_a_small_watchlist_reaches_the_unit_and_every_process_stops_cleanly() -> None:
    result = run_watchlist_bench(50, 1, timeout_s=180)
    assert result["failures"] == {}
    assert (result["subjects"], result["units"]) == (50, 1)
    assert (result["pushed_version"], result["pushed_subjects"]) == (1, 50)
    assert result["delivered_units"] == 1
    delivered = result["delivered_s"]
    assert isinstance(delivered, dict)
    assert list(delivered) == ["unit-1"]
    assert isinstance(delivered["unit-1"], float)
    assert result["delivered_s_max"] == delivered["unit-1"]
    assert result["delivered_s_p50"] == delivered["unit-1"]
    signed_bytes = result["signed_bytes"]
    assert isinstance(signed_bytes, int)
    assert signed_bytes > 50 * (EMBEDDING_DIM + DESCRIPTOR_DIM) * 4  # both models' rows
    assert isinstance(result["throughput_mb_s"], float)
    assert result["exit_codes"] == {"unit-1": ExitCode.TERMINATED, "van": ExitCode.TERMINATED}
    assert result["stopped_cleanly"] is True
    assert result["target_s"] == 60.0
    assert isinstance(result["target_met"], bool)


def test_the_synthetic_watchlist_holds_both_models_unit_rows_and_numbered_ids() -> None:
    watchlist = synthetic_watchlist(12)
    assert watchlist.subjects[0] == "subject-00001"
    assert watchlist.subjects[-1] == "subject-00012"
    assert (watchlist.model_id, watchlist.model_sha256) == (MOBILEFACENET.model_id,
                                                            MOBILEFACENET.sha256)
    assert (watchlist.second_model_id, watchlist.second_model_sha256) == (
        DLIB_RESNET_V1.model_id, DLIB_RESNET_V1.sha256)
    assert watchlist.embeddings.shape == (12, EMBEDDING_DIM)
    assert watchlist.second_embeddings.shape == (12, DESCRIPTOR_DIM)
    for rows in (watchlist.embeddings, watchlist.second_embeddings):
        assert rows.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_the_bench_signs_for_its_deployment(tmp_path: Path) -> None:
    keys = write_node_keys(NodeKeys.generate(NodeRole.AUTHORITY, "authority"), tmp_path / "keys")
    source = tmp_path / "list.lfrw"
    save_watchlist(synthetic_watchlist(3), source)
    out = tmp_path / "list.signed"
    size = sign_bench_watchlist(source, keys.signing, out)
    data = out.read_bytes()
    assert len(data) == size
    manifest = read_signed_watchlist(data).manifest
    assert (manifest.deployment_id, manifest.version, manifest.subject_count) == (
        DEPLOYMENT_ID, 1, 3)


@pytest.mark.parametrize(("subjects", "units", "flag"), [
    (0, 1, "--subjects"), (50_001, 1, "--subjects"), (10, 0, "--units"), (10, 17, "--units")])
def test_sizes_out_of_range_are_refused_naming_the_flag(subjects: int, units: int,
                                                         flag: str) -> None:
    with pytest.raises(UserInputError, match=flag):
        BenchPlan(subjects, units)


def test_the_command_refuses_a_bad_size_as_bad_input() -> None:
    assert main(["bench", "watchlist", "--units", "0", "--json"]) == ExitCode.BAD_INPUT
