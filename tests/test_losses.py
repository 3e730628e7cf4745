"""Losses against hand-worked numbers and numpy references written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from mrcnn import losses


def _np_smooth_l1(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 0.5 * x**2, x - 0.5)


def _np_log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _value(t: tf.Tensor) -> float:
    assert t.shape == ()
    assert t.dtype == tf.float32
    value = float(t.numpy())
    assert math.isfinite(value)
    return value


# ---------------------------------------------------------------------------------- smooth-L1
def test_smooth_l1_hand_values():
    y_true = tf.constant([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    y_pred = tf.constant([-2.0, -0.5, 0.0, 0.9, 1.0, 4.0])
    expected = [1.5, 0.125, 0.0, 0.405, 0.5, 2.5]
    np.testing.assert_allclose(losses.smooth_l1(y_true, y_pred).numpy(), expected, rtol=1e-6)


# ------------------------------------------------------------------------------------- RPN
def test_rpn_class_loss_hand_worked():
    # Positive with logits (0, 0): -log(1/2). Negative with logits (0, log 3): p(bg) = 1/4,
    # -log(1/4). Neutral anchor with any logits does not count. Mean: 1.5 log 2.
    rpn_match = tf.constant([[1, -1, 0]])
    logits = tf.constant([[[0.0, 0.0], [0.0, math.log(3.0)], [50.0, -50.0]]])
    assert _value(losses.rpn_class_loss(rpn_match, logits)) == pytest.approx(1.5 * math.log(2))


def test_rpn_class_loss_is_a_mean_over_all_sampled_anchors_of_the_batch():
    rng = np.random.default_rng(0)
    rpn_match = np.array([[1, 0, -1, -1, 0], [0, 0, 1, 0, 0]])
    logits = rng.normal(size=(2, 5, 2)).astype(np.float32)
    log_p = _np_log_softmax(logits)
    labels = (rpn_match == 1).astype(int)
    xent = -np.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
    expected = xent[rpn_match != 0].mean()
    got = _value(losses.rpn_class_loss(tf.constant(rpn_match), tf.constant(logits)))
    assert got == pytest.approx(expected, rel=1e-5)


def test_rpn_class_loss_zero_when_all_neutral_and_gradient_finite():
    logits = tf.Variable(tf.random.normal((2, 4, 2)))
    with tf.GradientTape() as tape:
        loss = losses.rpn_class_loss(tf.zeros((2, 4), tf.int32), logits)
    assert _value(loss) == 0.0
    grad = tape.gradient(loss, logits)
    assert np.all(np.isfinite(grad.numpy()))


def _np_rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    terms = []
    for b in range(rpn_match.shape[0]):
        positives = np.flatnonzero(rpn_match[b] == 1)
        for k, anchor in enumerate(positives):
            terms.append(_np_smooth_l1(target_bbox[b, k] - rpn_bbox[b, anchor]))
    return np.concatenate(terms).mean() if terms else 0.0


def test_rpn_bbox_loss_pairs_positives_in_anchor_order_with_target_rows():
    rng = np.random.default_rng(1)
    rpn_match = np.array([[0, 1, -1, 1, 0], [-1, 0, 0, 0, 1]])
    target_bbox = np.zeros((2, 3, 4), np.float32)
    target_bbox[0, :2] = rng.normal(size=(2, 4))
    target_bbox[1, :1] = rng.normal(size=(1, 4))
    rpn_bbox = rng.normal(scale=2.0, size=(2, 5, 4)).astype(np.float32)
    expected = _np_rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox)
    got = _value(losses.rpn_bbox_loss(*map(tf.constant, (target_bbox, rpn_match, rpn_bbox))))
    assert got == pytest.approx(expected, rel=1e-5)

    # Swapping the two target rows of image 0 must change the loss (order matters).
    swapped = target_bbox.copy()
    swapped[0, [0, 1]] = target_bbox[0, [1, 0]]
    other = _value(losses.rpn_bbox_loss(*map(tf.constant, (swapped, rpn_match, rpn_bbox))))
    assert other != pytest.approx(got, rel=1e-3)


def test_rpn_bbox_loss_hand_worked():
    # One positive anchor (index 2); its target row 0 is (0, 0, 0, 0), prediction
    # (0.5, -2, 0, 1): smooth-L1 terms 0.125, 1.5, 0, 0.5 -> mean 2.125 / 4.
    rpn_match = tf.constant([[-1, 0, 1]])
    target = tf.constant([[[0.0, 0.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]]])
    pred = tf.constant([[[7.0, 7.0, 7.0, 7.0], [3.0, 3.0, 3.0, 3.0], [0.5, -2.0, 0.0, 1.0]]])
    assert _value(losses.rpn_bbox_loss(target, rpn_match, pred)) == pytest.approx(2.125 / 4)


def test_rpn_bbox_loss_zero_without_positives():
    rpn_match = tf.constant([[-1, 0, -1]])
    pred = tf.constant(np.full((1, 3, 4), 5.0, np.float32))
    assert _value(losses.rpn_bbox_loss(tf.zeros((1, 2, 4)), rpn_match, pred)) == 0.0


# ----------------------------------------------------------------------------------- heads
def test_mrcnn_class_loss_hand_worked_ignores_padding():
    # ROI 0: class 1, logits (0, 0, 0) -> log 3. ROI 1: class 0, logits (log 2, 0, 0) ->
    # p = 2/4 -> log 2. ROI 2 is padding: huge logits that would dominate if counted.
    ids = tf.constant([[1, 0, 0]])
    logits = tf.constant([[[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0], [-1e4, 1e4, 0.0]]])
    valid = tf.constant([[True, True, False]])
    expected = (math.log(3.0) + math.log(2.0)) / 2
    assert _value(losses.mrcnn_class_loss(ids, logits, valid)) == pytest.approx(expected)
    # 0/1 validity works the same.
    as_int = tf.constant([[1, 1, 0]])
    assert _value(losses.mrcnn_class_loss(ids, logits, as_int)) == pytest.approx(expected)


def test_mrcnn_class_loss_zero_without_valid_rois():
    logits = tf.random.normal((2, 4, 3))
    loss = losses.mrcnn_class_loss(tf.zeros((2, 4), tf.int32), logits, tf.zeros((2, 4), bool))
    assert _value(loss) == 0.0


def _np_mrcnn_bbox_loss(target, ids, pred):
    terms = []
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1]):
            if ids[b, t] > 0:
                row = ids[b, t] if pred.shape[2] > 1 else 0
                terms.append(_np_smooth_l1(target[b, t] - pred[b, t, row]))
    return np.concatenate(terms).mean() if terms else 0.0


def test_mrcnn_bbox_loss_class_specific_uses_target_class_row():
    rng = np.random.default_rng(2)
    ids = np.array([[2, 0, 1, 0], [0, 2, 0, 0]])
    target = rng.normal(size=(2, 4, 4)).astype(np.float32)
    pred = rng.normal(scale=2.0, size=(2, 4, 3, 4)).astype(np.float32)
    expected = _np_mrcnn_bbox_loss(target, ids, pred)
    got = _value(losses.mrcnn_bbox_loss(tf.constant(target), tf.constant(ids), tf.constant(pred)))
    assert got == pytest.approx(expected, rel=1e-5)
    # Rows of other classes (and of negatives) do not matter.
    changed = pred.copy()
    changed[0, 0, 1] += 100.0
    changed[0, 1] += 100.0
    again = losses.mrcnn_bbox_loss(tf.constant(target), tf.constant(ids), tf.constant(changed))
    assert _value(again) == pytest.approx(got, rel=1e-6)


def test_mrcnn_bbox_loss_hand_worked_class_agnostic():
    # K = 1: row 0 is used whatever the class. Positive ROI 0 (class 2): deltas differ by
    # (0.5, 0, 0, 3) -> 0.125 + 0 + 0 + 2.5. ROI 1 is a negative and is ignored.
    ids = tf.constant([[2, 0]])
    target = tf.constant([[[0.5, 0.0, 0.0, 3.0], [1.0, 1.0, 1.0, 1.0]]])
    pred = tf.zeros((1, 2, 1, 4))
    assert _value(losses.mrcnn_bbox_loss(target, ids, pred)) == pytest.approx(2.625 / 4)


def test_mrcnn_bbox_loss_zero_without_positives():
    pred = tf.random.normal((1, 3, 3, 4))
    loss = losses.mrcnn_bbox_loss(tf.ones((1, 3, 4)), tf.zeros((1, 3), tf.int32), pred)
    assert _value(loss) == 0.0


def test_mrcnn_mask_loss_hand_worked():
    # One positive ROI of class 1 with a 1x2 mask: target (1, 0), class-1 probabilities
    # (0.8, 0.25) -> BCE -log 0.8 and -log 0.75. Channel 2 and the negative ROI are ignored.
    ids = tf.constant([[1, 0]])
    target = tf.constant([[[[1.0, 0.0]], [[1.0, 1.0]]]])
    pred = np.zeros((1, 2, 1, 2, 3), np.float32)
    pred[0, 0, 0, :, 1] = [0.8, 0.25]
    pred[0, 0, 0, :, 2] = [0.01, 0.99]
    pred[0, 1] = 0.5
    expected = -(math.log(0.8) + math.log(0.75)) / 2
    got = _value(losses.mrcnn_mask_loss(target, ids, tf.constant(pred)))
    assert got == pytest.approx(expected, rel=1e-6)


def test_mrcnn_mask_loss_matches_numpy_and_is_finite_at_saturation():
    rng = np.random.default_rng(3)
    ids = np.array([[2, 1, 0], [0, 0, 1]])
    target = (rng.random((2, 3, 4, 4)) > 0.5).astype(np.float32)
    pred = rng.random((2, 3, 4, 4, 3)).astype(np.float32)
    pred[0, 0, 0, 0, 2] = 1.0 - target[0, 0, 0, 0]  # certain and wrong: clipped, finite
    # The clip bounds as float32 holds them (1 - 1e-7 rounds to 1 - 1.19e-7).
    low = np.float32(losses.MASK_PROB_EPSILON)
    high = np.float32(1.0) - low
    terms = []
    for b, t in zip(*np.nonzero(ids > 0), strict=True):
        p = np.clip(pred[b, t, :, :, ids[b, t]].astype(np.float64), low, high)
        y = target[b, t]
        terms.append(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    expected = np.mean(terms)
    got = _value(losses.mrcnn_mask_loss(*map(tf.constant, (target, ids, pred))))
    assert got == pytest.approx(expected, rel=1e-4)


def test_mrcnn_mask_loss_zero_without_positives():
    pred = tf.random.uniform((2, 3, 4, 4, 3))
    loss = losses.mrcnn_mask_loss(tf.ones((2, 3, 4, 4)), tf.zeros((2, 3), tf.int32), pred)
    assert _value(loss) == 0.0


def test_losses_accept_float16_inputs():
    ids = tf.constant([[1, 0]])
    half = tf.float16
    pred_masks = tf.fill((1, 2, 2, 2, 3), tf.constant(0.5, half))
    mask = losses.mrcnn_mask_loss(tf.ones((1, 2, 2, 2), half), ids, pred_masks)
    assert _value(mask) == pytest.approx(math.log(2.0), rel=1e-6)
    box = losses.mrcnn_bbox_loss(tf.ones((1, 2, 4), half), ids, tf.zeros((1, 2, 3, 4), half))
    assert _value(box) == pytest.approx(0.5)
    cls = losses.mrcnn_class_loss(ids, tf.zeros((1, 2, 3), half), tf.ones((1, 2)))
    assert _value(cls) == pytest.approx(math.log(3.0), rel=1e-6)
    rpn = losses.rpn_class_loss(tf.constant([[1, -1]]), tf.zeros((1, 2, 2), half))
    assert _value(rpn) == pytest.approx(math.log(2.0), rel=1e-6)
    rpn_box = losses.rpn_bbox_loss(
        tf.ones((1, 1, 4), half), tf.constant([[0, 1]]), tf.zeros((1, 2, 4), half)
    )
    assert _value(rpn_box) == pytest.approx(0.5)


def test_losses_trace_in_a_compiled_function():
    # The training step compiles the losses with XLA; static shapes must suffice.
    @tf.function(jit_compile=True)
    def total(match, rpn_logits, rpn_pred, ids, logits, deltas, masks):
        return (
            losses.rpn_class_loss(match, rpn_logits)
            + losses.rpn_bbox_loss(tf.zeros((1, 2, 4)), match, rpn_pred)
            + losses.mrcnn_class_loss(ids, logits, ids >= 0)
            + losses.mrcnn_bbox_loss(tf.zeros((1, 2, 4)), ids, deltas)
            + losses.mrcnn_mask_loss(tf.zeros((1, 2, 2, 2)), ids, masks)
        )

    value = total(
        tf.constant([[1, -1, 0]]), tf.zeros((1, 3, 2)), tf.zeros((1, 3, 4)),
        tf.constant([[1, 0]]), tf.zeros((1, 2, 3)), tf.zeros((1, 2, 3, 4)),
        tf.fill((1, 2, 2, 2, 3), 0.5),
    )
    assert _value(value) == pytest.approx(2 * math.log(2.0) + math.log(3.0), rel=1e-5)
