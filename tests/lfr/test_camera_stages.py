"""``spawn_camera_stages``: how many frames a camera's detector analyses at once: one for a live
or paced camera (latency first), ``in_flight`` for a file scanned as fast as it decodes."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

import actors.unit.matcher as matcher_module
import lfr.scan as scan_module
from actors.unit.camera import CameraConfig, CameraProgress
from actors.unit.detector import DetectorConfig, DetectorOutput, StreamEnded
from lfr.scan import ScanConfig, spawn_camera_stages, start_scan
from models.detection import FaceDetection
from models.detection_plan import PartialPass
from models.face_detector import FaceDetector
from models.face_embedder import FaceEmbedder
from runtime.actor import Actor
from runtime.supervisor import SupervisorConfig
from runtime.system import ActorSystem, SystemConfig
from tests.actors.unit.test_camera import short_clip
from tests.actors.van.test_watchlist_board import make_watchlist

WAIT_S = 60.0


class SlowFinder:
    """Finds nobody, slowly, and records how many frames it was given at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = 0
        self.most = 0

    def _look(self) -> list[FaceDetection]:
        with self._lock:
            self._now += 1
            self.most = max(self.most, self._now)
        time.sleep(0.1)  # slower than the clip's 25 fps: frames wait for the detector
        with self._lock:
            self._now -= 1
        return []

    def full_pass_regions(self, frame_width: int,
                          frame_height: int) -> tuple[tuple[int, int, int, int], ...]:
        return ((0, 0, frame_width, frame_height),)

    def detect(self, frame: NDArray[np.uint8]) -> list[FaceDetection]:
        return self._look()

    def detect_partial(self, frame: NDArray[np.uint8],
                       partial: PartialPass) -> list[FaceDetection]:
        return self._look()


class Ends(Actor[DetectorOutput]):
    def __init__(self, ended: asyncio.Event) -> None:
        self.ended = ended

    async def receive(self, message: DetectorOutput) -> None:
        if isinstance(message, StreamEnded):
            self.ended.set()


@pytest.mark.parametrize(("paced", "most"), [(True, 1), (False, 3)])
async def test_a_paced_camera_gets_one_frame_analysed_at_a_time_a_file_in_flight_frames(
        tmp_path: Path, paced: bool, most: int) -> None:
    finder = SlowFinder()
    ended = asyncio.Event()
    config = DetectorConfig(in_flight=3, live_in_flight=1)
    async with ActorSystem(SystemConfig(name="stages", blocking_workers=3)) as system:
        supervisor = await system.spawn_supervisor("pipeline", SupervisorConfig())
        sink = await system.spawn("sink", lambda: Ends(ended))
        path = tmp_path / "clip.mp4"
        short_clip(path, frames=6, fps=25)
        camera = CameraConfig(str(path), paced=paced)
        await spawn_camera_stages(supervisor, camera, face_finder=finder, output=sink,
                                  detector_config=config, progress=CameraProgress())
        await asyncio.wait_for(ended.wait(), WAIT_S)
    assert finder.most == most


async def test_a_two_model_watchlist_starts_the_second_models_worker_before_the_camera(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    order: list[str] = []

    def worker() -> object:
        order.append("second model's worker")
        return object()

    async def camera(*args: object, **kwargs: object) -> None:
        order.append("camera")

    monkeypatch.setattr(scan_module, "shared_second_worker", worker)
    monkeypatch.setattr(matcher_module, "shared_second_worker", worker)
    monkeypatch.setattr(scan_module, "spawn_camera_stages", camera)
    config = ScanConfig(CameraConfig(str(tmp_path / "clip.mp4")), tmp_path / "list")
    async with ActorSystem(SystemConfig(name="two-models")) as system:
        await start_scan(system, config, make_watchlist(), detector=FaceDetector(),
                         embedder=FaceEmbedder())
    assert order[:2] == ["second model's worker", "camera"]
