"""Generic mutations of valid bytes for the fuzz commands (``bench.fuzz_envelope``,
``bench.fuzz_signaling``): each takes a seeded ``random.Random`` (reproducible runs) and returns
a changed copy. Format-aware mutations stay with the fuzz of their format."""

from __future__ import annotations

import random
from collections.abc import Callable

Mutation = Callable[[random.Random, bytes], bytes]
"""(rng, valid bytes) -> mutated bytes."""


def flip(rng: random.Random, data: bytes) -> bytes:
    """1 to 8 bytes xor-ed with a random non-zero value."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= rng.randint(1, 255)
    return bytes(out)


def truncate(rng: random.Random, data: bytes) -> bytes:
    """Cut at a random length (possibly empty)."""
    return data[:rng.randrange(len(data))]


def splice(rng: random.Random, data: bytes) -> bytes:
    """Up to 64 bytes at a random place replaced by up to 64 random bytes."""
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.randint(0, 64))
    return data[:start] + rng.randbytes(rng.randint(0, 64)) + data[end:]


def random_tail(rng: random.Random, data: bytes, *, keep: tuple[int, int]) -> bytes:
    """The first ``keep[0]``-``keep[1]`` bytes, then up to 4 KiB of random bytes."""
    return data[:rng.randint(*keep)] + rng.randbytes(rng.randint(0, 4096))
