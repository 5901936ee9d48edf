"""``lfr verify A B``: are two photos the same person?

Exit codes (``guards.exit_codes``): 0 with the similarity printed, 3 when a photo holds no
single usable face, and an unreadable photo (missing, not a regular file, not a JPEG, PNG or
WebP) raises ``ImageLoadError``, which the command line reports as bad input (2).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from actors.unit.watchlist import DEFAULT_THRESHOLD
from guards.exit_codes import ExitCode
from lfr.photo_faces import NoUsableFace, PhotoFaces, SeveralFaces


def verify(image_a: Path, image_b: Path, *, threshold: float = DEFAULT_THRESHOLD,
           as_json: bool = False) -> int:
    """Print the similarity and decision; returns the exit code."""
    faces = PhotoFaces()
    try:
        a = faces.embed_single(image_a)
        b = faces.embed_single(image_b)
    except (NoUsableFace, SeveralFaces) as exc:
        print(f"lfr verify: {exc}", file=sys.stderr)
        return ExitCode.NO_USABLE_FACE
    similarity = float(np.dot(a, b))
    same = similarity >= threshold
    if as_json:
        print(json.dumps({"similarity": round(similarity, 4), "threshold": threshold,
                          "same_person": same}, allow_nan=False))
    else:
        verdict = "same person" if same else "different people"
        print(f"similarity {similarity:.4f} (threshold {threshold:.2f}): {verdict}")
    return ExitCode.OK
