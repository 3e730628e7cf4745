"""RPN targets and ROI sampling against hand-made cases and numpy references written here."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import targets
from mrcnn.config import Config


class TinyConfig(Config):
    NAME = "targets_test"
    NUM_CLASSES = 3
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    BACKBONE = "tiny"
    FEATURE_LAYOUT = "c4"
    HEAD_LAYOUT = "paper"
    POOL_SIZE = 7
    MASK_SHAPE = (28, 28)
    TRAIN_ROIS_PER_IMAGE = 32
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    MINI_MASK_SHAPE = (28, 28)
    MAX_GT_INSTANCES = 4


class FullMaskConfig(TinyConfig):
    USE_MINI_MASK = False


class NoGtProposalsConfig(TinyConfig):
    ADD_GT_TO_PROPOSALS = False


# ----------------------------------------------------------------------- numpy references
def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of [N, 4] and [M, 4] boxes, written out for the tests."""
    out = np.zeros((len(a), len(b)))
    for i, (ay1, ax1, ay2, ax2) in enumerate(a):
        for j, (by1, bx1, by2, bx2) in enumerate(b):
            inter_h = max(0.0, min(ay2, by2) - max(ay1, by1))
            inter = inter_h * max(0.0, min(ax2, bx2) - max(ax1, bx1))
            union = (ay2 - ay1) * (ax2 - ax1) + (by2 - by1) * (bx2 - bx1) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def _deltas(box: np.ndarray, gt: np.ndarray) -> np.ndarray:
    h, w = box[2] - box[0], box[3] - box[1]
    gh, gw = gt[2] - gt[0], gt[3] - gt[1]
    cy, cx = box[0] + h / 2, box[1] + w / 2
    gcy, gcx = gt[0] + gh / 2, gt[1] + gw / 2
    return np.array([(gcy - cy) / h, (gcx - cx) / w, math.log(gh / h), math.log(gw / w)])


def _anchor_grid(size: int = 64, step: int = 4, side: int = 16) -> np.ndarray:
    """Square pixel anchors of one size on a regular grid."""
    starts = np.arange(0, size - side + 1, step, dtype=np.float32)
    y, x = np.meshgrid(starts, starts, indexing="ij")
    y, x = y.ravel(), x.ravel()
    return np.stack([y, x, y + side, x + side], axis=1)


# ------------------------------------------------------------------------------ RPN targets
HAND_ANCHORS = np.array(
    [
        [0, 0, 10, 10],  # 0: IoU 1 with GT 0 -> positive
        [0, 0, 10, 20],  # 1: IoU 0.5 with GT 0 -> neutral
        [40, 40, 50, 50],  # 2: touches nothing -> negative
        [20, 20, 30, 30],  # 3: IoU 0.5 with GT 1, tied best -> positive
        [20, 30, 30, 40],  # 4: IoU 0.5 with GT 1, tied best -> positive
        [20, 15, 30, 25],  # 5: IoU 0.2 with GT 1 -> negative
        [50, 0, 60, 10],  # 6: the crowd box itself -> neutral (never matched, never negative)
        [55, 5, 65, 15],  # 7: IoU 0.14 with the crowd box -> neutral
        [60, 0, 64, 10],  # 8: only shares an edge with the crowd box -> negative
    ],
    dtype=np.float32,
)
HAND_GT_BOXES = np.array([[0, 0, 10, 10], [20, 20, 30, 40], [50, 0, 60, 10]], np.float32)
HAND_GT_IDS = np.array([1, 2, -1])


def test_rpn_targets_hand_made_case():
    config = TinyConfig()
    match, bbox = targets.build_rpn_targets(
        HAND_ANCHORS, HAND_GT_IDS, HAND_GT_BOXES, config, np.random.default_rng(0)
    )
    assert match.dtype == np.int32 and bbox.dtype == np.float32
    np.testing.assert_array_equal(match, [1, 0, -1, 1, 1, -1, 0, 0, -1])
    assert bbox.shape == (64, 4)
    # Anchor order: anchor 0 -> GT 0 (identical), anchor 3 and 4 -> GT 1 (centre 5 px right /
    # left of theirs, twice as wide); divided by RPN_BBOX_STD_DEV (0.1, 0.1, 0.2, 0.2).
    log2 = math.log(2.0) / 0.2
    expected = np.array([[0, 0, 0, 0], [0, 5.0, 0, log2], [0, -5.0, 0, log2]])
    np.testing.assert_allclose(bbox[:3], expected, rtol=1e-5, atol=1e-6)
    assert not bbox[3:].any()
    # Nothing to subsample here, so the default generator gives the same labels.
    default_rng_match, _ = targets.build_rpn_targets(
        HAND_ANCHORS, HAND_GT_IDS, HAND_GT_BOXES, config
    )
    np.testing.assert_array_equal(default_rng_match, match)


