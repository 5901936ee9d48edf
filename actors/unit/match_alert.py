"""``MatchAlert``: the one message that leaves a camera unit (to the van, for an officer)."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.message import message


@message(110)
@dataclass(frozen=True, slots=True)
class MatchAlert:
    """A watchlisted subject recognised on a camera; raised once per appearance."""

    alert_id: str
    """Unique id (unit, camera, track and subject based) for acknowledgement by the van."""
    subject: str
    """Watchlist subject id."""
    score: float
    """Cosine similarity of the alerting frame's face to the subject (0..1)."""
    threshold: float
    """The subject's threshold the score was compared with."""
    track: int
    """Track id on this camera."""
    camera: str
    """Camera id."""
    t_s: float
    """Stream time of the alerting frame (s): pts x time_base for files, since start for live."""
    captured_at: float
    """Wall-clock time the frame was decoded, seconds since the Unix epoch (UTC)."""
    frame_index: int
    """Index of the alerting frame in the stream."""
    box: tuple[float, float, float, float]
    """Face box x0, y0, x1, y1 in frame pixels."""
    hits: int
    """Matched frames behind the alert (the N of N-of-M fusion)."""
    crop_jpeg: bytes
    """JPEG of the face with some context, for the officer who confirms or dismisses."""
    watchlist_version: int = 0
    """Version of the signed watchlist that matched (0: a local watchlist file, ``lfr scan``)."""
