"""Breast crop, resizing and intensity window, with the record of the geometry.

A ``Transform`` remembers the crop and scale so that boxes and masks found on the prepared
image can be taken back to the original DICOM pixels (evaluation is at full resolution).
Boxes follow DESIGN.md: (y1, x1, y2, x2) continuous pixel coordinates, y2/x2 exclusive.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
import skimage.filters
import skimage.transform

from ftmtl.inbreast.intensity import (
    DEFAULT_WINDOW,
    VoiFunction,
    apply_window,
    check_window,
    full_range,
)
from mrcnn.resample import linear_taps, resize_anti_aliased

logger = logging.getLogger(__name__)

_WORKING_SIZE = 512  # the breast is found on an image subsampled to about this size


@dataclass(frozen=True)
class Transform:
    """Geometry from original DICOM pixels to the prepared image: crop, then scale."""

    original_shape: tuple[int, int]
    crop: tuple[int, int, int, int]  # (y1, x1, y2, x2) in original pixels
    output_shape: tuple[int, int]

    @property
    def offset(self) -> tuple[int, int]:
        return self.crop[0], self.crop[1]

    @property
    def scale(self) -> tuple[float, float]:
        """(sy, sx): prepared pixels per original pixel."""
        y1, x1, y2, x2 = self.crop
        return self.output_shape[0] / (y2 - y1), self.output_shape[1] / (x2 - x1)

    def to_model(self, boxes: np.ndarray) -> np.ndarray:
        """Original-pixel boxes [N, 4] -> prepared-image boxes (float64)."""
        return (_as_boxes(boxes) - self._shift()) * self._factors()

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Prepared-image boxes [N, 4] -> original-pixel boxes (float64)."""
        return _as_boxes(boxes) / self._factors() + self._shift()

    def mask_to_original(self, mask: np.ndarray) -> np.ndarray:
        """Paste a prepared-image mask [h, w] or [h, w, N] back into original pixels: each
        resized to the crop as ``_resize_masks`` resizes (all at once where the crop is at
        least as tall as the prepared image, a mammogram's case)."""
        mask = np.asarray(mask, dtype=bool)
        stack = mask[..., None] if mask.ndim == 2 else mask
        y1, x1, y2, x2 = self.crop
        if self._enlarges(stack.shape[:2]):
            full = _paste_enlarged(stack, self)
        else:
            full = np.zeros(tuple(self.original_shape) + stack.shape[2:], dtype=bool)
            full[y1:y2, x1:x2] = _resize_masks(stack, (y2 - y1, x2 - x1))
        return full[..., 0] if mask.ndim == 2 else full

    def mask_windows(self, mask: np.ndarray) -> np.ndarray | None:
        """Per prepared mask of bool [h, w, N]: a window (y1, x1, y2, x2), int64 original
        pixels, that holds every pixel ``mask_to_original`` sets; (0, 0, 0, 0) for an empty
        mask. Found from the prepared masks alone, so that the writers of full-size masks need
        not search 13 million pixels a mask: an original pixel reads the prepared pixels of its
        two row and two column taps and stays clear where none of them is set. None when the
        crop is shorter than the prepared image (that resize smooths further; search instead).
        """
        stack = np.asarray(mask, dtype=bool)
        stack = stack[..., None] if stack.ndim == 2 else stack
        height, width, count = stack.shape
        y1, x1, y2, x2 = self.crop
        if not self._enlarges((height, width)):
            return None
        windows = np.zeros((count, 4), dtype=np.int64)
        # Set pixels a row [h, N] and a column [w, N]: the rows and columns each mask reaches.
        counts = stack.sum(axis=1), stack.sum(axis=0)
        spans = []
        for occupied, size, crop_size in ((counts[0] > 0, height, y2 - y1),
                                          (counts[1] > 0, width, x2 - x1)):
            first, second = linear_taps(np.arange(crop_size), size / crop_size, size,
                                        mirror=True)[:2]
            reads = occupied[first] | occupied[second]  # [crop_size, N]
            spans.append((reads.any(axis=0), np.argmax(reads, axis=0),
                          crop_size - np.argmax(reads[::-1], axis=0)))
        # A mask the paste would erase keeps its centre pixel instead: inside the window too.
        present = np.flatnonzero(counts[0].any(axis=0))
        if present.size:
            centres = _scaled_centres(counts[0][:, present], counts[1][:, present],
                                      (y2 - y1, x2 - x1))
            for (has, low, high), centre in zip(spans, centres, strict=True):
                reached = has[present]
                low[present] = np.where(reached, np.minimum(low[present], centre), centre)
                high[present] = np.where(reached, np.maximum(high[present], centre + 1),
                                         centre + 1)
        (_, top, bottom), (_, left, right) = spans
        windows[present] = np.stack([y1 + top, x1 + left, y1 + bottom, x1 + right],
                                    axis=1)[present]
        return windows

    def _enlarges(self, shape: tuple[int, int]) -> bool:
        """Whether masks of ``shape`` go back by ``_paste_enlarged``: the crop is at least as
        tall as them and not the same size."""
        y1, x1, y2, x2 = self.crop
        return y2 - y1 >= shape[0] and (y2 - y1, x2 - x1) != tuple(shape)

    def _shift(self) -> np.ndarray:
        oy, ox = self.offset
        return np.array([oy, ox, oy, ox], dtype=np.float64)

    def _factors(self) -> np.ndarray:
        sy, sx = self.scale
        return np.array([sy, sx, sy, sx], dtype=np.float64)


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def breast_bbox(image: np.ndarray, margin: float = 0.01) -> tuple[int, int, int, int]:
    """Box (y1, x1, y2, x2) of the breast: threshold, largest connected component, margin.

    The threshold is the lower of Otsu's and 10% of the robust intensity range, so the dim skin
    line stays in. ``margin`` is a fraction of the image size added on every side.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    step = max(1, math.ceil(max(height, width) / _WORKING_SIZE))
    small = image[::step, ::step].astype(np.float32)  # only these pixels are read
    low, high = float(small.min()), float(np.percentile(small, 99.5))
    if high <= low:
        logger.warning("breast_bbox: the image is uniform; keeping the whole image")
        return 0, 0, height, width
    threshold = min(float(skimage.filters.threshold_otsu(small)), low + 0.1 * (high - low))
    labels, count = ndi.label(small > threshold, structure=np.ones((3, 3)))
    if count == 0:
        logger.warning("breast_bbox: no foreground found; keeping the whole image")
        return 0, 0, height, width
    sizes = np.bincount(labels.ravel())[1:]
    rows, cols = np.nonzero(labels == 1 + int(np.argmax(sizes)))
    pad_y = step + math.ceil(margin * height)
    pad_x = step + math.ceil(margin * width)
    return (
        max(0, int(rows.min()) * step - pad_y),
        max(0, int(cols.min()) * step - pad_x),
        min(height, (int(rows.max()) + 1) * step + pad_y),
        min(width, (int(cols.max()) + 1) * step + pad_x),
    )


def normalise_14bit(image: np.ndarray, bits_stored: int = 14) -> np.ndarray:
    """Stored values -> float32 in [0, 1], dividing by the largest value ``bits_stored`` holds
    (the ``"full_range"`` window of ``ftmtl.inbreast.intensity``)."""
    return full_range(image, bits_stored)


def prepare_image(
    pixels: np.ndarray,
    masks: np.ndarray | None,
    bits_stored: int,
    target_size: int | None = None,
    window: str = DEFAULT_WINDOW,
    voi: VoiFunction | None = None,
) -> tuple[np.ndarray, np.ndarray, Transform]:
    """Crop to the breast, optionally resize so the long side is target_size, then map the
    intensities to [0, 1] through ``window`` (``ftmtl.inbreast.intensity``; ``voi`` is the
    file's own window for ``"dicom"``).

    The window is read on the resized image, so an exported model that takes resized stored
    values computes the same one. The crop always keeps every mask whole. Returns (image
    float32 [h, w], masks bool [h, w, N], Transform). A mass that resizing would erase keeps
    the pixel at its centre.
    """
    check_window(window, "prepare_image: window")
    pixels = np.asarray(pixels)
    height, width = pixels.shape[:2]
    if masks is None:
        masks = np.zeros((height, width, 0), dtype=bool)
    masks = np.asarray(masks, dtype=bool)
    if masks.shape[:2] != (height, width):
        raise ValueError(f"prepare_image: masks {masks.shape[:2]} differ from image "
                         f"{(height, width)}")
    y1, x1, y2, x2 = _union_with_masks(breast_bbox(pixels), masks)
    image = pixels[y1:y2, x1:x2].astype(np.float32)
    cropped_masks = masks[y1:y2, x1:x2]
    output_shape = _output_shape((y2 - y1, x2 - x1), target_size)
    if output_shape != image.shape:
        # skimage.transform.resize's result (order 1, anti-aliased when shrinking), computed
        # only where it is sampled (mrcnn.resample).
        image = resize_anti_aliased(image, output_shape,
                                    anti_aliasing=output_shape[0] < image.shape[0])
        cropped_masks = _resize_masks(cropped_masks, output_shape)
    image = apply_window(image, window, bits_stored, voi)
    transform = Transform((height, width), (int(y1), int(x1), int(y2), int(x2)), output_shape)
    return image, cropped_masks, transform


def _union_with_masks(
    box: tuple[int, int, int, int], masks: np.ndarray
) -> tuple[int, int, int, int]:
    if masks.size == 0 or not masks.any():
        return box
    rows = np.nonzero(masks.any(axis=(1, 2)))[0]
    cols = np.nonzero(masks.any(axis=(0, 2)))[0]
    return (min(box[0], int(rows[0])), min(box[1], int(cols[0])),
            max(box[2], int(rows[-1]) + 1), max(box[3], int(cols[-1]) + 1))


def _output_shape(shape: tuple[int, int], target_size: int | None) -> tuple[int, int]:
    if target_size is None:
        return int(shape[0]), int(shape[1])
    if target_size < 1:
        raise ValueError(f"prepare_image: target_size must be positive, got {target_size}")
    scale = target_size / max(shape)
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _resize_masks(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize bool [h, w, N] masks (linear, threshold 0.5); no non-empty mask comes out empty."""
    if masks.shape[:2] == tuple(shape):
        return masks.astype(bool)
    out = np.zeros(tuple(shape) + masks.shape[2:], dtype=bool)
    shrink = shape[0] < masks.shape[0]
    for n in range(masks.shape[2]):
        resized = skimage.transform.resize(
            masks[..., n].astype(np.float32), shape, order=1, anti_aliasing=shrink,
        ) >= 0.5
        if not resized.any() and masks[..., n].any():
            rows, cols = np.nonzero(masks[..., n])
            row = min(shape[0] - 1, int((rows.mean() + 0.5) * shape[0] / masks.shape[0]))
            col = min(shape[1] - 1, int((cols.mean() + 0.5) * shape[1] / masks.shape[1]))
            resized[row, col] = True
        out[..., n] = resized
    return out


# Output pixels ``_paste_enlarged`` handles at a time (its temporaries: ~100 bytes each).
_PASTE_PIXELS_PER_GROUP = 1 << 20


def _paste_enlarged(masks: np.ndarray, transform: Transform) -> np.ndarray:
    """``_resize_masks`` of bool [h, w, N] masks to a crop at least as tall, placed in the
    original image: the same bool [H, W, N], without resizing each mask over the whole crop.

    Resizing every mask to the crop (linear, mirrored edges, threshold 0.5) is ten million
    pixels a detection on a full-size mammogram, most of ``inbreast detect``'s host time once
    (benchmarks/bench_detect_host.py). An output pixel reads the four prepared pixels of its
    cell, so only the output pixels of cells with a set corner are visited, all masks at once.
    Cells with the same number of output rows and columns (a handful of sizes) are taken
    together as [cells, rows, columns] grids: set outright where all four corners are set,
    given skimage's own interpolated value (``mrcnn.resample.linear_taps``) elsewhere. As
    ``_resize_masks``, a mask the resize would erase keeps its centre pixel.

    The stack is laid out mask by mask ([N, H, W] in memory, returned as its [H, W, N] view):
    each mask's pixels lie together, so pasting touches only the memory of its rows, and the
    writers that read a mask at a time (RLE, overlay) read contiguous memory.
    """
    height, width, count = masks.shape
    top, left, bottom, right = transform.crop
    full_h, full_w = transform.original_shape
    rows = linear_taps(np.arange(bottom - top), height / (bottom - top), height, mirror=True)
    cols = linear_taps(np.arange(right - left), width / (right - left), width, mirror=True)
    row_from, row_count = _outputs_under(rows[0], height)
    col_from, col_count = _outputs_under(cols[0], width)
    # A cell: a prepared pixel and the three that follow it (mirrored at the far edges), its
    # corners as four bits in scipy's order of the sum.
    below = _following(masks, 0)
    code = masks.view(np.uint8) | (_following(masks, 1).view(np.uint8) << 1)
    code |= below.view(np.uint8) << 2
    code |= _following(below, 1).view(np.uint8) << 3
    cells = np.flatnonzero(code)
    corners = code.ravel()[cells]
    cell_y, cell_x, cell_n = np.unravel_index(cells, code.shape)
    tall, wide = row_count[cell_y], col_count[cell_x]
    # Cells of one grid size and kind (every corner set or not) go together, in groups of a
    # bounded number of output pixels.
    kind = (tall * (int(col_count.max()) + 1) + wide) * 2 + (corners == 15)
    full = np.zeros((count, full_h, full_w), dtype=bool)
    flat = full.reshape(-1)
    shown = np.zeros(count, dtype=bool)
    for key in np.unique(kind[(tall > 0) & (wide > 0)]):
        same = np.flatnonzero(kind == key)
        grid = (int(tall[same[0]]), int(wide[same[0]]))
        groups = 1 + len(same) * grid[0] * grid[1] // _PASTE_PIXELS_PER_GROUP
        for group in np.array_split(same, groups):
            y = row_from[cell_y[group]][:, None] + np.arange(grid[0])  # [cells, rows]
            x = col_from[cell_x[group]][:, None] + np.arange(grid[1])  # [cells, columns]
            if key % 2:
                inside = np.ones((len(group),) + grid, dtype=bool)
            else:
                inside = _interpolated(corners[group], rows, cols, y, x) >= 0.5
            cell, dy, dx = np.nonzero(inside)
            n = cell_n[group][cell]
            flat[(n * full_h + top + y[cell, dy]) * full_w + left + x[cell, dx]] = True
            shown[n] = True
    present = np.zeros(count, dtype=bool)
    present[cell_n[(corners & 1) > 0]] = True
    lost = np.flatnonzero(present & ~shown)
    if lost.size:  # as _resize_masks: the pixel at the mask's centre, scaled
        kept = masks[..., lost]
        row, col = _scaled_centres(kept.sum(axis=1), kept.sum(axis=0),
                                   (bottom - top, right - left))
        full[lost, top + row, left + col] = True
    return full.transpose(1, 2, 0)


def _following(masks: np.ndarray, axis: int) -> np.ndarray:
    """Each pixel's next one along ``axis``, the last reading the one before it (mirror):
    the second tap ``linear_taps`` gives every pixel that is a first tap."""
    size = masks.shape[axis]
    shifted = np.roll(masks, -1, axis=axis)
    last = [slice(None)] * masks.ndim
    before = list(last)
    last[axis], before[axis] = size - 1, max(size - 2, 0)
    shifted[tuple(last)] = masks[tuple(before)]
    return shifted


def _outputs_under(first_taps: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(first output, number of outputs) whose first tap is each of ``size`` source pixels:
    the output rows (columns) under a cell. The taps never decrease."""
    positions = np.arange(size)
    start = np.searchsorted(first_taps, positions)
    return start, np.searchsorted(first_taps, positions, side="right") - start


def _interpolated(corners: np.ndarray, rows: tuple, cols: tuple, y: np.ndarray,
                  x: np.ndarray) -> np.ndarray:
    """skimage's linear value (float32) at output rows ``y`` [cells, r] x columns ``x``
    [cells, c] of cells whose set corners are the bits of ``corners`` [cells]: the sum term
    by term in scipy's order, so that it thresholds exactly as skimage's does."""
    bits = corners[:, None, None]
    wy0, wy1 = rows[2][y][:, :, None], rows[3][y][:, :, None]
    wx0, wx1 = cols[2][x][:, None, :], cols[3][x][:, None, :]
    value = np.where(bits & 1, wy0 * wx0, 0.0)
    value += np.where(bits & 2, wy0 * wx1, 0.0)
    value += np.where(bits & 4, wy1 * wx0, 0.0)
    value += np.where(bits & 8, wy1 * wx1, 0.0)
    return value.astype(np.float32)


def _scaled_centres(row_counts: np.ndarray, col_counts: np.ndarray, shape: tuple[int, int]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) in an image of ``shape`` of the centres of non-empty masks, given by
    their set pixels a row [h, K] and a column [w, K], resized to it: where
    ``_resize_masks`` puts a mask the resize would erase."""
    height, width = row_counts.shape[0], col_counts.shape[0]
    area = row_counts.sum(axis=0)
    mean_row = (row_counts * np.arange(height)[:, None]).sum(axis=0) / area
    mean_col = (col_counts * np.arange(width)[:, None]).sum(axis=0) / area
    row = np.minimum(shape[0] - 1, ((mean_row + 0.5) * shape[0] / height).astype(np.int64))
    col = np.minimum(shape[1] - 1, ((mean_col + 0.5) * shape[1] / width).astype(np.int64))
    return row, col
