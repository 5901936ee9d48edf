"""Loading photos of any mode into upright 8-bit RGB arrays, and refusing bad input."""

from __future__ import annotations

import io
import os
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from guards.log_text import printable
from models.image_io import ImageLoadError, ImageShape, ImageTooLarge, decode_rgb, load_rgb

TINY = ImageShape(min_side=1)
"""For tests of colour handling on images of a few pixels (the default refuses sides < 16)."""


def _save(tmp_path: Path, name: str, image: Image.Image, **kwargs: object) -> Path:
    path = tmp_path / name
    image.save(path, **kwargs)  # type: ignore[arg-type]
    return path


def test_rgb_jpeg_loads_as_uint8_rgb(tmp_path: Path) -> None:
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[..., 0] = 200
    path = _save(tmp_path, "red.jpg", Image.fromarray(arr), quality=95)
    out = load_rgb(path)
    assert out.shape == (40, 60, 3)
    assert out.dtype == np.uint8
    assert abs(int(out[..., 0].mean()) - 200) <= 2
    assert out.flags.writeable


def test_rgba_is_composited_onto_the_background(tmp_path: Path) -> None:
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[:, :10, 3] = 255  # left half opaque
    rgba[:, 10:, 3] = 0  # right half fully transparent
    path = _save(tmp_path, "a.png", Image.fromarray(rgba))
    out = load_rgb(path, shape=TINY)
    assert out.shape == (10, 20, 3)
    assert (out[:, :10] == (10, 20, 30)).all()
    assert (out[:, 10:] == 255).all()
    out_black = load_rgb(path, shape=TINY, background=(0, 0, 0))
    assert (out_black[:, 10:] == 0).all()


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    grey16 = np.array([[0, 257 * 100, 32768, 65535]], np.uint16)
    path = _save(tmp_path, "g16.png", Image.fromarray(grey16))
    assert Image.open(path).mode.startswith("I")
    out = load_rgb(path, shape=TINY)
    assert out.shape == (1, 4, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 100, 128, 255])
    assert (out[..., 0] == out[..., 2]).all()


def test_palette_greyscale_and_bilevel_images(tmp_path: Path) -> None:
    base = Image.fromarray(np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1)))
    for mode in ("L", "P", "1"):
        out = load_rgb(_save(tmp_path, f"m_{mode}.png", base.convert(mode)), shape=TINY)
        assert out.shape == (8, 16, 3)
        assert out.dtype == np.uint8
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 250, 0, 0])
    palette.putpixel((0, 0), 1)
    path = _save(tmp_path, "pt.png", palette, transparency=0)
    out = load_rgb(path, shape=TINY)
    assert tuple(out[0, 0]) == (250, 0, 0)
    assert tuple(out[1, 1]) == (255, 255, 255)  # transparent index -> background


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.zeros((100, 200, 3), np.uint8)
    stored[:, :100] = (255, 0, 0)  # left half red
    stored[:, 100:] = (0, 0, 255)  # right half blue
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = _save(tmp_path, "rotated.jpg", image, exif=exif, quality=95)
    out = load_rgb(path)
    assert out.shape == (200, 100, 3)  # upright: portrait
    top, bottom = out[:100].mean(axis=(0, 1)), out[100:].mean(axis=(0, 1))
    assert top[0] > 200
    assert top[2] < 50
    assert bottom[2] > 200
    assert bottom[0] < 50


def test_unreadable_input_names_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "not_an_image.jpg"
    garbage.write_bytes(b"this is not a JPEG at all" * 10)
    with pytest.raises(ImageLoadError, match=r"not_an_image\.jpg"):
        load_rgb(garbage)
    with pytest.raises(ImageLoadError, match=r"missing\.png"):
        load_rgb(tmp_path / "missing.png")


def test_truncated_jpeg_is_an_error(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        buf, "JPEG"
    )
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.jpg"):
        load_rgb(path)


def test_formats_other_than_jpeg_and_png_are_not_tried(tmp_path: Path) -> None:
    path = _save(tmp_path, "x.gif", Image.new("RGB", (8, 8)))
    with pytest.raises(ImageLoadError, match=r"x\.gif"):
        load_rgb(path)
    assert load_rgb(path, formats=("GIF",), shape=TINY).shape == (8, 8, 3)


def test_pixel_limit_refuses_before_decoding(tmp_path: Path) -> None:
    path = _save(tmp_path, "big.png", Image.new("RGB", (300, 200)))
    with pytest.raises(ImageTooLarge, match=r"big\.png.*60000 pixels"):
        load_rgb(path, shape=ImageShape(max_pixels=50_000))
    assert load_rgb(path, shape=ImageShape(max_pixels=60_000)).shape == (200, 300, 3)


def test_decode_from_bytes_uses_the_given_name() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (5, 7), (1, 2, 3)).save(buf, "PNG")
    assert decode_rgb(buf.getvalue(), shape=TINY).shape == (7, 5, 3)
    with pytest.raises(ImageLoadError, match="upload-42"):
        decode_rgb(b"\x00" * 100, name="upload-42")


