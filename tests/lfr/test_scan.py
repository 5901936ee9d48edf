"""End to end on the shared clip: the unit's pipeline on the real runtime with the real models."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from actors.unit.camera import CameraConfig
from actors.unit.detector import DetectedFaces, DetectorOutput
from actors.unit.matcher import Matcher
from actors.unit.watchlist import Watchlist
from lfr.photo_faces import PhotoFaces
from lfr.scan import ScanConfig, start_scan
from runtime.supervisor import Backoff, SupervisorConfig
from runtime.system import ActorSystem, SystemConfig
from tests.lfr.conftest import CLIP


async def _scan(watchlist: Watchlist, path: Path,
                faces: PhotoFaces) -> tuple[list[dict[str, object]], int]:
    out = io.StringIO()
    async with ActorSystem() as system:
        pipeline = await start_scan(system, ScanConfig(CameraConfig(str(CLIP)), path), watchlist,
                                    detector=faces.detector, embedder=faces.embedder, out=out)
        ended = await pipeline.finished
    alerts = [json.loads(line) for line in out.getvalue().splitlines()]
    return alerts, ended.frames


async def test_scan_alerts_lin_manuel_miranda_early_once_and_nobody_absent(
        clip_watchlist: tuple[Watchlist, Path], photo_faces: PhotoFaces) -> None:
    watchlist, path = clip_watchlist
    alerts, frames = await _scan(watchlist, path, photo_faces)
    assert frames == 275
    lin = [a for a in alerts if a["subject"] == "lin_manuel_miranda"]
    assert lin, f"Lin-Manuel Miranda was not alerted: {alerts}"
    first_t = min(float(str(a["t"])) for a in lin)
    assert first_t <= 4.0, f"first alert for Lin-Manuel Miranda at t={first_t}"
    assert len(lin) <= 2, f"{len(lin)} alerts for one appearance: {lin}"
    absent = [a for a in alerts if a["subject"] in ("kit_harington", "rose_leslie")]
    assert absent == [], f"false alerts for people not in the clip: {absent}"
    for alert in alerts:
        assert set(alert) >= {"subject", "score", "t", "track", "camera"}
        assert float(str(alert["score"])) >= float(str(alert["threshold"]))


async def test_a_failing_matcher_restarts_the_stages_that_feed_it_and_the_scan_completes(
        clip_watchlist: tuple[Watchlist, Path], photo_faces: PhotoFaces,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # rest_for_one: the matcher's failure restarts it and every stage started after it (the
    # detector and the camera, which resumes after its last delivered frame); the alert printer
    # before it keeps running, so no printed alert is lost or repeated.
    watchlist, path = clip_watchlist
    receive = Matcher.receive
    crashed: list[int] = []

    async def crash_once(self: Matcher, message: DetectorOutput | Any) -> None:
        if not crashed and isinstance(message, DetectedFaces) and message.index >= 30:
            crashed.append(message.index)
            raise RuntimeError("simulated matcher failure")
        await receive(self, message)

    monkeypatch.setattr(Matcher, "receive", crash_once)
    fast = SupervisorConfig(backoff=Backoff(initial_s=0.001, max_s=0.001))
    async with ActorSystem(SystemConfig(root=fast)) as system:
        pipeline = await start_scan(system, ScanConfig(CameraConfig(str(CLIP)), path),
                                    watchlist, detector=photo_faces.detector,
                                    embedder=photo_faces.embedder, out=io.StringIO())
        async with asyncio.timeout(120):
            await pipeline.finished
        restarts = {cell.name: cell.metrics.restarts for cell in system.cells()}
    assert crashed
    assert restarts == {"alerts": 0, "matcher": 1, "detector": 1, "camera": 1}
    assert pipeline.camera.delivered == 275
    assert pipeline.camera.failure is None
