"""Privacy by construction: the detector's in-process messages cannot cross a boundary."""

from __future__ import annotations

import numpy as np
import pytest

from actors.unit.detector import DetectedFaces, StreamEnded
from actors.unit.face_analysis import FaceCandidate
from models.detection import FaceDetection
from models.face_quality import QualityVerdict
from runtime.codec import Codec, EncodeError


def candidate() -> FaceCandidate:
    """One usable face with its aligned crop."""
    detection = FaceDetection(10.0, 20.0, 60.0, 80.0, 0.9, np.zeros((6, 2), np.float32))
    return FaceCandidate(detection, np.full((112, 112, 3), 128, np.uint8),
                         QualityVerdict(None, 0.9, 30.0, 0.0, 100.0))


@pytest.mark.parametrize("message", [
    DetectedFaces("cam0", 7, 0.25, 1, 2.0, np.zeros((36, 64, 3), np.uint8), (candidate(),), 1),
    DetectedFaces("cam0", 8, 0.28, 1, 2.0, np.zeros((36, 64, 3), np.uint8), (), 0),
    StreamEnded("cam0", 275, faces_seen=40, faces_rejected=3, alerts=1),
    candidate(),
], ids=["faces", "no-faces", "stream-ended", "face-candidate"])
def test_in_process_messages_cannot_be_encoded(message: object) -> None:
    with pytest.raises(EncodeError, match="not a registered message"):
        Codec().encode(message)
