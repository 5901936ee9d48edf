"""``PartialPass``: the detector's work on a frame that does not get the whole full pass.

A frame's **full pass** is a fixed list of parts for its size (``FaceDetector.full_pass_regions``):
the whole frame letterboxed into the model's input, unless the tiles already hold every face the
frame can, then each tile of the pyramid (``models.tiling``), in that order. A partial pass runs
some of those parts, each exactly as the full pass runs it (same region, same edge and size
rules), plus square crops around faces found in recent frames (``models.track_crops``). All its
detections are merged by one weighted NMS, as a full pass's are.

Plain frozen data: a plan is made on the detector actor's loop and handed to a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.tiling import Tile

__all__ = ["PartialPass"]


@dataclass(frozen=True, slots=True)
class PartialPass:
    """Some parts of the full pass, and crops around known faces."""

    sweep: tuple[int, ...]
    """Indices into the frame's full pass (0 <= i < len(``FaceDetector.full_pass_regions``)), each
    part run once, in the order given; empty: no part of the full pass."""
    crops: tuple[Tile, ...]
    """Crops around known faces, inside the frame; empty: none."""
