"""``SigningProcess``: a node's hybrid signatures made in a child process, off its GIL.

``cryptography`` holds the GIL for a whole signature (measured: two threads signing with
ML-DSA-65 make 515 signatures/s together, one alone 538/s), and ML-DSA-65's 1.5-2 ms per
signature is the largest piece of a camera unit's CPU per alert: while the uplink signs, the
event loop (aiortc's SCTP and DTLS, in Python) stands still. Here the signatures are made by one
child process (``CHILD_BOOTSTRAP`` runs ``serve``) on another core; the caller waits on a pipe
with the GIL released.

What crosses: the key's two 32-byte seeds once, at start, over the request pipe (never argv,
the environment or a file); then per request the bytes to sign (for an envelope: its header and
HPKE ciphertext, what the van also sees; never a plaintext body) and the context; back, the
signature. The child checks the seeds make the key whose id the parent expects, answers
``READY`` and the key id, and exits at the end of its request pipe (the parent closed it or
died). It imports ``secure.hybrid_signature`` and ``secure.key_id`` only (``cryptography``).

Protocol, over two anonymous pipes: a request is a 5-byte header (the data's length as a
little-endian uint32, the context's length as one byte), the context, the data; the answer is
one status byte (``OK``, or ``REFUSED`` for a request out of bounds) and, when ``OK``, the
signature in its wire form (``HYBRID_SIGNATURE_BYTES``).

Bounds and failure: one request at a time (a lock; callers wait for it on the worker pool),
data of at most ``MAX_DATA_BYTES``, every wait (start, write, answer) with a deadline. A child
that does not start, misses a deadline, dies or answers out of protocol is killed, and that
call and every call for the next ``retry_after_s`` sign in this process instead (logged with
the reason, counted in ``failures``): a unit keeps signing its alerts, only on its own GIL;
then a new child is started. The parent verifies nothing it gets back
(the signature is checked by the van, and a wrong one is refused there as ``bad_signature``);
it does check the child's key id at start. The seeds are written from a buffer overwritten
right after; the child overwrites the one it read them into. Starting, driving and ending the
child (its own session, SIGINT ignored, the pipes' deadlines, kill and reap) is
``guards.pipe_child``'s.
"""

from __future__ import annotations

import atexit
import logging
import os
import struct
import threading
import time
from pathlib import Path
from typing import Final

from guards.log_text import printable
from guards.pipe_child import PipeChild, child_program, read_exactly, serve_quietly, write_exactly
from secure.hybrid_signature import HYBRID_SIGNATURE_BYTES, HybridSignature, SigningKeyPair
from secure.key_id import KEY_ID_BYTES

__all__ = ["CHILD_BOOTSTRAP", "MAX_DATA_BYTES", "SigningFailed", "SigningProcess", "serve"]

log = logging.getLogger("lfr.secure.signing")

HEADER: Final = struct.Struct("<IB")
"""A request's data length and context length."""
SEEDS_BYTES: Final = 64
"""The Ed25519 seed, then the ML-DSA-65 seed."""
READY: Final = b"R"
OK: Final = 0
REFUSED: Final = 1
MAX_DATA_BYTES: Final = 1 << 20
"""Largest request (an envelope is at most about 245 KiB)."""
START_TIMEOUT_S: Final = 30.0
"""Starting the child takes about 0.2 s here; a loaded unit may take many times that."""
CALL_TIMEOUT_S: Final = 10.0
"""A signature takes 1.5-2 ms of CPU; a child that answers nothing in this long is killed."""
RETRY_AFTER_S: Final = 60.0
"""After a child failed, signatures are made in this process for this long."""
NAME: Final = "the signing process"
"""The child, as every message about it names it."""

_PACKAGE_ROOT: Final = Path(__file__).resolve().parent.parent
CHILD_BOOTSTRAP: Final = child_program(
    f"sys.path.insert(0, {str(_PACKAGE_ROOT)!r})\n"
    "from secure.signing_process import serve\n"
)
"""The child's program (``python -I -c``: ``PYTHON*`` variables and the user site ignored;
``guards.pipe_child.child_program``): this module, ``secure.hybrid_signature``,
``secure.key_id`` and ``guards``' ``log_text`` and ``pipe_child``. It ignores SIGINT (a Ctrl-C
is the node's to handle: the node ends the child by closing its request pipe) and runs in a
session of its own, so a signal to the node's process group does not reach it."""


class SigningFailed(RuntimeError):
    """The signing process did not start, answer in time, or keep to the protocol."""


