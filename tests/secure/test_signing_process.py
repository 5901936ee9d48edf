"""``SigningProcess``: hybrid signatures made in a child process verify like the key's own; a
child that dies or stalls is killed and signing goes on in this process for a while, then in a
new child; bounds; the child's protocol refusals; an envelope's signer never sees its body.
Every wait is bounded; nothing asserts how fast anything happened."""

from __future__ import annotations

import base64
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from secure.envelope import SIGNATURE_CONTEXT, EventKind, seal_envelope
from secure.hybrid_signature import HybridSignature, SigningKeyPair
from secure.sealing import EncryptionKeyPair
from secure.signing_process import (
    HEADER,
    MAX_DATA_BYTES,
    OK,
    READY,
    REFUSED,
    SigningProcess,
    serve,
)

KEY = SigningKeyPair.generate()
CONTEXT = b"lfr-edge/test/v1"


@pytest.fixture
def process() -> Iterator[SigningProcess]:
    signer = SigningProcess(KEY, retry_after_s=60.0, call_timeout_s=5.0)
    try:
        yield signer
    finally:
        signer.close()


def children_of_this_process() -> list[int]:
    """Pids of our running children whose command line names the signing process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == os.getpid() and b"signing_process" in command:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("size", [0, 1, 26_000, 250_000])
def test_the_childs_signatures_verify_with_the_keys_verify_key(process: SigningProcess,
                                                                size: int) -> None:
    data = os.urandom(size)
    signature = process.sign(data, CONTEXT)
    KEY.verify_key.verify(signature, data, CONTEXT)
    assert process.key_id == KEY.key_id
    assert (process.calls, process.starts, process.failures, process.in_process) == (1, 1, 0, 0)
    assert process.child_pid is not None
    assert process.child_pid != os.getpid()


def test_start_runs_the_child_once_and_close_ends_it(process: SigningProcess) -> None:
    assert process.start()
    pid = process.child_pid
    assert process.start()
    assert process.child_pid == pid
    assert children_of_this_process() == [pid]
    process.close()
    assert process.child_pid is None
    assert children_of_this_process() == []
    KEY.verify_key.verify(process.sign(b"after", CONTEXT), b"after", CONTEXT)  # a new child
    assert process.starts == 2


def test_a_child_killed_between_calls_is_replaced_after_signing_here_for_a_while(
        monkeypatch: pytest.MonkeyPatch) -> None:
    signer = SigningProcess(KEY, retry_after_s=0.3, call_timeout_s=5.0)
    try:
        assert signer.start()
        pid = signer.child_pid
        assert pid is not None
        # The child dies once the call has begun: killed before it, the call's liveness check
        # may already see it dead and rightly start a new child (a race under load).
        child = signer._child  # the test reaches the pipe to time the kill
        real_write_all = child.write_all
        killed: list[int] = []

        def dying_child(view: memoryview, deadline: float) -> None:
            if not killed:
                os.kill(pid, signal.SIGKILL)
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, pipes closed
                killed.append(pid)
            real_write_all(view, deadline)

        monkeypatch.setattr(child, "write_all", dying_child)
        signature = signer.sign(b"data", CONTEXT)
        KEY.verify_key.verify(signature, b"data", CONTEXT)
        assert (signer.failures, signer.in_process) == (1, 1)
        assert signer.child_pid is None
        signer.sign(b"data", CONTEXT)  # still within retry_after_s: here again
        assert signer.in_process == 2
        time.sleep(0.4)
        KEY.verify_key.verify(signer.sign(b"data", CONTEXT), b"data", CONTEXT)
        assert (signer.starts, signer.calls) == (2, 1)  # a new child made that one
    finally:
        signer.close()


def test_a_child_that_stops_answering_is_killed_and_the_call_signed_here() -> None:
    signer = SigningProcess(KEY, retry_after_s=60.0, call_timeout_s=0.5)
    try:
        assert signer.start()
        pid = signer.child_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        signature = signer.sign(b"data", CONTEXT)
        KEY.verify_key.verify(signature, b"data", CONTEXT)
        assert (signer.failures, signer.in_process, signer.child_pid) == (1, 1, None)
        assert pid not in children_of_this_process()  # killed, not left stopped
    finally:
        signer.close()


def test_a_child_that_cannot_start_leaves_signing_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("secure.signing_process.CHILD_BOOTSTRAP", "import sys; sys.exit(5)")
    signer = SigningProcess(KEY, retry_after_s=60.0, start_timeout_s=5.0)
    try:
        assert not signer.start()
        KEY.verify_key.verify(signer.sign(b"data", CONTEXT), b"data", CONTEXT)
        assert (signer.failures, signer.in_process, signer.starts) == (1, 1, 1)
    finally:
        signer.close()


def test_the_child_is_in_a_session_of_its_own_and_a_ctrl_c_does_not_end_it(
        process: SigningProcess) -> None:
    assert process.start()
    pid = process.child_pid
    assert pid is not None
    assert os.getsid(pid) != os.getsid(0)  # a signal to the node's group does not reach it
    os.kill(pid, signal.SIGINT)
    time.sleep(0.2)
    KEY.verify_key.verify(process.sign(b"data", CONTEXT), b"data", CONTEXT)
    assert (process.child_pid, process.failures) == (pid, 0)


def test_the_key_is_in_neither_the_childs_command_line_nor_its_environment(
        process: SigningProcess) -> None:
    assert process.start()
    pid = process.child_pid
    assert pid is not None
    seen = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
    for seed in KEY.private_seeds():
        for form in (seed, seed.hex().encode(), seed.hex().upper().encode(),
                     base64.b64encode(seed), base64.urlsafe_b64encode(seed)):
            assert form not in seen
    assert seen.startswith(os.fsencode(sys.executable) + b"\0-I\0-c\0")


def test_requests_out_of_bounds_are_refused_before_anything_is_sent(
        process: SigningProcess) -> None:
    with pytest.raises(ValueError, match="context"):
        process.sign(b"data", b"")
    with pytest.raises(ValueError, match="context"):
        process.sign(b"data", bytes(256))
    with pytest.raises(ValueError, match="bytes to sign"):
        process.sign(bytes(MAX_DATA_BYTES + 1), CONTEXT)
    assert process.starts == 0


def run_child(requests: bytes) -> tuple[int, bytes]:
    """``serve`` on a thread with pipes: what it returns and everything it answered."""
    requests_r, requests_w = os.pipe()
    answers_r, answers_w = os.pipe()
    result: list[int] = []
    child = threading.Thread(target=lambda: result.append(serve(requests_r, answers_w)))
    child.start()
    os.write(requests_w, b"".join(KEY.private_seeds()) + requests)
    os.close(requests_w)
    child.join(timeout=30)
    assert not child.is_alive()
    os.close(answers_w)
    answered = b""
    while chunk := os.read(answers_r, 1 << 16):
        answered += chunk
    os.close(answers_r)
    return result[0], answered


def test_the_child_answers_ready_with_its_key_id_signs_and_refuses_what_is_out_of_protocol(
        ) -> None:
    code, answered = run_child(HEADER.pack(4, len(CONTEXT)) + CONTEXT + b"data")
    assert code == 0
    assert answered[:1] == READY
    assert answered[1:9] == KEY.key_id
    assert answered[9] == OK
    KEY.verify_key.verify(HybridSignature.from_bytes(answered[10:]), b"data", CONTEXT)
    code, answered = run_child(HEADER.pack(MAX_DATA_BYTES + 1, 1))
    assert (code, answered[9:]) == (3, bytes([REFUSED]))
    code, answered = run_child(HEADER.pack(4, 0) + b"data")  # no context
    assert (code, answered[9:]) == (3, bytes([REFUSED]))


def test_the_child_ends_quietly_when_its_parent_is_gone_while_it_answers() -> None:
    requests_r, requests_w = os.pipe()
    answers_r, answers_w = os.pipe()
    os.close(answers_r)  # nobody reads the answers any more
    os.write(requests_w, b"".join(KEY.private_seeds()))
    os.close(requests_w)
    assert serve(requests_r, answers_w) == 0  # no BrokenPipeError
    os.close(answers_w)


class RecordingSigner:
    """A ``Signer`` that keeps what it was given."""

    def __init__(self) -> None:
        self.given: list[bytes] = []

    @property
    def key_id(self) -> bytes:
        return KEY.key_id

    def sign(self, data: bytes, context: bytes) -> HybridSignature:
        assert context == SIGNATURE_CONTEXT
        self.given.append(data)
        return KEY.sign(data, context)


def test_an_envelopes_signer_is_given_its_header_and_ciphertext_never_its_body() -> None:
    van = EncryptionKeyPair.generate()
    body = b"a face crop, biometric data " * 40
    signer = RecordingSigner()
    sealed = seal_envelope(body, kind=EventKind.ALERT, unit_id="unit-1", sequence=7,
                           signing_key=signer, van_key=van.public_key)
    (given,) = signer.given
    assert sealed.startswith(given)  # what is signed is the frame before the signature
    assert body[:32] not in given
