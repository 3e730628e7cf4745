"""mrcnn/png.py: PNGs that PIL (an independent decoder) reads back pixel for pixel."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mrcnn import png
from mrcnn.png import encode_png, write_png

PIL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def decoded(data: bytes) -> tuple[np.ndarray, str]:
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(image), image.mode


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (37, 53)])
def test_pil_reads_back_every_byte(channels, shape):
    pixels = np.random.default_rng(channels).integers(0, 256, shape + (channels,), np.uint8)
    image, mode = decoded(encode_png(pixels))
    assert mode == PIL_MODES[channels]
    np.testing.assert_array_equal(image.reshape(pixels.shape), pixels)


def test_a_two_dimensional_image_is_gray():
    pixels = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)
    image, mode = decoded(encode_png(pixels, compress_level=9))
    assert mode == "L"
    np.testing.assert_array_equal(image, pixels)


def test_rows_are_sub_filtered_with_wrapping_differences():
    # Worked by hand: one RGB row (10, 20, 30), (5, 250, 30) -> Sub: 10 20 30 251 230 0.
    pixels = np.array([[[10, 20, 30], [5, 250, 30]]], dtype=np.uint8)
    data = encode_png(pixels, compress_level=0)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length = struct.unpack(">I", data[8:12])[0]
    assert data[12:16] == b"IHDR" and length == 13
    assert struct.unpack(">IIBBBBB", data[16:29]) == (2, 1, 8, 2, 0, 0, 0)
    idat = data.index(b"IDAT")
    size = struct.unpack(">I", data[idat - 4:idat])[0]
    assert zlib.decompress(data[idat + 4:idat + 4 + size]) == bytes([1, 10, 20, 30, 251, 230, 0])
    assert data.endswith(b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


def test_every_chunk_carries_its_crc():
    data = encode_png(np.zeros((4, 5, 3), np.uint8))
    position = 8
    kinds = []
    while position < len(data):
        length = struct.unpack(">I", data[position:position + 4])[0]
        body = data[position + 4:position + 8 + length]
        assert struct.unpack(">I", data[position + 8 + length:position + 12 + length])[0] \
            == zlib.crc32(body)
        kinds.append(body[:4])
        position += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


def test_a_non_contiguous_view_is_written_as_its_pixels(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (30, 40, 3), np.uint8)
    view = pixels[::2, ::-3]
    path = tmp_path / "sub" / "view.png"
    write_png(path, view)
    image, _ = decoded(path.read_bytes())
    np.testing.assert_array_equal(image, view)


@pytest.mark.parametrize("image, message", [
    (np.zeros((4, 4), np.uint16), "uint8"),
    (np.zeros((4, 4, 5), np.uint8), "shape"),
    (np.zeros((0, 4, 3), np.uint8), "shape"),
    (np.zeros(4, np.uint8), "shape"),
])
def test_bad_images_are_refused_by_name(image, message):
    with pytest.raises(ValueError, match=message):
        encode_png(image)


def test_bad_compress_level_is_refused():
    with pytest.raises(ValueError, match="compress_level"):
        encode_png(np.zeros((2, 2), np.uint8), compress_level=10)


@pytest.mark.parametrize("cores", [1, 2, 3, 8])
def test_parts_compressed_side_by_side_join_into_one_stream(monkeypatch, cores):
    monkeypatch.setattr(png, "BYTES_PER_THREAD", 100)
    monkeypatch.setattr(png, "_cores", lambda: cores)
    pixels = np.random.default_rng(cores).integers(0, 4, (61, 47, 3), np.uint8)
    data = encode_png(pixels, compress_level=1)
    image, _ = decoded(data)
    np.testing.assert_array_equal(image, pixels)
    idat = data.index(b"IDAT")
    size = struct.unpack(">I", data[idat - 4:idat])[0]
    stream = data[idat + 4:idat + 4 + size]
    # zlib itself, which checks the Adler-32, inflates the joined parts to the scanlines.
    lines = zlib.decompress(stream)
    assert len(lines) == 61 * (47 * 3 + 1)
    assert lines[::47 * 3 + 1] == bytes([png.SUB_FILTER]) * 61
