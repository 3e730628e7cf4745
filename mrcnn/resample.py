"""Linear resampling as skimage computes it, in pieces that vectorise over many boxes.

``mrcnn.data.unmold_mask`` (masks into their boxes) and ``ftmtl.inbreast.preprocess``
(prepared-image masks back to DICOM pixels) paste many masks at once with these, and give
exactly the masks skimage's per-mask resize gave. Pure numpy: reading and writing detections
need no Keras.
"""

from __future__ import annotations

import numpy as np


def linear_taps(positions: np.ndarray, zoom: float | np.ndarray, size: int, mirror: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The two source samples of linear resampling at output ``positions`` along an axis of
    ``size`` samples, ``zoom`` source samples an output sample (scalar, or one per position):
    (first index, second index, first weight, second weight).

    Computed as ``skimage.transform.resize(order=1)`` computes them (through
    ``scipy.ndimage.zoom``: half-pixel centres, float64, the second weight one minus the
    first), so that a resize assembled from them, summing ``(value * row weight) * column
    weight`` over the four neighbours in scipy's order, is skimage's to the last bit: masks
    pasted from them threshold exactly as skimage's did. Beyond the source's ends ``mirror``
    reflects (skimage's mode="reflect"); otherwise the index is -1 or ``size``, a zero
    (mode="constant").
    """
    centre = (np.asarray(positions, dtype=np.float64) + 0.5) * zoom - 0.5
    if mirror:
        centre = np.zeros_like(centre) if size == 1 else np.abs(centre)
    start = np.floor(centre)
    first_weight = 1.0 - (centre - start)
    first = start.astype(np.int64)
    second = first + 1
    if mirror:
        second = np.where(second < size, second, max(size - 2, 0))
    return first, second, first_weight, 1.0 - first_weight


def ragged_ranges(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges of ``lengths`` laid end to end: each element's range and its position in
    it: how the pasting walks over boxes (or cells) of different sizes without a loop over
    them."""
    owner = np.repeat(np.arange(len(lengths)), lengths)
    return owner, np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