def test_rpn_best_anchor_rule_needs_some_overlap():
    # A GT box that touches no anchor marks nothing positive: the anchors are all negatives.
    config = TinyConfig()
    anchors = HAND_ANCHORS[[0, 2]]
    far = np.array([[20, 50, 30, 60]], np.float32)
    match, bbox = targets.build_rpn_targets(anchors, [1], far, config, np.random.default_rng(0))
    np.testing.assert_array_equal(match, [-1, -1])
    assert not bbox.any()


def test_rpn_best_anchor_is_positive_below_threshold():
    # Only anchor 1 overlaps the GT (IoU 0.5 < 0.7): the best-anchor rule makes it positive.
    config = TinyConfig()
    match, bbox = targets.build_rpn_targets(
        HAND_ANCHORS[[1, 2]], [1], HAND_GT_BOXES[:1], config, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(match, [1, -1])
    # Anchor (0, 0, 10, 20) -> GT (0, 0, 10, 10): dx = -5 / 20, dw = log(1/2).
    expected = np.array([0.0, -0.25 / 0.1, 0.0, math.log(0.5) / 0.2])
    np.testing.assert_allclose(bbox[0], expected, rtol=1e-5, atol=1e-6)


def test_rpn_targets_without_gt_are_all_negative_samples():
    config = TinyConfig()
    anchors = _anchor_grid()
    match, bbox = targets.build_rpn_targets(
        anchors, np.zeros(0, np.int32), np.zeros((0, 4)), config, np.random.default_rng(0)
    )
    assert np.sum(match == -1) == config.RPN_TRAIN_ANCHORS_PER_IMAGE
    assert np.sum(match == 1) == 0
    assert not bbox.any()


def test_rpn_targets_balance_caps_and_bbox_rows_in_anchor_order():
    config = TinyConfig()
    anchors = _anchor_grid(step=2)  # 625 anchors of 16 x 16
    # Many GT boxes aligned with anchors: far more than 32 positives before subsampling.
    gt_boxes = anchors[::9][:40].copy()
    gt_ids = np.ones(len(gt_boxes), np.int32)
    overlaps = _iou(anchors, gt_boxes)
    all_positive = (overlaps.max(axis=1) >= 0.7).sum()
    assert all_positive > 32

    match, bbox = targets.build_rpn_targets(
        anchors, gt_ids, gt_boxes, config, np.random.default_rng(7)
    )
    positives = np.flatnonzero(match == 1)
    assert positives.size == 32  # half of RPN_TRAIN_ANCHORS_PER_IMAGE
    assert np.sum(match == -1) == 64 - 32
    # Kept positives really are positives, kept negatives really are negatives.
    assert np.all(overlaps[positives].max(axis=1) >= 0.7)
    assert np.all(overlaps[match == -1].max(axis=1) < 0.3)
    std = np.array([0.1, 0.1, 0.2, 0.2])
    for row, anchor in enumerate(positives):
        gt = gt_boxes[np.argmax(overlaps[anchor])]
        np.testing.assert_allclose(bbox[row], _deltas(anchors[anchor], gt) / std, atol=1e-5)
    assert not bbox[positives.size :].any()


def test_rpn_targets_negatives_fill_up_when_few_positives():
    config = TinyConfig()
    anchors = _anchor_grid(step=2)
    gt_boxes = anchors[[0]].copy()
    match, _ = targets.build_rpn_targets(anchors, [1], gt_boxes, config, np.random.default_rng(3))
    num_positive = int(np.sum(match == 1))
    assert 1 <= num_positive < 32
    assert np.sum(match == -1) == 64 - num_positive


def test_rpn_targets_follow_the_rng():
    config = TinyConfig()
    anchors = _anchor_grid(step=2)
    gt_boxes = anchors[::9][:40].copy()
    ids = np.ones(len(gt_boxes), np.int32)

    def run(seed):
        return targets.build_rpn_targets(
            anchors, ids, gt_boxes, config, np.random.default_rng(seed)
        )[0]

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


def test_rpn_targets_reject_mismatched_gt():
    with pytest.raises(ValueError, match="gt_class_ids"):
        targets.build_rpn_targets(HAND_ANCHORS, [1, 2], HAND_GT_BOXES[:1], TinyConfig())
    with pytest.raises(ValueError, match="anchors"):
        targets.build_rpn_targets(np.zeros((3, 3)), [1], HAND_GT_BOXES[:1], TinyConfig())


# ----------------------------------------------------------------------------- ROI sampling
def _pad(rows: np.ndarray, total: int) -> np.ndarray:
    out = np.zeros((total, *rows.shape[1:]), np.float32)
    out[: len(rows)] = rows
    return out


def _jittered(box: np.ndarray, count: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    return (box + rng.uniform(-scale, scale, size=(count, 4))).astype(np.float32)


def _scene(rng: np.random.Generator, num_positive_like: int):
    """Two GT boxes, proposals around them (IoU >= 0.5) and background proposals."""
    gt_boxes = np.array([[0.1, 0.1, 0.4, 0.45], [0.55, 0.5, 0.9, 0.85]], np.float32)
    near = np.concatenate(
        [_jittered(gt_boxes[i], num_positive_like, rng, 0.02) for i in range(2)]
    )
    background = np.array(
        [[0.45, y, 0.5, y + 0.05] for y in np.linspace(0.0, 0.9, 30)], np.float32
    )
    proposals = np.concatenate([near, background])
    return proposals, gt_boxes, np.array([1, 2], np.int32)


def _run_sampler(config, proposals, gt_ids, gt_boxes, gt_masks, num_proposals=128):
    outputs = targets.sample_rois(
        tf.constant(_pad(proposals, num_proposals)),
        tf.constant(np.pad(gt_ids, (0, 4 - len(gt_ids))).astype(np.int32)),
        tf.constant(_pad(gt_boxes, 4)),
        tf.constant(gt_masks),
        config,
    )
    return [t.numpy() for t in outputs]


def _empty_masks(num_gt: int = 4) -> np.ndarray:
    return np.zeros((28, 28, num_gt), bool)


def _check_layout(rois, class_ids, deltas, masks, allowed_boxes):
    """Real rows first, then all-zero padding; every real row is one of allowed_boxes."""
    real = np.any(rois != 0, axis=1)
    count = int(real.sum())
    assert real[:count].all() and not real[count:].any()
    assert not class_ids[count:].any() and not deltas[count:].any() and not masks[count:].any()
    for roi in rois[:count]:
        assert np.min(np.abs(allowed_boxes - roi).max(axis=1)) < 1e-6
    # Positives first, then negatives (class 0, zero deltas, zero masks).
    positive = class_ids > 0
    num_positive = int(positive.sum())
    assert positive[:num_positive].all()
    assert not deltas[num_positive:].any() and not masks[num_positive:].any()
    return count, num_positive


def test_sample_rois_caps_positives_at_the_ratio():
    config = NoGtProposalsConfig()
    proposals, gt_boxes, gt_ids = _scene(np.random.default_rng(0), num_positive_like=15)
    rois, class_ids, deltas, masks = _run_sampler(
        config, proposals, gt_ids, gt_boxes, _empty_masks()
    )
    assert rois.shape == (32, 4) and class_ids.shape == (32,) and class_ids.dtype == np.int32
    assert masks.shape == (32, 28, 28) and masks.dtype == np.float32
    count, num_positive = _check_layout(rois, class_ids, deltas, masks, proposals)
    assert num_positive == int(32 * 0.33)  # enough positives: exactly the cap
    assert count == 32  # enough negatives fill the rest

    # Class ids and deltas of positives against the best-IoU GT box.
    std = np.array([0.1, 0.1, 0.2, 0.2])
    overlaps = _iou(rois[:num_positive], gt_boxes)
    assert np.all(overlaps.max(axis=1) >= 0.5)
    for i in range(num_positive):
        best = int(np.argmax(overlaps[i]))
        assert class_ids[i] == gt_ids[best]
        np.testing.assert_allclose(deltas[i], _deltas(rois[i], gt_boxes[best]) / std, atol=1e-4)
    assert np.all(_iou(rois[num_positive:count], gt_boxes).max(axis=1) < 0.5)


def test_sample_rois_with_few_positives_fills_with_negatives():
    config = NoGtProposalsConfig()
    proposals, gt_boxes, gt_ids = _scene(np.random.default_rng(1), num_positive_like=2)
    rois, class_ids, deltas, masks = _run_sampler(
        config, proposals, gt_ids, gt_boxes, _empty_masks()
    )
    count, num_positive = _check_layout(rois, class_ids, deltas, masks, proposals)
    assert num_positive == 4
    assert num_positive / 32 <= config.ROI_POSITIVE_RATIO
    assert count == 32


def test_sample_rois_adds_gt_boxes_to_proposals():
    # Only background proposals: the positives are the GT boxes themselves (zero deltas).
    config = TinyConfig()
    _, gt_boxes, gt_ids = _scene(np.random.default_rng(2), num_positive_like=0)
    background = np.array([[0.45, 0.0, 0.5, 0.05], [0.45, 0.1, 0.5, 0.15]], np.float32)
    masks_in = np.ones((28, 28, 4), bool)
    rois, class_ids, deltas, masks = _run_sampler(
        config, background, gt_ids, gt_boxes, masks_in
    )
    allowed = np.concatenate([background, gt_boxes])
    count, num_positive = _check_layout(rois, class_ids, deltas, masks, allowed)
    assert (count, num_positive) == (4, 2)
    assert sorted(class_ids[:2].tolist()) == [1, 2]
    np.testing.assert_allclose(deltas[:2], 0.0, atol=1e-5)
    assert np.all(masks[:2] == 1.0)  # the ROI is the GT box: its full mini mask


def test_sample_rois_without_gt_yields_only_negatives():
    config = TinyConfig()
    proposals, _, _ = _scene(np.random.default_rng(3), num_positive_like=3)
    rois, class_ids, deltas, masks = _run_sampler(
        config, proposals, np.zeros(0, np.int32), np.zeros((0, 4), np.float32), _empty_masks()
    )
    count, num_positive = _check_layout(rois, class_ids, deltas, masks, proposals)
    assert num_positive == 0
    assert count == 32


def test_sample_rois_with_few_proposals_pads_with_zero_rows():
    config = NoGtProposalsConfig()
    proposals = np.array([[0.1, 0.1, 0.4, 0.45], [0.45, 0.0, 0.5, 0.05]], np.float32)
    gt_boxes = np.array([[0.1, 0.1, 0.4, 0.45]], np.float32)
    rois, class_ids, deltas, masks = _run_sampler(
        config, proposals, np.array([3], np.int32), gt_boxes, _empty_masks()
    )
    count, num_positive = _check_layout(rois, class_ids, deltas, masks, proposals)
    assert (count, num_positive) == (2, 1)
    assert class_ids[0] == 3
    valid = targets.valid_roi_mask(tf.constant(rois[np.newaxis])).numpy()
    np.testing.assert_array_equal(valid[0], np.arange(32) < 2)


def test_sample_rois_never_samples_degenerate_proposals():
    config = NoGtProposalsConfig()
    real = np.array([[0.45, 0.0, 0.5, 0.05]], np.float32)
    degenerate = np.array([[0.5, 0.5, 0.5, 0.7], [0.2, 0.3, 0.4, 0.3]], np.float32)
    rois, class_ids, deltas, masks = _run_sampler(
        config, np.concatenate([degenerate, real]), np.zeros(0, np.int32),
        np.zeros((0, 4), np.float32), _empty_masks(),
    )
    assert _check_layout(rois, class_ids, deltas, masks, real) == (1, 0)


def test_sample_rois_crowd_boxes_are_neither_matched_nor_negatives():
    config = TinyConfig()
    gt_boxes = np.array([[0.1, 0.1, 0.4, 0.45], [0.6, 0.6, 0.9, 0.9]], np.float32)
    gt_ids = np.array([1, -1], np.int32)
    on_crowd = np.array([[0.6, 0.6, 0.9, 0.9], [0.7, 0.7, 0.8, 0.95]], np.float32)
    background = np.array([[0.45, 0.0, 0.5, 0.05]], np.float32)
    proposals = np.concatenate([on_crowd, background])
    rois, class_ids, deltas, masks = _run_sampler(
        config, proposals, gt_ids, gt_boxes, np.ones((28, 28, 4), bool)
    )
    allowed = np.concatenate([background, gt_boxes[:1]])  # the crowd box is not added either
    count, num_positive = _check_layout(rois, class_ids, deltas, masks, allowed)
    assert (count, num_positive) == (2, 1)


# -------------------------------------------------------------------------------- masks
# GT rectangle covering pixel rows 16..31 and columns 8..39 of a 64 x 64 input, and a ROI
# (12, 4)-(36, 44) around it (IoU 512 / 960 > 0.5). A second GT elsewhere, with its own ROI.
RECT_PX = np.array([16, 8, 32, 40], np.float32)
ROI_PX = np.array([12, 4, 36, 44], np.float32)
RECT2_PX = np.array([40, 44, 60, 60], np.float32)
ROI2_PX = np.array([42, 40, 62, 58], np.float32)


def _hand_mask(roi_px: np.ndarray, rect_px: np.ndarray, size: int = 28) -> np.ndarray:
    """Bin-centre sampling of a filled rectangle: a bin is inside iff its centre is. (No bin
    centre lies on the rectangle's edge for the boxes used here.)"""
    y1, x1, y2, x2 = roi_px
    ys = y1 + (np.arange(size) + 0.5) * (y2 - y1) / size
    xs = x1 + (np.arange(size) + 0.5) * (x2 - x1) / size
    inside_y = (ys > rect_px[0]) & (ys < rect_px[2])
    inside_x = (xs > rect_px[1]) & (xs < rect_px[3])
    assert not np.any(np.isin(ys, rect_px[[0, 2]])) and not np.any(np.isin(xs, rect_px[[1, 3]]))
    return (inside_y[:, None] & inside_x[None, :]).astype(np.float32)


@pytest.mark.parametrize("mini", [True, False], ids=["mini_mask", "full_mask"])
def test_mask_targets_of_rectangles_equal_the_hand_computed_crop(mini):
    config = NoGtProposalsConfig() if mini else type(
        "FullNoGt", (FullMaskConfig,), {"ADD_GT_TO_PROPOSALS": False}
    )()
    gt_px = np.stack([RECT_PX, RECT2_PX])
    if mini:
        gt_masks = np.zeros((28, 28, 4), bool)
        gt_masks[..., :2] = True  # a filled rectangle fills its own box
    else:
        gt_masks = np.zeros((64, 64, 4), bool)
        for i, (y1, x1, y2, x2) in enumerate(gt_px.astype(int)):
            gt_masks[y1:y2, x1:x2, i] = True
    proposals = np.stack([ROI_PX, ROI2_PX]) / 64.0
    rois, class_ids, _, masks = _run_sampler(
        config, proposals, np.array([1, 2], np.int32), gt_px / 64.0, gt_masks
    )
    assert sorted(class_ids[:2].tolist()) == [1, 2]
    for i in range(2):
        k = int(class_ids[i]) - 1
        np.testing.assert_allclose(rois[i], proposals[k], atol=1e-7)
        expected = _hand_mask(np.stack([ROI_PX, ROI2_PX])[k], gt_px[k])
        np.testing.assert_array_equal(masks[i], expected)
    assert set(np.unique(masks)) <= {0.0, 1.0}


def test_mini_mask_targets_follow_the_shape_inside_the_box():
    # Mini mask whose left half is set: inside the GT frame, the ROI equal to the GT box
    # (added as a proposal) gets exactly that mask, resized 28 -> 28.
    config = TinyConfig()
    gt_masks = np.zeros((28, 28, 4), bool)
    gt_masks[:, :14, 0] = True
    rois, class_ids, _, masks = _run_sampler(
        config, np.zeros((0, 4), np.float32), np.array([1], np.int32),
        RECT_PX[np.newaxis] / 64.0, gt_masks,
    )
    assert class_ids[0] == 1
    np.testing.assert_array_equal(masks[0], gt_masks[..., 0].astype(np.float32))


# ---------------------------------------------------------------------------------- layer
def test_detection_target_layer_in_a_functional_model_batch_2():
    config = TinyConfig()
    num_proposals = 64
    proposals_in = keras.Input((num_proposals, 4), name="proposals")
    ids_in = keras.Input((4,), dtype="int32", name="gt_class_ids")
    boxes_in = keras.Input((4, 4), name="gt_boxes")
    masks_in = keras.Input((28, 28, 4), dtype="bool", name="gt_masks")
    layer = targets.DetectionTargetLayer(config, name="proposal_targets")
    outputs = layer([proposals_in, ids_in, boxes_in, masks_in])
    assert [tuple(o.shape) for o in outputs] == [
        (None, 32, 4), (None, 32), (None, 32, 4), (None, 32, 28, 28)
    ]
    assert layer.supports_jit is False
    model = keras.Model([proposals_in, ids_in, boxes_in, masks_in], outputs)

    rng = np.random.default_rng(4)
    proposals, gt_boxes, gt_ids = _scene(rng, num_positive_like=8)
    batch_proposals = np.stack([_pad(proposals, num_proposals)] * 2)
    batch_ids = np.zeros((2, 4), np.int32)
    batch_ids[0, :2] = gt_ids  # image 1 has no instances
    batch_boxes = np.zeros((2, 4, 4), np.float32)
    batch_boxes[0, :2] = gt_boxes
    batch_masks = np.zeros((2, 28, 28, 4), bool)
    batch_masks[0, ..., :2] = True
    rois, class_ids, deltas, masks = (
        t.numpy() if hasattr(t, "numpy") else np.asarray(t)
        for t in model([batch_proposals, batch_ids, batch_boxes, batch_masks])
    )
    assert rois.shape == (2, 32, 4) and masks.shape == (2, 32, 28, 28)
    assert class_ids.dtype == np.int32
    allowed = np.concatenate([proposals, gt_boxes])
    _, positives_0 = _check_layout(rois[0], class_ids[0], deltas[0], masks[0], allowed)
    count_1, positives_1 = _check_layout(rois[1], class_ids[1], deltas[1], masks[1], proposals)
    assert positives_0 == int(32 * 0.33)
    assert positives_1 == 0 and count_1 == 32
    # Positive masks come from the all-ones mini masks: ROIs inside their GT box are all ones.
    assert masks[0, :positives_0].mean() > 0.8
    np.testing.assert_array_equal(
        targets.valid_roi_mask(tf.constant(rois)).numpy(), np.any(rois != 0, axis=-1)
    )


def test_detection_target_layer_outputs_carry_no_gradient():
    config = TinyConfig()
    layer = targets.DetectionTargetLayer(config)
    # float16 inputs (mixed precision): the targets are still float32.
    proposals = tf.Variable(
        np.stack([_pad(np.array([[0.1, 0.1, 0.4, 0.45]]), 8)] * 2).astype(np.float16)
    )
    ids = tf.constant([[1, 0], [0, 0]], tf.int32)
    boxes = tf.constant(np.stack([_pad(np.array([[0.1, 0.1, 0.4, 0.4]]), 2)] * 2), tf.float16)
    masks = tf.ones((2, 28, 28, 2), tf.bool)
    with tf.GradientTape() as tape:
        rois, class_ids, deltas, mask_targets = layer([proposals, ids, boxes, masks])
        total = tf.reduce_sum(tf.cast(rois, tf.float32)) + tf.reduce_sum(deltas)
    assert tape.gradient(total, proposals) is None
    assert rois.dtype == deltas.dtype == mask_targets.dtype == tf.float32
    # Image 0: the proposal (IoU 0.86) and the GT box itself are positives of class 1.
    np.testing.assert_array_equal(class_ids.numpy()[:, :3], [[1, 1, 0], [0, 0, 0]])


def test_detection_target_layer_saves_the_settings_it_reads_and_comes_back_alike():
    config = TinyConfig()
    layer = targets.DetectionTargetLayer(config, name="proposal_targets")
    saved = json.loads(json.dumps(layer.get_config()))  # JSON-ready: a .keras file holds it
    assert saved["settings"] == targets.target_settings(config)
    clone = targets.DetectionTargetLayer.from_config(saved)
    assert clone.name == "proposal_targets"
    assert targets.target_settings(clone.config) == targets.target_settings(config)
    rng = np.random.default_rng(5)
    proposals, gt_boxes, gt_ids = _scene(rng, num_positive_like=8)
    inputs = [np.stack([_pad(proposals, 64)]).astype(np.float32),
              np.array([[*gt_ids, 0, 0]], np.int32),
              np.stack([_pad(gt_boxes, 4)]).astype(np.float32),
              np.ones((1, 28, 28, 4), bool)]
    outputs = []
    for sampler in (layer, clone):
        tf.random.set_seed(7)
        outputs.append([t.numpy() for t in sampler(inputs)])
    for a, b in zip(*outputs, strict=True):
        np.testing.assert_array_equal(a, b)
