"""A detected face: box, score and the six BlazeFace keypoints, in frame pixels."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

__all__ = ["NUM_KEYPOINTS", "FaceDetection", "FaceKeypoint"]

NUM_KEYPOINTS = 6
"""BlazeFace predicts six keypoints per face."""


class FaceKeypoint(IntEnum):
    """Row of each keypoint in ``FaceDetection.keypoints``, in the model's output order.

    "Right"/"left" are the subject's: in an ordinary (non-mirrored) photo of a frontal face the
    right eye is on the image's left, i.e. has the smaller x.
    """

    RIGHT_EYE = 0
    LEFT_EYE = 1
    NOSE_TIP = 2
    MOUTH_CENTER = 3
    RIGHT_EAR_TRAGION = 4
    LEFT_EAR_TRAGION = 5


@dataclass(frozen=True, eq=False)
class FaceDetection:
    """One face in a frame. Coordinates are frame pixels, continuous: pixel column ``i`` spans
    ``[i, i + 1)``, so a pixel's centre is at ``i + 0.5``; boxes may extend past the frame edge
    for faces cut off by it.

    Compared by identity (``eq=False``): an array field has no single truth value for ``==``.
    """

    x0: float
    """Left edge of the face box."""

    y0: float
    """Top edge of the face box."""

    x1: float
    """Right edge of the face box (> x0)."""

    y1: float
    """Bottom edge of the face box (> y0)."""

    score: float
    """Detector confidence in [0, 1] (sigmoid of the model's logit)."""

    keypoints: NDArray[np.float32]
    """(6, 2) float32 [x, y] per ``FaceKeypoint``; stored as a read-only copy."""

    def __post_init__(self) -> None:
        kp = np.array(self.keypoints, dtype=np.float32, copy=True)
        if kp.shape != (NUM_KEYPOINTS, 2):
            raise ValueError(f"keypoints must have shape (6, 2), got {kp.shape}")
        kp.setflags(write=False)
        object.__setattr__(self, "keypoints", kp)

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.y1 - self.y0

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1)."""
        return (self.x0, self.y0, self.x1, self.y1)

    def keypoint(self, which: FaceKeypoint) -> tuple[float, float]:
        """One keypoint as (x, y)."""
        x, y = self.keypoints[which]
        return (float(x), float(y))

    @property
    def eye_distance(self) -> float:
        """Distance between the two eye keypoints in pixels (the face's scale in the frame)."""
        d = self.keypoints[FaceKeypoint.LEFT_EYE] - self.keypoints[FaceKeypoint.RIGHT_EYE]
        return float(np.hypot(d[0], d[1]))
