"""Intensity windows: how stored mammogram values become the network's [0, 1] input.

Detectors and exports differ in their absolute range: INbreast stores 14 bits but its tissue
lies between about 1,000 and 3,000, other datasets use 12 bits or the full 16, and a gain
change moves every value. A window chosen from each image's own values makes the input the
same whatever that range (``INTENSITY_WINDOW`` in ``ftmtl.model.FTMTLConfig``):

- ``"percentile"`` (default): the image's ``PERCENTILES`` (0.5th and 99.9th) become 0 and 1,
  values beyond are clipped. Multiplying or offsetting the stored values changes nothing.
- ``"dicom"``: the file's own VOI LUT or window (centre/width), after its modality rescale,
  through pydicom's ``apply_voi_lut``, scaled by the LUT's or the window's output range;
  MONOCHROME1 images are inverted after it, as a viewer does. A file without either (and any
  image that is not a DICOM) gets the percentile window.
- ``"full_range"``: the stored value over the largest value BitsStored holds (how ftmtl
  prepared images before the option existed; checkpoints from then use it).

Values are "high = dense" throughout, as ``ftmtl.inbreast.dicom_io.read_dicom`` returns them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
from pydicom.dataset import Dataset as PydicomDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from ftmtl.inbreast.records import DicomImage

logger = logging.getLogger(__name__)

WINDOWS = ("percentile", "dicom", "full_range")
DEFAULT_WINDOW = "percentile"
# Low and high percentiles of the percentile window. 99.9 rather than 99.5: a dense mass is
# a few tenths of a percent of a mammogram, and its core should not be clipped.
PERCENTILES = (0.5, 99.9)
# Percentiles are read from the image subsampled to about this long side (the result differs
# from the full image's by far less than the noise; a full-size mammogram has 13 M pixels).
PERCENTILE_SAMPLE_SIDE = 512

# A function from "high = dense" values [h, w] to float32 [0, 1] (a file's own window).
VoiFunction = Callable[[np.ndarray], np.ndarray]


def check_window(window: str, where: str = "INTENSITY_WINDOW") -> str:
    """``window`` if it is one of WINDOWS; ValueError naming ``where`` otherwise."""
    if window not in WINDOWS:
        raise ValueError(f"{where}: must be one of {', '.join(map(repr, WINDOWS))}, "
                         f"got {window!r}")
    return window


def sample_step(shape: tuple[int, ...]) -> int:
    """Subsampling step of the percentile window for an image of ``shape`` [h, w, ...]."""
    return max(1, math.ceil(max(shape[0], shape[1]) / PERCENTILE_SAMPLE_SIDE))


def percentile_bounds(image: np.ndarray) -> tuple[float, float]:
    """(low, high): the image's PERCENTILES, read on every ``sample_step``-th pixel."""
    image = np.asarray(image)
    step = sample_step(image.shape)
    low, high = np.percentile(image[::step, ::step], PERCENTILES)
    return float(low), float(high)


def percentile_window(image: np.ndarray) -> np.ndarray:
    """float32 [0, 1]: the image's low percentile at 0, its high one at 1, clipped. A uniform
    image becomes zeros."""
    image = np.asarray(image, dtype=np.float32)
    low, high = percentile_bounds(image)
    if high <= low:
        return np.zeros_like(image)
    return np.clip((image - np.float32(low)) / np.float32(high - low), 0.0, 1.0)


def full_range(image: np.ndarray, bits_stored: int) -> np.ndarray:
    """float32 [0, 1]: stored values over the largest value ``bits_stored`` holds."""
    top = float(2**bits_stored - 1)
    return np.clip(np.asarray(image, dtype=np.float32) / top, 0.0, 1.0).astype(np.float32)


def dicom_voi(header: PydicomDataset | None, photometric: str, bits_stored: int
              ) -> VoiFunction | None:
    """The file's own window as a function of "high = dense" values, or None when the header
    has neither a VOI LUT Sequence nor Window Center/Width."""
    if header is None or not (header.get("VOILUTSequence") or (
            header.get("WindowCenter") is not None and header.get("WindowWidth") is not None)):
        return None
    inverted = photometric == "MONOCHROME1"
    top = 2**bits_stored - 1
    low, high = _voi_output_range(header)

    def window(values: np.ndarray) -> np.ndarray:
        stored = np.rint(np.asarray(values, dtype=np.float64)).astype(np.int64)
        if inverted:  # back to the file's own values, which its window refers to
            stored = top - stored
        modality = apply_modality_lut(stored, header)
        if not np.issubdtype(np.asarray(modality).dtype, np.integer) and header.get(
                "VOILUTSequence"):
            modality = np.rint(modality).astype(np.int64)
        shown = (np.asarray(apply_voi_lut(modality, header), dtype=np.float64) - low) / (
            high - low)
        shown = np.clip(shown, 0.0, 1.0)
        return (1.0 - shown if inverted else shown).astype(np.float32)

    return window


def file_voi(dicom: DicomImage) -> VoiFunction | None:
    """``dicom_voi`` of a file read by ``ftmtl.inbreast.dicom_io.read_dicom``."""
    return dicom_voi(dicom.header, dicom.photometric, dicom.bits_stored)


def _voi_output_range(header: PydicomDataset) -> tuple[float, float]:
    """(low, high) of what ``apply_voi_lut`` can return for this header: a LUT's smallest and
    largest entries (its declared bit depth is not always true), a window's output range."""
    sequence = header.get("VOILUTSequence")
    if sequence:
        descriptor = sequence[0].LUTDescriptor
        entries = int(descriptor[0]) or 2**16
        first = int(descriptor[1])
        every_input = np.arange(first, first + entries, dtype=np.int64)
        table = np.asarray(apply_voi_lut(every_input, header), dtype=np.float64)
        low, high = float(table.min()), float(table.max())
    else:
        center, width = _first(header.WindowCenter), _first(header.WindowWidth)
        far = np.array([center - 100.0 * abs(width) - 1.0, center + 100.0 * abs(width) + 1.0])
        ends = np.asarray(apply_voi_lut(far, header), dtype=np.float64)
        low, high = float(ends.min()), float(ends.max())
    if high <= low:
        raise ValueError(f"the VOI LUT or window of {header.get('SOPInstanceUID', 'the file')} "
                         f"maps every value to {low}")
    return low, high


def _first(value) -> float:
    """The first of a multi-valued DS element (a file may offer several windows)."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def apply_window(image: np.ndarray, window: str, bits_stored: int,
                 voi: VoiFunction | None = None) -> np.ndarray:
    """float32 [0, 1] of ``image`` ("high = dense" values) through ``window``; ``voi`` is the
    file's own window for ``"dicom"`` (``dicom_voi``; None: the percentile window)."""
    check_window(window, "apply_window: window")
    if window == "full_range":
        return full_range(image, bits_stored)
    if window == "dicom" and voi is not None:
        return voi(image)
    return percentile_window(image)
