"""``lfr demo`` / ``make demo``: the unit's pipeline live on the sample clip.

Builds a sample watchlist from ``demo/watchlist_photos`` (four subjects; two of them are not in
the clip), then replays ``demo/short_hamilton_clip.mp4`` at its frame rate as if it were a live
camera and prints each alert as it happens. Everything it needs ships in ``demo/`` (see NOTICE).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from actors.unit.camera import CameraConfig
from actors.unit.watchlist import save_watchlist
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.photo_faces import PhotoFaces
from lfr.scan import ScanConfig, run_scan
from lfr.watchlist_build import build_watchlist
from runtime.node import run

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"


def run_recognition_demo(demo_dir: Path = DEMO_DIR) -> int:
    """Enrol the sample subjects, then scan the sample clip paced like a live camera."""
    clip = demo_dir / "short_hamilton_clip.mp4"
    photos = demo_dir / "watchlist_photos"
    if not clip.is_file() or not photos.is_dir():
        raise UserInputError(f"{printable(demo_dir)}: the demo files are missing (see NOTICE)")
    print("enrolling the sample watchlist:",
          ", ".join(sorted(printable(p.name) for p in photos.iterdir())), file=sys.stderr)
    watchlist, report = build_watchlist(photos, PhotoFaces(), progress=False)
    for line in report.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="lfr-demo-") as tmp:
        path = Path(tmp) / "sample.watchlist"
        save_watchlist(watchlist, path)
        print(f"scanning {clip.name} live (paced at its frame rate); alerts as JSON lines:",
              file=sys.stderr)
        config = ScanConfig(CameraConfig(str(clip), camera_id="demo-cam", paced=True), path)
        return run(lambda system: run_scan(system, config, watchlist, summary_json=False))
