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
new child.

Privacy: the crop is cut from the frame in this process and written to the pipe straight from
its array, which is then overwritten with zeros; the child reads it into one reused buffer that
it overwrites with zeros after every request, like the descriptor it sent; the answer is read
into a buffer wiped once the descriptor is copied out (the caller wipes that copy, ``look``).
Nothing is logged but counts and the child's exit status.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

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


_MODELS_DIR: Final = Path(__file__).resolve().parent
CHILD_BOOTSTRAP: Final = (
    "import signal, sys, types\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    f"sys.path.insert(0, {str(_MODELS_DIR.parent)!r})\n"
    "package = types.ModuleType('models')\n"
    f"package.__path__ = [{str(_MODELS_DIR)!r}]\n"
    "sys.modules['models'] = package\n"
    "from models.second_opinion_worker import serve\n"
    "sys.exit(serve(int(sys.argv[1]), int(sys.argv[2])))\n"
)
"""The child's program (``python -I -c``). It ignores SIGINT (a Ctrl-C is the node's to handle:
the node ends the child by closing its request pipe) and runs in a session of its own, so a
signal to the node's process group does not reach it. It imports this package's modules
without its ``__init__``,
whose TFLite, OpenCV and Pillow imports the child does not need (its peak RSS 124 -> 102 MB
here); the child imports ``model_file``, ``second_opinion_model`` and this module only."""


class SecondModelFailed(RuntimeError):
    """The worker process did not start, answer in time, or keep to the protocol."""


def _write_all(fd: int, data: memoryview, deadline: float) -> None:
    while data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
            raise SecondModelFailed("the second model's worker took no request in time")
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            continue
        except OSError as exc:  # BrokenPipeError: the child died
            raise SecondModelFailed(f"the second model's worker is gone: {exc}") from exc


def _read_into(fd: int, buffer: memoryview, deadline: float) -> None:
    while buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise SecondModelFailed("the second model's worker did not answer in time")
        try:
            got = os.readv(fd, [buffer])
        except BlockingIOError:
            continue
        if got == 0:
            raise SecondModelFailed("the second model's worker ended")
        buffer = buffer[got:]


