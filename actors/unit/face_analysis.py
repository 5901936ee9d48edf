"""Faces of one image: detect, align and gate each face; shared by video frames and photos.

Runs on a worker thread (``run_blocking``): everything here is synchronous numpy/TFLite work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from models.detection import FaceDetection
from models.detection_plan import PartialPass
from models.face_alignment import align_face
from models.face_quality import QualityConfig, QualityVerdict, assess_quality


class FaceFinder(Protocol):
    """What the analysis needs of a detector (``models.face_detector.FaceDetector``)."""

    def detect(self, frame: NDArray[np.uint8]) -> list[FaceDetection]:
        """All faces in an H x W x 3 uint8 RGB image, in its pixels; called on worker threads."""
        ...

    def full_pass_regions(self, frame_width: int,
                          frame_height: int) -> tuple[tuple[int, int, int, int], ...]:
        """The region of each part of ``detect``'s full pass on an image of this size, in
        order (at least one)."""
        ...

    def detect_partial(self, frame: NDArray[np.uint8],
                       partial: PartialPass) -> list[FaceDetection]:
        """The faces found by the given parts of the full pass and on the given crops only, in
        the image's pixels; called on worker threads."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class FaceCandidate:
    """A face that passed the quality gates, ready to embed. In-process only (face data)."""

    detection: FaceDetection
    """Box, score and keypoints in frame pixels."""
    aligned: NDArray[np.uint8]
    """112 x 112 x 3 RGB crop warped to the ArcFace template."""
    quality: QualityVerdict
    """The measured quality values."""


@dataclass(frozen=True, slots=True)
class FaceAnalysis:
    """What one image yielded."""

    usable: tuple[FaceCandidate, ...]
    """Faces that passed every gate, best detector score first."""
    rejected: tuple[QualityVerdict, ...]
    """Verdicts of the faces that failed a gate (values only, no pixels)."""
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    """Box of every face detected, usable or not (x0, y0, x1, y1, image pixels), best detector
    score first: where the detector looks again on the next frames (``DetectionSchedule``)."""

    @property
    def seen(self) -> int:
        """Faces detected in total."""
        return len(self.usable) + len(self.rejected)


def analyse_faces(detector: FaceFinder, image: NDArray[np.uint8], quality: QualityConfig,
                  partial: PartialPass | None = None) -> FaceAnalysis:
    """Detect every face in ``image`` (only with a partial pass when given), then align and
    gate each one."""
    usable: list[FaceCandidate] = []
    rejected: list[QualityVerdict] = []
    found = detector.detect(image) if partial is None else detector.detect_partial(image, partial)
    detections = sorted(found, key=lambda d: -d.score)
    for detection in detections:
        # The keypoint gates first: a face they reject is never aligned (most rejections).
        verdict = assess_quality(detection, None, quality)
        if not verdict.passed:
            rejected.append(verdict)
            continue
        # Writeable (a copy if need be) so it can be wiped once its decision is made.
        aligned = np.require(align_face(image, detection), requirements="W")
        verdict = assess_quality(detection, aligned, quality)
        if verdict.passed:
            usable.append(FaceCandidate(detection, aligned, verdict))
        else:
            wipe(aligned)  # privacy: a rejected face's pixels are overwritten, then dropped
            rejected.append(verdict)
    return FaceAnalysis(tuple(usable), tuple(rejected), tuple(d.box for d in detections))


def wipe(array: NDArray[Any]) -> None:
    """Overwrite face data with zeros before dropping it (read-only views are left alone).

    Defence in depth: the guarantee is that no reference survives; wiping also keeps the bytes
    out of any later heap dump of the process.
    """
    if array.flags.writeable:
        array.fill(0)
