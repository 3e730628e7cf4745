"""DICOM reading for INbreast: stored pixel values, brightness = density, spacing in mm.

Every failure (not DICOM, truncated, no pixels, compression without a decoder, a layout we do
not read) becomes an InbreastFormatError that names the file and what is wrong.
"""

from __future__ import annotations

import io
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset as PydicomDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from ftmtl.inbreast.records import DicomImage, InbreastFormatError

logger = logging.getLogger(__name__)

DEFAULT_PIXEL_SPACING_MM = 0.07
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_BITS_ALLOCATED = (8, 16)
_PREAMBLE_BYTES = 128
_META_GROUP_TAG = b"\x02\x00"  # (0002,xxxx) little endian: File Meta Information
_BARE_DATASET_TAG = b"\x08\x00"  # (0008,xxxx): a data set with no File Meta Information


def read_dicom(path: str | os.PathLike) -> DicomImage:
    """Read a single-frame grayscale DICOM into a DicomImage (uint16 stored values).

    MONOCHROME1 images are inverted (``2**BitsStored - 1 - value``) so that high always means
    dense. Supported: MONOCHROME1/2, one sample per pixel, one frame, BitsAllocated 8 or 16,
    unsigned pixels, any transfer syntax pydicom can decode with the plugins installed. A file
    without BitsStored uses BitsAllocated (warning); one without SamplesPerPixel uses 1, as
    MONOCHROME implies (warning). Everything else raises InbreastFormatError naming the file and
    the element; no other exception escapes.
    """
    path = Path(path)
    ds = _read_dataset(path, stop_before_pixels=False)
    if "PixelData" not in ds:
        raise InbreastFormatError(f"{path}: no PixelData element")
    photometric = _photometric(path, ds)
    rows, columns = _shape(path, ds)
    bits_stored = _check_pixel_layout(path, ds)
    _check_decoder(path, ds)
    try:
        stored = ds.pixel_array
    except Exception as err:  # pydicom raises many types for corrupt pixel data
        raise InbreastFormatError(f"{path}: pixel data unreadable ({_brief(err)})") from err
    if stored.shape != (rows, columns):
        raise InbreastFormatError(
            f"{path}: pixel array has shape {stored.shape}, expected one grayscale frame of "
            f"{rows}x{columns}"
        )
    # pydicom keeps only the low BitsStored bits, so values never exceed 2**bits_stored - 1
    # and the inversion stays in uint16. The decoded array is ours: no copy where it is uint16
    # already (a 16-bit mammogram's case; a round trip through int64 took 12 ms a full-size file).
    pixels = stored.astype(np.uint16, copy=False)
    if not pixels.flags.writeable:  # a decoder's view of its buffer: the image gets its own
        pixels = pixels.copy()
    if photometric == "MONOCHROME1":
        pixels = np.subtract(np.uint16(2**bits_stored - 1), pixels, dtype=np.uint16)
    spacing, spacing_source = _pixel_spacing(path, ds)
    del ds.PixelData  # the header stays with the image; its pixels are in ``pixels``
    return DicomImage(
        pixels=pixels,
        bits_stored=bits_stored,
        pixel_spacing=spacing,
        photometric=photometric,
        path=path,
        pixel_spacing_source=spacing_source,
        header=ds,
    )


def read_dicom_shape(path: str | os.PathLike) -> tuple[int, int]:
    """(rows, columns) from the header alone, without decoding pixels."""
    path = Path(path)
    return _shape(path, _read_dataset(path, stop_before_pixels=True))


def _read_dataset(path: Path, stop_before_pixels: bool) -> PydicomDataset:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as err:
        ds = _read_without_preamble(path, stop_before_pixels, err)
    except OSError as err:
        raise InbreastFormatError(f"{path}: cannot read ({err})") from err
    except Exception as err:  # pydicom raises many types for corrupt headers
        raise InbreastFormatError(f"{path}: unreadable DICOM ({_brief(err)})") from err
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise InbreastFormatError(f"{path}: no Transfer Syntax UID (truncated file?)")
    syntax = _value(path, meta, "TransferSyntaxUID")
    if not isinstance(syntax, UID):
        raise InbreastFormatError(f"{path}: Transfer Syntax UID {syntax!r} is not one UID")
    for keyword in ("Rows", "Columns"):
        if keyword not in ds:
            raise InbreastFormatError(f"{path}: no {keyword} element (truncated file?)")
    return ds


def _read_without_preamble(
    path: Path, stop_before_pixels: bool, error: InvalidDicomError
) -> PydicomDataset:
    """A file that lacks only the 128-byte preamble (and perhaps "DICM") is read anyway.

    It still carries its File Meta Information, so nothing is guessed. A bare data set with no
    File Meta Information is refused: its transfer syntax would be a guess.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InbreastFormatError(f"{path}: cannot read ({err})") from err
    if data.startswith(b"DICM"):
        prefix = bytes(_PREAMBLE_BYTES)
    elif data.startswith(_META_GROUP_TAG):
        prefix = bytes(_PREAMBLE_BYTES) + b"DICM"
    elif data.startswith(_BARE_DATASET_TAG):
        raise InbreastFormatError(
            f"{path}: a bare data set without File Meta Information; its transfer syntax is "
            "unknown, refused"
        )
    else:
        raise InbreastFormatError(f"{path}: not a DICOM file ({error})")
    logger.warning("%s: no 128-byte preamble; read from its File Meta Information", path)
    try:
        return pydicom.dcmread(io.BytesIO(prefix + data), stop_before_pixels=stop_before_pixels)
    except Exception as err:  # pydicom raises many types for corrupt headers
        raise InbreastFormatError(f"{path}: unreadable DICOM ({_brief(err)})") from err


def _value(path: Path, ds: PydicomDataset, keyword: str) -> Any:
    """An element's value, None when absent or empty; pydicom decodes values on first access."""
    try:
        value = ds.get(keyword)
    except Exception as err:  # a corrupt raw value can raise almost anything when decoded
        raise InbreastFormatError(f"{path}: {keyword} unreadable ({_brief(err)})") from err
    return None if value is None or value == "" else value


