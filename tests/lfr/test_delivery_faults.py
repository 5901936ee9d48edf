"""Delivery under faults, with real processes on loopback: ``lfr van`` and a unit whose alerts
come from a generator (``bench.alert_burst_unit``: the real uplink, outbox, sealing and WebRTC
link). kill -9 of the unit mid-burst, kill -9 of the van mid-burst, and the van unreachable for
30 s mid-burst: every alert the unit sealed reaches the van exactly once, in order.

"Sealed" is what the unit printed after its outbox stored the alert; an alert the unit was told
of but died before storing was never the unit's to deliver (a real matcher dies with it). The
check is on the van's store, opened with the van's key (``bench.van_events``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.node_processes import (
    REPO_ROOT,
    BurstUnitProcess,
    NodeProcess,
    start_burst_unit,
    start_van,
)
from bench.uplink_bench import DEMO_CLIP, build_demo_watchlist
from bench.van_events import ReceivedAlert, read_van_alerts
from lfr.local_deployment import CameraPlan, LocalDeployment, create_local_deployment

DRAIN_S = 150.0
"""How long a unit waits for the van's acknowledgements (reconnect backoff included)."""


@pytest.fixture(scope="module")
def watchlist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_watchlist(tmp_path_factory.mktemp("watchlist") / "demo.lfrw")


@pytest.fixture
def deployment(tmp_path: Path, watchlist: Path) -> LocalDeployment:
    return create_local_deployment(tmp_path / "deployment", units=1,
                                   cameras=[CameraPlan("cam0", DEMO_CLIP)], watchlist=watchlist)


@pytest.fixture
def cleanup() -> Iterator[list[NodeProcess]]:
    """Processes to kill if a test fails half-way."""
    processes: list[NodeProcess] = []
    yield processes
    for process in processes:
        process.__exit__()


def _van_alerts(deployment: LocalDeployment) -> list[ReceivedAlert]:
    return read_van_alerts(deployment.root / "van" / "state", deployment.van_signing_key,
                           deployment.van_encryption_key, deployment.unit_ids)["unit-1"]


def _check_exactly_once_in_order(stored: list[ReceivedAlert], sealed: list[str],
                                 told: set[str]) -> None:
    ids = [alert.event_id for alert in stored]
    assert len(ids) == len(set(ids)), "an alert was stored twice"
    missing = [event_id for event_id in sealed if event_id not in set(ids)]
    assert not missing, f"{len(missing)} sealed alerts never reached the van: {missing[:5]}"
    assert set(ids) <= told, "the van stored an alert nobody made"
    # stored is in sequence order: the sealed alerts appear in the order they were sealed
    positions = [ids.index(event_id) for event_id in sealed]
    assert positions == sorted(positions), "alerts stored out of the order they were sealed"


BURST = ("--alerts", "120", "--rate", "30", "--burst", "30", "--burst-after", "25")
"""150 alerts: 25 steady, 30 at once (sent in batches: each ask carries what became ready while
the one before was in flight), 95 steady; the kills come after 40 were sealed, mid-burst."""


def _told(first: int, count: int) -> set[str]:
    return {f"unit-1/{kind}/{index}" for kind in ("bench", "burst")
            for index in range(first, first + count)}


def _burst_unit(deployment: LocalDeployment, cleanup: list[NodeProcess], *args: str
                ) -> BurstUnitProcess:
    unit = start_burst_unit("unit-1", deployment.unit_configs[0], "--drain-timeout-s",
                            str(DRAIN_S), *args)
    cleanup.append(unit)
    return unit


