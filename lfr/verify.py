"""``lfr verify A B``: are two photos the same person?"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from actors.unit.watchlist import DEFAULT_THRESHOLD
from lfr.photo_faces import NoUsableFace, PhotoFaces, SeveralFaces
from models.image_io import ImageLoadError

EXIT_NO_USABLE_FACE = 3
EXIT_UNREADABLE = 2


def verify(image_a: Path, image_b: Path, *, threshold: float = DEFAULT_THRESHOLD,
           as_json: bool = False) -> int:
    """Print the similarity and decision; returns the exit code."""
    faces = PhotoFaces()
    try:
        a = faces.embed_single(image_a)
        b = faces.embed_single(image_b)
    except (NoUsableFace, SeveralFaces) as exc:
        print(f"lfr verify: {exc}", file=sys.stderr)
        return EXIT_NO_USABLE_FACE
    except ImageLoadError as exc:
        print(f"lfr verify: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    similarity = float(np.dot(a, b))
    same = similarity >= threshold
    if as_json:
        print(json.dumps({"similarity": round(similarity, 4), "threshold": threshold,
                          "same_person": same}))
    else:
        verdict = "same person" if same else "different people"
        print(f"similarity {similarity:.4f} (threshold {threshold:.2f}): {verdict}")
    return 0
