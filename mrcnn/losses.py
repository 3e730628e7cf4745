"""Training losses of Mask R-CNN (RPN and heads), as pure TensorFlow functions.

Every loss is a weighted mean ``sum(w * l) / max(sum(w), 1)`` rather than a mean over a
``boolean_mask``: the result is exactly 0 (never NaN) when nothing counts, shapes stay static
(XLA can compile it) and mixed-precision inputs are cast to float32 first.
"""

from __future__ import annotations

import tensorflow as tf

# Probabilities are clipped to [EPS, 1 - EPS] before the logarithm of the mask loss.
MASK_PROB_EPSILON = 1e-7


def _float(x: tf.Tensor) -> tf.Tensor:
    return tf.cast(x, tf.float32)


def _weighted_mean(values: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Mean of ``values`` where ``weights`` (same shape, 0/1) is set; 0 when none is.

    ``where`` rather than a product, so a non-finite value in a row that does not count
    (e.g. a padding row) cannot turn the sum into NaN.
    """
    total = tf.reduce_sum(tf.where(weights > 0, values, tf.zeros_like(values)))
    count = tf.reduce_sum(weights)
    return total / tf.maximum(count, 1.0)


def smooth_l1(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Elementwise smooth-L1 (Huber with beta 1): quadratic near 0, linear beyond |x| = 1."""
    diff = tf.abs(_float(y_true) - _float(y_pred))
    return tf.where(diff < 1.0, 0.5 * tf.square(diff), diff - 0.5)


def rpn_class_loss(rpn_match: tf.Tensor, rpn_class_logits: tf.Tensor) -> tf.Tensor:
    """Objectness cross-entropy over the sampled (positive or negative) anchors.

    rpn_match: [B, A] int, 1 positive, -1 negative, 0 neutral. rpn_class_logits: [B, A, 2].
    """
    rpn_match = tf.cast(rpn_match, tf.int32)
    labels = tf.cast(tf.equal(rpn_match, 1), tf.int32)
    sampled = _float(tf.not_equal(rpn_match, 0))
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=_float(rpn_class_logits)
    )
    return _weighted_mean(xent, sampled)


def rpn_bbox_loss(
    target_bbox: tf.Tensor, rpn_match: tf.Tensor, rpn_bbox: tf.Tensor
) -> tf.Tensor:
    """Smooth-L1 of the positive anchors' deltas.

    The input pipeline writes the targets of an image's positive anchors, in anchor order, into
    the first rows of ``target_bbox`` [B, T, 4]; the k-th positive anchor of an image (by anchor
    index) is therefore paired with row k. Positives beyond T (none when the targets come from
    ``build_rpn_targets``) have no target and are ignored.
    rpn_match: [B, A]; rpn_bbox: [B, A, 4] predicted deltas.
    """
    target_bbox = _float(target_bbox)
    positive = tf.equal(tf.cast(rpn_match, tf.int32), 1)
    num_rows = tf.shape(target_bbox)[1]
    # Row of each anchor's target: the number of positives before it in its image.
    row = tf.cumsum(tf.cast(positive, tf.int32), axis=1, exclusive=True)
    has_target = tf.logical_and(positive, row < num_rows)
    row = tf.minimum(row, num_rows - 1)
    targets = tf.gather(target_bbox, row, axis=1, batch_dims=1)  # [B, A, 4]
    per_element = smooth_l1(targets, rpn_bbox)
    weights = tf.broadcast_to(_float(has_target)[..., tf.newaxis], tf.shape(per_element))
    return _weighted_mean(per_element, weights)


def mrcnn_class_loss(
    target_class_ids: tf.Tensor, pred_class_logits: tf.Tensor, valid: tf.Tensor
) -> tf.Tensor:
    """Classifier cross-entropy over the real sampled ROIs (padding rows do not count).

    target_class_ids: [B, T]; pred_class_logits: [B, T, C]; valid: [B, T] bool or 0/1.
    """
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(target_class_ids, tf.int32), logits=_float(pred_class_logits)
    )
    return _weighted_mean(xent, _float(tf.cast(valid, tf.bool)))


def _class_rows(values: tf.Tensor, class_ids: tf.Tensor, axis: int) -> tf.Tensor:
    """Pick, per ROI, the entry of ``values`` along ``axis`` (batch dims [B, T] first) that
    belongs to its class; with a single entry (class-agnostic) entry 0 is used for all."""
    num = tf.shape(values)[axis]
    index = tf.clip_by_value(class_ids, 0, num - 1)
    return tf.gather(values, index, axis=axis, batch_dims=2)


def mrcnn_bbox_loss(
    target_deltas: tf.Tensor, target_class_ids: tf.Tensor, pred_deltas: tf.Tensor
) -> tf.Tensor:
    """Smooth-L1 of the box refinement of positive ROIs (class id > 0).

    target_deltas: [B, T, 4]; target_class_ids: [B, T]; pred_deltas: [B, T, K, 4] with
    K = NUM_CLASSES (class-specific: the target class's row) or K = 1 (class-agnostic).
    """
    class_ids = tf.cast(target_class_ids, tf.int32)
    pred = _class_rows(_float(pred_deltas), class_ids, axis=2)  # [B, T, 4]
    per_element = smooth_l1(target_deltas, pred)
    positive = _float(class_ids > 0)[..., tf.newaxis]
    weights = tf.broadcast_to(positive, tf.shape(per_element))
    return _weighted_mean(per_element, weights)


def mrcnn_mask_loss(
    target_masks: tf.Tensor, target_class_ids: tf.Tensor, pred_masks: tf.Tensor
) -> tf.Tensor:
    """Mean per-pixel binary cross-entropy of the target class's mask over positive ROIs.

    target_masks: [B, T, h, w] in {0, 1}; target_class_ids: [B, T];
    pred_masks: [B, T, h, w, C] sigmoid probabilities, channel c is class c's mask.
    """
    class_ids = tf.cast(target_class_ids, tf.int32)
    per_class = tf.transpose(_float(pred_masks), [0, 1, 4, 2, 3])  # [B, T, C, h, w]
    prob = _class_rows(per_class, class_ids, axis=2)  # [B, T, h, w]
    prob = tf.clip_by_value(prob, MASK_PROB_EPSILON, 1.0 - MASK_PROB_EPSILON)
    target = _float(target_masks)
    bce = -(target * tf.math.log(prob) + (1.0 - target) * tf.math.log(1.0 - prob))
    positive = _float(class_ids > 0)[:, :, tf.newaxis, tf.newaxis]
    weights = tf.broadcast_to(positive, tf.shape(bce))
    return _weighted_mean(bce, weights)
