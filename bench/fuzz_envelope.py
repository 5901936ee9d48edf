"""A long fuzz run of ``secure.envelope.open_envelope`` (not part of ``make test``).

Runs ``--inputs`` hostile inputs (default 100,000) through the van's envelope decoder: random
bytes, random bytes behind a valid prefix, and valid envelopes mutated (bytes flipped,
truncated, spliced, length fields set to extremes, format version changed, and a few altered
then signed again with the unit's real key, as an insider would). Every input must either be
refused with an ``EnvelopeRefused`` or open to exactly the body that was sealed (a mutation can
be a no-op). Prints one JSON object: inputs, refusals by reason, unexpected exceptions, inputs
that opened although changed, seconds and peak RSS. Exit 0 when nothing unexpected happened.

    .venv/bin/python -m bench.fuzz_envelope [--inputs N] [--seed S]
"""

from __future__ import annotations

import random
import resource
import struct
import sys
import time
from collections import Counter

from bench.byte_mutations import Mutation, flip, random_tail, splice, truncate
from bench.fuzz_command import fuzz_main
from secure.envelope import (
    MAX_ENVELOPE_BYTES,
    SIGNATURE_CONTEXT,
    EnvelopeRefused,
    EventKind,
    open_envelope,
    seal_envelope,
)
from secure.hybrid_signature import HYBRID_SIGNATURE_BYTES, VerifyKey
from secure.node_keys import NodeKeys, NodeRole

_SIGNATURE_TAIL = 2 + HYBRID_SIGNATURE_BYTES


def _extreme_length(rng: random.Random, data: bytes) -> bytes:
    unit_len = data[8]
    body_len_at = 7 + 2 + unit_len + 8 + 16
    where, size = rng.choice([(5, 2), (body_len_at, 4), (len(data) - _SIGNATURE_TAIL, 2)])
    value = rng.choice([0, 1, (1 << (8 * size)) - 1, rng.randrange(1 << (8 * size))])
    return data[:where] + value.to_bytes(size, "big") + data[where + size:]


def _version(rng: random.Random, data: bytes) -> bytes:
    return data[:4] + bytes([rng.choice([0, 2, 255])]) + data[5:]


def _random_prefix(rng: random.Random, data: bytes) -> bytes:
    return random_tail(rng, data, keep=(4, 40))


MUTATIONS: tuple[Mutation, ...] = (flip, flip, truncate, splice, _extreme_length, _version,
                                   _random_prefix)


def run_fuzz(inputs: int, seed: int) -> dict[str, object]:
    """Fuzz ``inputs`` inputs; the summary as a JSON-ready dict."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fuzz inputs, not keys
    unit = NodeKeys.generate(NodeRole.UNIT, "unit-fuzz")
    van = NodeKeys.generate(NodeRole.VAN, "van-fuzz")
    assert van.encryption is not None  # a van always has one
    bodies = [rng.randbytes(n) for n in (0, 1, 200, 20_000)]
    valid = [seal_envelope(body, kind=EventKind.ALERT, unit_id=unit.node_id, sequence=i,
                           signing_key=unit.signing, van_key=van.encryption.public_key)
             for i, body in enumerate(bodies)]
    enrolled = unit.signing.verify_key

    def signers(unit_id: str, key_id: bytes) -> VerifyKey | None:
        return enrolled if unit_id == unit.node_id and key_id == enrolled.key_id else None

    reasons: Counter[str] = Counter()
    unexpected: Counter[str] = Counter()
    opened_changed = 0
    started = time.perf_counter()
    for index in range(inputs):
        choice = rng.random()
        original: bytes | None = None
        if choice < 0.3:
            data = rng.randbytes(rng.choice([rng.randint(0, 64), rng.randint(0, 8192)]))
        else:
            original = valid[index % len(valid)]
            data = rng.choice(MUTATIONS)(rng, original)
            if choice > 0.995:  # an insider re-signs the altered bytes with the real key
                signed = data[:max(0, len(data) - _SIGNATURE_TAIL)]
                signature = unit.signing.sign(signed, SIGNATURE_CONTEXT).to_bytes()
                data = signed + struct.pack(">H", len(signature)) + signature
        try:
            opened = open_envelope(data, signers=signers, van_key=van.encryption)
        except EnvelopeRefused as refused:
            reasons[refused.reason] += 1
        except Exception as exc:  # noqa: BLE001 - counting what must never happen is the point
            unexpected[f"{type(exc).__name__}: {exc}"[:200]] += 1
        else:
            # Only the signed bytes matter: a mutation of the signature alone, then signed
            # again with the real key, rightly opens.
            if original is None or (data[:-_SIGNATURE_TAIL] != original[:-_SIGNATURE_TAIL]
                                    or opened.body not in bodies):
                opened_changed += 1
            else:
                reasons["opened_signed_bytes_unchanged"] += 1
    seconds = time.perf_counter() - started
    return {
        "inputs": inputs,
        "seed": seed,
        "refused_by_reason": dict(sorted(reasons.items())),
        "unexpected_exceptions": sum(unexpected.values()),
        "unexpected_examples": dict(unexpected.most_common(5)),
        "opened_although_changed": opened_changed,
        "seconds": round(seconds, 2),
        "inputs_per_s": round(inputs / seconds),
        "max_envelope_bytes": MAX_ENVELOPE_BYTES,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ok": not unexpected and opened_changed == 0,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz and print its JSON summary; exit 1 when anything unexpected happened."""
    return fuzz_main(__doc__.split("\n\n")[0], run_fuzz, argv)


if __name__ == "__main__":
    sys.exit(main())
