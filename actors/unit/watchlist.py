"""The watchlist file: subjects' embeddings, the model that made them, and their thresholds.

On disk a watchlist is a small header and one codec message (``Watchlist``, msgpack)::

    b"LFRW" | format version (u16, little-endian) | sha256 of the payload (32 bytes) | payload

Format version 2 (message version 2) adds the templates of the second face model (dlib's
descriptor, ``models.second_opinion_model``): one descriptor per subject and its own distance
threshold, checked by the two-model rule (``actors.unit.second_opinion``). A version 1 file
(first model only) is refused with advice to rebuild it, rather than read as a watchlist whose
alerts would silently rest on one model. A ``Watchlist`` made in memory without them
(``second_model_id`` empty) is still valid: the matcher then alerts on the first model alone
and says so in its log.

The payload is decoded by the same strict, size-limited decoder as everything else that crosses
a boundary, and only once its checksum matches: a single flipped byte (a flipped sign bit once
made a watchlisted person unmatchable) is refused, never loaded. The checksum guards against
corruption, not against an attacker, until the secure-delivery work wraps these bytes in a
signed, encrypted envelope; the payload stays this message.

Thresholds are cosine similarities; what they mean and the range accepted without
``--allow-unusual-thresholds`` are in docs/THRESHOLDS.md.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from actors.unit.gallery import Gallery
from actors.unit.second_opinion import SecondTemplates, TwoModelGallery
from guards.files import UserFileError, read_user_file, write_file_atomically
from guards.log_text import printable
from guards.user_input import UserInputError
from models.face_embedder import EMBEDDING_DIM
from models.second_opinion_model import DESCRIPTOR_DIM
from runtime.codec import Codec, DecodeError
from runtime.message import message

DEFAULT_THRESHOLD = 0.60
"""Cosine similarity a face must reach, per frame, to count as a match for a subject.
Chosen from measurements: see docs/THRESHOLDS.md."""
USUAL_THRESHOLDS = (0.45, 0.80)
"""Thresholds accepted without ``--allow-unusual-thresholds`` (inclusive). Below 0.45 a
threshold is nearer the highest different-person score measured (0.245) than the lowest
same-person score (0.615); above 0.80 it misses most true matches (the best close-ups of the
shared clip score 0.83). See docs/THRESHOLDS.md."""
ALLOW_UNUSUAL_FLAG = "--allow-unusual-thresholds"
"""The command-line flag that accepts thresholds outside ``USUAL_THRESHOLDS``."""
MAX_WATCHLIST_BYTES = 512 * 1024 * 1024
"""Largest watchlist file accepted (about 650k subjects of 192 float32)."""
MAX_SUBJECT_ID_CHARS = 255
"""Longest subject id (a folder name is at most 255 bytes on common file systems)."""

MAX_PHOTOS_PER_SUBJECT = 10_000
"""Most photos one subject's embedding may average (``photos`` counts lie in 1..this)."""
MAX_FUTURE_S = 86_400.0
"""How far in the future ``created_at`` may lie (s): clocks of units and laptops drift."""
SAME_EMBEDDING_COSINE = 0.9999
"""Two subjects whose embeddings are closer than this are one face under two names."""
EXACT_DUPLICATE_SEARCH_MAX = 4096
"""Up to this many subjects every pair is compared (n^2 d multiply-adds: 0.1-0.5 s at 4096 on
two busy cores); above it only rows equal bit for bit are found, since comparing every pair of
hundreds of thousands of subjects would take a unit hours."""

MAX_SECOND_THRESHOLD = 1.5
"""Largest second-model threshold (a Euclidean distance of dlib descriptors, which are about
1.4 long; dlib's own threshold is 0.6)."""

MAGIC = b"LFRW"
FORMAT_VERSION = 2
_HEADER = struct.Struct("<4sH32s")  # magic, format version, sha256 of the payload
HEADER_BYTES = _HEADER.size


class WatchlistError(UserInputError):
    """A watchlist file that cannot be used; the text names the file and the problem."""


class ThresholdError(UserInputError):
    """A threshold outside (0, 1), or outside the usual range without the override flag."""


def check_threshold(value: float, what: str = "threshold") -> float:
    """A threshold must be a finite cosine strictly between 0 and 1 (the hard limit)."""
    if not (math.isfinite(value) and 0 < value < 1):
        raise ThresholdError(f"{what} must lie strictly between 0 and 1, got {value}")
    return value


def is_usual_threshold(value: float) -> bool:
    """True if ``value`` lies in ``USUAL_THRESHOLDS`` (compared as float32, as stored)."""
    low, high = (np.float32(bound) for bound in USUAL_THRESHOLDS)
    return bool(low <= np.float32(value) <= high)


