"""Inference backend: a TFLite interpreter for one verified model file.

Backend: ``ai_edge_litert`` (LiteRT, where Google publishes wheels), else ``tflite_runtime``
(e.g. armv7l). Both expose the same ``Interpreter`` / ``load_delegate`` API.

Threading: one TFLite interpreter is NOT thread-safe (its tensors are shared state between
``set_tensor``, ``invoke`` and ``get_tensor``). Use one ``ModelInterpreter`` per worker thread;
``PerThreadInterpreter`` does exactly that lazily, so one detector/embedder object can be shared
by a thread pool. The model's invoke releases the GIL, so two worker threads each running their
own interpreter do run in parallel. ``num_threads`` is the interpreter's own (XNNPACK) thread
count *per invoke*: with a 2-thread pool on 2 cores, keep it at 1.

Edge TPU: used only when asked for (``InterpreterConfig.use_edgetpu``) *and* an Edge TPU compiled
model (``*_edgetpu.tflite``) is configured. If it is asked for and the model or the
``libedgetpu.so.1`` runtime library is missing, ``EdgeTpuUnavailable`` says which: there is no
silent fallback to the CPU, since the caller sized the pipeline for the accelerator. A single
Edge TPU is best driven from one thread: with the TPU, use one worker.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from guards.config_checks import ConfigError, require_at_least, require_text
from models.model_file import ModelFile, load_model_bytes

__all__ = [
    "EdgeTpuUnavailable",
    "InterpreterBackendUnavailable",
    "InterpreterConfig",
    "ModelInterpreter",
    "PerThreadInterpreter",
    "PerThreadModel",
    "VerifiedModel",
    "backend_name",
    "require_edgetpu_variant",
    "verify_model",
]


T = TypeVar("T")


class EdgeTpuUnavailable(RuntimeError):
    """The Edge TPU was requested but its model or runtime library is not available."""


class InterpreterBackendUnavailable(ImportError):
    """Neither ``ai_edge_litert`` nor ``tflite_runtime`` can be imported."""


@dataclass(frozen=True)
class InterpreterConfig:
    """How to run a model."""

    num_threads: int = 1
    """CPU threads the interpreter may use for one invoke (>= 1). Keep 1 when the caller already
    runs invokes in a thread pool sized to the cores."""

    use_edgetpu: bool = False
    """Run on a Coral Edge TPU. Requires an ``*_edgetpu.tflite`` model to be configured and
    ``edgetpu_library`` to be loadable; otherwise ``EdgeTpuUnavailable`` is raised."""

    edgetpu_library: str = "libedgetpu.so.1"
    """Shared library of the Edge TPU runtime (Debian/Coral package ``libedgetpu1-std``)."""

    edgetpu_device: str | None = None
    """Which Edge TPU to use (``"usb"``, ``"pci"``, ``"usb:0"``...); None: the first found."""

    def __post_init__(self) -> None:
        require_at_least("InterpreterConfig.num_threads", self.num_threads, 1)
        require_text("InterpreterConfig.edgetpu_library", self.edgetpu_library)
        if self.edgetpu_device is not None:
            require_text("InterpreterConfig.edgetpu_device", self.edgetpu_device)


def require_edgetpu_variant(name: str, model: ModelFile | None) -> None:
    """``model`` is None or an Edge TPU compiled file (``*_edgetpu.tflite``)."""
    if model is not None and not model.is_edgetpu:
        raise ConfigError(f"{name} must be an Edge TPU compiled model (*_edgetpu.tflite), "
                          f"got {model.file_name!r}")


def _import_backend() -> tuple[Any, Any, str]:
    """Return (Interpreter class, load_delegate function, backend name)."""
    try:
        from ai_edge_litert.interpreter import (  # noqa: PLC0415 - optional backend
            Interpreter,
            load_delegate,
        )
    except ImportError:
        pass
    else:
        return Interpreter, load_delegate, "ai_edge_litert"
    try:
        from tflite_runtime.interpreter import (  # noqa: PLC0415 - optional backend
            Interpreter,
            load_delegate,
        )
    except ImportError as exc:
        raise InterpreterBackendUnavailable(
            "no TFLite backend: install ai-edge-litert (x86_64/aarch64) or tflite-runtime"
        ) from exc
    return Interpreter, load_delegate, "tflite_runtime"


def backend_name() -> str:
    """Name of the TFLite backend in use: ``"ai_edge_litert"`` or ``"tflite_runtime"``."""
    return _import_backend()[2]


def _check_edgetpu_library(library: str) -> None:
    """Raise ``EdgeTpuUnavailable`` unless the Edge TPU runtime library can be loaded.

    Probed with ctypes before ``load_delegate``: a failed ``load_delegate`` leaves a
    half-built delegate whose destructor raises an (ignored) AttributeError.
    """
    try:
        ctypes.CDLL(library)
    except OSError as exc:
        raise EdgeTpuUnavailable(
            f"Edge TPU requested but its runtime library {library!r} cannot be loaded ({exc}); "
            "install the Edge TPU runtime (package libedgetpu1-std) or set use_edgetpu=False"
        ) from exc


@dataclass(frozen=True)
class VerifiedModel:
    """A model's bytes, sha256-checked, plus how to run them; opens interpreters."""

    model: ModelFile
    """The file whose bytes these are (the Edge TPU variant when the TPU is used)."""

    content: bytes = field(repr=False)
    """The verified model bytes, handed to the interpreter as ``model_content``."""

    config: InterpreterConfig
    """Threads and delegate settings for every interpreter opened from this model."""

    def open(self) -> ModelInterpreter:
        """A new interpreter on these bytes (one per thread: interpreters are not thread-safe)."""
        interpreter_cls, load_delegate, _ = _import_backend()
        delegates: list[Any] = []
        if self.config.use_edgetpu:
            options = {"device": self.config.edgetpu_device} if self.config.edgetpu_device else {}
            try:
                delegates.append(load_delegate(self.config.edgetpu_library, options))
            except (ValueError, OSError) as exc:
                raise EdgeTpuUnavailable(
                    f"Edge TPU delegate from {self.config.edgetpu_library!r} failed to load "
                    f"(no Edge TPU device attached?): {exc}"
                ) from exc
        interpreter = interpreter_cls(
            model_content=self.content,
            num_threads=self.config.num_threads,
            experimental_delegates=delegates or None,
        )
        return ModelInterpreter(self.model, interpreter, self.content)


