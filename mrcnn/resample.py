"""Linear resampling as skimage computes it, in pieces that vectorise over many boxes, and
skimage's anti-aliased resize of one large image without blurring pixels it never samples.

``mrcnn.data.unmold_mask`` (masks into their boxes) and ``ftmtl.inbreast.preprocess``
(prepared-image masks back to DICOM pixels) paste many masks at once with these, and give
exactly the masks skimage's per-mask resize gave; ``resize_anti_aliased`` prepares full-size
mammograms. numpy and scipy only: reading and writing detections need no Keras.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse


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


# ------------------------------------------------------------ anti-aliased image resizing
# ``skimage.transform.resize(image, shape, order=1, anti_aliasing=..., preserve_range=True)``
# blurs the *whole* image with a Gaussian (sigma = (factor - 1) / 2 per axis, scipy's
# ``gaussian_filter``, mode "mirror") and then samples it at the output grid. Shrinking a
# 4084 x 3328 mammogram ten times, almost all of that blur is computed at pixels the sampling
# never reads (0.3 s of ``inbreast detect`` on 2 cores). Both steps are linear and act on one
# axis at a time, so the result is ``rows @ image @ cols.T`` with one sparse matrix an axis,
# holding scipy's own Gaussian weights (same radius, mirror boundary) at ``linear_taps``'
# samples: skimage's image up to float32 rounding, about 15 times sooner.

# scipy.ndimage.gaussian_filter's default: the kernel reaches 4 sigma.
TRUNCATE = 4.0


def _mirror(index: np.ndarray, size: int) -> np.ndarray:
    """scipy.ndimage's "mirror" boundary: reflect about the edge pixels' centres
    (d c b | a b c d | c b a), repeated for indices far outside."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


def _gaussian_taps(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, weights) of scipy's 1-D Gaussian kernel for ``sigma`` (identity below
    1e-15, as gaussian_filter skips such an axis)."""
    if sigma <= 1e-15:
        return np.zeros(1, np.int64), np.ones(1)
    radius = int(TRUNCATE * float(sigma) + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (float(sigma) ** 2) * offsets.astype(np.float64) ** 2)
    return offsets, weights / weights.sum()


def axis_matrix(in_size: int, out_size: int, anti_aliasing: bool) -> scipy.sparse.csr_matrix:
    """[out_size, in_size] sparse: blur (when ``anti_aliasing`` and shrinking) then linear
    interpolation at ``ndimage.zoom``'s grid-mode coordinates, along one axis."""
    factor = in_size / out_size
    sigma = max(0.0, (factor - 1.0) / 2.0) if anti_aliasing else 0.0
    offsets, gauss = _gaussian_taps(sigma)
    first, second, first_weight, second_weight = linear_taps(np.arange(out_size), factor,
                                                             in_size, mirror=True)
    # Output sample i reads the blurred input at its two linear taps; each of those is the
    # Gaussian sum over taps + d.
    linear = np.stack([first_weight, second_weight], axis=1)               # [out, 2]
    columns = (np.stack([first, second], axis=1)[:, :, None]
               + offsets[None, None, :])                                    # [out, 2, T]
    weights = linear[:, :, None] * gauss[None, None, :]
    columns = _mirror(columns, in_size).reshape(out_size, -1)
    rows = np.repeat(np.arange(out_size), columns.shape[1])
    matrix = scipy.sparse.coo_matrix((weights.reshape(-1), (rows, columns.reshape(-1))),
                                     shape=(out_size, in_size))
    # Duplicate entries (mirrored taps) are summed. float32: a float64 matrix would make
    # scipy convert the whole image to float64 first (5x slower).
    return matrix.tocsr().astype(np.float32)


def resize_anti_aliased(image: np.ndarray, output_shape: tuple[int, int],
                        anti_aliasing: bool | None = None) -> np.ndarray:
    """float32 [out_h, out_w]: ``image`` [H, W] resized as ``skimage.transform.resize(image,
    output_shape, order=1, anti_aliasing=..., preserve_range=True)`` resizes it (default
    anti_aliasing: when either side shrinks, as skimage's)."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"resize_anti_aliased: needs a 2-D image, got shape {image.shape}")
    out_h, out_w = (int(v) for v in output_shape)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"resize_anti_aliased: output shape {output_shape} must be positive")
    if anti_aliasing is None:
        anti_aliasing = out_h < image.shape[0] or out_w < image.shape[1]
    rows = axis_matrix(image.shape[0], out_h, anti_aliasing)
    cols = axis_matrix(image.shape[1], out_w, anti_aliasing)
    # The rows first: the large image is read once, by the sparse product.
    out = (cols @ (rows @ image.astype(np.float32, copy=False)).T).T
    # skimage clips to the input's range (preserve_range); the weights are convex, so only
    # rounding can leave it.
    return np.clip(out, image.min(), image.max()).astype(np.float32)
