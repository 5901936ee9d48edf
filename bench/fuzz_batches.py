"""A long fuzz run of the van's ``DeliverBatch`` path (not part of ``make test``).

Runs ``--inputs`` hostile batches (default 100,000) through what the van does with one: the
link's codec decoding the frame (``DeliverBatch`` frames of valid envelopes, flipped, truncated
and spliced), the receiver's bounds check (``batch_refusal``) and its per-envelope checks and
store (``Receiver._process_batch``, the worker pool's part, on a real event store that is
replaced every ``STORE_INPUTS`` inputs so that envelopes are stored, not only found duplicate),
with batches built of valid envelopes, mutated ones, forged ones (sealed to the van under the
unit's key id, signed with another key), random bytes and oversize ones, in any number, and any
``first_pending``. Every frame must decode or be refused with a ``DecodeError``;
every batch must be refused whole (count or bytes out of bounds) or answered with exactly one
result per envelope; only envelopes whose signed bytes the unit signed may be stored. Prints
one JSON object: inputs, frames refused, batches refused whole by reason, envelope outcomes and
refusals by reason, unexpected exceptions, envelopes stored although changed, seconds and peak
RSS. Exit 0 when nothing unexpected happened.

    .venv/bin/python -m bench.fuzz_batches [--inputs N] [--seed S]
"""

from __future__ import annotations

import io
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from PIL import Image

from actors.delivery_messages import MAX_BATCH_BYTES, MAX_BATCH_ENVELOPES, DeliverBatch, Outcome
from actors.unit.event_body import alert_body, encode_body
from actors.unit.match_alert import MatchAlert
from actors.van.event_store import EventStore
from actors.van.receiver import Receiver, UnitStatistics, batch_refusal
from bench.byte_mutations import Mutation, flip, splice, truncate
from bench.fuzz_command import fuzz_main
from runtime.codec import Codec, DecodeError
from secure.envelope import EventKind, seal_envelope
from secure.hybrid_signature import HYBRID_SIGNATURE_BYTES, HybridSignature, Signer, VerifyKey
from secure.node_keys import NodeKeys, NodeRole

UNIT_ID = "unit-fuzz"
VALID_ENVELOPES = 8
"""Envelopes 1-8 of the unit, sealed right once at the start."""
STORE_INPUTS = 50
"""Inputs per event store: then a new, empty one (stored numbers stay stored otherwise)."""
_SIGNATURE_TAIL = 2 + HYBRID_SIGNATURE_BYTES
_FRAME_MUTATIONS: tuple[Mutation, ...] = (flip, flip, truncate, splice)


def _crop(rng: random.Random) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 56), tuple(rng.randrange(256) for _ in range(3))).save(
        out, format="JPEG", quality=80)
    return out.getvalue()


def _signed_part(envelope: bytes) -> bytes:
    return envelope[:max(0, len(envelope) - _SIGNATURE_TAIL)]


