"""The second face model: dlib's ResNet face descriptor, an independent check of the first.

dlib's 5-point shape predictor places two corners of each eye and the base of the nose inside a
box, and the ResNet (trained by Davis King on about 3 million faces, independently of
MobileFaceNet) turns the 150x150 chip those points align into 128 floats. Two faces are the same
person when the Euclidean **distance** of their descriptors is small (dlib's own threshold: 0.6;
ours is measured, docs/RECOGNITION.md "The two-model rule").

The face is the one the first model's detector found: ``describe(pixels, box)`` takes the frame
and BlazeFace's box, crops the frame around it (the box plus half its size on every side, so the
chip's padding lies inside; only the crop is handed to dlib) and runs the predictor on the box
shrunk to 0.9 of its size about its centre, which is where dlib's own HOG detector puts its box
on the shared photos (BlazeFace's box holds more forehead and cheek).

Cost, measured here (2 shared cores, x86_64): 110-135 ms per face on one core, and dlib holds
the GIL throughout (a busy Python thread beside it kept 8-14% of its progress), so a call stalls
the Python of every other thread (TFLite invokes, which release the GIL, go on). That is why
the matcher runs it in a worker process (``models.second_opinion_worker``) and only on
candidate matches, a few looks per track (``actors.unit.second_opinion``), never on every face.

Model files: ``DLIB_RESNET_V1`` and ``DLIB_SHAPE_5`` (``models/SOURCES.md``), each at most
``MAX_MODEL_BYTES``, read once and checked against its pinned sha256 (``load_model_bytes``)
before dlib sees a byte; dlib only loads from a path, so the *verified bytes* are handed to it
through an anonymous in-memory file (``memfd_create``), never re-read from the data folder.
One loaded model is shared by the worker threads behind a lock: dlib's network keeps its
activations in the object, and candidates are rare enough that they need not run in parallel.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import numpy as np
from numpy.typing import NDArray

from models.model_file import ModelFile, ModelIntegrityError, load_model_bytes

__all__ = [
    "DESCRIPTOR_DIM",
    "DLIB_RESNET_V1",
    "DLIB_SHAPE_5",
    "MAX_MODEL_BYTES",
    "SecondFaceModel",
    "SecondModelUnavailable",
    "descriptor_distance",
    "dlib_box",
    "face_crop",
]

DESCRIPTOR_DIM: Final = 128
"""Length of a dlib face descriptor."""

MAX_MODEL_BYTES: Final = 64 * 2**20
"""Largest second-model file read (the ResNet is 22 MB, the shape predictor 9 MB)."""

BOX_SHRINK: Final = 0.9
"""The predictor's box is BlazeFace's scaled by this about its centre (measured on the shared
photos against dlib's HOG boxes: 0.87-0.95 of the width, centres within 3% of it)."""
CROP_MARGIN: Final = 0.5
"""The crop handed to dlib adds this share of the box size on every side (the chip's padding
of 0.25 and the predictor's search stay inside it)."""

DLIB_RESNET_V1: Final = ModelFile(
    model_id="dlib-resnet-v1-128",
    file_name="dlib_face_recognition_resnet_model_v1.dat",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    input_shape=(150, 150, 3),
)
"""dlib's ResNet face descriptor: a 150x150 RGB chip -> 128 floats (CC0)."""

DLIB_SHAPE_5: Final = ModelFile(
    model_id="dlib-shape-predictor-5",
    file_name="shape_predictor_5_face_landmarks.dat",
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    input_shape=(),
)
"""dlib's 5-point shape predictor (eye corners, nose base) (CC0). Never the 68-point file,
whose training data forbids commercial use."""

_Loaded = TypeVar("_Loaded")


class SecondModelUnavailable(RuntimeError):
    """dlib is not installed here (``dlib-bin`` publishes wheels for x86_64 and aarch64 only)."""


def _verified_bytes(model: ModelFile, data_dir: Path | None) -> bytes:
    path = model.path(data_dir)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelIntegrityError(f"cannot read model file {path} ({model.model_id}): "
                                  f"{exc}") from exc
    if size > MAX_MODEL_BYTES:  # the digest pins the content; this bounds the read first
        raise ModelIntegrityError(f"model file {path} ({model.model_id}) has {size} bytes, more "
                                  f"than {MAX_MODEL_BYTES}; refusing to load it")
    return load_model_bytes(model, path)


def _load_from_bytes(data: bytes, name: str, loader: Callable[[str], _Loaded]) -> _Loaded:
    """``loader(path)`` on an anonymous in-memory file holding ``data`` (Linux: memfd)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:  # os.write, not open(): no file is opened for writing, even in memory
            view = view[os.write(fd, view):]
        return loader(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def dlib_box(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The box the shape predictor is given for a BlazeFace ``box`` (same pixels)."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w, half_h = (x1 - x0) * BOX_SHRINK / 2, (y1 - y0) * BOX_SHRINK / 2
    return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)


def face_crop(pixels: NDArray[np.uint8], box: tuple[float, float, float, float], *,
              margin: float = CROP_MARGIN, pad_px: float = 0.0,
              ) -> tuple[NDArray[np.uint8], tuple[float, float, float, float]]:
    """A copy of the part of ``pixels`` dlib is given for a BlazeFace ``box`` (the box plus
    ``margin`` of its size and ``pad_px`` pixels on every side, clamped to the frame), and the
    box in the copy's pixels. The caller wipes the copy. ``ValueError`` for a bad frame or box."""
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be H x W x 3 uint8, got {pixels.shape} {pixels.dtype}")
    x0, y0, x1, y1 = box
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty face box {box}")
    h, w = pixels.shape[:2]
    mx, my = (x1 - x0) * margin + pad_px, (y1 - y0) * margin + pad_px
    left, top = max(0, int(x0 - mx)), max(0, int(y0 - my))
    right, bottom = min(w, int(np.ceil(x1 + mx))), min(h, int(np.ceil(y1 + my)))
    if right <= left or bottom <= top:
        raise ValueError(f"face box {box} lies outside the {w}x{h} frame")
    crop = np.array(pixels[top:bottom, left:right], order="C", copy=True)
    return crop, (x0 - left, y0 - top, x1 - left, y1 - top)


def descriptor_distance(a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    """Euclidean distance of two descriptors (small: the same person)."""
    return float(np.linalg.norm(a.astype(np.float64) - b.astype(np.float64)))


@dataclass(frozen=True, slots=True)
class SecondFaceModelConfig:
    """Which files make the second model."""

    descriptor: ModelFile = DLIB_RESNET_V1
    """The ResNet descriptor file."""
    shape_predictor: ModelFile = DLIB_SHAPE_5
    """The 5-point shape predictor file."""


class SecondFaceModel:
    """dlib's shape predictor and ResNet, loaded from verified bytes; thread-safe."""

    def __init__(self, config: SecondFaceModelConfig | None = None, *,
                 data_dir: Path | None = None) -> None:
        """Load both files (``ModelIntegrityError`` on a size or sha256 fault,
        ``SecondModelUnavailable`` without dlib)."""
        try:
            import dlib  # noqa: PLC0415 (the native library loads only when the model is wanted)
        except ImportError as exc:
            raise SecondModelUnavailable(
                f"the second face model needs dlib (package dlib-bin, wheels for x86_64 and "
                f"aarch64), which does not load here: {exc}") from exc

        self.config = config or SecondFaceModelConfig()
        self._dlib = dlib
        # One file at a time: the verified bytes of one are dropped before the next is read
        # (they are the peak of the process's memory while loading).
        self._net = _load_from_bytes(_verified_bytes(self.config.descriptor, data_dir),
                                     "lfr-descriptor", dlib.face_recognition_model_v1)
        self._predictor = _load_from_bytes(_verified_bytes(self.config.shape_predictor, data_dir),
                                           "lfr-shape5", dlib.shape_predictor)
        # Invariant: one call into dlib at a time (the network keeps activations in itself).
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """Id of the descriptor, stored with the templates it makes."""
        return self.config.descriptor.model_id

    @property
    def model_sha256(self) -> str:
        """sha256 of the descriptor file."""
        return self.config.descriptor.sha256

    def describe(self, pixels: NDArray[np.uint8],
                 box: tuple[float, float, float, float]) -> NDArray[np.float32]:
        """The (128,) float32 descriptor of the face in ``box`` (BlazeFace's, frame pixels) of
        the H x W x 3 uint8 RGB ``pixels``. Runs on a worker thread; the crop it makes is
        overwritten with zeros before it returns."""
        crop, crop_box = face_crop(pixels, box)
        bx0, by0, bx1, by1 = dlib_box(crop_box)
        rect = self._dlib.rectangle(round(bx0), round(by0), round(bx1), round(by1))
        try:
            with self._lock:
                shape = self._predictor(crop, rect)
                values = self._net.compute_face_descriptor(crop, shape, 0, 0.25)
            return np.asarray(values, dtype=np.float32).reshape(DESCRIPTOR_DIM)
        finally:
            crop.fill(0)  # our own copy (face_crop), never the caller's frame