def check_usual_thresholds(named: Iterable[tuple[str, float]], source: str, *,
                           allow_unusual: bool) -> list[tuple[str, float]]:
    """The (name, threshold) pairs outside ``USUAL_THRESHOLDS``; refused with
    ``ThresholdError`` naming them unless ``allow_unusual``. ``source`` starts the message."""
    unusual = [(name, value) for name, value in named if not is_usual_threshold(value)]
    if unusual and not allow_unusual:
        low, high = USUAL_THRESHOLDS
        listed = ", ".join(f"{printable(name, max_chars=64)} ({value:.3f})"
                           for name, value in unusual[:10])
        more = f" and {len(unusual) - 10} more" if len(unusual) > 10 else ""
        raise ThresholdError(
            f"{source}: threshold outside the usual range [{low}, {high}]: {listed}{more}; "
            f"give {ALLOW_UNUSUAL_FLAG} to use it anyway (see docs/THRESHOLDS.md)")
    return unusual


@message(120, version=2)
@dataclass(frozen=True, slots=True, eq=False)
class Watchlist:
    """Subjects and their embeddings, column by column.

    Construction refuses (``WatchlistError``) anything a scan could not use: no subject,
    duplicate or unprintable ids, non-unit or non-finite rows, thresholds outside (0, 1).
    """

    model_id: str
    """Embedding model the embeddings come from; another model's watchlist is refused."""
    model_sha256: str
    """sha256 of that model file."""
    created_at: float
    """When it was built, seconds since the epoch."""
    subjects: tuple[str, ...]
    """Subject ids (unique, printable, at most ``MAX_SUBJECT_ID_CHARS``), in row order."""
    embeddings: npt.NDArray[np.float32]
    """(n, d) unit-length embeddings, the normalised mean of each subject's photos."""
    thresholds: npt.NDArray[np.float32]
    """(n,) per-subject alert thresholds (cosine), each strictly between 0 and 1."""
    photos: tuple[int, ...]
    """How many photos each subject's embedding averages."""
    second_model_id: str = ""
    """The second face model its ``second_embeddings`` come from; empty: none (the matcher then
    alerts on the first model alone)."""
    second_model_sha256: str = ""
    """sha256 of that model's descriptor file; empty exactly when ``second_model_id`` is."""
    second_embeddings: npt.NDArray[np.float32] = field(
        default_factory=lambda: np.zeros((0, DESCRIPTOR_DIM), np.float32))
    """(n, 128) descriptors of the second model, the mean of each subject's photos; (0, 128)
    without a second model. Invariant: a row per subject exactly when ``second_model_id``."""
    second_thresholds: npt.NDArray[np.float32] = field(
        default_factory=lambda: np.zeros(0, np.float32))
    """(n,) per-subject distance thresholds of the second model, each in
    (0, ``MAX_SECOND_THRESHOLD``]; (0,) without a second model."""

    def __post_init__(self) -> None:
        n = len(self.subjects)
        if n == 0:
            raise WatchlistError("a watchlist needs at least one subject")
        _check_subject_ids(self.subjects)
        if self.embeddings.dtype != np.float32 or self.thresholds.dtype != np.float32:
            raise WatchlistError("embeddings and thresholds must be float32 arrays")
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n:
            raise WatchlistError(f"embeddings must have shape ({n}, d), got "
                                 f"{self.embeddings.shape}")
        if self.thresholds.shape != (n,) or len(self.photos) != n:
            raise WatchlistError(f"need {n} thresholds and {n} photo counts")
        if not np.all(np.isfinite(self.embeddings)) or not np.all(np.isfinite(self.thresholds)):
            raise WatchlistError("embeddings and thresholds must be finite")
        norms = np.linalg.norm(self.embeddings, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-3):
            raise WatchlistError("embeddings must be unit length")
        if np.any((self.thresholds <= 0) | (self.thresholds >= 1)):
            raise WatchlistError("thresholds must lie strictly between 0 and 1")
        _check_photo_counts(self.subjects, self.photos)
        _check_created_at(self.created_at)
        _check_distinct_embeddings(self.subjects, self.embeddings)
        self._check_second_model()

    def _check_second_model(self) -> None:
        n = len(self.subjects)
        if not isinstance(self.second_model_id, str) or not isinstance(
                self.second_model_sha256, str):
            raise WatchlistError("second_model_id and second_model_sha256 must be text")
        if bool(self.second_model_id) != bool(self.second_model_sha256):
            raise WatchlistError("second_model_id and second_model_sha256 are given together")
        rows = n if self.second_model_id else 0
        second, limits = self.second_embeddings, self.second_thresholds
        if second.dtype != np.float32 or limits.dtype != np.float32:
            raise WatchlistError("second-model embeddings and thresholds must be float32 arrays")
        if second.shape != (rows, DESCRIPTOR_DIM) or limits.shape != (rows,):
            raise WatchlistError(
                f"second-model embeddings must have shape ({rows}, {DESCRIPTOR_DIM}) and "
                f"thresholds ({rows},), got {second.shape} and {limits.shape}")
        if not np.all(np.isfinite(second)) or not np.all(np.isfinite(limits)):
            raise WatchlistError("second-model embeddings and thresholds must be finite")
        if rows and not np.all(np.linalg.norm(second, axis=1) > 0):
            raise WatchlistError("second-model embeddings must be non-zero")
        if np.any((limits <= 0) | (limits > MAX_SECOND_THRESHOLD)):
            raise WatchlistError(f"second-model thresholds must lie in (0, "
                                 f"{MAX_SECOND_THRESHOLD}]")

    @property
    def has_second_model(self) -> bool:
        """True when every subject has a template of the second model."""
        return bool(self.second_model_id)

    @property
    def dimension(self) -> int:
        """Embedding length."""
        return int(self.embeddings.shape[1])

    def gallery(self, threshold: float | None = None) -> Gallery:
        """A gallery to search; ``threshold`` overrides every subject's (first-model)
        threshold. With the second model's templates it is a ``TwoModelGallery`` holding them
        (the matcher then applies the two-model rule)."""
        thresholds = (np.full(len(self.subjects), threshold, np.float32)
                      if threshold is not None else self.thresholds)
        if not self.has_second_model:
            return Gallery(self.subjects, self.embeddings, thresholds)
        second = SecondTemplates(self.second_model_id, self.second_model_sha256,
                                 {s: i for i, s in enumerate(self.subjects)},
                                 self.second_embeddings, self.second_thresholds)
        return TwoModelGallery(self.subjects, self.embeddings, thresholds, second)

    def check_model(self, model_id: str, model_sha256: str, source: str, *,
                    dimension: int = EMBEDDING_DIM) -> None:
        """Refuse a watchlist made with another embedding model, or whose embeddings do not
        have the model's ``dimension`` (the shipped embedder's by default)."""
        shown = printable(source)
        if (self.model_id, self.model_sha256) != (model_id, model_sha256):
            raise WatchlistError(
                f"{shown}: watchlist was built with model {printable(self.model_id)} "
                f"(sha256 {printable(self.model_sha256)}), this unit uses {model_id} "
                f"(sha256 {model_sha256}); rebuild it with this model")
        if self.dimension != dimension:
            raise WatchlistError(
                f"{shown}: embeddings have {self.dimension} dimensions, model {model_id} "
                f"makes {dimension}; the file is inconsistent: rebuild it with this model")

    def unusual_thresholds(self, source: str, *,
                           allow_unusual: bool) -> list[tuple[str, float]]:
        """Subjects whose threshold lies outside ``USUAL_THRESHOLDS``; refused with
        ``ThresholdError`` naming them unless ``allow_unusual``."""
        return check_usual_thresholds(
            zip(self.subjects, (float(t) for t in self.thresholds), strict=True), source,
            allow_unusual=allow_unusual)


