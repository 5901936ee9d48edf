"""``SecondModelProcess``: the second face model in a worker process, so it never holds our GIL.

dlib's descriptor call holds the GIL for its whole 110-135 ms (measured: a busy Python thread
gets 8-14% of its progress while another thread describes faces), which stalls the event loop
and the Python of every worker thread. Here the model runs in one child process
(``CHILD_BOOTSTRAP``, which runs ``serve``) that loads and verifies the vendored files itself
(``SecondFaceModel``); the parent's calls wait on a pipe with the GIL released.

Protocol, over two anonymous pipes passed to the child (never a file, never a socket):
a request is a 24-byte header (crop height and width as two little-endian uint32, then the
face box in crop pixels as four float32) followed by the crop's RGB bytes; the answer is one
status byte (``OK``, or ``REFUSED`` for a request the model refuses) followed, when ``OK``, by
the descriptor's 128 little-endian float32. The child writes one ``READY`` byte once its model
is loaded and exits at the end of its request pipe (the parent closed it or died).

Bounds: one request at a time (a lock; callers wait for it on the worker pool), crops of at
most ``MAX_CROP_SIDE`` px a side, every wait (start, write, answer) with a deadline; a child that
misses one, dies or answers out of protocol is killed and the call raises
``SecondModelFailed`` (the matcher fails and its supervisor restarts it); the next call starts a
new child. Starting, driving and ending the child (its own session, SIGINT ignored, the pipes'
deadlines, kill and reap) is ``guards.pipe_child``'s.

Privacy: the crop is cut from the frame in this process and written to the pipe straight from
its array, which is then overwritten with zeros; the child reads it into one reused buffer that
it overwrites with zeros after every request, like the descriptor it sent; the answer is read
into a buffer wiped once the descriptor is copied out (the caller wipes that copy, ``look``).
Nothing is logged but counts and the child's exit status.
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

import numpy as np
from numpy.typing import NDArray

from guards.pipe_child import (
    PipeChild,
    child_program,
    read_exactly,
    serve_quietly,
    write_all,
    write_exactly,
)
from models.second_opinion_model import DESCRIPTOR_DIM, face_crop

__all__ = ["CHILD_BOOTSTRAP", "MAX_CROP_SIDE", "SecondModelFailed", "SecondModelProcess", "serve"]

log = logging.getLogger("lfr.second_model")

HEADER: Final = struct.Struct("<II4f")
"""Crop height, width, then the box (x0, y0, x1, y1) in crop pixels."""
READY: Final = b"R"
OK: Final = 0
REFUSED: Final = 1
MAX_CROP_SIDE: Final = 4096
"""Largest crop side sent (frames are at most 4096 px a side: the camera refuses larger)."""
START_TIMEOUT_S: Final = 60.0
"""Loading and verifying both files takes 0.7 s here; a loaded unit may take many times that."""
CALL_TIMEOUT_S: Final = 10.0
"""One look takes 110-135 ms of CPU; a child that answers nothing in this long is killed."""
DESCRIPTOR_BYTES: Final = DESCRIPTOR_DIM * 4
NAME: Final = "the second model's worker"
"""The child, as every message about it names it."""


_MODELS_DIR: Final = Path(__file__).resolve().parent
CHILD_BOOTSTRAP: Final = child_program(
    "import types\n"
    f"sys.path.insert(0, {str(_MODELS_DIR.parent)!r})\n"
    "package = types.ModuleType('models')\n"
    f"package.__path__ = [{str(_MODELS_DIR)!r}]\n"
    "sys.modules['models'] = package\n"
    "from models.second_opinion_worker import serve\n"
)
"""The child's program (``python -I -c``, ``guards.pipe_child.child_program``). It ignores SIGINT
(a Ctrl-C is the node's to handle: the node ends the child by closing its request pipe) and runs
in a session of its own, so a signal to the node's process group does not reach it. It imports
this package's modules without its ``__init__``, whose TFLite, OpenCV and Pillow imports the
child does not need (its peak RSS 124 -> 102 MB here); the child imports ``model_file``,
``second_opinion_model``, this module and ``guards.pipe_child`` only."""


class SecondModelFailed(RuntimeError):
    """The worker process did not start, answer in time, or keep to the protocol."""


def _write_all(fd: int, data: memoryview, deadline: float) -> None:
    """A request's bytes to the child (``guards.pipe_child.write_all`` as this worker's): the
    one place a request is written, where a test can end the child during a call."""
    write_all(fd, data, deadline, name=NAME, failure=SecondModelFailed)


class SecondModelProcess:
    """The second model in a child process; ``describe`` is the ``Describer`` protocol's (called
    on worker threads, one at a time). The child starts on the first call."""

    def __init__(self, *, start_timeout_s: float = START_TIMEOUT_S,
                 call_timeout_s: float = CALL_TIMEOUT_S) -> None:
        self._start_timeout_s = start_timeout_s
        self._call_timeout_s = call_timeout_s
        # Invariant: every field below is touched only while holding _lock (child_pid reads
        # the child's pid without it: a read of one reference).
        self._lock = threading.Lock()
        self._child = PipeChild(NAME, failure=SecondModelFailed, log=log)
        self._answer = bytearray(1 + DESCRIPTOR_BYTES)
        self.calls = 0
        """Descriptors made."""
        atexit.register(self.close)

    @property
    def starts(self) -> int:
        """Children started (more than one: a child failed and was replaced)."""
        return self._child.starts

    def start(self) -> None:
        """Start the child now (its model loaded and verified) unless it runs:
        ``SecondModelFailed`` if it does not start within the start timeout."""
        with self._lock:
            self._ensure_started()

    @property
    def child_pid(self) -> int | None:
        """The running child's process id (None: not running)."""
        return self._child.pid

    def peak_rss_mb(self) -> float | None:
        """The running child's peak resident memory (MB, Linux's VmHWM; None: not running)."""
        pid = self.child_pid
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def describe(self, pixels: NDArray[np.uint8],
                 box: tuple[float, float, float, float]) -> NDArray[np.float32]:
        """The (128,) float32 descriptor of the face in ``box`` of ``pixels``, made by the
        child (``SecondFaceModel.describe``'s, bit for bit). ``ValueError`` for a box it
        refuses, ``SecondModelFailed`` when the child fails (it is then killed)."""
        crop, crop_box = face_crop(pixels, box)
        try:
            h, w = crop.shape[:2]
            if h > MAX_CROP_SIDE or w > MAX_CROP_SIDE:
                raise ValueError(f"face crop {w}x{h} is larger than {MAX_CROP_SIDE} px a side")
            with self._lock:
                self._ensure_started()
                try:
                    return self._call(crop, crop_box)
                except SecondModelFailed:
                    self._child.stop()
                    raise
        finally:
            crop.fill(0)  # our own copy of the face, never the caller's frame

    def _call(self, crop: NDArray[np.uint8],
              box: tuple[float, float, float, float]) -> NDArray[np.float32]:
        deadline = time.monotonic() + self._call_timeout_s
        h, w = crop.shape[:2]
        _write_all(self._child.request_fd, memoryview(HEADER.pack(h, w, *box)), deadline)
        _write_all(self._child.request_fd, crop.data.cast("B"), deadline)
        answer = memoryview(self._answer)
        try:
            self._child.read_into(answer[:1], deadline)
            if answer[0] == REFUSED:
                raise ValueError(f"the second model refused the face box {box} of a {w}x{h} "
                                 f"crop")
            if answer[0] != OK:
                raise SecondModelFailed(f"{NAME} answered status {answer[0]}")
            self._child.read_into(answer[1:], deadline)
            descriptor = np.frombuffer(answer[1:], dtype="<f4").astype(np.float32)
            self.calls += 1
            return descriptor
        finally:
            answer[:] = bytes(len(answer))

    def _ensure_started(self) -> None:
        if self._child.running:
            return
        ready = self._child.start(CHILD_BOOTSTRAP, ready_bytes=len(READY),
                                  timeout_s=self._start_timeout_s)
        if ready != READY:
            self._child.stop()
            raise SecondModelFailed(f"{NAME} did not start")

    def close(self) -> None:
        """End the child (at interpreter exit too); a later call starts a new one."""
        with self._lock:
            self._child.stop()