class SigningProcess:
    """Signs as ``key`` in a child process: ``sign`` and ``key_id`` as a ``SigningKeyPair``'s
    (``secure.hybrid_signature.Signer``), callable from any thread, one call at a time (each a
    blocking call: the worker pool's). The child starts on ``start`` or the first call;
    ``close`` ends it."""

    def __init__(self, key: SigningKeyPair, *, start_timeout_s: float = START_TIMEOUT_S,
                 call_timeout_s: float = CALL_TIMEOUT_S,
                 retry_after_s: float = RETRY_AFTER_S) -> None:
        self._key = key
        self._start_timeout_s = start_timeout_s
        self._call_timeout_s = call_timeout_s
        self._retry_after_s = retry_after_s
        # Invariant: every field below is touched only while holding _lock.
        self._lock = threading.Lock()
        self._child = PipeChild(NAME, failure=SigningFailed, log=log)
        self._answer = bytearray(1 + HYBRID_SIGNATURE_BYTES)
        self._in_process_until = 0.0  # monotonic time; before it, sign here (a child failed)
        self.calls = 0
        """Signatures the child made."""
        self.failures = 0
        """Children that failed (each followed by ``retry_after_s`` of signing here)."""
        self.in_process = 0
        """Signatures made in this process because a child had failed."""

    @property
    def key_id(self) -> bytes:
        """The key id of the key signed with."""
        return self._key.key_id

    @property
    def starts(self) -> int:
        """Children started (more than one: a child failed and was replaced)."""
        return self._child.starts

    @property
    def child_pid(self) -> int | None:
        """The running child's process id (None: not running)."""
        with self._lock:
            return self._child.pid

    def start(self) -> bool:
        """Start the child now unless it runs; whether it runs (else the failure is handled
        as a call's, module docstring)."""
        with self._lock:
            if time.monotonic() < self._in_process_until:
                return False
            try:
                self._ensure_started()
            except SigningFailed as exc:
                self._failed(exc)
                return False
            return True

    def sign(self, data: bytes, context: bytes) -> HybridSignature:
        """``SigningKeyPair.sign``'s signature of ``data`` under ``context``, made by the child
        (in this process for a while after a child failed: module docstring); ``ValueError``
        for a context or data out of bounds."""
        if not 0 < len(context) <= 255:
            raise ValueError(f"a signature context has 1 to 255 bytes, got {len(context)}")
        if len(data) > MAX_DATA_BYTES:
            raise ValueError(f"{len(data)} bytes to sign; at most {MAX_DATA_BYTES}")
        with self._lock:
            if time.monotonic() >= self._in_process_until:
                try:
                    self._ensure_started()
                    return self._call(data, context)
                except SigningFailed as exc:
                    self._failed(exc)
            self.in_process += 1
            return self._key.sign(data, context)

    def _failed(self, error: SigningFailed) -> None:
        """The lock held: end the child, sign here for ``retry_after_s``."""
        self._child.stop()
        self.failures += 1
        self._in_process_until = time.monotonic() + self._retry_after_s
        log.warning("signing in this process for the next %g s: %s", self._retry_after_s,
                    printable(error))

    def _call(self, data: bytes, context: bytes) -> HybridSignature:
        deadline = time.monotonic() + self._call_timeout_s
        self._child.write_all(memoryview(HEADER.pack(len(data), len(context)) + context),
                              deadline)
        self._child.write_all(memoryview(data), deadline)
        answer = memoryview(self._answer)
        self._child.read_into(answer[:1], deadline)
        if answer[0] != OK:
            raise SigningFailed(f"{NAME} answered status {answer[0]}")
        self._child.read_into(answer[1:], deadline)
        self.calls += 1
        return HybridSignature.from_bytes(bytes(answer[1:]))

    def _ensure_started(self) -> None:
        if self._child.running:
            return
        atexit.register(self.close)  # once per child: close unregisters it
        seeds = bytearray(b"".join(self._key.private_seeds()))
        try:
            ready = self._child.start(CHILD_BOOTSTRAP, ready_bytes=len(READY) + KEY_ID_BYTES,
                                      timeout_s=self._start_timeout_s,
                                      greeting=memoryview(seeds))
        finally:
            seeds[:] = bytes(len(seeds))
        if ready[:1] != READY or ready[1:] != self._key.key_id:
            self._child.stop()
            raise SigningFailed(f"{NAME} did not start with this key")

    def close(self) -> None:
        """End the child (at interpreter exit too, unless closed before); a later call starts
        a new one."""
        with self._lock:
            self._child.stop()
        atexit.unregister(self.close)


def serve(requests: int, answers: int) -> int:
    """The child's loop: take the key, answer requests until the request pipe ends; a parent
    that went away while it answered (a broken answer pipe) ends it quietly too."""
    return serve_quietly(_serve, requests, answers)


def _serve(requests: int, answers: int) -> int:
    with os.fdopen(requests, "rb", buffering=0) as stream:
        seeds = bytearray(SEEDS_BYTES)
        if not read_exactly(stream, memoryview(seeds)):
            return 0
        key = SigningKeyPair(bytes(seeds[:32]), bytes(seeds[32:]))
        seeds[:] = bytes(SEEDS_BYTES)
        write_exactly(answers, READY + key.key_id)
        header = bytearray(HEADER.size)
        buffer = bytearray()
        while read_exactly(stream, memoryview(header)):
            size, context_size = HEADER.unpack(header)
            if size > MAX_DATA_BYTES or context_size == 0:
                write_exactly(answers, bytes([REFUSED]))
                return 3  # out of protocol: the parent kills and replaces us
            needed = context_size + size
            if len(buffer) < needed:
                buffer.extend(bytes(needed - len(buffer)))
            view = memoryview(buffer)[:needed]
            if not read_exactly(stream, view):
                return 0
            context, data = bytes(view[:context_size]), bytes(view[context_size:])
            view.release()
            write_exactly(answers, bytes([OK]) + key.sign(data, context).to_bytes())
    return 0