def _check_subject_ids(subjects: tuple[str, ...]) -> None:
    seen: set[str] = set()
    for subject in subjects:
        if not subject or len(subject) > MAX_SUBJECT_ID_CHARS:
            raise WatchlistError(f"subject id {printable(subject, max_chars=64)} must have "
                                 f"1 to {MAX_SUBJECT_ID_CHARS} characters")
        if not subject.isprintable():  # also refuses surrogates: undecodable file names
            raise WatchlistError(f"subject id {printable(subject)} holds characters that "
                                 "cannot be printed (control characters or undecodable bytes)")
        if subject in seen:
            raise WatchlistError(f"subject ids must be unique; {printable(subject)} repeats")
        seen.add(subject)


def _check_photo_counts(subjects: tuple[str, ...], photos: tuple[int, ...]) -> None:
    for subject, count in zip(subjects, photos, strict=True):
        if (isinstance(count, bool) or not isinstance(count, int)
                or not 1 <= count <= MAX_PHOTOS_PER_SUBJECT):
            raise WatchlistError(f"subject {printable(subject)}: photo count must be 1 to "
                                 f"{MAX_PHOTOS_PER_SUBJECT}, got {printable(repr(count))}")


def _check_created_at(created_at: float) -> None:
    if not (isinstance(created_at, int | float) and math.isfinite(created_at)):
        raise WatchlistError(f"created_at must be a finite time, got {created_at!r}")
    if created_at > time.time() + MAX_FUTURE_S:
        raise WatchlistError(f"created_at {created_at!r} lies more than a day in the future "
                             "(a wrong clock where it was built, or a forged file)")