def _integer(path: Path, ds: PydicomDataset, keyword: str) -> int | None:
    value = _value(path, ds, keyword)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError) as err:
        raise InbreastFormatError(f"{path}: {keyword} is {value!r}, not an integer") from err


def _required_integer(path: Path, ds: PydicomDataset, keyword: str, why: str) -> int:
    value = _integer(path, ds, keyword)
    if value is None:
        raise InbreastFormatError(f"{path}: no {keyword} element; {why}")
    return value


def _shape(path: Path, ds: PydicomDataset) -> tuple[int, int]:
    rows = _required_integer(path, ds, "Rows", "the image size is unknown")
    columns = _required_integer(path, ds, "Columns", "the image size is unknown")
    if rows < 1 or columns < 1:
        raise InbreastFormatError(f"{path}: Rows x Columns is {rows}x{columns}, an empty image")
    return rows, columns


def _photometric(path: Path, ds: PydicomDataset) -> str:
    value = _value(path, ds, "PhotometricInterpretation")
    if value is None:
        raise InbreastFormatError(
            f"{path}: no PhotometricInterpretation element; whether to invert (MONOCHROME1) "
            "is unknown"
        )
    photometric = str(value).strip().upper()
    if photometric not in _MONOCHROME:
        raise InbreastFormatError(
            f"{path}: PhotometricInterpretation {photometric!r}, expected MONOCHROME1/2 "
            "(grayscale); colour images are not supported"
        )
    return photometric


def _check_pixel_layout(path: Path, ds: PydicomDataset) -> int:
    """Refuse what we do not read, fill the two documented defaults; returns BitsStored."""
    samples = _integer(path, ds, "SamplesPerPixel")
    if samples is None:
        logger.warning("%s: no SamplesPerPixel; using 1, as MONOCHROME implies", path)
        ds.SamplesPerPixel = samples = 1
    if samples != 1:
        raise InbreastFormatError(f"{path}: SamplesPerPixel {samples}, expected 1 (grayscale)")
    frames = _integer(path, ds, "NumberOfFrames")
    if frames is not None and frames != 1:
        raise InbreastFormatError(
            f"{path}: NumberOfFrames {frames}; one view is one frame, multi-frame is refused"
        )
    if _required_integer(path, ds, "PixelRepresentation", "signed or unsigned is unknown"):
        raise InbreastFormatError(
            f"{path}: PixelRepresentation 1 (signed pixels) not supported; INbreast stores "
            "unsigned values"
        )
    allocated = _required_integer(path, ds, "BitsAllocated", "the pixel layout is unknown")
    if allocated not in _BITS_ALLOCATED:
        raise InbreastFormatError(f"{path}: BitsAllocated {allocated}, expected 8 or 16")
    bits = _integer(path, ds, "BitsStored")
    if bits is None:
        logger.warning("%s: no BitsStored; using BitsAllocated (%d)", path, allocated)
        ds.BitsStored = bits = allocated
    if not 1 <= bits <= allocated:
        raise InbreastFormatError(
            f"{path}: BitsStored {bits}, expected 1 to BitsAllocated ({allocated})"
        )
    return bits


def _check_decoder(path: Path, ds: PydicomDataset) -> None:
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        compressed = syntax.is_compressed
    except ValueError as err:  # a UID that is no transfer syntax
        raise InbreastFormatError(f"{path}: Transfer Syntax UID {syntax!r} is unknown") from err
    if not compressed:
        return
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as err:
        raise InbreastFormatError(
            f"{path}: compressed transfer syntax {syntax.name} ({syntax}) and pydicom has no "
            "decoder for it"
        ) from err
    if not decoder.is_available:
        missing = decoder.missing_dependencies
        raise InbreastFormatError(
            f"{path}: compressed transfer syntax {syntax.name} ({syntax}) and no decoder "
            f"installed; any one of these would decode it: {'; '.join(missing)}"
        )


def _brief(error: BaseException, limit: int = 300) -> str:
    """An exception's text on one line, cut to ``limit`` characters."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = text or type(error).__name__
    return text if len(text) <= limit else f"{text[:limit]}..."


def _pixel_spacing(path: Path, ds: PydicomDataset) -> tuple[tuple[float, float], str | None]:
    """(PixelSpacing, else ImagerPixelSpacing, else the INbreast default; the keyword used, None
    for the default); bad values warn."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            value = _value(path, ds, keyword)
        except InbreastFormatError as err:
            logger.warning("%s; ignored", err)
            continue
        if value is None:
            continue
        spacing = _two_positive_numbers(value)
        if spacing is None:
            logger.warning("%s: %s is %r, not two positive numbers; ignored", path, keyword, value)
            continue
        return spacing, keyword
    logger.debug("%s: no pixel spacing; using %.2f mm", path, DEFAULT_PIXEL_SPACING_MM)
    return (DEFAULT_PIXEL_SPACING_MM, DEFAULT_PIXEL_SPACING_MM), None


def _two_positive_numbers(value: Any) -> tuple[float, float] | None:
    try:
        first, second = (float(part) for part in value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not all(math.isfinite(v) and v > 0 for v in (first, second)):
        return None
    return first, second
