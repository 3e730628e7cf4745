"""Checks of evaluation inputs: boxes, score vectors, class ids and binary masks become numpy
arrays of one dtype and shape, or raise a ValueError that names the argument.

The instance matching and AP (``mrcnn.average_precision``) check their inputs with these, and so
do ftmtl's FROC and Dice (``ftmtl.metrics``), so the same input fails the same way everywhere.
Boxes are pixel boxes ``(y1, x1, y2, x2)``; masks are bool ``[H, W]`` or ``[H, W, N]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_boxes(boxes: np.ndarray | Sequence, name: str) -> np.ndarray:
    """Boxes as float64 ``[N, 4]``; an empty input gives ``[0, 4]``."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"metrics: {name} must have shape [N, 4], got {array.shape}")
    return array


def check_vector(
    values: np.ndarray | Sequence, name: str, length: int | None = None
) -> np.ndarray:
    """Values (scores) as a float64 vector, of ``length`` entries when given; NaN is refused."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if length is not None and array.shape[0] != length:
        raise ValueError(f"metrics: {name} has {array.shape[0]} entries, expected {length}")
    if np.isnan(array).any():
        raise ValueError(f"metrics: {name} contains NaN")
    return array


def check_binary(masks: np.ndarray, name: str) -> np.ndarray:
    """Bool masks; 0/1 numbers are accepted, soft masks (probabilities) are refused."""
    array = np.asarray(masks)
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        raise ValueError(f"metrics: {name} must be binary (bool or 0/1); threshold it first")
    return array.astype(bool)


def check_mask_stack(
    masks: np.ndarray | None, name: str, count: int | None = None
) -> np.ndarray:
    """Binary masks (``check_binary``) as bool ``[H, W, N]``, N = ``count`` when given; None is
    refused."""
    if masks is None:
        raise ValueError(f"metrics: {name} is required (masks are compared)")
    array = check_binary(masks, name)
    if array.ndim != 3 or (count is not None and array.shape[-1] != count):
        expected = "[H, W, N]" if count is None else f"[H, W, {count}]"
        raise ValueError(f"metrics: {name} must have shape {expected}, got {array.shape}")
    return array


def check_class_ids(values: np.ndarray | Sequence, name: str, length: int) -> np.ndarray:
    """Class ids as int64 ``[length]``."""
    array = np.asarray(values).reshape(-1)
    if array.shape[0] != length:
        raise ValueError(f"metrics: {name} has {array.shape[0]} entries, expected {length}")
    return array.astype(np.int64)