def _check_distinct_embeddings(subjects: tuple[str, ...],
                               embeddings: npt.NDArray[np.float32]) -> None:
    """Refuse two subjects with one embedding: every match of one would also be the other."""
    pair = _same_embedding_pair(embeddings)
    if pair is not None:
        first, second = (printable(subjects[i], max_chars=64) for i in pair)
        raise WatchlistError(f"subjects {first} and {second} have the same embedding (cosine "
                             f"> {SAME_EMBEDDING_COSINE}): the same photos under two names?")


def _same_embedding_pair(embeddings: npt.NDArray[np.float32]) -> tuple[int, int] | None:
    n = len(embeddings)
    if n > EXACT_DUPLICATE_SEARCH_MAX:
        seen: dict[bytes, int] = {}
        for i, row in enumerate(embeddings):
            j = seen.setdefault(row.tobytes(), i)
            if j != i:
                return j, i
        return None
    block = 1024  # rows per product: 1024 x n float32 at most (32 MiB at 8192)
    for start in range(0, n, block):
        cosines = embeddings[start:start + block] @ embeddings.T
        rows, columns = np.nonzero(cosines > SAME_EMBEDDING_COSINE)
        for row, column in zip(rows + start, columns, strict=True):
            if row < column:
                return int(row), int(column)
    return None


def encode_watchlist(watchlist: Watchlist) -> bytes:
    """The file's bytes: header (magic, version, sha256 of the payload) and payload."""
    payload = Codec(max_message_bytes=MAX_WATCHLIST_BYTES - HEADER_BYTES).encode(watchlist)
    return _HEADER.pack(MAGIC, FORMAT_VERSION, hashlib.sha256(payload).digest()) + payload


def save_watchlist(watchlist: Watchlist, path: Path) -> None:
    """Write ``watchlist`` atomically (``guards.files.write_file_atomically``): the old file
    stays whole on any failure, a new file is 0600 (biometric data), a replaced one keeps its
    mode. Refuses a target that exists and is not a regular file (a device node, a directory,
    a FIFO)."""
    data = encode_watchlist(watchlist)
    try:
        write_file_atomically(path, data, "watchlist")
    except UserFileError as exc:
        raise WatchlistError(str(exc)) from None


def load_watchlist(path: Path, *, max_bytes: int = MAX_WATCHLIST_BYTES,
                   allow_unusual_thresholds: bool = False) -> Watchlist:
    """Read a regular file, check its checksum and strictly decode it.

    ``WatchlistError`` names what is wrong; ``ThresholdError`` a threshold outside
    ``USUAL_THRESHOLDS`` unless ``allow_unusual_thresholds``.
    """
    shown = printable(path)
    try:
        data = read_user_file(path, "watchlist", max_bytes)
    except UserFileError as exc:
        raise WatchlistError(str(exc)) from None
    watchlist = decode_watchlist(data, shown, max_bytes=max_bytes)
    watchlist.unusual_thresholds(shown, allow_unusual=allow_unusual_thresholds)
    return watchlist


def decode_watchlist(data: bytes, shown: str, *,
                     max_bytes: int = MAX_WATCHLIST_BYTES) -> Watchlist:
    """The watchlist in a file's bytes; ``shown`` (already printable) names it in errors."""
    if len(data) < HEADER_BYTES or not data.startswith(MAGIC):
        raise WatchlistError(_not_a_watchlist(data, shown, max_bytes))
    _, version, digest = _HEADER.unpack_from(data)
    if version == 1:
        raise WatchlistError(f"{shown}: a watchlist of format version 1 (the first face model "
                             "only); rebuild it with `lfr watchlist build`, which enrols both "
                             "models")
    if version != FORMAT_VERSION:
        raise WatchlistError(f"{shown}: watchlist format version {version} is not supported "
                             f"(this lfr reads version {FORMAT_VERSION})")
    payload = memoryview(data)[HEADER_BYTES:]
    if not hmac.compare_digest(hashlib.sha256(payload).digest(), digest):
        raise WatchlistError(f"{shown}: watchlist is corrupt: its checksum does not match its "
                             "content (damaged or truncated); rebuild or copy it again")
    try:
        decoded = Codec(max_message_bytes=max_bytes).decode(payload)
    except DecodeError as exc:
        raise WatchlistError(f"{shown}: not a valid watchlist: {exc}") from None
    if not isinstance(decoded, Watchlist):
        raise WatchlistError(f"{shown}: holds a {type(decoded).__name__}, not a Watchlist")
    return decoded


def _not_a_watchlist(data: bytes, shown: str, max_bytes: int) -> str:
    try:
        old = isinstance(Codec(max_message_bytes=max_bytes).decode(data), Watchlist)
    except DecodeError:
        old = False
    if old:
        return (f"{shown}: a watchlist of the old format, without a checksum; rebuild it with "
                "`lfr watchlist build`")
    return f"{shown}: not a watchlist file (no {MAGIC.decode()} header)"
