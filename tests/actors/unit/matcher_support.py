"""What the matcher tests feed a ``Matcher`` and collect from it: synthetic faces (the person
is written into the crop's first pixel, for a fake embedder to read) and frames, and a sink."""

from __future__ import annotations

import time

import numpy as np

from actors.unit.detector import DetectedFaces
from actors.unit.face_analysis import FaceCandidate
from actors.unit.matcher import MatcherOutput
from models.detection import FaceDetection
from models.face_quality import QualityVerdict
from runtime.actor import Actor


class Sink(Actor[MatcherOutput]):
    """Keeps every alert and stream end the matcher tells it."""

    def __init__(self, received: list[MatcherOutput]) -> None:
        self.received = received

    async def receive(self, message: MatcherOutput) -> None:
        self.received.append(message)


def face_of(person: int, x0: float) -> FaceCandidate:
    """A 40 x 50 px face of ``person`` at ``x0``, with plausible keypoints, that passed the
    quality gates."""
    crop = np.full((112, 112, 3), 90, np.uint8)
    crop[0, 0, 0] = person
    keypoints = np.array([[x0 + 10, 20], [x0 + 30, 20], [x0 + 20, 30], [x0 + 20, 40],
                          [x0, 25], [x0 + 40, 25]], np.float32)
    detection = FaceDetection(x0, 0.0, x0 + 40.0, 50.0, 0.9, keypoints)
    return FaceCandidate(detection, crop, QualityVerdict(None, 0.9, 20.0, 0.0, 100.0))


def frame_of(index: int, faces: tuple[FaceCandidate, ...], *,
                   fps: float = 25.0) -> DetectedFaces:
    """Frame ``index`` of camera ``cam0`` at ``fps``, 320 x 120 px, holding ``faces``."""
    pixels = np.full((120, 320, 3), 60, np.uint8)
    return DetectedFaces("cam0", index, index / fps, time.monotonic_ns(), time.time(), pixels,
                         faces, rejected=0)
