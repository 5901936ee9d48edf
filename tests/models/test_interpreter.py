"""Interpreter backend: Edge TPU errors, thread confinement, the one inference path, its wipes."""

from __future__ import annotations

import ctypes.util
import threading
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from guards.config_checks import ConfigError
from models.face_detector import FaceDetector, FaceDetectorConfig
from models.interpreter import (
    EdgeTpuUnavailable,
    InterpreterConfig,
    ModelInterpreter,
    PerThreadInterpreter,
    backend_name,
    verify_model,
)
from models.model_file import BLAZEFACE_FULL_RANGE, BLAZEFACE_SHORT_RANGE

MISSING_LIBRARY = "libedgetpu-not-installed-for-this-test.so.1"
EDGETPU_MODEL = replace(
    BLAZEFACE_FULL_RANGE, model_id="x-edgetpu", file_name="x_edgetpu.tflite", sha256="0" * 64
)


def test_backend_is_importable() -> None:
    assert backend_name() in {"ai_edge_litert", "tflite_runtime"}


def test_edgetpu_requested_without_its_library_says_what_is_missing() -> None:
    config = InterpreterConfig(use_edgetpu=True, edgetpu_library=MISSING_LIBRARY)
    with pytest.raises(EdgeTpuUnavailable) as excinfo:
        verify_model(BLAZEFACE_FULL_RANGE, config, edgetpu_model=EDGETPU_MODEL)
    message = str(excinfo.value)
    assert MISSING_LIBRARY in message
    assert "libedgetpu1-std" in message


def test_edgetpu_default_library_missing_on_this_machine() -> None:
    # The real name, as the runtime would use it; only meaningful where it is not installed.
    if ctypes.util.find_library("edgetpu"):
        pytest.skip("libedgetpu is installed here")
    config = FaceDetectorConfig(
        interpreter=InterpreterConfig(use_edgetpu=True), edgetpu_model=EDGETPU_MODEL
    )
    with pytest.raises(EdgeTpuUnavailable, match=r"libedgetpu\.so\.1"):
        FaceDetector(config)


def test_edgetpu_requested_without_an_edgetpu_model_is_refused() -> None:
    config = InterpreterConfig(use_edgetpu=True, edgetpu_library=MISSING_LIBRARY)
    with pytest.raises(EdgeTpuUnavailable, match=r"_edgetpu\.tflite"):
        verify_model(BLAZEFACE_FULL_RANGE, config)
    with pytest.raises(EdgeTpuUnavailable, match=r"_edgetpu\.tflite"):
        verify_model(BLAZEFACE_FULL_RANGE, config, edgetpu_model=BLAZEFACE_SHORT_RANGE)


@pytest.mark.parametrize(("name", "value"), [
    ("num_threads", 0), ("num_threads", 1.5),
    ("edgetpu_library", ""), ("edgetpu_library", "libedgetpu.so.1\n"),
    ("edgetpu_device", ""),
])
def test_a_bad_setting_is_refused_naming_its_field(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"InterpreterConfig\.{name}\b"):
        replace(InterpreterConfig(), **{name: value})


def run(interpreter: ModelInterpreter, x: np.ndarray) -> list[np.ndarray]:
    """The model's outputs for input ``x``, copied."""
    return interpreter.infer(lambda tensor: np.copyto(tensor, x),
                             lambda outputs: [o.copy() for o in outputs])


def test_infer_fills_the_models_input_and_reads_its_outputs() -> None:
    interpreter = verify_model(BLAZEFACE_SHORT_RANGE).open()
    shapes: list[tuple[int, ...]] = []
    outputs = interpreter.infer(lambda tensor: shapes.append(tensor.shape),
                                lambda outs: [o.shape for o in outs])
    assert shapes == [BLAZEFACE_SHORT_RANGE.input_shape] == [interpreter.input_shape]
    assert outputs == list(interpreter.output_shapes)
    assert interpreter.invoke_s > 0.0
    rng = np.random.default_rng(3)
    a, b = (rng.uniform(-1, 1, interpreter.input_shape).astype(np.float32) for _ in range(2))
    assert not np.array_equal(run(interpreter, a)[0], run(interpreter, b)[0])
    np.testing.assert_array_equal(run(interpreter, a)[0], run(interpreter, a)[0])


