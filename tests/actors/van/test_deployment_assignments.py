"""``DeploymentStore`` assignments and versions: what a van replays after a restart so that no
unit is told anything different (``WatchlistBoard.load``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.van.deployment_store import Assignment, DeploymentError, DeploymentStore
from secure.sealing import EncryptionKeyPair
from tests.actors.van.test_deployment_store import put


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DeploymentStore]:
    with DeploymentStore.open(tmp_path / "deployments.sqlite",
                              EncryptionKeyPair.generate()) as opened:
        opened.start_deployment("op-1", 0.6, now=1.0)
        yield opened


def test_pushes_and_purges_are_replayed_in_order_across_a_reopen(tmp_path: Path) -> None:
    key = EncryptionKeyPair.generate()
    path = tmp_path / "deployments.sqlite"
    with DeploymentStore.open(path, key) as store:
        store.start_deployment("op-1", 0.6, now=1.0)
        first_signed = put(store, "op-1", 1)
        put(store, "op-1", 2)
        store.record_assignment("op-1", action="push", version=1, units=(), now=2.0)
        store.record_assignment("op-1", action="push", version=2, units=("unit-2",), now=3.0)
        store.record_assignment("op-1", action="purge", version=None, units=("unit-1",),
                                now=4.0)
    with DeploymentStore.open(path, key) as store:
        assert store.assignments("op-1") == [
            Assignment("push", 1, (), 2.0), Assignment("push", 2, ("unit-2",), 3.0),
            Assignment("purge", None, ("unit-1",), 4.0)]
        first = store.watchlist("op-1", 1)
        assert first is not None
        assert first.signed == first_signed
        assert store.watchlist("op-1", 3) is None


def test_an_assignment_needs_the_active_deployment_and_a_stored_version(
        store: DeploymentStore) -> None:
    with pytest.raises(DeploymentError, match="version 1 of deployment 'op-1' is not stored"):
        store.record_assignment("op-1", action="push", version=1, units=(), now=2.0)
    with pytest.raises(DeploymentError, match="a push with a version or a purge without"):
        store.record_assignment("op-1", action="purge", version=1, units=(), now=2.0)
    with pytest.raises(DeploymentError, match="no such deployment"):
        store.record_assignment("op-9", action="purge", version=None, units=(), now=2.0)
    with pytest.raises(DeploymentError):
        store.record_assignment("op-1", action="delete", version=None, units=(), now=2.0)


def test_after_the_end_no_version_opens_but_the_assignments_stay_as_a_record(
        store: DeploymentStore) -> None:
    put(store, "op-1", 1)
    store.record_assignment("op-1", action="push", version=1, units=(), now=2.0)
    store.end_deployment(now=5.0)
    assert store.watchlist("op-1", 1) is None
    assert [step.action for step in store.assignments("op-1")] == ["push"]
