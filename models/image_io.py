"""Load a photo (JPEG, PNG or WebP) as an H x W x 3 uint8 RGB array, the way the detector wants it.

- EXIF orientation is applied (``ImageOps.exif_transpose``): phone photos are often stored
  sideways with a tag saying how to turn them, and BlazeFace finds few upside-down faces.
- Any mode becomes 8-bit RGB: greyscale, palette, CMYK, 16-bit (scaled by 255/65535, not
  clipped), and images with transparency, which are composited onto ``background``.
- Size limit: the pixel count is checked from the header, *before* decoding, against
  ``ImageShape.max_pixels`` (default 64 MP), so a small file that would decode to
  gigabytes (a decompression bomb) is refused cheaply. This check is ours and per call; it does
  not change Pillow's process-wide ``Image.MAX_IMAGE_PIXELS`` (whose own guard, ~89 MP warning
  and ~179 MP error by default, stays behind ours as long as ``max_pixels`` is below it). Its
  warning is turned into our refusal (``ImageTooLarge``), never printed with its source line.
- Shape limits, also from the header: each side between ``min_side`` and ``max_side`` px
  (default 16..16384) and the longer side at most ``max_aspect`` times the shorter (default
  16). A strip of 4,000,000 x 4 px is under the pixel limit yet costs a minute of tiling and
  hundreds of MB downstream; no camera photo looks like that.
- Only the formats listed are even tried (default JPEG, PNG and WebP): fewer decoders, less
  attack surface for files uploaded by users. A refusal says which formats are accepted.
- Only a regular file is read (``guards.files``: a FIFO, a device or a directory is refused
  at once), and at most ``max_bytes`` of it, counted while reading.
- Any failure raises ``ImageLoadError`` naming the file (made printable: no forged lines).
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from guards.files import UserFileError, read_user_file
from guards.log_text import printable
from guards.user_input import UserInputError

__all__ = [
    "DEFAULT_FORMATS",
    "DEFAULT_MAX_ASPECT",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "DEFAULT_MIN_SIDE",
    "DEFAULT_SHAPE",
    "ImageLoadError",
    "ImageShape",
    "ImageTooLarge",
    "decode_rgb",
    "load_rgb",
    "to_rgb_array",
]

DEFAULT_MAX_PIXELS: Final = 64_000_000
"""Largest accepted image in pixels (width x height): 64 MP, above any common camera photo
(8000 x 8000), about 192 MB once decoded to RGB."""

DEFAULT_MIN_SIDE: Final = 16
"""Shortest accepted side in px: smaller holds no face the detector could find."""

DEFAULT_MAX_SIDE: Final = 16384
"""Longest accepted side in px: twice the long side of a 64 MP square photo."""

DEFAULT_MAX_ASPECT: Final = 16
"""Largest accepted ratio of the longer side to the shorter: wider than any panorama mode."""

DEFAULT_MAX_BYTES: Final = 128 * 1024 * 1024
"""Largest photo file read: 128 MiB, above a 64 MP photo saved as a high-quality JPEG."""

DEFAULT_FORMATS: Final = ("JPEG", "PNG", "WEBP")
"""Pillow format names tried when opening."""

_16BIT_MODES: Final = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
# PNG stores 16-bit greyscale; Pillow opens it as "I;16" (or "I", 32-bit, on older versions),
# both holding 0..65535.


class ImageLoadError(UserInputError):
    """A photo could not be loaded; the message names the file and the reason."""


class ImageTooLarge(ImageLoadError):
    """A photo has more pixels than allowed."""


@dataclass(frozen=True)
class ImageShape:
    """The shapes of image accepted, checked from the header before any pixel is decoded."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    """Most pixels (width x height)."""
    min_side: int = DEFAULT_MIN_SIDE
    """Shortest side allowed, px."""
    max_side: int = DEFAULT_MAX_SIDE
    """Longest side allowed, px."""
    max_aspect: float = DEFAULT_MAX_ASPECT
    """Largest ratio longer side / shorter side."""

    def check(self, name: str, width: int, height: int) -> None:
        """Raise ``ImageTooLarge`` naming ``name`` if a ``width`` x ``height`` image is refused."""
        pixels = width * height
        if pixels > self.max_pixels:
            raise ImageTooLarge(f"image {name} is {width}x{height} = {pixels} pixels, "
                                f"more than the limit of {self.max_pixels}")
        short, long = sorted((width, height))
        if short < self.min_side or long > self.max_side or long > short * self.max_aspect:
            raise ImageTooLarge(
                f"image {name} is {width}x{height} px; accepted: each side between "
                f"{self.min_side} and {self.max_side} px, the longer side at most "
                f"{self.max_aspect:g} times the shorter")


DEFAULT_SHAPE: Final = ImageShape()
"""The limits ``load_rgb`` and ``decode_rgb`` apply unless told otherwise."""


def _composite(rgba: NDArray[np.uint8], background: tuple[int, int, int]) -> NDArray[np.uint8]:
    alpha = rgba[..., 3:4].astype(np.float32) * np.float32(1.0 / 255.0)
    rgb = rgba[..., :3].astype(np.float32)
    bg = np.asarray(background, dtype=np.float32)
    out: NDArray[np.float32] = rgb * alpha + bg * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def to_rgb_array(
    image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)
) -> NDArray[np.uint8]:
    """An opened Pillow image (any mode) as an H x W x 3 uint8 RGB array (a new array)."""
    if image.mode in _16BIT_MODES:
        grey = np.asarray(image).astype(np.float32) * np.float32(255.0 / 65535.0)
        grey8 = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return np.repeat(grey8[..., None], 3, axis=2)
    if image.mode == "F":  # float greyscale: take 0..255 as the range
        grey8 = np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8)
        return np.repeat(grey8[..., None], 3, axis=2)
    if _has_transparency(image):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        return _composite(rgba, background)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def _decode(
    source: IO[bytes],
    name: str,
    shape: ImageShape,
    formats: tuple[str, ...],
    background: tuple[int, int, int],
) -> NDArray[np.uint8]:
    try:
        # Pillow warns (once per call site, with its source line) above ~89 MP: an error here,
        # so that it ends as our refusal instead of text on the operator's terminal.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=list(formats)) as image:
                # Header only so far: refuse oversized images before decoding any pixel.
                shape.check(name, image.width, image.height)
                image.load()
                upright = ImageOps.exif_transpose(image)
                return to_rgb_array(upright, background)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image {name} refused as too large: {exc}") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"cannot load image {name}: not an image in an accepted format "
                             f"(accepted: {', '.join(formats)})") from None
    except (OSError, ValueError, EOFError, SyntaxError, struct.error) as exc:
        # UnidentifiedImageError (not JPEG/PNG or not an image), truncated data, broken chunks.
        raise ImageLoadError(f"cannot load image {name}: {exc}") from exc


def load_rgb(
    path: str | Path,
    *,
    shape: ImageShape = DEFAULT_SHAPE,
    max_bytes: int = DEFAULT_MAX_BYTES,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> NDArray[np.uint8]:
    """Load the photo at ``path`` as H x W x 3 uint8 RGB, upright per its EXIF orientation.

    Transparent areas are composited onto ``background`` (RGB). Raises ``ImageLoadError``
    (``ImageTooLarge`` for a size or shape ``shape`` refuses) naming the file; a file that is not
    a regular file or is longer than ``max_bytes`` is refused before any decoding.
    """
    try:
        data = read_user_file(path, "image", max_bytes)
    except UserFileError as exc:  # missing, a directory, a FIFO, a device, too long...
        raise ImageLoadError(str(exc)) from None
    return _decode(io.BytesIO(data), printable(path), shape, formats, background)


def decode_rgb(
    data: bytes,
    *,
    name: str = "<bytes>",
    shape: ImageShape = DEFAULT_SHAPE,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> NDArray[np.uint8]:
    """``load_rgb`` for an encoded photo held in memory (e.g. an upload); ``name`` is used in
    error messages."""
    return _decode(io.BytesIO(data), printable(name), shape, formats, background)
