"""The second model in a worker process: the same descriptors as in this process, refusals and
a failed child reported as such (and replaced on the next call), every wait bounded, and the
crop this process cut wiped once sent."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from models import second_opinion_worker as worker_module
from models.image_io import load_rgb
from models.second_opinion_model import DESCRIPTOR_DIM, SecondFaceModel, face_crop
from models.second_opinion_worker import SecondModelFailed, SecondModelProcess

PHOTOS = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces" / "photos"
BIDEN = PHOTOS / "joe_biden" / "biden_1.jpg"
WAIT_S = 120.0
"""Generous: starting a child loads and verifies 31 MB of model files on a shared machine."""


@pytest.fixture(scope="module")
def photo() -> NDArray[np.uint8]:
    if not BIDEN.exists():
        pytest.skip("the shared photos are not here")
    return load_rgb(BIDEN)


def _box(pixels: NDArray[np.uint8]) -> tuple[float, float, float, float]:
    h, w = pixels.shape[:2]
    return (w * 0.3, h * 0.2, w * 0.7, h * 0.7)


@pytest.fixture
def process() -> Iterator[SecondModelProcess]:
    worker = SecondModelProcess(start_timeout_s=WAIT_S, call_timeout_s=WAIT_S)
    yield worker
    worker.close()


def test_the_worker_gives_the_in_process_models_descriptor_bit_for_bit(
        photo: NDArray[np.uint8], process: SecondModelProcess) -> None:
    expected = SecondFaceModel().describe(photo, _box(photo))
    frame = photo.copy()
    got = process.describe(frame, _box(photo))
    assert got.shape == (DESCRIPTOR_DIM,)
    assert got.dtype == np.float32
    assert np.array_equal(got, expected)
    assert np.array_equal(frame, photo), "the caller's frame must not be touched"
    # A second call goes to the same child.
    pid = process.child_pid
    assert np.array_equal(process.describe(frame, _box(photo)), expected)
    assert process.child_pid == pid
    assert (process.calls, process.starts) == (2, 1)


def test_the_crop_sent_to_the_worker_is_wiped(photo: NDArray[np.uint8],
                                              process: SecondModelProcess,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    crops: list[NDArray[np.uint8]] = []

    def spy(pixels: NDArray[np.uint8], box: tuple[float, float, float, float],
            ) -> tuple[NDArray[np.uint8], tuple[float, float, float, float]]:
        crop, crop_box = face_crop(pixels, box)
        crops.append(crop)
        return crop, crop_box

    monkeypatch.setattr(worker_module, "face_crop", spy)
    process.describe(photo, _box(photo))
    (crop,) = crops
    assert crop.size > 0
    assert not crop.any()


def test_a_box_outside_the_frame_is_refused_before_anything_is_sent(
        photo: NDArray[np.uint8], process: SecondModelProcess) -> None:
    with pytest.raises(ValueError, match="outside"):
        process.describe(photo, (-500.0, -500.0, -400.0, -400.0))
    assert process.starts == 0


def _wait_until_dead(pid: int) -> None:
    """Until the kernel has ended ``pid`` (a zombie: its pipes are closed), at most WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not end within {WAIT_S} s")


def test_a_child_that_dies_fails_the_call_and_the_next_call_starts_another(
        photo: NDArray[np.uint8], process: SecondModelProcess,
        monkeypatch: pytest.MonkeyPatch) -> None:
    process.start()
    pid = process.child_pid
    assert pid is not None
    real_write_all = worker_module._write_all
    killed: list[int] = []

    def dying_child(fd: int, data: memoryview, deadline: float) -> None:
        # The child dies during the call (killing it before the call would race with the
        # liveness check at the call's start, which rightly starts a new child).
        if not killed:
            os.kill(pid, signal.SIGKILL)
            _wait_until_dead(pid)
            killed.append(pid)
        real_write_all(fd, data, deadline)

    monkeypatch.setattr(worker_module, "_write_all", dying_child)
    with pytest.raises(SecondModelFailed):
        process.describe(photo, _box(photo))
    assert process.child_pid is None
    assert process.describe(photo, _box(photo)).shape == (DESCRIPTOR_DIM,)
    assert process.starts == 2


def test_a_child_that_does_not_answer_is_killed_within_the_call_timeout(
        photo: NDArray[np.uint8]) -> None:
    worker = SecondModelProcess(start_timeout_s=WAIT_S, call_timeout_s=0.5)
    try:
        worker.start()
        pid = worker.child_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # alive but silent
        with pytest.raises(SecondModelFailed, match="in time"):
            worker.describe(photo, _box(photo))
        assert worker.child_pid is None
        with pytest.raises(ProcessLookupError):  # killed and reaped, not left stopped
            os.kill(pid, 0)
    finally:
        worker.close()


def test_close_ends_the_child(process: SecondModelProcess) -> None:
    process.start()
    pid = process.child_pid
    assert pid is not None
    process.close()
    assert process.child_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_ctrl_c_meant_for_the_node_does_not_reach_or_end_the_child(
        photo: NDArray[np.uint8], process: SecondModelProcess) -> None:
    process.start()
    pid = process.child_pid
    assert pid is not None
    assert os.getsid(pid) == pid  # a session of its own: the terminal's SIGINT goes elsewhere
    os.kill(pid, signal.SIGINT)  # and if one is sent to it anyway, it is ignored
    assert process.describe(photo, _box(photo)).shape == (DESCRIPTOR_DIM,)
    assert (process.child_pid, process.starts) == (pid, 1)


def test_a_child_whose_parent_went_away_ends_quietly() -> None:
    # The parent is gone (its end of the answer pipe closed): no traceback, exit status 0.
    requests_r, requests_w = os.pipe()
    answers_r, answers_w = os.pipe()
    os.close(answers_r)
    try:
        assert worker_module.serve(requests_r, answers_w) == 0
    finally:
        for fd in (requests_r, requests_w, answers_w):
            os.close(fd)
