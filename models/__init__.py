"""Face models for lfr-edge: pinned TFLite files and the inference code around them.

Layering, each layer using only those before it:

1. ``model_file``: the known model files, loaded only if their sha256 matches.
2. ``interpreter``: a TFLite interpreter (LiteRT or tflite-runtime; Edge TPU on request) for
   one verified model; one per worker thread.
3. ``face_detector`` (BlazeFace; with ``anchors``, ``blazeface``, ``letterbox``, ``tiling``,
   ``non_max_suppression``, ``detection``) and ``face_embedder`` (MobileFaceNet).
4. Helpers without a model: ``face_alignment`` (keypoints -> 112x112 crop), ``face_quality``
   (gates before embedding), ``image_io`` (photos -> RGB arrays).

Frames are H x W x 3 uint8 RGB numpy arrays; coordinates are frame pixels, continuous (pixel
``i`` spans ``[i, i + 1)``). Nothing here stores or sends images or embeddings anywhere.
"""

from models.detection import FaceDetection, FaceKeypoint
from models.face_alignment import align_face, estimate_similarity, warp_face
from models.face_detector import (
    DetectorInput,
    FaceDetector,
    FaceDetectorConfig,
    RawDetectorOutput,
)
from models.face_embedder import (
    EMBEDDING_DIM,
    FaceEmbedder,
    FaceEmbedderConfig,
    cosine_similarity,
)
from models.face_quality import (
    QualityConfig,
    QualityGate,
    QualityVerdict,
    assess_quality,
)
from models.image_io import ImageLoadError, ImageTooLarge, decode_rgb, load_rgb
from models.interpreter import EdgeTpuUnavailable, InterpreterConfig
from models.model_file import (
    BLAZEFACE_FULL_RANGE,
    BLAZEFACE_SHORT_RANGE,
    MOBILEFACENET,
    ModelFile,
    ModelIntegrityError,
)
from models.tiling import TilingConfig

__all__ = [
    "BLAZEFACE_FULL_RANGE",
    "BLAZEFACE_SHORT_RANGE",
    "EMBEDDING_DIM",
    "MOBILEFACENET",
    "DetectorInput",
    "EdgeTpuUnavailable",
    "FaceDetection",
    "FaceDetector",
    "FaceDetectorConfig",
    "FaceEmbedder",
    "FaceEmbedderConfig",
    "FaceKeypoint",
    "ImageLoadError",
    "ImageTooLarge",
    "InterpreterConfig",
    "ModelFile",
    "ModelIntegrityError",
    "QualityConfig",
    "QualityGate",
    "QualityVerdict",
    "RawDetectorOutput",
    "TilingConfig",
    "align_face",
    "assess_quality",
    "cosine_similarity",
    "decode_rgb",
    "estimate_similarity",
    "load_rgb",
    "warp_face",
]
