"""Box maths shared by the whole network: IoU, delta encoding, clipping, NMS.

Boxes are ``(y1, x1, y2, x2)`` with ``y2``/``x2`` exclusive (see docs/DESIGN.md): a box's size is
``y2 - y1`` by ``x2 - x1`` and a box of zero area is never real (an all-zero row is padding).
Every function exists in numpy (input pipeline, evaluation) and, prefixed ``tf_``, in TensorFlow
(graph-compatible, float32) for the layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

# ------------------------------------------------------------------------------------- numpy


def _areas(boxes: np.ndarray) -> np.ndarray:
    """Areas of [N, 4] boxes; inverted boxes count as empty rather than negative."""
    heights = np.maximum(boxes[:, 2] - boxes[:, 0], 0.0)
    widths = np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    return heights * widths


def as_box_array(boxes: np.ndarray | Sequence, name: str, dtype=np.float64) -> np.ndarray:
    """``boxes`` as an [N, 4] array of ``dtype`` (empty input -> [0, 4]); a ValueError naming
    ``name`` otherwise."""
    array = np.asarray(boxes, dtype=dtype)
    if array.size == 0:
        array = array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4], got {array.shape}")
    return array


def compute_overlaps(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU matrix [N1, N2]; pairs whose union is empty (zero-area boxes) get 0, never NaN."""
    boxes1 = as_box_array(boxes1, "box_ops: boxes1")
    boxes2 = as_box_array(boxes2, "box_ops: boxes2")
    top = np.maximum(boxes1[:, None, 0], boxes2[None, :, 0])
    left = np.maximum(boxes1[:, None, 1], boxes2[None, :, 1])
    bottom = np.minimum(boxes1[:, None, 2], boxes2[None, :, 2])
    right = np.minimum(boxes1[:, None, 3], boxes2[None, :, 3])
    intersection = np.maximum(bottom - top, 0.0) * np.maximum(right - left, 0.0)
    union = _areas(boxes1)[:, None] + _areas(boxes2)[None, :] - intersection
    overlaps = np.zeros_like(intersection)
    np.divide(intersection, union, out=overlaps, where=union > 0)
    return overlaps


def compute_overlaps_masks(masks1: np.ndarray, masks2: np.ndarray) -> np.ndarray:
    """Mask IoU matrix [N, M] of masks [H, W, N] and [H, W, M]; empty unions give 0."""
    masks1 = np.asarray(masks1)
    masks2 = np.asarray(masks2)
    if masks1.ndim != 3 or masks2.ndim != 3 or masks1.shape[:2] != masks2.shape[:2]:
        raise ValueError(
            f"box_ops.compute_overlaps_masks: masks must be [H, W, N] of one size, got "
            f"{masks1.shape} and {masks2.shape}"
        )
    pixels = masks1.shape[0] * masks1.shape[1]
    flat1 = (masks1.reshape(pixels, masks1.shape[-1]) > 0.5).astype(np.float64)
    flat2 = (masks2.reshape(pixels, masks2.shape[-1]) > 0.5).astype(np.float64)
    intersection = flat1.T @ flat2
    union = flat1.sum(axis=0)[:, None] + flat2.sum(axis=0)[None, :] - intersection
    overlaps = np.zeros_like(intersection)
    np.divide(intersection, union, out=overlaps, where=union > 0)
    return overlaps


