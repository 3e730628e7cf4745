"""Training targets: RPN anchor labels (numpy, input pipeline) and ROI sampling (TF, graph).

``build_rpn_targets`` labels anchors as in Faster R-CNN (Ren et al. 2015): positive at IoU >= 0.7
or best for some GT box, negative below 0.3, balanced to RPN_TRAIN_ANCHORS_PER_IMAGE.
``DetectionTargetLayer`` samples TRAIN_ROIS_PER_IMAGE proposals per image as in Mask R-CNN
(He et al. 2017): positives at IoU >= 0.5 up to ROI_POSITIVE_RATIO, the rest negatives, with
their class, box-delta and mask targets. Conventions (boxes, deltas, padding) follow
docs/DESIGN.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from mrcnn import box_ops, roi_align
from mrcnn.detection import split_layer_config
from mrcnn.precision import Float32Layer

# Faster R-CNN anchor labelling thresholds.
RPN_POSITIVE_IOU = 0.7
RPN_NEGATIVE_IOU = 0.3
# A proposal is a positive ROI at IoU >= this with a GT box, else a negative.
ROI_POSITIVE_IOU = 0.5
# An anchor or proposal that touches a crowd box at least this much is never a negative.
CROWD_IOU = 0.001


# ----------------------------------------------------------------------------- RPN targets
def _non_crowd_anchors(anchors: np.ndarray, crowd_boxes: np.ndarray) -> np.ndarray:
    """Anchors that may be negatives: those that do not touch any crowd box."""
    if crowd_boxes.shape[0] == 0:
        return np.ones(anchors.shape[0], dtype=bool)
    return box_ops.compute_overlaps(anchors, crowd_boxes).max(axis=1) < CROWD_IOU


def _subsample(rpn_match: np.ndarray, label: int, keep: int, rng: np.random.Generator) -> None:
    """Set all but ``keep`` random anchors labelled ``label`` to neutral (in place)."""
    indices = np.flatnonzero(rpn_match == label)
    excess = indices.size - keep
    if excess > 0:
        rpn_match[rng.choice(indices, size=excess, replace=False)] = 0


def build_rpn_targets(
    anchors: np.ndarray,
    gt_class_ids: np.ndarray,
    gt_boxes: np.ndarray,
    config: Any,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """RPN labels and box targets of one image.

    anchors [A, 4] and gt_boxes [G, 4] are pixel boxes; gt_class_ids [G] with negative ids
    for crowd boxes. Returns rpn_match [A] int32 (1 positive, -1 negative, 0 neutral) and
    rpn_bbox [RPN_TRAIN_ANCHORS_PER_IMAGE, 4] float32: the positive anchors' deltas to their
    best GT, in anchor order, divided by RPN_BBOX_STD_DEV, zero padded. ``rng`` draws the
    subsample (a fresh unseeded generator when None).
    """
    rng = np.random.default_rng() if rng is None else rng
    anchors = box_ops.as_box_array(anchors, "targets.build_rpn_targets: anchors", np.float32)
    gt_boxes = box_ops.as_box_array(gt_boxes, "targets.build_rpn_targets: gt_boxes", np.float32)
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    if gt_class_ids.shape[0] != gt_boxes.shape[0]:
        raise ValueError(
            f"targets.build_rpn_targets: gt_class_ids has {gt_class_ids.shape[0]} entries but "
            f"gt_boxes has {gt_boxes.shape[0]} rows"
        )
    per_image = int(config.RPN_TRAIN_ANCHORS_PER_IMAGE)
    rpn_match = np.zeros(anchors.shape[0], dtype=np.int32)
    rpn_bbox = np.zeros((per_image, 4), dtype=np.float32)

    crowd = gt_class_ids < 0
    may_be_negative = _non_crowd_anchors(anchors, gt_boxes[crowd])
    gt_boxes = gt_boxes[~crowd]
    if gt_boxes.shape[0] == 0:
        rpn_match[may_be_negative] = -1
        _subsample(rpn_match, -1, per_image, rng)
        return rpn_match, rpn_bbox

    overlaps = box_ops.compute_overlaps(anchors, gt_boxes)  # [A, G]
    best_gt = overlaps.argmax(axis=1)
    best_iou = overlaps[np.arange(anchors.shape[0]), best_gt]
    rpn_match[(best_iou < RPN_NEGATIVE_IOU) & may_be_negative] = -1
    # Every GT box gets its best anchors (all ties), even below 0.7, unless it touches none.
    gt_best_iou = overlaps.max(axis=0)
    best_for_some_gt = ((overlaps == gt_best_iou) & (gt_best_iou > 0)).any(axis=1)
    rpn_match[best_for_some_gt | (best_iou >= RPN_POSITIVE_IOU)] = 1

    _subsample(rpn_match, 1, per_image // 2, rng)
    _subsample(rpn_match, -1, per_image - int(np.sum(rpn_match == 1)), rng)

    positives = np.flatnonzero(rpn_match == 1)
    deltas = box_ops.box_refinement(anchors[positives], gt_boxes[best_gt[positives]])
    rpn_bbox[: positives.size] = deltas / np.asarray(config.RPN_BBOX_STD_DEV, np.float32)
    return rpn_match, rpn_bbox


# ----------------------------------------------------------------------------- ROI sampling
def valid_roi_mask(rois: tf.Tensor) -> tf.Tensor:
    """bool [B, T]: the rows of rois [B, T, 4] that are real ROIs (non-zero area), not padding."""
    return box_ops.valid_boxes(tf.cast(rois, tf.float32))


def _best_match(overlaps: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per row of an IoU matrix [N, G]: the max IoU (0 when G is 0) and its column (-1 when
    the row overlaps nothing). A leading zero column keeps both defined for an empty G."""
    padded = tf.concat([tf.zeros([tf.shape(overlaps)[0], 1]), overlaps], axis=1)
    best = tf.argmax(padded, axis=1, output_type=tf.int32) - 1
    return tf.reduce_max(padded, axis=1), best


