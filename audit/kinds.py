"""``AuditKind``: what an audit record says happened, one value per kind of event.

The value is what the log file holds (``"kind":"alert_raised"``), so a value is never renamed
or reused: a log written today must verify and read the same in ten years. A new kind is added
at the end; a verifier that does not know it refuses the record (docs/AUDIT.md, "Format").

Beside each kind, the fields its record carries. They are a convention the writers follow, not
enforced per kind: what is enforced for every record is the privacy rule (``audit.record``):
flat fields of short text, numbers, booleans or null, never bytes, arrays or nested data, so no
face crop or embedding can be written. Hashes are lowercase hex sha256; ``deployment`` is the
deployment id; ``reason`` is plain words, made printable (``guards.log_text.printable``) when
it holds anything a peer or a file supplied.
"""

from __future__ import annotations

import enum


class AuditKind(enum.Enum):
    """What an audit record says happened; the value is written to the log."""

    NODE_STARTED = "node_started"
    """The node started and opened its log. Fields: ``role`` (unit, van), ``version`` (the
    software's), optional ``config_sha256`` (of the config file it runs with)."""
    NODE_STOPPED = "node_stopped"
    """The node is stopping; the last record before the log is closed. Fields: ``reason``
    (signal name, ``done``, ``error``), ``exit_code``."""
    CONFIG_LOADED = "config_loaded"
    """A configuration file was read and checked. Fields: ``path``, ``sha256`` (of its bytes),
    ``changed`` (bool: differs from the one the node ran with last)."""
    DEPLOYMENT_STARTED = "deployment_started"
    """A deployment began (the van's ``lfr van deployment start``). Fields: ``deployment``,
    ``threshold``, optional ``operator``."""
    DEPLOYMENT_ENDED = "deployment_ended"
    """A deployment ended; every unit's watchlist is purged. Fields: ``deployment``,
    ``units_purged``, optional ``operator``."""
    WATCHLIST_SIGNED = "watchlist_signed"
    """The authority signed a watchlist. Fields: ``deployment``, ``version``, ``subjects``,
    ``model``, ``payload_sha256``, ``not_before``, ``not_after`` (ISO 8601), ``signer`` (key
    id)."""
    WATCHLIST_PUSHED = "watchlist_pushed"
    """The van sent a signed watchlist to a unit. Fields: ``unit``, ``deployment``,
    ``version``, ``payload_sha256``."""
    WATCHLIST_ACCEPTED = "watchlist_accepted"
    """A unit accepted a watchlist and matches with it from now on (on the van: the unit
    confirmed). Fields: ``deployment``, ``version``, ``subjects``, ``model``,
    ``payload_sha256``, ``not_after``; on the van also ``unit``."""
    WATCHLIST_REFUSED = "watchlist_refused"
    """A watchlist was refused; the unit keeps the one it held. Fields: ``reason``, and what
    could be read of it: ``deployment``, ``version``, ``payload_sha256``; on the van ``unit``."""
    WATCHLIST_EXPIRED = "watchlist_expired"
    """A unit dropped its watchlist at ``not_after``. Fields: ``deployment``, ``version``,
    ``payload_sha256``."""
    WATCHLIST_PURGED = "watchlist_purged"
    """A watchlist was dropped on request (deployment end, ``lfr watchlist purge``) and its
    embeddings overwritten in memory. Fields: ``deployment``, ``version``, ``payload_sha256``,
    ``reason``; on the van also ``unit``."""
    REFERENCE_PHOTOS_STORED = "reference_photos_stored"
    """The van stored reference photos of watchlist subjects, sealed at rest (they die with
    the deployment). Fields: ``deployment``, ``count``. Never the photos."""
    ALERT_RAISED = "alert_raised"
    """The matcher raised an alert (a unit). Fields: ``seq`` (the event's number in the
    outbox), ``camera``, ``subject`` (the watchlist's subject id), ``score``, ``threshold``,
    ``deployment``, ``crop_sha256`` (of the sealed crop's JPEG: its hash, never the crop)."""
    ALERT_SENT = "alert_sent"
    """The van acknowledged an alert (a unit), or stored one (the van). Fields: ``unit`` (on
    the van), ``seq``, ``envelope_sha256``."""
    ALERT_ACKNOWLEDGED = "alert_acknowledged"
    """An officer opened an alert for review (the van). Fields: ``unit``, ``seq``,
    ``operator``."""
    INPUT_REFUSED = "input_refused"
    """Something from outside was refused: an envelope, an offer, a link, a file, a command.
    Fields: ``source`` (what kind of input: ``envelope``, ``offer``, ``link``, ``watchlist``...),
    ``peer`` (the unit or address, if any), ``reason``."""
    OPERATOR_DECISION = "operator_decision"
    """An officer decided on an alert. Fields: ``unit``, ``seq``, ``decision`` (``confirmed``,
    ``dismissed``, ``cannot_tell``), ``operator``, optional ``note`` (plain text, no names of
    people)."""
    UNIT_ENROLLED = "unit_enrolled"
    """A unit was enrolled at the van (``lfr van enroll-unit``), or its key changed; recorded
    by the running van within seconds, and for every unit when the van starts. Fields:
    ``unit``, ``signing_key`` (key id)."""
    UNIT_REVOKED = "unit_revoked"
    """A unit's enrolment was revoked (``lfr van revoke-unit``) while the van ran. Fields:
    ``unit``, ``signing_key`` (key id)."""
    UNIT_CONNECTED = "unit_connected"
    """A unit's link came up (the van), or the van's (a unit). Fields: ``peer``."""
    UNIT_DROPPED = "unit_dropped"
    """A unit's link ended (the van), or the van's (a unit). Fields: ``peer``, ``reason``."""
    LOG_REPAIRED = "log_repaired"
    """Written by ``AuditLog.open`` itself, first after reopening a log whose last line was
    torn (a write cut short by a crash): that partial line was cut away. Fields:
    ``torn_bytes`` (how many bytes were cut), ``torn_sha256`` (their hash)."""
    WATCHLIST_BUILT = "watchlist_built"
    """The van built a watchlist from a folder of photos a supervisor uploaded to the console
    (the photos are wiped once enrolled). Fields: ``deployment``, ``subjects``,
    ``photos_used``, ``photos_skipped``, ``payload_sha256``, ``operator``."""
    WATCHLIST_EXPORTED = "watchlist_exported"
    """A supervisor downloaded the unsigned watchlist the van built, to have it signed where
    the authority's key is. Fields: ``deployment``, ``subjects``, ``payload_sha256``,
    ``operator``."""
    WATCHLIST_DISCARDED = "watchlist_discarded"
    """A supervisor discarded a watchlist the van built (wiped unused, unpushed). Fields:
    ``deployment``, ``subjects``, ``payload_sha256``, ``signed_version`` (0: unsigned),
    ``operator``."""
    CONSOLE_SIGNED_IN = "console_signed_in"
    """Someone signed in to the van's console. Fields: ``account`` (as stored), ``role``,
    ``address`` ("" on loopback)."""
    CONSOLE_SIGN_IN_FAILED = "console_sign_in_failed"
    """A sign-in was refused: no such account, disabled, or a wrong password (one answer for
    all three). Fields: ``account`` (the name as typed, printable, only when it names an
    account: people type passwords into the name field; else ""), ``known`` (bool),
    ``address``. Never the password."""
    CONSOLE_SIGN_IN_THROTTLED = "console_sign_in_throttled"
    """A sign-in was refused unchecked: the name or the address is locked out after failed
    sign-ins. Recorded once per lockout, not per attempt. Fields: ``account`` (as for a failed
    sign-in), ``known``, ``address``, ``retry_after_s``."""
    CONSOLE_SIGNED_OUT = "console_signed_out"
    """Someone signed out of the console (``POST /signout``; expiry is not recorded). Fields:
    ``account``."""
    CONSOLE_ACCOUNT = "console_account"
    """A console account as the van sees it: every account when the van starts (``change``
    ``present``), then each change made beside the running van (``lfr van user add``,
    ``disable``) within seconds (``added``, ``disabled``, ``role_changed``). Fields:
    ``account``, ``role``, ``disabled`` (bool), ``created_at`` (ISO 8601), ``change``."""
