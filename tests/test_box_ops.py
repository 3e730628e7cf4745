"""Box maths: hand-worked values, loop references, and numpy/TF agreement."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mrcnn import box_ops


def random_boxes(rng: np.random.Generator, count: int, extent: float = 1.0) -> np.ndarray:
    """Well-formed boxes (y1 < y2, x1 < x2) inside [0, extent]^2, float32."""
    corner = rng.uniform(0.0, 0.8 * extent, size=(count, 2))
    size = rng.uniform(0.02 * extent, 0.4 * extent, size=(count, 2))
    return np.concatenate([corner, corner + size], axis=1).astype(np.float32)


def loop_iou(box_a, box_b) -> float:
    """Plain-Python IoU of two boxes, the reference for the vectorised versions."""
    top, left = max(box_a[0], box_b[0]), max(box_a[1], box_b[1])
    bottom, right = min(box_a[2], box_b[2]), min(box_a[3], box_b[3])
    inter = max(bottom - top, 0.0) * max(right - left, 0.0)
    area_a = (box_a[2] - box_a[0]) * (box_a[3] - box_a[1])
    area_b = (box_b[2] - box_b[0]) * (box_b[3] - box_b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


# ------------------------------------------------------------------------------------ IoU


def test_overlaps_hand_worked():
    boxes1 = np.array([[0, 0, 2, 2], [1, 1, 1, 1]], dtype=np.float32)
    boxes2 = np.array(
        [[0, 0, 2, 2], [1, 1, 3, 3], [0, 2, 2, 4], [0, 0, 1, 4], [1, 1, 1, 1]], dtype=np.float32
    )
    expected = np.array(
        [
            # same box; 1 shared of 4 + 4 - 1; touching edge; 2 shared of 4 + 4 - 2; empty box
            [1.0, 1 / 7, 0.0, 2 / 6, 0.0],
            # an empty box overlaps nothing, not even itself
            [0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    overlaps = box_ops.compute_overlaps(boxes1, boxes2)
    assert overlaps.shape == (2, 5)
    np.testing.assert_allclose(overlaps, expected, rtol=1e-6)


def test_overlaps_match_loop_reference():
    rng = np.random.default_rng(0)
    boxes1, boxes2 = random_boxes(rng, 30), random_boxes(rng, 20)
    expected = np.array([[loop_iou(a, b) for b in boxes2] for a in boxes1])
    np.testing.assert_allclose(box_ops.compute_overlaps(boxes1, boxes2), expected, atol=1e-6)
    assert (expected > 0).any() and (expected == 0).any()  # the data exercises both cases


def test_overlaps_empty_inputs_give_empty_matrix():
    assert box_ops.compute_overlaps(np.zeros((0, 4)), random_boxes(np.random.default_rng(1), 3)
                                    ).shape == (0, 3)


def test_overlaps_rejects_bad_shape():
    with pytest.raises(ValueError, match="boxes1"):
        box_ops.compute_overlaps(np.zeros((3, 3)), np.zeros((2, 4)))


def test_mask_overlaps_equal_box_overlaps_for_rectangles():
    rng = np.random.default_rng(2)
    corners = rng.integers(0, 12, size=(6, 2))
    sizes = rng.integers(1, 8, size=(6, 2))
    boxes = np.concatenate([corners, corners + sizes], axis=1)
    masks = np.zeros((20, 20, 6), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, i] = True
    expected = box_ops.compute_overlaps(boxes, boxes)
    np.testing.assert_allclose(box_ops.compute_overlaps_masks(masks, masks), expected, atol=1e-6)


def test_mask_overlaps_hand_worked_and_empty():
    masks1 = np.zeros((4, 4, 2), dtype=np.uint8)
    masks1[0, 0:3, 0] = 1  # 3 pixels
    masks2 = np.zeros((4, 4, 2), dtype=np.uint8)
    masks2[0, 1:4, 0] = 1  # 3 pixels, 2 shared with masks1[0]
    masks2[3, 3, 1] = 1  # disjoint from everything
    overlaps = box_ops.compute_overlaps_masks(masks1, masks2)
    np.testing.assert_allclose(overlaps, [[2 / 4, 0.0], [0.0, 0.0]])
    assert box_ops.compute_overlaps_masks(masks1[..., :0], masks2).shape == (0, 2)


# --------------------------------------------------------------------------------- deltas


def test_box_refinement_hand_worked():
    box = np.array([[0, 0, 10, 10]], dtype=np.float32)  # centre (5, 5), 10 x 10
    target = np.array([[5, 0, 15, 20]], dtype=np.float32)  # centre (10, 10), 10 x 20
    deltas = box_ops.box_refinement(box, target)
    np.testing.assert_allclose(deltas, [[0.5, 0.5, 0.0, np.log(2.0)]], rtol=1e-6)
    assert deltas.dtype == np.float32


def test_delta_round_trip():
    rng = np.random.default_rng(3)
    boxes, targets = random_boxes(rng, 50, extent=100.0), random_boxes(rng, 50, extent=100.0)
    deltas = box_ops.box_refinement(boxes, targets)
    np.testing.assert_allclose(box_ops.apply_box_deltas(boxes, deltas), targets, atol=1e-3)


def test_apply_box_deltas_hand_worked():
    box = np.array([[0, 0, 10, 10]], dtype=np.float32)
    moved = box_ops.apply_box_deltas(box, np.array([[0.1, -0.2, 0.0, np.log(3.0)]]))
    # centre (5 + 1, 5 - 2), size 10 x 30
    np.testing.assert_allclose(moved, [[1.0, -12.0, 11.0, 18.0]], atol=1e-5)


# ------------------------------------------------------------------- normalise, extract, clip


@pytest.mark.parametrize("shape", [(40, 80), (40, 80, 3)])
def test_norm_and_denorm_boxes(shape):
    boxes = np.array([[4, 8, 20, 80], [0, 0, 40, 40]], dtype=np.int32)
    normalised = box_ops.norm_boxes(boxes, shape)
    assert normalised.dtype == np.float32
    np.testing.assert_allclose(normalised, [[0.1, 0.1, 0.5, 1.0], [0.0, 0.0, 1.0, 0.5]])
    back = box_ops.denorm_boxes(normalised, shape)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, boxes, atol=1e-5)


def test_norm_boxes_rejects_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        box_ops.norm_boxes(np.zeros((1, 4)), (4,))


def test_extract_bboxes_hand_made_masks():
    masks = np.zeros((10, 12, 4), dtype=bool)
    masks[2:6, 1:4, 0] = True  # rows 2..5, cols 1..3
    masks[7, 11, 1] = True  # one pixel in the last column
    masks[0, 0, 2] = masks[9, 5, 2] = True  # two far-apart pixels
    # masks[..., 3] stays empty
    boxes = box_ops.extract_bboxes(masks)
    assert boxes.dtype == np.int32
    np.testing.assert_array_equal(
        boxes, [[2, 1, 6, 4], [7, 11, 8, 12], [0, 0, 10, 6], [0, 0, 0, 0]]
    )


def test_clip_boxes_hand_worked():
    boxes = np.array([[-5, 2, 30, 50], [1, 1, 2, 2]], dtype=np.float32)
    clipped = box_ops.clip_boxes(boxes, (0, 0, 20, 40))
    np.testing.assert_array_equal(clipped, [[0, 2, 20, 40], [1, 1, 2, 2]])


# ------------------------------------------------------------------------------------ NMS


def test_nms_hand_worked():
    boxes = np.array(
        [[0, 0, 10, 10], [0, 1, 10, 11], [0, 20, 10, 30], [0, 0, 10, 5]], dtype=np.float32
    )
    scores = np.array([0.9, 0.95, 0.5, 0.3])
    # box 1 wins; box 0 overlaps it 9/11 > 0.5 and goes; box 2 is apart; box 3 overlaps box 1
    # by 40/110 and stays
    np.testing.assert_array_equal(box_ops.non_max_suppression(boxes, scores, 0.5), [1, 2, 3])
    np.testing.assert_array_equal(box_ops.non_max_suppression(boxes, scores, 0.5, 2), [1, 2])
    # threshold 0.3: box 3 (IoU 0.36 with box 1) now goes too
    np.testing.assert_array_equal(box_ops.non_max_suppression(boxes, scores, 0.3), [1, 2])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.7])
def test_nms_matches_tensorflow(seed, threshold):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 60)
    scores = rng.uniform(size=60).astype(np.float32)
    for limit in (60, 7):
        expected = tf.image.non_max_suppression(boxes, scores, limit, iou_threshold=threshold)
        got = box_ops.non_max_suppression(boxes, scores, threshold, limit)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, expected.numpy())


def test_nms_empty_input():
    assert box_ops.non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


def per_class_nms_reference(boxes, scores, class_ids, threshold, limit):
    """tf.image.non_max_suppression run on each class alone, merged by descending score."""
    kept = []
    for class_id in np.unique(class_ids):
        members = np.flatnonzero(class_ids == class_id)
        keep = tf.image.non_max_suppression(
            boxes[members], scores[members], limit, iou_threshold=threshold
        ).numpy()
        kept.extend(members[keep])
    kept = np.array(kept, dtype=np.int64)
    return kept[np.argsort(-scores[kept], kind="stable")][:limit]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("extent", [1.0, 800.0])
def test_batched_nms_equals_per_class_nms(seed, extent):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 80, extent=extent)
    scores = rng.uniform(size=80).astype(np.float32)
    class_ids = rng.integers(1, 4, size=80).astype(np.int32)
    for threshold, limit in ((0.3, 100), (0.5, 10)):
        expected = per_class_nms_reference(boxes, scores, class_ids, threshold, limit)
        got = box_ops.tf_batched_nms(boxes, scores, class_ids, threshold, limit)
        assert got.dtype == tf.int32
        np.testing.assert_array_equal(got.numpy(), expected)


def test_batched_nms_never_suppresses_across_classes():
    boxes = np.array([[0, 0, 1, 1]] * 3, dtype=np.float32)  # identical boxes
    scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    keep = box_ops.tf_batched_nms(boxes, scores, np.array([1, 2, 1]), 0.5, 10)
    np.testing.assert_array_equal(keep.numpy(), [0, 1])


def test_batched_nms_empty_input_in_graph():
    nms = tf.function(lambda b, s, c: box_ops.tf_batched_nms(b, s, c, 0.5, 5))
    keep = nms(tf.zeros([0, 4]), tf.zeros([0]), tf.zeros([0], tf.int32))
    assert keep.shape == (0,)


# ------------------------------------------------------------------------- TF versus numpy


def test_tf_functions_agree_with_numpy_in_graph_mode():
    rng = np.random.default_rng(4)
    boxes, targets = random_boxes(rng, 25), random_boxes(rng, 25)
    deltas = rng.normal(scale=0.3, size=(25, 4)).astype(np.float32)
    window = np.array([0.1, 0.2, 0.7, 0.9], dtype=np.float32)

    @tf.function
    def run_all(b, t, d, w):
        return (
            box_ops.tf_overlaps(b, t),
            box_ops.tf_box_refinement(b, t),
            box_ops.tf_apply_box_deltas(b, d),
            box_ops.tf_clip_boxes(b, w),
        )

    overlaps, refinement, moved, clipped = run_all(boxes, targets, deltas, window)
    np.testing.assert_allclose(overlaps, box_ops.compute_overlaps(boxes, targets), atol=1e-6)
    np.testing.assert_allclose(refinement, box_ops.box_refinement(boxes, targets), atol=1e-5)
    np.testing.assert_allclose(moved, box_ops.apply_box_deltas(boxes, deltas), atol=1e-5)
    np.testing.assert_allclose(clipped, box_ops.clip_boxes(boxes, window), atol=0)


def test_tf_overlaps_zero_area_gives_zero_not_nan():
    boxes = tf.constant([[0.0, 0.0, 0.0, 0.0], [0.2, 0.2, 0.2, 0.6]])
    overlaps = box_ops.tf_overlaps(boxes, boxes).numpy()
    np.testing.assert_array_equal(overlaps, np.zeros((2, 2)))


def test_tf_trim_zeros():
    boxes = tf.constant([[0.1, 0.1, 0.5, 0.5], [0, 0, 0, 0], [0, 0, 0.2, 0.3], [0, 0, 0, 0]])
    kept, nonzero = box_ops.tf_trim_zeros(boxes)
    np.testing.assert_array_equal(nonzero.numpy(), [True, False, True, False])
    np.testing.assert_allclose(kept.numpy(), boxes.numpy()[[0, 2]])


def test_valid_boxes_is_one_definition_for_numpy_and_tensors():
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0, 0, 0, 0], [0.2, 0.2, 0.2, 0.6],
                      [0.3, 0.4, 0.1, 0.9], [0, 0, 0.2, 0.3]], dtype=np.float32)
    expected = [True, False, False, False, True]  # padding, zero height, negative height
    np.testing.assert_array_equal(box_ops.valid_boxes(boxes), expected)
    np.testing.assert_array_equal(box_ops.valid_boxes(tf.constant(boxes)).numpy(), expected)
    batch = np.stack([boxes, boxes[::-1]])
    assert box_ops.valid_boxes(batch).shape == (2, 5)
