"""``bench.fuzz_batches`` runs a few hundred batches clean, reaches every stage, and fails when
the van's signature check is missing (no speed is asserted: the machine is shared)."""

from __future__ import annotations

import json

import pytest

from bench.fuzz_batches import main, run_fuzz
from secure.hybrid_signature import VerifyKey


def test_a_short_run_is_clean_and_reaches_every_stage() -> None:
    summary = run_fuzz(400, seed=11)
    assert summary["ok"] is True
    assert (summary["unexpected_exceptions"], summary["stored_although_changed"]) == (0, 0)
    assert isinstance(summary["frames_refused_by_codec"], int)
    assert summary["frames_refused_by_codec"] > 0
    whole = summary["batches_refused_whole"]
    assert isinstance(whole, dict)
    assert set(whole) == {"batch_too_large", "empty_batch"}
    outcomes = summary["outcomes"]
    assert isinstance(outcomes, dict)
    assert {"stored", "duplicate", "refused:malformed", "refused:bad_signature"} <= set(outcomes)


def test_a_missing_signature_check_fails_the_run(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A forged envelope (sealed to the van under the unit's key id, another key's signature)
    opens without the check: the run's own re-check of what was stored notices it."""
    monkeypatch.setattr(VerifyKey, "verify", lambda *args: None)
    assert main(["--inputs", "400", "--seed", "3"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] is False
    assert summary["stored_although_changed"] != 0