def test_each_thread_gets_its_own_interpreter() -> None:
    pool = PerThreadInterpreter(verify_model(BLAZEFACE_SHORT_RANGE))
    # Keep the objects (not their ids: a dead thread's interpreter may be freed and its id
    # reused) and hold both threads until both have theirs.
    seen: list[ModelInterpreter] = []
    both_ready = threading.Barrier(2)

    def grab() -> None:
        first = pool.get()
        assert pool.get() is first  # stable within a thread
        seen.append(first)
        both_ready.wait(timeout=10)

    threads = [threading.Thread(target=grab) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    main = pool.get()
    assert len(seen) == 2
    assert seen[0] is not seen[1]
    assert main is not seen[0]
    assert main is not seen[1]


def test_the_tally_counts_every_invoke_on_every_thread_even_after_they_end() -> None:
    pool = PerThreadInterpreter(verify_model(BLAZEFACE_SHORT_RANGE))

    def run_twice() -> None:
        for _ in range(2):
            pool.get().infer(lambda tensor: tensor.fill(0.5), lambda outputs: None)

    threads = [threading.Thread(target=run_twice) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()  # the threads and their interpreters are gone; the count is not
    invokes, seconds = pool.tally.read()
    assert invokes == 6
    assert seconds > 0


def test_two_threads_invoking_concurrently_get_the_same_results() -> None:
    pool = PerThreadInterpreter(verify_model(BLAZEFACE_SHORT_RANGE))
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, BLAZEFACE_SHORT_RANGE.input_shape).astype(np.float32)
    expected = run(pool.get(), x)
    results: list[list[np.ndarray]] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            out = run(pool.get(), x)
            with lock:
                results.append(out)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40
    for out in results:
        for got, want in zip(out, expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_warm_up_opens_the_threads_interpreter_and_leaves_no_trace() -> None:
    verified = verify_model(BLAZEFACE_SHORT_RANGE)
    interpreters = PerThreadInterpreter(verified)
    seen: list[ModelInterpreter] = []
    x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    cold = run(verified.open(), x)

    def on_a_worker() -> None:
        interpreters.warm_up()
        seen.append(interpreters.get())  # the one warm_up opened, kept for this thread
        interpreters.warm_up()
        seen.append(interpreters.get())
        run(seen[-1], x)

    worker = threading.Thread(target=on_a_worker)
    worker.start()
    worker.join()
    assert len(seen) == 2
    assert seen[0] is seen[1]
    warm = run(seen[0], x)  # the same results as an interpreter that was never warmed
    for a, b in zip(cold, warm, strict=True):
        np.testing.assert_array_equal(a, b)


def _tensors_of(interpreter: ModelInterpreter) -> list[np.ndarray]:
    """Copies of the interpreter's input and output tensors (test-only peek inside)."""
    inner = interpreter._interpreter  # the tensors privacy is about are inside
    indices = [d["index"] for d in inner.get_input_details() + inner.get_output_details()]
    return [inner.get_tensor(i) for i in indices]


def test_no_face_data_stays_in_the_interpreters_after_a_call() -> None:
    from models.face_embedder import FaceEmbedder, FaceEmbedderConfig  # noqa: PLC0415

    face = np.random.default_rng(1).integers(1, 255, (112, 112, 3), dtype=np.uint8)
    frame = np.random.default_rng(2).integers(1, 255, (360, 640, 3), dtype=np.uint8)
    results: dict[str, list[np.ndarray]] = {}

    def on_a_worker() -> None:
        for flip in (True, False):
            embedder = FaceEmbedder(FaceEmbedderConfig(flip_average=flip))
            assert np.linalg.norm(embedder.embed(face)) > 0.99
            results[f"embedder flip={flip}"] = _tensors_of(embedder.interpreter())
        detector = FaceDetector()
        detector.detect(frame)
        results["detector.detect"] = _tensors_of(detector.interpreter())
        detector.detect_input(detector.prepare(frame)[0])
        results["detector.detect_input"] = _tensors_of(detector.interpreter())
        detector.warm_up()
        results["detector.warm_up"] = _tensors_of(detector.interpreter())

    worker = threading.Thread(target=on_a_worker)
    worker.start()
    worker.join()
    assert set(results) == {"embedder flip=True", "embedder flip=False", "detector.detect",
                            "detector.detect_input", "detector.warm_up"}
    for name, tensors in results.items():
        assert all(not t.any() for t in tensors), name


def test_the_tensors_are_wiped_also_when_a_call_fails() -> None:
    interpreter = verify_model(BLAZEFACE_SHORT_RANGE).open()
    frame = np.random.default_rng(4).uniform(-1, 1, interpreter.input_shape).astype(np.float32)

    def fill(tensor: np.ndarray) -> None:
        np.copyto(tensor, frame)

    def read_and_fail(outputs: list[np.ndarray]) -> None:
        assert any(o.any() for o in outputs)  # the model did produce something
        raise ValueError("decoding failed")

    def fill_and_fail(tensor: np.ndarray) -> None:
        fill(tensor)
        raise ValueError("bad frame")

    with pytest.raises(ValueError, match="decoding failed"):
        interpreter.infer(fill, read_and_fail)
    assert all(not t.any() for t in _tensors_of(interpreter))
    with pytest.raises(ValueError, match="bad frame"):
        interpreter.infer(fill_and_fail, lambda outputs: None)
    assert all(not t.any() for t in _tensors_of(interpreter))