def _in_gt_frame(rois: tf.Tensor, gt_boxes: tf.Tensor) -> tf.Tensor:
    """ROIs expressed in the normalised frame of their GT box (where a mini mask lives)."""
    gy1, gx1, gy2, gx2 = tf.unstack(gt_boxes, axis=1)
    y1, x1, y2, x2 = tf.unstack(rois, axis=1)
    height = gy2 - gy1
    width = gx2 - gx1
    return tf.stack(
        [(y1 - gy1) / height, (x1 - gx1) / width, (y2 - gy1) / height, (x2 - gx1) / width],
        axis=1,
    )


def _in_padded_frame(boxes: tf.Tensor, mask_height: tf.Tensor, mask_width: tf.Tensor) -> tf.Tensor:
    """Normalised boxes of an h x w mask re-expressed for the mask padded by one cell a side."""
    scale = tf.stack([mask_height, mask_width, mask_height, mask_width])
    return (boxes * scale + 1.0) / (scale + 2.0)


def _mask_targets(
    rois: tf.Tensor, gt_index: tf.Tensor, gt_boxes: tf.Tensor, gt_masks: tf.Tensor, config: Any
) -> tf.Tensor:
    """[P, mH, mW] {0, 1} masks of the positive ROIs: their GT's mask cropped to the ROI.

    A GT mask is 0 outside the region it covers (a mini mask: outside its GT box), so the masks
    get a zero border before sampling: ROIAlign would otherwise repeat the border cells and
    grow each mini mask by one cell beyond its box.
    """
    masks = tf.transpose(tf.cast(gt_masks, tf.float32), [2, 0, 1])[..., tf.newaxis]
    boxes = rois
    if config.USE_MINI_MASK:
        boxes = _in_gt_frame(rois, tf.gather(gt_boxes, gt_index))
    shape = tf.cast(tf.shape(masks), tf.float32)
    boxes = _in_padded_frame(boxes, shape[1], shape[2])
    padded = tf.pad(masks, [[0, 0], [1, 1], [1, 1], [0, 0]])
    crops = roi_align.crop_and_resize_aligned(
        padded, boxes, gt_index, tuple(config.MASK_SHAPE), sampling_ratio=1
    )
    return tf.round(crops[..., 0])