def verify_model(
    model: ModelFile,
    config: InterpreterConfig | None = None,
    *,
    edgetpu_model: ModelFile | None = None,
    data_dir: Path | None = None,
) -> VerifiedModel:
    """Choose the model file to run (CPU or Edge TPU variant) and load its verified bytes.

    Raises ``EdgeTpuUnavailable`` if the Edge TPU is requested without an ``*_edgetpu.tflite``
    model or without its runtime library, and ``ModelIntegrityError`` on a sha256 mismatch.
    """
    cfg = config if config is not None else InterpreterConfig()
    chosen = model
    if cfg.use_edgetpu:
        if edgetpu_model is None or not edgetpu_model.is_edgetpu:
            got = "none" if edgetpu_model is None else repr(edgetpu_model.file_name)
            raise EdgeTpuUnavailable(
                f"Edge TPU requested for {model.model_id} but no Edge TPU compiled model "
                f"(*_edgetpu.tflite) is configured (got {got})"
            )
        _check_edgetpu_library(cfg.edgetpu_library)
        chosen = edgetpu_model
    content = load_model_bytes(chosen, chosen.path(data_dir))
    return VerifiedModel(chosen, content, cfg)


def _dequantize(values: NDArray[Any], scale: float, zero_point: int) -> NDArray[np.float32]:
    if values.dtype == np.float32:
        return values
    if scale == 0.0:  # integer output without quantisation parameters: take as is
        return values.astype(np.float32)
    return ((values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(
        np.float32
    )


class ModelInterpreter:
    """One TFLite interpreter with float32 in / float32 out; NOT thread-safe.

    ``infer`` is the only way to run it (for the product, the tests and the benchmarks alike),
    and it wipes the tensors after every call. Quantised (uint8/int8) inputs and outputs, as
    Edge TPU models have, are quantised and dequantised here.
    """

    def __init__(self, model: ModelFile, interpreter: Any, content: bytes) -> None:
        self.model = model
        self._interpreter = interpreter
        # The interpreter may point into this buffer: keep it alive as long as we are.
        self._content = content
        interpreter.allocate_tensors()
        (input_detail,) = interpreter.get_input_details()
        self._input_index: int = int(input_detail["index"])
        self._input_dtype: np.dtype[Any] = np.dtype(input_detail["dtype"])
        in_scale, in_zero = input_detail["quantization"]
        self._input_quant = (float(in_scale), int(in_zero))
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in input_detail["shape"])
        outputs = interpreter.get_output_details()
        self._outputs = [
            (int(d["index"]), float(d["quantization"][0]), int(d["quantization"][1]))
            for d in outputs
        ]
        self.output_shapes: tuple[tuple[int, ...], ...] = tuple(
            tuple(int(x) for x in d["shape"]) for d in outputs
        )
        self._float_io = self._input_dtype == np.float32 and all(
            scale == 0.0 for _, scale, _ in self._outputs)
        self.invoke_s = 0.0
        """Seconds spent in the model's own invoke on this interpreter so far (for benchmarks:
        the model work alone, without filling, reading or wiping)."""
        self.tally: InvokeTally | None = None
        """Where invokes are also counted for the whole model (set by ``PerThreadInterpreter``:
        the count outlives the worker thread that held this interpreter)."""

    def infer(self, fill: Callable[[NDArray[np.float32]], None],
              read: Callable[[list[NDArray[np.float32]]], T]) -> T:
        """Run the model once: ``fill`` writes its input, ``read`` takes what it needs of the
        outputs (in model order) and returns the result.

        The one way to run a model, so every call ends the same way: afterwards the input and
        output tensors are overwritten with zeros, also when ``fill``, the model or ``read``
        raised (privacy: nothing of a frame or a face stays in the interpreter until the next
        call, which may come minutes later). ``fill`` gets an ``input_shape`` float32 array and
        ``read`` float32 arrays; both may be views into the interpreter, valid only during the
        call: ``read`` must copy whatever it keeps. Quantised models (Edge TPU) are quantised
        and dequantised here, so callers deal in float32 whatever the model file.
        """
        try:
            self._fill_input(fill)
            started = time.perf_counter()
            self._interpreter.invoke()
            spent = time.perf_counter() - started
            self.invoke_s += spent
            if self.tally is not None:
                self.tally.add(spent)
            return self._read_outputs(read)
        finally:
            self._wipe()

    def _fill_input(self, fill: Callable[[NDArray[np.float32]], None]) -> None:
        # Float models: ``fill`` writes straight into the input tensor, which saves allocating
        # and copying a float32 input per call (192x192x3 is 442 KB: a fresh mmap and page
        # faults each time). Quantised models: a float32 staging array, quantised and copied.
        if self._input_dtype != np.float32:
            staging = np.empty(self.input_shape, dtype=np.float32)
            fill(staging)
            self._interpreter.set_tensor(self._input_index, self._quantize_input(staging))
            return
        view = self._interpreter.tensor(self._input_index)()
        fill(view)
        del view  # the interpreter refuses to run while a view of its buffers is alive

    def _quantize_input(self, x: NDArray[np.float32]) -> NDArray[Any]:
        scale, zero = self._input_quant
        info = np.iinfo(self._input_dtype)
        q = np.rint(x / np.float32(scale)) + zero if scale else np.rint(x)
        return np.clip(q, info.min, info.max).astype(self._input_dtype)

    def _read_outputs(self, read: Callable[[list[NDArray[np.float32]]], T]) -> T:
        # Float outputs are handed over as views (no copy); quantised ones dequantised (copies).
        if not self._float_io:
            return read([_dequantize(self._interpreter.get_tensor(index), scale, zero)
                         for index, scale, zero in self._outputs])
        views = [self._interpreter.tensor(index)() for index, _, _ in self._outputs]
        try:
            return read(views)
        finally:
            del views

    def _wipe(self) -> None:
        view = self._interpreter.tensor(self._input_index)()
        view.fill(0)
        del view
        for index, _, _ in self._outputs:
            out = self._interpreter.tensor(index)()
            out.fill(0)
            del out


def _blank(tensor: NDArray[np.float32]) -> None:
    tensor.fill(0.0)


def _ignore(outputs: list[NDArray[np.float32]]) -> None:
    return None


class InvokeTally:
    """Invokes of one model over all its interpreters (any thread); for benchmarks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._invokes = 0
        self._seconds = 0.0

    def add(self, seconds: float) -> None:
        """Count one invoke that took ``seconds``."""
        with self._lock:
            self._invokes += 1
            self._seconds += seconds

    def read(self) -> tuple[int, float]:
        """Invokes so far and the seconds they took."""
        with self._lock:
            return self._invokes, self._seconds


class PerThreadInterpreter:
    """Opens one ``ModelInterpreter`` per calling thread, lazily, from one verified model.

    Lets a single detector/embedder object serve a thread pool: each worker thread gets its own
    interpreter (they are not thread-safe), all from the same verified bytes.
    """

    def __init__(self, verified: VerifiedModel) -> None:
        self.verified = verified
        self._local = threading.local()
        self.tally = InvokeTally()
        """Every invoke of every interpreter opened here."""

    def warm_up(self) -> None:
        """Open the calling thread's interpreter and run it once on a blank input, so that the
        first real call on this thread pays no set-up (opening, XNNPACK's first run)."""
        self.get().infer(_blank, _ignore)

    def get(self) -> ModelInterpreter:
        """The calling thread's interpreter (opened on first use in that thread)."""
        interpreter: ModelInterpreter | None = getattr(self._local, "interpreter", None)
        if interpreter is None:
            interpreter = self.verified.open()
            interpreter.tally = self.tally
            self._local.interpreter = interpreter
        return interpreter


class PerThreadModel:
    """What every model wrapper shares: the verified file in use and one interpreter per
    calling thread (``FaceDetector`` and ``FaceEmbedder`` build on it)."""

    def __init__(self, verified: VerifiedModel) -> None:
        self.model = verified.model
        self._interpreters = PerThreadInterpreter(verified)

    @property
    def model_id(self) -> str:
        """Id of the model file in use (a watchlist records the embedder's)."""
        return self.model.model_id

    @property
    def model_sha256(self) -> str:
        """sha256 of the model file in use (a watchlist records the embedder's)."""
        return self.model.sha256

    def warm_up(self) -> None:
        """Open and run the calling thread's interpreter once (see ``PerThreadInterpreter``)."""
        self._interpreters.warm_up()

    def interpreter(self) -> ModelInterpreter:
        """The calling thread's own interpreter (its ``invoke_s`` times the model work alone)."""
        return self._interpreters.get()

    def invokes(self) -> tuple[int, float]:
        """Invokes of this model on every thread so far, and the seconds they took."""
        return self._interpreters.tally.read()