# --- WebP, file kinds, limits, names ------------------------------------------------------------


def test_webp_loads(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8)
    path = _save(tmp_path, "face.webp", Image.fromarray(arr), lossless=True)
    np.testing.assert_array_equal(load_rgb(path), arr)


def test_webp_pixel_limit_is_checked_from_the_header(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path, "big.webp", Image.new("RGB", (300, 200)), lossless=True)

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(ImageTooLarge, match="60000 pixels"):
        load_rgb(path, shape=ImageShape(max_pixels=50_000))


def test_a_refused_format_names_the_accepted_ones(tmp_path: Path) -> None:
    path = _save(tmp_path, "x.gif", Image.new("RGB", (8, 8)))
    with pytest.raises(ImageLoadError, match=r"x\.gif.*accepted: JPEG, PNG, WEBP"):
        load_rgb(path)
    with pytest.raises(ImageLoadError, match="accepted: JPEG, PNG, WEBP"):
        load_rgb(_junk(tmp_path))


def _junk(tmp_path: Path) -> Path:
    path = tmp_path / "junk.jpg"
    path.write_bytes(b"not an image" * 8)
    return path


def _refused_at_once(path: Path, match: str) -> None:
    started = time.monotonic()
    with pytest.raises(ImageLoadError, match=match):
        load_rgb(path)
    assert time.monotonic() - started < 5  # the point: no hang on a FIFO, no endless read


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    _refused_at_once(fifo, "FIFO")


def test_a_device_and_a_link_to_it_are_refused(tmp_path: Path) -> None:
    link = tmp_path / "photo.jpg"
    link.symlink_to("/dev/zero")
    _refused_at_once(Path("/dev/zero"), "character device")
    _refused_at_once(link, "character device")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    _refused_at_once(tmp_path, "directory")


def test_the_byte_limit_counts_bytes_read(tmp_path: Path) -> None:
    path = _save(tmp_path, "p.png", Image.new("RGB", (64, 64)))
    size = path.stat().st_size
    assert load_rgb(path, max_bytes=size).shape == (64, 64, 3)
    with pytest.raises(ImageLoadError, match=f"over the limit of {size - 1} bytes"):
        load_rgb(path, max_bytes=size - 1)


def test_a_file_name_cannot_forge_a_log_line(tmp_path: Path) -> None:
    path = tmp_path / "x\nCRITICAL fake.jpg"
    path.write_bytes(b"not an image")
    for target in (path, tmp_path / "missing\nCRITICAL.jpg"):
        with pytest.raises(ImageLoadError) as info:
            load_rgb(target)
        assert "\n" not in str(info.value)
        assert printable(target) in str(info.value)


# --- shape limits and Pillow's bomb warning, from the header ------------------------------------


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` with no pixel data: a few dozen bytes,
    enough for every check that must happen before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(("width", "height"), [(4_000_000, 4), (1_000_000, 1), (16385, 2000),
                                               (15, 200), (200, 15), (16 * 17, 16)])
def test_extreme_sides_and_aspect_ratios_are_refused_from_the_header(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, width: int, height: int) -> None:
    path = _png_header(tmp_path / "strip.png", width, height)

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("pixels were decoded before the shape check")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(ImageTooLarge) as info:
        load_rgb(path)
    message = str(info.value)
    assert f"strip.png is {width}x{height} px" in message
    assert "between 16 and 16384 px" in message
    assert "at most 16 times the shorter" in message


def test_sides_and_ratios_at_the_limits_load(tmp_path: Path) -> None:
    for width, height in ((16, 16), (16 * 16, 16), (16, 16 * 16)):
        path = _save(tmp_path, f"edge_{width}x{height}.png", Image.new("L", (width, height)))
        assert load_rgb(path).shape == (height, width, 3)


def test_a_real_wide_strip_is_refused_quickly(tmp_path: Path) -> None:
    path = _save(tmp_path, "wide.png", Image.new("L", (20_000, 16)))
    started = time.monotonic()
    with pytest.raises(ImageTooLarge, match=r"wide\.png is 20000x16 px"):
        load_rgb(path)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("max_pixels", [64_000_000, 200_000_000])
def test_pillows_bomb_warning_becomes_a_quiet_refusal(tmp_path: Path, max_pixels: int) -> None:
    # 10000 x 9000 = 90 MP: above Pillow's ~89 MP warning, under its ~179 MP error.
    path = _png_header(tmp_path / "huge.png", 10_000, 9_000)
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")  # record every warning, even one shown before
        with pytest.raises(ImageTooLarge, match=r"huge\.png"):
            load_rgb(path, shape=ImageShape(max_pixels=max_pixels, max_side=20_000))
    assert [str(warning.message) for warning in escaped] == []