def _envelope(rng: random.Random, valid: list[bytes]) -> bytes:
    """One element of a batch: valid, mutated, random or oversize."""
    choice = rng.random()
    if choice < 0.4:
        return rng.choice(valid)
    if choice < 0.85:
        return rng.choice(_FRAME_MUTATIONS)(rng, rng.choice(valid))
    if choice < 0.98:
        return rng.randbytes(rng.randint(0, 600))
    return bytes(rng.randint(MAX_BATCH_BYTES // 4, MAX_BATCH_BYTES + 1))


class _Impostor:
    """Signs with its own key under the enrolled unit's key id: what a forger who knows only
    public keys can seal (HPKE needs only the van's public key)."""

    def __init__(self, key_id: bytes) -> None:
        self._key_id = key_id
        self._own = NodeKeys.generate(NodeRole.UNIT, UNIT_ID).signing

    @property
    def key_id(self) -> bytes:
        return self._key_id

    def sign(self, data: bytes, context: bytes) -> HybridSignature:
        return self._own.sign(data, context)


def _sealed(rng: random.Random, seqs: range, signer: Signer, van: NodeKeys) -> list[bytes]:
    """Alert envelopes numbered ``seqs`` as ``signer`` seals them for the van."""
    assert van.encryption is not None  # a van always has one
    sealed = []
    for seq in seqs:
        body = alert_body(MatchAlert(
            alert_id=f"{UNIT_ID}/cam0/{seq}", subject="subject-1", score=0.7, threshold=0.6,
            track=seq, camera="cam0", t_s=seq / 25, captured_at=1_700_000_000.0 + seq,
            frame_index=seq, box=(1.0, 2.0, 40.0, 50.0), hits=3, crop_jpeg=_crop(rng)), 0)
        sealed.append(seal_envelope(encode_body(body), kind=EventKind.ALERT, unit_id=UNIT_ID,
                                    sequence=seq, signing_key=signer,
                                    van_key=van.encryption.public_key))
    return sealed


class _BatchFuzz:
    """The fuzz's state and counts (module docstring)."""

    def __init__(self, rng: random.Random, valid: list[bytes], forged: list[bytes]) -> None:
        self.rng = rng
        self.valid = valid
        self.forged = forged
        self.signed_right = {_signed_part(envelope) for envelope in valid}
        self.codec = Codec()
        self.frames_refused = 0
        self.whole: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()
        self.stored_changed = 0
        self.envelopes_checked = 0

    def batch(self) -> tuple[tuple[bytes, ...], int] | None:
        """The next input's envelopes and first pending number; None when its frame did not
        decode to a batch (counted)."""
        rng = self.rng
        count = rng.choice([0, 1, 1, 2, 3, 5, 8, MAX_BATCH_ENVELOPES, MAX_BATCH_ENVELOPES + 1,
                            rng.randint(0, 40)])
        first_pending = rng.choice([1, 2, 9, 0, -1, 2**63, 2**64 - 1, rng.randint(-5, 20)])
        if rng.random() >= 0.4:
            return tuple(rng.choice(self.forged) if rng.random() < 0.1
                         else _envelope(rng, self.valid) for _ in range(count)), first_pending
        # a frame, mutated, through the link's codec
        frame = self.codec.encode(DeliverBatch(tuple(rng.choice(self.valid)
                                                     for _ in range(count)), first_pending))
        for _ in range(rng.randint(1, 3)):
            if len(frame) > 2:
                frame = rng.choice(_FRAME_MUTATIONS)(rng, frame)
        try:
            decoded = self.codec.decode(frame)
        except DecodeError:
            self.frames_refused += 1
            return None
        if not isinstance(decoded, DeliverBatch):
            self.outcomes["frame_decoded_to_another_message"] += 1
            return None
        return decoded.envelopes, decoded.first_pending

    def deliver(self, receiver: Receiver, store: EventStore, envelopes: tuple[bytes, ...],
                first_pending: int) -> None:
        """What the van does with the batch, checked and counted."""
        refused = batch_refusal(envelopes)
        if refused is not None:
            self.whole[refused.reason] += 1
            return
        done = receiver._process_batch(envelopes, first_pending)  # the worker pool's part
        self.envelopes_checked += len(envelopes)
        if len(done.results) != len(envelopes):
            self.unexpected["a result count other than the batch's"] += 1
        stored = {event.seq: event.sealed for event in store.by_unit(UNIT_ID)}
        for result in done.results:
            receipt = getattr(result, "receipt", None)
            if receipt is None:
                self.outcomes["refused:" + getattr(result, "reason", "?")] += 1
                continue
            self.outcomes[receipt.outcome.value] += 1
            if receipt.outcome is Outcome.STORED and \
                    _signed_part(stored[receipt.seq]) not in self.signed_right:
                self.stored_changed += 1


def run_fuzz(inputs: int, seed: int) -> dict[str, object]:
    """Fuzz ``inputs`` batches; the summary as a JSON-ready dict."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fuzz inputs, not keys
    unit = NodeKeys.generate(NodeRole.UNIT, UNIT_ID)
    van = NodeKeys.generate(NodeRole.VAN, "van-fuzz")
    assert van.encryption is not None  # a van always has one
    enrolled = unit.signing.verify_key
    fuzz = _BatchFuzz(rng, _sealed(rng, range(1, VALID_ENVELOPES + 1), unit.signing, van),
                      _sealed(rng, range(VALID_ENVELOPES + 1, VALID_ENVELOPES + 5),
                              _Impostor(enrolled.key_id), van))

    def signers(unit_id: str, key_id: bytes) -> VerifyKey | None:
        return enrolled if unit_id == UNIT_ID and key_id == enrolled.key_id else None

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lfr-fuzz-batches-") as folder:
        store = EventStore.open(Path(folder) / "events-0.sqlite")
        try:
            for index in range(inputs):
                if index and index % STORE_INPUTS == 0:
                    store.close()
                    store = EventStore.open(Path(folder) / f"events-{index}.sqlite")
                receiver = Receiver(UNIT_ID, store, signers=signers, van_key=van.encryption,
                                    statistics=UnitStatistics())
                try:
                    batch = fuzz.batch()
                    if batch is not None:
                        fuzz.deliver(receiver, store, *batch)
                except Exception as exc:  # noqa: BLE001 - counting what must never happen
                    fuzz.unexpected[f"{type(exc).__name__}: {exc}"[:200]] += 1
        finally:
            store.close()
    seconds = time.perf_counter() - started
    return {
        "inputs": inputs,
        "seed": seed,
        "frames_refused_by_codec": fuzz.frames_refused,
        "batches_refused_whole": dict(sorted(fuzz.whole.items())),
        "envelopes_checked": fuzz.envelopes_checked,
        "outcomes": dict(sorted(fuzz.outcomes.items())),
        "unexpected_exceptions": sum(fuzz.unexpected.values()),
        "unexpected_examples": dict(fuzz.unexpected.most_common(5)),
        "stored_although_changed": fuzz.stored_changed,
        "seconds": round(seconds, 2),
        "inputs_per_s": round(inputs / seconds),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ok": not fuzz.unexpected and fuzz.stored_changed == 0,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz and print its JSON summary; exit 1 when anything unexpected happened."""
    return fuzz_main(__doc__.split("\n\n")[0], run_fuzz, argv)


if __name__ == "__main__":
    sys.exit(main())
