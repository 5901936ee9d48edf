"""Hostile bytes into ``open_envelope``: only the envelope's own refusals, in bounded memory."""

from __future__ import annotations

import contextlib
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure.envelope import MAX_ENVELOPE_BYTES, EnvelopeRefused, open_envelope
from tests.secure.envelope_support import UNIT, VAN_KEY, Signers, sealed

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
VALID = sealed(b"fuzz body " * 50, sequence=3)
SIGNERS = Signers(UNIT)


def opens_or_refuses(data: bytes) -> None:
    """Either a valid envelope opens, or an ``EnvelopeRefused`` is raised: nothing else."""
    with contextlib.suppress(EnvelopeRefused):
        open_envelope(data, signers=SIGNERS, van_key=VAN_KEY)


@FUZZ
@given(st.binary(max_size=8192))
def test_arbitrary_bytes_are_refused(data: bytes) -> None:
    try:
        open_envelope(data, signers=SIGNERS, van_key=VAN_KEY)
    except EnvelopeRefused:
        return
    raise AssertionError("random bytes opened")


@FUZZ
@given(st.binary(min_size=7, max_size=64))
def test_arbitrary_bytes_behind_a_valid_magic_are_refused(tail: bytes) -> None:
    opens_or_refuses(b"LFRE" + tail)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)),
                min_size=1, max_size=8, unique_by=lambda flip: flip[0]))
def test_a_valid_envelope_with_bytes_changed_is_refused(flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for index, mask in flips:
        data[index] ^= mask
    try:
        open_envelope(bytes(data), signers=SIGNERS, van_key=VAN_KEY)
    except EnvelopeRefused:
        return
    raise AssertionError(f"an envelope changed at {flips} opened")


@FUZZ
@given(st.integers(0, len(VALID)), st.integers(0, len(VALID)), st.binary(max_size=64))
def test_a_valid_envelope_cut_or_spliced_is_refused(start: int, end: int,
                                                    insert: bytes) -> None:
    start, end = min(start, end), max(start, end)
    mutated = VALID[:start] + insert + VALID[end:]
    if mutated != VALID:
        try:
            open_envelope(mutated, signers=SIGNERS, van_key=VAN_KEY)
        except EnvelopeRefused:
            return
        raise AssertionError("a spliced envelope opened")


def test_the_largest_refused_input_stays_within_a_few_copies_of_itself() -> None:
    data = bytearray(b"LFRE\x01" + b"\xff" * (MAX_ENVELOPE_BYTES - 5))
    for candidate in (bytes(data), VALID[:-1] + b"\x00" * (MAX_ENVELOPE_BYTES - len(VALID))):
        tracemalloc.start()
        try:
            opens_or_refuses(candidate)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 * MAX_ENVELOPE_BYTES
