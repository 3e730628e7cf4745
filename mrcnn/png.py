"""8-bit PNG files written with numpy and zlib, for overlays written in bulk.

PIL chooses a filter for every row of an RGB image by trying all five of PNG's filters, which
costs as much as the compression itself: 40 ms of a 1053 x 832 overlay's 0.06 s at zlib level 1
(``inbreast detect`` writes one a DICOM; benchmarks/bench_detect_host.py). A mammogram overlay
compresses as well with PNG's "Sub" filter on every row (each byte less the one a pixel to its
left), which numpy computes in one subtraction, and the file is written in half the time. The
format is PNG's own (signature, IHDR, one IDAT, IEND; RFC 2083), so any reader opens it.
"""

from __future__ import annotations

import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types by channels: gray, gray + alpha, RGB, RGBA.
COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
SUB_FILTER = 1
# Scanline bytes a compressing thread takes at least: below this a thread is not worth it.
BYTES_PER_THREAD = 1 << 19


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """The bytes of a PNG of ``image``: uint8 [H, W] (gray) or [H, W, C] with C of 1-4 (gray,
    gray + alpha, RGB, RGBA); zlib ``compress_level`` 0-9."""
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        raise ValueError(f"encode_png: the image must be uint8, got {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[2] not in COLOR_TYPES or 0 in pixels.shape[:2]:
        raise ValueError(f"encode_png: the image must be [H, W] or [H, W, 1-4] with H and W "
                         f"positive, got shape {np.shape(image)}")
    if not 0 <= compress_level <= 9:
        raise ValueError(f"encode_png: compress_level must be 0-9, got {compress_level}")
    height, width, channels = pixels.shape
    header = struct.pack(">IIBBBBB", width, height, 8, COLOR_TYPES[channels], 0, 0, 0)
    data = _deflate(_sub_filtered(pixels.reshape(height, width * channels), channels),
                    compress_level)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def write_png(path: str | os.PathLike, image: np.ndarray, compress_level: int = 1) -> None:
    """Save ``image`` (as ``encode_png`` takes it) to ``path``, creating its folder."""
    encoded = encode_png(image, compress_level)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(encoded)


def _sub_filtered(rows: np.ndarray, channels: int) -> memoryview:
    """PNG's scanlines of uint8 ``rows`` [H, W * C]: each row's filter byte (Sub), then every
    byte less the same channel's byte a pixel to its left (modulo 256; the first pixel as
    is)."""
    height, row_bytes = rows.shape
    lines = np.empty((height, row_bytes + 1), dtype=np.uint8)
    lines[:, 0] = SUB_FILTER
    lines[:, 1:1 + channels] = rows[:, :channels]
    np.subtract(rows[:, channels:], rows[:, :-channels], out=lines[:, 1 + channels:])
    return memoryview(lines).cast("B")


def _deflate(data: memoryview, level: int) -> bytes:
    """The zlib stream of ``data``, its parts compressed side by side on the machine's cores
    (zlib lets go of the GIL). Each part but the last ends on a byte boundary without closing
    the stream (a sync flush), so the parts join into one stream as they are; the checksum is
    the whole data's. Each part starts with an empty window: a few bytes larger in all."""
    parts = max(1, min(_cores(), len(data) // BYTES_PER_THREAD))
    if parts == 1:
        return zlib.compress(data, level)
    bounds = [len(data) * k // parts for k in range(parts + 1)]

    def part(k: int) -> bytes:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = compressor.compress(data[bounds[k]:bounds[k + 1]])
        return body + compressor.flush(zlib.Z_FINISH if k == parts - 1 else zlib.Z_SYNC_FLUSH)

    with ThreadPoolExecutor(parts) as pool:
        bodies = list(pool.map(part, range(parts)))
    # The zlib header (deflate, 32 KiB window, no dictionary; its check bits) and the
    # Adler-32 of the whole data after the joined parts (RFC 1950).
    header = zlib.compress(b"", level)[:2]
    return header + b"".join(bodies) + struct.pack(">I", zlib.adler32(data))


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload, CRC-32 of type and payload."""
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))
