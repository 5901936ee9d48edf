"""``AlertPolicy``: when a track's per-frame matches become one alert, and only one.

A track alerts for a subject once at least ``min_hits`` of its last ``window`` outcomes name
that subject above the subject's threshold. One alert per appearance: if the same subject was
seen matching on the same camera within ``appearance_gap_s`` (a lost track picked up again after
an occlusion, a missed detection or a camera cut), no new alert is raised; a person who returns
after a longer gap is a new appearance and alerts again.

The two-model rule (``actors.unit.second_opinion``): the caller says whether the second model
agrees (``confirmed``). While it does not, a fused match raises nothing and leaves no trace: the
track is not marked alerted and the subject's appearance clock is not started, so the alert
comes on the first frame both models agree on.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.unit.tracking import FrameOutcome, Track
from guards.config_checks import ConfigError, require_at_least, require_between

MAX_APPEARANCE_GAP_S = 5.0


@dataclass(frozen=True, slots=True)
class AlertPolicyConfig:
    """N-of-M fusion and appearance continuity."""

    min_hits: int = 3
    """N: matched frames naming the same subject needed to alert."""
    window: int = 5
    """M: how many of a track's most recent frames are considered."""
    appearance_gap_s: float = 3.0
    """A subject matched again on the same camera within this gap (s of stream time) is the same
    appearance and does not alert again; at most ``MAX_APPEARANCE_GAP_S``."""

    def __post_init__(self) -> None:
        require_at_least("AlertPolicyConfig.window", self.window, 1)
        require_at_least("AlertPolicyConfig.min_hits", self.min_hits, 1)
        if self.min_hits > self.window:
            raise ConfigError(f"AlertPolicyConfig.min_hits ({self.min_hits}) cannot exceed "
                              f"AlertPolicyConfig.window ({self.window})")
        require_between("AlertPolicyConfig.appearance_gap_s", self.appearance_gap_s, 0.0,
                        MAX_APPEARANCE_GAP_S)


class AlertPolicy:
    """Decides alerts for the tracks of one camera."""

    def __init__(self, config: AlertPolicyConfig | None = None) -> None:
        self.config = config or AlertPolicyConfig()
        # subject -> stream time (s) it was last seen matching on this camera.
        self._last_matched_s: dict[str, float] = {}

    def observe(self, track: Track, outcome: FrameOutcome, t_s: float, *,
                confirmed: bool = True) -> str | None:
        """Record one frame's outcome for ``track``; returns the subject to alert for, if any.

        An alert is only raised on a frame that itself matches the fused subject, so the alert's
        score and crop come from a matching face. ``confirmed``: the second model agrees that
        this track is ``outcome.subject`` (always True when no second model is used).
        """
        track.outcomes.append(outcome)
        subject = outcome.subject
        if subject is None or self._hits(track, subject) < self.config.min_hits:
            return None
        if not confirmed:
            return None  # held: not alerted, not an appearance yet (see the module docstring)
        return self.confirm(track, subject, t_s)

    def confirm(self, track: Track, subject: str, t_s: float) -> str | None:
        """``track``'s fusion on ``subject`` at stream time ``t_s`` is confirmed (``observe``
        found it met, or the matcher deferred it and the second model has now agreed): the
        subject to alert for, or None (already alerted by this track, or the same appearance
        as an alert of another track)."""
        previous = self._last_matched_s.get(subject)
        # A deferred fusion may be confirmed after a later frame's: the clock never goes back.
        self._last_matched_s[subject] = t_s if previous is None else max(previous, t_s)
        if subject in track.alerted:
            return None
        track.alerted.add(subject)
        if previous is not None and abs(t_s - previous) <= self.config.appearance_gap_s:
            return None  # the same appearance, picked up again by a new track
        return subject

    def fuses(self, track: Track, subject: str | None) -> bool:
        """``min_hits`` of the track's last ``window`` outcomes name ``subject``."""
        return subject is not None and self._hits(track, subject) >= self.config.min_hits

    def _hits(self, track: Track, subject: str) -> int:
        """How many of the track's last ``window`` outcomes name ``subject``."""
        recent = list(track.outcomes)[-self.config.window:]
        return sum(1 for o in recent if o.subject == subject)
