"""``load_unit_models``: the face detector and embedder a unit's config asks for.

Without ``[accelerator]`` (or with ``kind = "cpu"``) they are today's ``FaceDetector()`` and
``FaceEmbedder()``: the vendored models on the CPU, each file's sha256 checked against the pin
in ``models/model_file.py``. With ``kind = "edgetpu"`` they run the configured Edge TPU compiled
files (``*_edgetpu.tflite``), each loaded only if its bytes have the configured sha256, through
the configured runtime library and device; then one interpreter of each is opened and run once
on this thread, so a missing device is found here rather than when the first frame arrives.

Guarantees: the Edge TPU is used only when the config asks for it, and when it does there is no
silent fallback to the CPU. Everything a config can get wrong (a file with another digest, a
library that does not load, no Edge TPU attached) is a ``NodeConfigError`` (exit 2) naming the
config file and the key: ``accelerator.detector_model``, ``accelerator.library``,
``accelerator.device``. A vendored CPU model with a wrong digest is not the config's fault: it
stays a ``ModelIntegrityError`` (a damaged installation).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Final, TypeVar

from guards.log_text import printable
from lfr.config.toml_table import NodeConfigError
from lfr.config.unit import EdgeTpuConfig, EdgeTpuModel, UnitConfig
from models.blazeface import FULL_RANGE
from models.face_detector import FaceDetector, FaceDetectorConfig
from models.face_embedder import FaceEmbedder, FaceEmbedderConfig
from models.interpreter import EdgeTpuUnavailable, InterpreterConfig, PerThreadModel
from models.model_file import MOBILEFACENET, ModelFile, ModelIntegrityError

EDGETPU_ID_SUFFIX: Final = "-edgetpu"
"""Appended to the CPU model's id for its Edge TPU variant (a watchlist records the embedder's
id and sha256: lists built on the CPU model are not taken by a TPU unit, and the other way)."""
T = TypeVar("T")


def load_unit_models(config: UnitConfig) -> tuple[FaceDetector, FaceEmbedder]:
    """The detector and embedder ``config`` names (see the module docstring)."""
    tpu = config.accelerator
    if tpu is None:
        return FaceDetector(), FaceEmbedder()
    _check_library(config, tpu.library)
    interpreter = InterpreterConfig(use_edgetpu=True, edgetpu_library=tpu.library,
                                    edgetpu_device=tpu.device)
    detector_file = _model_file(FULL_RANGE.model, tpu.detector)
    detector = _load(config, tpu, "detector", lambda: FaceDetector(
        FaceDetectorConfig(variant=FULL_RANGE, interpreter=interpreter,
                           edgetpu_model=detector_file), data_dir=tpu.detector.file.parent))
    embedder_file = _model_file(MOBILEFACENET, tpu.embedder)
    embedder = _load(config, tpu, "embedder", lambda: FaceEmbedder(
        FaceEmbedderConfig(interpreter=interpreter, edgetpu_model=embedder_file),
        data_dir=tpu.embedder.file.parent))
    return detector, embedder


DELEGATE_ENTRY: Final = "tflite_plugin_create_delegate"
"""The symbol TFLite's ``load_delegate`` calls in an external delegate library."""


def _check_library(config: UnitConfig, library: str) -> None:
    """The library loads and is a TFLite delegate plug-in. Checked before TFLite sees it: its
    ``load_delegate`` raises an ``AttributeError`` for a library without the entry point and
    its half-built delegate raises again when collected."""
    key = "accelerator.library"
    try:
        loaded = ctypes.CDLL(library)
    except OSError as exc:
        raise _error(config, key, f"{printable(library)} cannot be loaded ({printable(exc)}); "
                     "install the Edge TPU runtime (package libedgetpu1-std) or set "
                     'kind = "cpu"') from None
    if not hasattr(loaded, DELEGATE_ENTRY):
        raise _error(config, key, f"{printable(library)} is not a TFLite delegate library (it "
                     f"has no {DELEGATE_ENTRY}); the Edge TPU runtime is libedgetpu.so.1")


def _model_file(cpu: ModelFile, entry: EdgeTpuModel) -> ModelFile:
    """The pinned description of a configured Edge TPU file: the CPU model's input shape, the
    configured file name and digest."""
    return ModelFile(model_id=f"{cpu.model_id}{EDGETPU_ID_SUFFIX}", file_name=entry.file.name,
                     sha256=entry.sha256, input_shape=cpu.input_shape)


_M = TypeVar("_M", bound=PerThreadModel)


def _load(config: UnitConfig, tpu: EdgeTpuConfig, which: str, build: Callable[[], _M]) -> _M:
    """Build one model and open it once on this thread; errors name the key at fault."""
    model_key = f"accelerator.{which}_model"
    try:
        model = build()
    except ModelIntegrityError as exc:  # names the file and both digests
        raise _error(config, model_key, printable(exc, max_chars=600)) from None
    except EdgeTpuUnavailable as exc:  # the library: verify_model probes it before the bytes
        raise _error(config, "accelerator.library", f"{printable(exc, max_chars=600)}") from None
    try:
        model.warm_up()  # opens the delegate: the device is needed from here on
    except EdgeTpuUnavailable as exc:
        device = "the first Edge TPU found" if tpu.device is None else printable(tpu.device)
        raise _error(config, "accelerator.device", f"{device}: "
                     f"{printable(exc, max_chars=600)}") from None
    except (ValueError, RuntimeError) as exc:  # the interpreter refused the file
        raise _error(config, model_key, f"the TFLite interpreter cannot run it on the Edge TPU: "
                     f"{printable(exc, max_chars=600)}") from None
    return model


def _error(config: UnitConfig, key: str, problem: str) -> NodeConfigError:
    return NodeConfigError(f"config file {printable(config.file)}: {key}: {problem}")