def test_kill_9_of_the_unit_mid_burst_loses_and_repeats_nothing(
        deployment: LocalDeployment, cleanup: list[NodeProcess]) -> None:
    van = start_van(deployment.van_config)
    cleanup.append(van)
    first = _burst_unit(deployment, cleanup, *BURST)
    first.wait_sealed(40, 120)
    first.wait_for(lambda _line: first.largest_batch() > 1, 60)  # batches were in flight
    first.kill()
    sealed_before = first.sealed()
    assert len(sealed_before) < 150, "the burst ended before the kill: nothing was tested"
    second = _burst_unit(deployment, cleanup, "--alerts", "20", "--rate", "30",
                         "--first-index", "1000")
    assert second.wait(DRAIN_S + 60) == 0, second.tail()
    van.stop()
    stored = _van_alerts(deployment)
    _check_exactly_once_in_order(stored, sealed_before + second.sealed(),
                                 _told(0, 150) | _told(1000, 20))


def test_kill_9_of_the_van_mid_burst_loses_and_repeats_nothing(
        deployment: LocalDeployment, cleanup: list[NodeProcess]) -> None:
    van = start_van(deployment.van_config)
    cleanup.append(van)
    # The unit finds the van dead when a receipt is late: after 5 s here instead of its own
    # 15 s (which were most of this test's time). The van answers within a second when it
    # lives, and a receipt late for any reason is a dropped link, the envelope sent again.
    unit = _burst_unit(deployment, cleanup, *BURST, "--receipt-timeout-s", "5")
    unit.wait_sealed(40, 120)
    unit.wait_for(lambda _line: unit.largest_batch() > 1, 60)  # batches were in flight
    van.kill()
    time.sleep(1.0)  # the unit notices and starts redialling into nothing
    restarted = start_van(deployment.van_config)
    cleanup.append(restarted)
    assert unit.wait(DRAIN_S + 60) == 0, unit.tail()
    restarted.stop()
    _check_exactly_once_in_order(_van_alerts(deployment), unit.sealed(), _told(0, 150))


def test_the_van_unreachable_for_30_s_mid_burst_loses_and_repeats_nothing(
        deployment: LocalDeployment, cleanup: list[NodeProcess]) -> None:
    """SIGSTOP freezes the van whole: no heartbeat, no SCTP, no signaling answer for 30 s,
    what a cut 4G link looks like from both ends. The unit's heartbeat timeout ends its link,
    it redials into silence with backoff; after SIGCONT the van finds its own link silent past
    its heartbeat timeout, closes it, and accepts the unit's next offer."""
    van = start_van(deployment.van_config)
    cleanup.append(van)
    unit = _burst_unit(deployment, cleanup, "--alerts", "150", "--rate", "10")
    unit.wait_sealed(30, 120)
    van.process.send_signal(signal.SIGSTOP)
    try:
        time.sleep(30)
        sealed_during_cut = len(unit.sealed())
    finally:
        van.process.send_signal(signal.SIGCONT)
    assert sealed_during_cut > 30, "the unit stopped sealing while the van was away"
    assert unit.wait(DRAIN_S + 60) == 0, unit.tail()
    assert int(str(unit.summary(5)["largest_batch"])) > 1  # what waited went in batches
    van.stop()
    _check_exactly_once_in_order(_van_alerts(deployment), unit.sealed(), _told(0, 150))


def test_a_unit_revoked_while_linked_is_dropped_and_its_next_offer_refused(
        deployment: LocalDeployment, cleanup: list[NodeProcess], tmp_path: Path) -> None:
    van = start_van(deployment.van_config)
    cleanup.append(van)
    unit = _burst_unit(deployment, cleanup, "--alerts", "1", "--start-file",
                       str(tmp_path / "never"))
    unit.linked(60)
    revoke = subprocess.run([sys.executable, "-m", "lfr", "van", "revoke-unit", "unit-1",
                             "--config", str(deployment.van_config)], capture_output=True,
                            text=True, timeout=60, check=False, cwd=REPO_ROOT)
    assert revoke.returncode == 0, revoke.stderr
    van.wait_for(lambda line: "unit unit-1 dropped: revoked" in line, 30)
    van.wait_for(lambda line: "unknown_unit" in line, 60, stream="stderr")  # it redialled
    assert van.process.poll() is None
    van.stop()