def sample_rois(
    proposals: tf.Tensor,
    gt_class_ids: tf.Tensor,
    gt_boxes: tf.Tensor,
    gt_masks: tf.Tensor,
    config: Any,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Sample TRAIN_ROIS_PER_IMAGE ROIs of one image and build their head targets.

    proposals [N, 4] and gt_boxes [G, 4] normalised, zero padded; gt_class_ids [G] (negative:
    crowd); gt_masks [mh, mw, G] (mini masks when USE_MINI_MASK). Returns rois [T, 4],
    class ids [T] int32, deltas [T, 4] (/ BBOX_STD_DEV) and masks [T, mH, mW]: positives, then
    negatives, then zero padding.
    """
    rois_per_image = int(config.TRAIN_ROIS_PER_IMAGE)
    proposals = tf.cast(proposals, tf.float32)
    # Zero-area rows are padding (or degenerate boxes clipped to a border): never sampled.
    proposals = tf.boolean_mask(proposals, box_ops.valid_boxes(proposals))
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    gt_class_ids = tf.cast(gt_class_ids, tf.int32)
    crowd_boxes = tf.boolean_mask(gt_boxes, gt_class_ids < 0)
    # Padding rows (class 0, zero box) and degenerate boxes can match nothing: not instances.
    is_instance = tf.logical_and(gt_class_ids > 0, box_ops.valid_boxes(gt_boxes))
    gt_boxes = tf.boolean_mask(gt_boxes, is_instance)
    gt_class_ids = tf.boolean_mask(gt_class_ids, is_instance)
    gt_masks = tf.boolean_mask(gt_masks, is_instance, axis=2)
    if config.ADD_GT_TO_PROPOSALS:
        proposals = tf.concat([proposals, gt_boxes], axis=0)

    overlaps = box_ops.tf_overlaps(proposals, gt_boxes)  # [N, G]
    max_iou, best_gt = _best_match(overlaps)
    crowd_iou, _ = _best_match(box_ops.tf_overlaps(proposals, crowd_boxes))
    touches_crowd = crowd_iou >= CROWD_IOU
    is_positive = max_iou >= ROI_POSITIVE_IOU
    is_negative = tf.logical_and(max_iou < ROI_POSITIVE_IOU, tf.logical_not(touches_crowd))

    max_positives = int(rois_per_image * config.ROI_POSITIVE_RATIO)
    positive_ix = tf.random.shuffle(tf.where(is_positive)[:, 0])[:max_positives]
    num_positives = tf.shape(positive_ix)[0]
    negative_ix = tf.random.shuffle(tf.where(is_negative)[:, 0])[: rois_per_image - num_positives]
    positive_rois = tf.gather(proposals, positive_ix)
    negative_rois = tf.gather(proposals, negative_ix)

    gt_index = tf.gather(best_gt, positive_ix)
    matched_boxes = tf.gather(gt_boxes, gt_index)
    std_dev = tf.constant(np.asarray(config.BBOX_STD_DEV, np.float32))
    deltas = box_ops.tf_box_refinement(positive_rois, matched_boxes) / std_dev
    masks = _mask_targets(positive_rois, gt_index, gt_boxes, gt_masks, config)

    rois = tf.concat([positive_rois, negative_rois], axis=0)
    padding = rois_per_image - tf.shape(rois)[0]
    not_positive = padding + tf.shape(negative_rois)[0]
    mask_h, mask_w = (int(v) for v in config.MASK_SHAPE)
    rois = tf.reshape(tf.pad(rois, [[0, padding], [0, 0]]), [rois_per_image, 4])
    class_ids = tf.pad(tf.gather(gt_class_ids, gt_index), [[0, not_positive]])
    deltas = tf.pad(deltas, [[0, not_positive], [0, 0]])
    masks = tf.pad(masks, [[0, not_positive], [0, 0], [0, 0]])
    return (
        rois,
        tf.reshape(class_ids, [rois_per_image]),
        tf.reshape(deltas, [rois_per_image, 4]),
        tf.reshape(masks, [rois_per_image, mask_h, mask_w]),
    )


def target_settings(config: Any) -> dict[str, Any]:
    """The config values ``sample_rois`` reads, JSON-ready: what DetectionTargetLayer's
    ``get_config`` saves in a .keras file instead of the whole config."""
    return {
        "TRAIN_ROIS_PER_IMAGE": int(config.TRAIN_ROIS_PER_IMAGE),
        "ROI_POSITIVE_RATIO": float(config.ROI_POSITIVE_RATIO),
        "ADD_GT_TO_PROPOSALS": bool(config.ADD_GT_TO_PROPOSALS),
        "BBOX_STD_DEV": [float(v) for v in np.asarray(config.BBOX_STD_DEV).reshape(-1)],
        "MASK_SHAPE": [int(v) for v in config.MASK_SHAPE],
        "USE_MINI_MASK": bool(config.USE_MINI_MASK),
    }


class DetectionTargetLayer(Float32Layer):
    """Samples ROIs from the proposals and builds the head targets, image by image.

    Inputs: [proposals [B, N, 4], gt_class_ids [B, G], gt_boxes [B, G, 4], gt_masks
    [B, mh, mw, G]]. Outputs: [rois [B, T, 4], target_class_ids [B, T] int32, target_deltas
    [B, T, 4], target_masks [B, T, mH, mW]], all without gradient. Data-dependent shapes inside,
    so not XLA-compilable. Targets are computed in float32 whatever the model's policy.
    """

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.supports_jit = False

    def call(self, inputs: list[tf.Tensor]) -> list[tf.Tensor]:
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs
        # Masks arrive as uint8; oneDNN has no uint8 kernels here and logs an error line
        # ("supports DT_UINT8 only on platforms with AVX-512") before falling back.
        gt_masks = tf.cast(gt_masks, tf.float32)
        rois_per_image = int(self.config.TRAIN_ROIS_PER_IMAGE)
        mask_shape = tuple(int(v) for v in self.config.MASK_SHAPE)
        signature = (
            tf.TensorSpec([rois_per_image, 4], tf.float32),
            tf.TensorSpec([rois_per_image], tf.int32),
            tf.TensorSpec([rois_per_image, 4], tf.float32),
            tf.TensorSpec([rois_per_image, *mask_shape], tf.float32),
        )
        outputs = tf.map_fn(
            lambda per_image: sample_rois(*per_image, self.config),
            (proposals, gt_class_ids, gt_boxes, gt_masks),
            fn_output_signature=signature,
            # One image at a time: sample_rois draws from the random stream, and parallel
            # iterations would draw in scheduling order (not reproducible for a seed).
            parallel_iterations=1,
        )
        batch = proposals.shape[0]
        shaped = []
        for tensor, spec in zip(outputs, signature, strict=True):
            tensor = tf.stop_gradient(tensor)
            tensor.set_shape([batch, *spec.shape])
            shaped.append(tensor)
        return shaped

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(settings=target_settings(self.config))
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DetectionTargetLayer:
        settings, arguments = split_layer_config(config)
        return cls(settings, **arguments)