def serve(requests: int, answers: int) -> int:
    """The child's loop: load the model, answer requests until the request pipe ends; a
    parent that went away while it answered (a broken answer pipe) ends it quietly too."""
    return serve_quietly(_serve, requests, answers)


def _serve(requests: int, answers: int) -> int:
    from models.second_opinion_model import SecondFaceModel  # noqa: PLC0415

    model = SecondFaceModel()
    write_exactly(answers, READY)
    header = bytearray(HEADER.size)
    buffer = bytearray()
    answer = bytearray(1 + DESCRIPTOR_BYTES)
    with os.fdopen(requests, "rb", buffering=0) as stream:
        while read_exactly(stream, memoryview(header)):
            h, w, x0, y0, x1, y1 = HEADER.unpack(header)
            if not (0 < h <= MAX_CROP_SIDE and 0 < w <= MAX_CROP_SIDE):
                return 3  # out of protocol: the parent kills and replaces us
            size = h * w * 3
            if len(buffer) < size:
                buffer.extend(bytes(size - len(buffer)))
            view = memoryview(buffer)[:size]
            try:
                if not read_exactly(stream, view):
                    return 0
                crop = np.frombuffer(view, dtype=np.uint8).reshape(h, w, 3)
                try:
                    descriptor = model.describe(crop, (x0, y0, x1, y1))
                except ValueError:
                    answer[0] = REFUSED
                    write_exactly(answers, memoryview(answer)[:1])
                    continue
                finally:
                    del crop
                answer[0] = OK
                memoryview(answer)[1:] = np.ascontiguousarray(descriptor, dtype="<f4").view(
                    np.uint8).data
                descriptor.fill(0.0)
                write_exactly(answers, answer)
            finally:
                answer[:] = bytes(len(answer))
                view[:] = bytes(size)  # privacy: the face is wiped after every request
                view.release()
    return 0