def _centres_sizes(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * height, boxes[:, 1] + 0.5 * width, height, width


def box_refinement(boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """Deltas (dy, dx, log dh, log dw) [N, 4] that move each box onto its target (encode)."""
    boxes = as_box_array(boxes, "box_ops: boxes")
    gt_boxes = as_box_array(gt_boxes, "box_ops: gt_boxes")
    y, x, h, w = _centres_sizes(boxes)
    gy, gx, gh, gw = _centres_sizes(gt_boxes)
    deltas = np.stack([(gy - y) / h, (gx - x) / w, np.log(gh / h), np.log(gw / w)], axis=1)
    return deltas.astype(np.float32)


def apply_box_deltas(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Boxes [N, 4] moved by deltas [N, 4] (decode; the inverse of box_refinement)."""
    boxes = as_box_array(boxes, "box_ops: boxes")
    deltas = as_box_array(deltas, "box_ops: deltas")
    y, x, h, w = _centres_sizes(boxes)
    y = y + deltas[:, 0] * h
    x = x + deltas[:, 1] * w
    h = h * np.exp(deltas[:, 2])
    w = w * np.exp(deltas[:, 3])
    moved = np.stack([y - 0.5 * h, x - 0.5 * w, y + 0.5 * h, x + 0.5 * w], axis=1)
    return moved.astype(np.float32)


def _scale_for(shape: Sequence[int]) -> np.ndarray:
    if len(shape) not in (2, 3):
        raise ValueError(f"box_ops: shape must be (H, W) or (H, W, C), got {tuple(shape)}")
    height, width = shape[0], shape[1]
    return np.array([height, width, height, width], dtype=np.float32)


def norm_boxes(boxes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Pixel boxes to normalised ones: divide by (H, W, H, W) of the model input."""
    return (np.asarray(boxes, dtype=np.float32) / _scale_for(shape)).astype(np.float32)


def denorm_boxes(boxes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Normalised boxes back to pixel boxes (float; round where integers are needed)."""
    return (np.asarray(boxes, dtype=np.float32) * _scale_for(shape)).astype(np.float32)


def extract_bboxes(masks: np.ndarray, windows: np.ndarray | None = None) -> np.ndarray:
    """Tight boxes [N, 4] int32 of masks [H, W, N]; y2/x2 exclusive; an empty mask gives zeros.

    ``windows`` [N, 4] (y1, x1, y2, x2), each known to hold all of its mask's set pixels, limit
    the search to them: on full-size mammograms a mask covers a thousandth of the image."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"box_ops.extract_bboxes: masks must be [H, W, N], got {masks.shape}")
    boxes = np.zeros((masks.shape[-1], 4), dtype=np.int32)
    if windows is not None:
        for i, (y1, x1, y2, x2) in enumerate(np.asarray(windows, dtype=np.int64).reshape(-1, 4)):
            inside = masks[y1:y2, x1:x2, i]
            rows = np.flatnonzero(inside.any(axis=1))
            if rows.size:
                cols = np.flatnonzero(inside.any(axis=0))
                boxes[i] = (y1 + rows[0], x1 + cols[0], y1 + rows[-1] + 1, x1 + cols[-1] + 1)
        return boxes
    rows_hit = np.any(masks, axis=1)  # [H, N]
    cols_hit = np.any(masks, axis=0)  # [W, N]
    for i in range(masks.shape[-1]):
        rows = np.flatnonzero(rows_hit[:, i])
        cols = np.flatnonzero(cols_hit[:, i])
        if rows.size:
            boxes[i] = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    return boxes


def clip_boxes(boxes: np.ndarray, window: Sequence[float]) -> np.ndarray:
    """Clip each coordinate of boxes [N, 4] into window (y1, x1, y2, x2)."""
    boxes = np.asarray(boxes)
    wy1, wx1, wy2, wx2 = (float(v) for v in window)
    low = np.array([wy1, wx1, wy1, wx1])
    high = np.array([wy2, wx2, wy2, wx2])
    return np.clip(boxes, low, high).astype(boxes.dtype, copy=False)


def non_max_suppression(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    max_output_size: int | None = None,
) -> np.ndarray:
    """Greedy NMS; indices int32 kept in descending score order (tf.image's semantics).

    A box is dropped when its IoU with an already kept box is strictly above the threshold.
    Equal scores keep the lower index first, as TensorFlow does.
    """
    boxes = as_box_array(boxes, "box_ops: boxes")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"box_ops.non_max_suppression: {boxes.shape[0]} boxes but {scores.shape[0]} scores"
        )
    limit = boxes.shape[0] if max_output_size is None else int(max_output_size)
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size and len(kept) < limit:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        ious = compute_overlaps(boxes[best : best + 1], boxes[rest])[0]
        order = rest[ious <= iou_threshold]
    return np.asarray(kept, dtype=np.int32)


# ---------------------------------------------------------------------------------------- TF


def tf_overlaps(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
    """IoU matrix [N1, N2] (float32); an empty union gives 0."""
    boxes1 = tf.cast(boxes1, tf.float32)
    boxes2 = tf.cast(boxes2, tf.float32)
    b1 = boxes1[:, None, :]
    b2 = boxes2[None, :, :]
    height = tf.maximum(tf.minimum(b1[..., 2], b2[..., 2]) - tf.maximum(b1[..., 0], b2[..., 0]), 0)
    width = tf.maximum(tf.minimum(b1[..., 3], b2[..., 3]) - tf.maximum(b1[..., 1], b2[..., 1]), 0)
    intersection = height * width
    union = _tf_areas(boxes1)[:, None] + _tf_areas(boxes2)[None, :] - intersection
    return tf.math.divide_no_nan(intersection, union)


def _tf_areas(boxes: tf.Tensor) -> tf.Tensor:
    return tf.maximum(boxes[:, 2] - boxes[:, 0], 0.0) * tf.maximum(boxes[:, 3] - boxes[:, 1], 0.0)


def _tf_centres_sizes(boxes: tf.Tensor) -> tuple[tf.Tensor, ...]:
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * height, boxes[..., 1] + 0.5 * width, height, width


def tf_box_refinement(boxes: tf.Tensor, gt_boxes: tf.Tensor) -> tf.Tensor:
    """Deltas [..., 4] from boxes to gt_boxes (encode), float32."""
    y, x, h, w = _tf_centres_sizes(tf.cast(boxes, tf.float32))
    gy, gx, gh, gw = _tf_centres_sizes(tf.cast(gt_boxes, tf.float32))
    return tf.stack(
        [(gy - y) / h, (gx - x) / w, tf.math.log(gh / h), tf.math.log(gw / w)], axis=-1
    )


def tf_apply_box_deltas(boxes: tf.Tensor, deltas: tf.Tensor) -> tf.Tensor:
    """Boxes [..., 4] moved by deltas [..., 4] (decode), float32."""
    deltas = tf.cast(deltas, tf.float32)
    y, x, h, w = _tf_centres_sizes(tf.cast(boxes, tf.float32))
    y = y + deltas[..., 0] * h
    x = x + deltas[..., 1] * w
    h = h * tf.exp(deltas[..., 2])
    w = w * tf.exp(deltas[..., 3])
    return tf.stack([y - 0.5 * h, x - 0.5 * w, y + 0.5 * h, x + 0.5 * w], axis=-1)


def tf_clip_boxes(boxes: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Clip boxes [..., 4] into window, a [4] tensor (y1, x1, y2, x2)."""
    boxes = tf.cast(boxes, tf.float32)
    window = tf.cast(window, tf.float32)
    low = tf.gather(window, [0, 1, 0, 1])
    high = tf.gather(window, [2, 3, 2, 3])
    return tf.minimum(tf.maximum(boxes, low), high)


def valid_boxes(boxes):
    """bool [...]: the rows of boxes [..., 4] (y1, x1, y2, x2) that are real boxes, with
    positive height and width. Padding rows (all zeros) and degenerate boxes are not. The one
    definition of padding everywhere: numpy arrays give a numpy mask, tensors a tensor."""
    return (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])


def tf_trim_zeros(boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Drop padding rows of [N, 4] (``valid_boxes``); returns (kept boxes, [N] bool mask of
    kept)."""
    valid = valid_boxes(boxes)
    return tf.boolean_mask(boxes, valid), valid


def tf_batched_nms(
    boxes: tf.Tensor,
    scores: tf.Tensor,
    class_ids: tf.Tensor,
    iou_threshold: float,
    max_output_size: int | tf.Tensor,
) -> tf.Tensor:
    """Per-class NMS in one call: indices [K] int32, descending score, K <= max_output_size.

    Each class is moved by ``class_id * (span + 1)``, where span is the extent of all
    coordinates, so boxes of different classes can never overlap and never suppress each other.
    """
    boxes = tf.cast(boxes, tf.float32)
    coordinates = tf.concat([tf.reshape(boxes, [-1]), [0.0]], axis=0)  # 0 keeps an empty input
    span = tf.reduce_max(coordinates) - tf.reduce_min(coordinates)
    offsets = tf.cast(class_ids, tf.float32) * (span + 1.0)
    keep = tf.image.non_max_suppression(
        boxes + offsets[:, None],
        tf.cast(scores, tf.float32),
        max_output_size=max_output_size,
        iou_threshold=iou_threshold,
    )
    return tf.cast(keep, tf.int32)
