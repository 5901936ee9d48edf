"""``bench.fuzz_signaling`` runs a few hundred inputs clean, and fails when a check is missing
(no speed is asserted: the machine is shared)."""

from __future__ import annotations

import json

import pytest

import actors.unit.signaling_client
import actors.van.signaling
from bench.fuzz_signaling import ANSWER_FAILURES, OFFER_REFUSALS, main, run_fuzz


def test_a_short_run_is_clean_and_reaches_every_stage() -> None:
    summary = run_fuzz(400, seed=11)
    assert summary["ok"] is True
    assert summary["baseline_answered"] == 4
    assert (summary["unexpected_exceptions"], summary["accepted_although_forged"],
            summary["accepted_although_invalid"]) == (0, 0, 0)
    reasons = summary["refused_by_reason"]
    assert isinstance(reasons, dict)
    assert sum(reasons.values()) == 400
    refused = {key.split(":", 1)[1] for key in reasons if key.startswith("offer:")}
    failed = {key.split(":", 1)[1] for key in reasons if key.startswith("answer:")}
    # The inputs get past decoding: signatures, replays and (insiders') link keys are checked.
    assert {"malformed", "bad_signature", "replayed", "answered_insider_valid"} <= refused
    assert {"malformed", "bad_signature", "accepted_van_signed_valid"} <= failed
    assert refused - {"answered_insider_valid"} <= OFFER_REFUSALS
    assert failed - {"accepted_van_signed_valid"} <= ANSWER_FAILURES


@pytest.mark.parametrize("module", [actors.van.signaling, actors.unit.signaling_client])
def test_a_missing_signature_check_fails_the_run(
        module: object, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(module, "check_signature", lambda *args: None)
    assert main(["--inputs", "600", "--seed", "3"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] is False
    assert summary["accepted_although_forged"] != 0


def test_a_missing_freshness_check_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stale answer the van did sign passes every other check: the run's own re-check of what
    was accepted notices it."""
    monkeypatch.setattr(actors.unit.signaling_client, "check_fresh", lambda *args: None)
    summary = run_fuzz(3000, seed=3)
    assert summary["ok"] is False
    assert summary["accepted_although_forged"] == 0
    assert summary["accepted_although_invalid"] != 0