class SecondModelProcess:
    """The second model in a child process; ``describe`` is the ``Describer`` protocol's (called
    on worker threads, one at a time). The child starts on the first call."""

    def __init__(self, *, start_timeout_s: float = START_TIMEOUT_S,
                 call_timeout_s: float = CALL_TIMEOUT_S) -> None:
        self._start_timeout_s = start_timeout_s
        self._call_timeout_s = call_timeout_s
        # Invariant: every field below is touched only while holding _lock.
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._requests = -1  # our end of the child's request pipe (write)
        self._answers = -1   # our end of its answer pipe (read)
        self._answer = bytearray(1 + DESCRIPTOR_BYTES)
        self.calls = 0
        """Descriptors made."""
        self.starts = 0
        """Children started (more than one: a child failed and was replaced)."""
        atexit.register(self.close)

    def start(self) -> None:
        """Start the child now (its model loaded and verified) unless it runs:
        ``SecondModelFailed`` if it does not start within the start timeout."""
        with self._lock:
            self._ensure_started()

    @property
    def child_pid(self) -> int | None:
        """The running child's process id (None: not running)."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

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
                    self._stop_child()
                    raise
        finally:
            crop.fill(0)  # our own copy of the face, never the caller's frame

    def _call(self, crop: NDArray[np.uint8],
              box: tuple[float, float, float, float]) -> NDArray[np.float32]:
        deadline = time.monotonic() + self._call_timeout_s
        h, w = crop.shape[:2]
        _write_all(self._requests, memoryview(HEADER.pack(h, w, *box)), deadline)
        _write_all(self._requests, crop.data.cast("B"), deadline)
        answer = memoryview(self._answer)
        try:
            _read_into(self._answers, answer[:1], deadline)
            if answer[0] == REFUSED:
                raise ValueError(f"the second model refused the face box {box} of a {w}x{h} "
                                 f"crop")
            if answer[0] != OK:
                raise SecondModelFailed(f"the second model's worker answered status "
                                        f"{answer[0]}")
            _read_into(self._answers, answer[1:], deadline)
            descriptor = np.frombuffer(answer[1:], dtype="<f4").astype(np.float32)
            self.calls += 1
            return descriptor
        finally:
            answer[:] = bytes(len(answer))

    def _ensure_started(self) -> None:
        if self._child is not None and self._child.poll() is None:
            return
        self._stop_child()
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        try:
            self._child = subprocess.Popen(  # noqa: S603 (our interpreter, our code)
                [sys.executable, "-I", "-c", CHILD_BOOTSTRAP, str(requests_r), str(answers_w)],
                pass_fds=(requests_r, answers_w), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        except OSError as exc:
            for fd in (requests_r, requests_w, answers_r, answers_w):
                os.close(fd)
            raise SecondModelFailed(f"cannot start the second model's worker: {exc}") from exc
        os.close(requests_r)
        os.close(answers_w)
        os.set_blocking(requests_w, False)
        os.set_blocking(answers_r, False)
        self._requests, self._answers = requests_w, answers_r
        self.starts += 1
        ready = bytearray(1)
        try:
            _read_into(answers_r, memoryview(ready), time.monotonic() + self._start_timeout_s)
        except SecondModelFailed:
            self._stop_child()
            raise
        if bytes(ready) != READY:
            self._stop_child()
            raise SecondModelFailed("the second model's worker did not start")

    def _stop_child(self) -> None:
        for fd in (self._requests, self._answers):
            if fd >= 0:
                os.close(fd)  # the child ends at the end of its request pipe
        self._requests = self._answers = -1
        child, self._child = self._child, None
        if child is None:
            return
        try:
            child.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5.0)
        if child.returncode not in (0, None):
            log.warning("the second model's worker ended with status %s", child.returncode)

    def close(self) -> None:
        """End the child (at interpreter exit too); a later call starts a new one."""
        with self._lock:
            self._stop_child()


def _read_exactly(stream: io.FileIO, view: memoryview) -> bool:
    """Fill ``view`` from ``stream``; False at its end."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            return False
        got += n
    return True


def serve(requests: int, answers: int) -> int:
    """The child's loop: load the model, answer requests until the request pipe ends; a
    parent that went away while it answered (a broken answer pipe) ends it quietly too."""
    try:
        return _serve(requests, answers)
    except BrokenPipeError:  # the parent is gone: nobody is left to answer or to tell
        return 0


def _serve(requests: int, answers: int) -> int:
    from models.second_opinion_model import SecondFaceModel  # noqa: PLC0415

    model = SecondFaceModel()
    os.write(answers, READY)
    header = bytearray(HEADER.size)
    buffer = bytearray()
    answer = bytearray(1 + DESCRIPTOR_BYTES)
    with os.fdopen(requests, "rb", buffering=0) as stream:
        while _read_exactly(stream, memoryview(header)):
            h, w, x0, y0, x1, y1 = HEADER.unpack(header)
            if not (0 < h <= MAX_CROP_SIDE and 0 < w <= MAX_CROP_SIDE):
                return 3  # out of protocol: the parent kills and replaces us
            size = h * w * 3
            if len(buffer) < size:
                buffer.extend(bytes(size - len(buffer)))
            view = memoryview(buffer)[:size]
            try:
                if not _read_exactly(stream, view):
                    return 0
                crop = np.frombuffer(view, dtype=np.uint8).reshape(h, w, 3)
                try:
                    descriptor = model.describe(crop, (x0, y0, x1, y1))
                except ValueError:
                    answer[0] = REFUSED
                    os.write(answers, answer[:1])
                    continue
                finally:
                    del crop
                answer[0] = OK
                memoryview(answer)[1:] = np.ascontiguousarray(descriptor, dtype="<f4").view(
                    np.uint8).data
                descriptor.fill(0.0)
                done = 0
                while done < len(answer):
                    done += os.write(answers, memoryview(answer)[done:])
            finally:
                answer[:] = bytes(len(answer))
                view[:] = bytes(size)  # privacy: the face is wiped after every request
                view.release()
    return 0


