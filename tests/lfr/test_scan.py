"""End to end on the shared clip: the unit's pipeline on the real runtime with the real models."""

from __future__ import annotations

import io
import json
from pathlib import Path

from actors.unit.camera import CameraConfig
from actors.unit.watchlist import Watchlist
from lfr.photo_faces import PhotoFaces
from lfr.scan import ScanConfig, start_scan
from runtime.system import ActorSystem
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
