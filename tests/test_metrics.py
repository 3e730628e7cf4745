"""Evaluation metrics against hand-worked cases and independent references (sklearn, scipy,
pycocotools, loop implementations written here)."""

from __future__ import annotations

import contextlib
import io
import statistics

import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy import stats
from sklearn.metrics import roc_auc_score

from ftmtl import metrics

# ------------------------------------------------------------------------------------ helpers


def box_mask(shape: tuple[int, int], box) -> np.ndarray:
    """Bool mask filling a (y1, x1, y2, x2) pixel box, y2/x2 exclusive."""
    mask = np.zeros(shape, dtype=bool)
    y1, x1, y2, x2 = (int(v) for v in box)
    mask[y1:y2, x1:x2] = True
    return mask


def loop_iou(a, b) -> float:
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def random_detection_set(rng: np.random.Generator, n_images: int = 12):
    """Images with 0-2 masses, detections near them (jittered) and elsewhere (scores random)."""
    predictions, truths = [], []
    for _ in range(n_images):
        n_masses = int(rng.integers(0, 3))
        corners = rng.uniform(0, 80, size=(n_masses, 2))
        sizes = rng.uniform(10, 30, size=(n_masses, 2))
        gt = np.concatenate([corners, corners + sizes], axis=1)
        near = [g + rng.normal(0, 4, size=4) for g in gt for _ in range(int(rng.integers(0, 3)))]
        far_corners = rng.uniform(0, 90, size=(int(rng.integers(0, 4)), 2))
        far = np.concatenate([far_corners, far_corners + 10], axis=1)
        boxes = np.concatenate([np.reshape(near, (-1, 4)), far]).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        predictions.append((boxes, rng.uniform(size=boxes.shape[0])))
        truths.append(gt)
    if sum(len(t) for t in truths) == 0:
        truths[0] = np.array([[0.0, 0.0, 10.0, 10.0]])
    return predictions, truths


def reference_froc_point(predictions, truths, threshold, iou_threshold):
    """(TPR, FPI) at one score threshold, recomputed from scratch with plain loops."""
    found = false_positives = 0
    for (boxes, scores), gt in zip(predictions, truths, strict=True):
        kept = sorted(
            (i for i in range(len(scores)) if scores[i] >= threshold), key=lambda i: -scores[i]
        )
        matched = set()
        for i in kept:
            ious = [loop_iou(boxes[i], g) for g in gt]
            free = [j for j in range(len(gt)) if ious[j] > iou_threshold and j not in matched]
            if free:
                matched.add(max(free, key=lambda j: ious[j]))
            elif not any(iou > iou_threshold for iou in ious):
                false_positives += 1
        found += len(matched)
    total = sum(len(g) for g in truths)
    return found / total, false_positives / len(truths)


# ---------------------------------------------------------------------------------------- ROC


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_roc_auc_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=60)
    scores = rng.uniform(size=60) + 0.4 * labels
    scores[:5] = scores[5]  # ties
    assert metrics.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_roc_auc_hand_worked():
    # Pairs (malignant, benign) ranked right: 0.8 above all three, 0.35 above 0.1 only: 4 of 6.
    labels = [0, 0, 0, 1, 1]
    scores = [0.1, 0.4, 0.6, 0.35, 0.8]
    assert metrics.roc_auc(labels, scores) == pytest.approx(4 / 6)


def test_roc_one_class_raises_and_names_it():
    with pytest.raises(ValueError, match=r"only class \[1\]"):
        metrics.roc_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"only class \[0\]"):
        metrics.roc_curve([0, 0], [0.1, 0.2])


def test_roc_rejects_bad_labels_and_lengths():
    with pytest.raises(ValueError, match="0/1"):
        metrics.roc_auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="scores has 2 entries"):
        metrics.roc_auc([0, 1, 1], [0.1, 0.2])


def test_roc_curve_ends_and_auc():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, size=40)
    scores = rng.uniform(size=40)
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(labels, scores))


def test_mean_roc_hand_worked_band():
    perfect = (np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0]), None)
    chance = (np.array([0.0, 1.0]), np.array([0.0, 1.0]), None)
    grid, mean, std = metrics.mean_roc([perfect, chance])
    # The perfect curve is 1 everywhere (the top of its rise at FPR 0); chance is the diagonal.
    np.testing.assert_allclose(mean, (1.0 + grid) / 2)
    np.testing.assert_allclose(std, np.abs(1.0 - grid) / np.sqrt(2), atol=1e-12)
    assert grid.shape == (101,)


def test_mean_roc_matches_np_interp_and_single_curve_has_no_band():
    rng = np.random.default_rng(3)
    fpr = np.concatenate([[0.0], np.sort(rng.uniform(size=8)), [1.0]])
    tpr = np.concatenate([[0.0], np.sort(rng.uniform(size=8)), [1.0]])
    grid = np.linspace(0, 1, 37)
    _, mean, std = metrics.mean_roc([(fpr, tpr, None)], grid=grid)
    np.testing.assert_allclose(mean, np.interp(grid, fpr, tpr), atol=1e-12)
    np.testing.assert_array_equal(std, 0.0)


# --------------------------------------------------------------------------------------- FROC


def hand_case():
    """Four images, three masses; see the per-detection notes in the tests."""
    predictions = [
        # Image A: mass [0,0,10,10].
        (np.array([[0, 0, 10, 10],     # 0.9 IoU 1.0 -> TP
                   [1, 1, 11, 11],     # 0.8 IoU 81/119 with the same mass -> duplicate
                   [50, 50, 60, 60]]),  # 0.3 -> FP
         np.array([0.9, 0.8, 0.3])),
        # Image B: masses [20,20,40,40] and [60,60,70,70].
        (np.array([[20, 20, 40, 30],    # 0.7 IoU 0.5 -> TP
                   [0, 0, 5, 5],        # 0.5 -> FP
                   [60, 60, 70, 68]]),  # 0.95 IoU 0.8 -> TP
         np.array([0.7, 0.5, 0.95])),
        # Image C: no mass.
        (np.array([[10, 10, 20, 20], [30, 30, 40, 40]]), np.array([0.6, 0.8])),  # two FPs
        # Image D: no mass, no detection.
        (np.zeros((0, 4)), np.zeros(0)),
    ]
    truths = [
        np.array([[0, 0, 10, 10]]),
        np.array([[20, 20, 40, 40], [60, 60, 70, 70]]),
        np.zeros((0, 4)),
        np.zeros((0, 4)),
    ]
    return predictions, truths


def test_froc_hand_worked_curve():
    predictions, truths = hand_case()
    curve = metrics.froc(predictions, truths)
    # score:      inf   0.95  0.9   0.8 (dup + FP)  0.7   0.6   0.5   0.3
    np.testing.assert_allclose(curve.thresholds, [np.inf, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3])
    np.testing.assert_allclose(curve.tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1, 1])
    np.testing.assert_allclose(curve.fpi, [0, 0, 0, 1 / 4, 1 / 4, 2 / 4, 3 / 4, 4 / 4])
    assert (curve.n_images, curve.n_masses) == (4, 3)


def test_froc_duplicate_as_false_positive():
    predictions, truths = hand_case()
    curve = metrics.froc(predictions, truths, duplicate_is_fp=True)
    np.testing.assert_allclose(curve.tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1, 1])
    np.testing.assert_allclose(curve.fpi, [0, 0, 0, 2 / 4, 2 / 4, 3 / 4, 4 / 4, 5 / 4])


def test_froc_images_without_masses_count_in_fpi():
    predictions, truths = hand_case()
    base = metrics.froc(predictions, truths)
    more = metrics.froc([*predictions, (np.zeros((0, 4)), np.zeros(0))], [*truths, np.zeros(0)])
    np.testing.assert_allclose(more.fpi, base.fpi * 4 / 5)
    np.testing.assert_allclose(more.tpr, base.tpr)


def test_froc_tpr_at_step_interpolation():
    predictions, truths = hand_case()
    curve = metrics.froc(predictions, truths)
    at = curve.tpr_at()
    assert list(at) == [0.5, 1.0, 2.0, 3.67, 5.0]
    assert at == pytest.approx({0.5: 1.0, 1.0: 1.0, 2.0: 1.0, 3.67: 1.0, 5.0: 1.0})
    # FPI 0 and 0.2 allow no FP: the best point is threshold 0.9 (TPR 2/3); 0.25 allows one.
    assert curve.tpr_at([0.0, 0.2, 0.25]) == pytest.approx({0.0: 2 / 3, 0.2: 2 / 3, 0.25: 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        curve.tpr_at([-1.0])


def test_froc_linear_interpolation_between_operating_points():
    predictions, truths = hand_case()
    curve = metrics.froc(predictions, truths)
    # Points (FPI, TPR), each FPI's top: (0, 2/3), (1/4, 1), (1/2, 1), ... Halfway from 0 to
    # 1/4 is halfway from 2/3 to 1; the step reading keeps 2/3 until the FP budget allows 1/4.
    linear = curve.tpr_at([0.0, 0.125, 0.25, 5.0], interpolation="linear")
    assert linear == pytest.approx({0.0: 2 / 3, 0.125: 5 / 6, 0.25: 1.0, 5.0: 1.0})
    step = curve.tpr_at([0.0, 0.125, 0.25, 5.0])
    assert step == pytest.approx({0.0: 2 / 3, 0.125: 2 / 3, 0.25: 1.0, 5.0: 1.0})
    with pytest.raises(ValueError, match="interpolation"):
        curve.tpr_at([1.0], interpolation="cubic")


def two_masses_under_one_box():
    """Image 1: masses m1, m2 side by side; A covers both (IoU 0.59 with m1, 0.50 with m2;
    score 0.9), B hits nothing (0.8), C lies on m1 only (0.7). Image 2: no mass, D (0.6)."""
    truths = [np.array([[0, 0, 10, 10], [0, 8, 10, 18]]), np.zeros((0, 4))]
    predictions = [
        (np.array([[0, 0, 10, 17], [50, 50, 60, 60], [0, 0, 10, 10]]), np.array([0.9, 0.8, 0.7])),
        (np.array([[0, 0, 5, 5]]), np.array([0.6])),
    ]
    return predictions, truths


def test_froc_greedy_and_per_lesion_counting_differ_on_a_box_over_two_masses():
    predictions, truths = two_masses_under_one_box()
    greedy = metrics.froc(predictions, truths)
    # A takes m1 (its better overlap), C is a duplicate on m1: m2 is never found.
    np.testing.assert_allclose(greedy.thresholds, [np.inf, 0.9, 0.8, 0.7, 0.6])
    np.testing.assert_allclose(greedy.tpr, [0, 0.5, 0.5, 0.5, 0.5])
    np.testing.assert_allclose(greedy.fpi, [0, 0, 0.5, 0.5, 1.0])
    lesion = metrics.froc(predictions, truths, matching="per_lesion")
    # A finds both masses at 0.9; C adds nothing; B and D are the false positives.
    np.testing.assert_allclose(lesion.thresholds, [np.inf, 0.9, 0.8, 0.6])
    np.testing.assert_allclose(lesion.tpr, [0, 1, 1, 1])
    np.testing.assert_allclose(lesion.fpi, [0, 0, 0.5, 1.0])
    with pytest.raises(ValueError, match="greedy matching only"):
        metrics.froc(predictions, truths, matching="per_lesion", duplicate_is_fp=True)
    with pytest.raises(ValueError, match="matching must be"):
        metrics.froc(predictions, truths, matching="hungarian")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_froc_per_lesion_matches_a_loop_reference(seed):
    predictions, truths = random_detection_set(np.random.default_rng(seed))
    curve = metrics.froc(predictions, truths, iou_threshold=0.3, matching="per_lesion")
    n_masses = sum(len(t) for t in truths)
    for threshold, tpr, fpi in zip(curve.thresholds[1:], curve.tpr[1:], curve.fpi[1:],
                                   strict=True):
        found = false = 0
        for (boxes, scores), masses in zip(predictions, truths, strict=True):
            kept = [b for b, s in zip(boxes, scores, strict=True) if s >= threshold]
            found += sum(any(loop_iou(b, m) > 0.3 for b in kept) for m in masses)
            false += sum(not any(loop_iou(b, m) > 0.3 for m in masses) for b in kept)
        assert (tpr, fpi) == pytest.approx((found / n_masses, false / len(truths)))


def test_froc_iou_boundary_is_strict():
    truth = [np.array([[0, 0, 10, 10]])]
    at_boundary = [(np.array([[0, 0, 10, 2]]), np.array([0.9]))]  # IoU exactly 0.2
    above = [(np.array([[0, 0, 10, 3]]), np.array([0.9]))]  # IoU 0.3
    curve = metrics.froc(at_boundary, truth, iou_threshold=0.2)
    np.testing.assert_allclose([curve.tpr[-1], curve.fpi[-1]], [0.0, 1.0])
    curve = metrics.froc(above, truth, iou_threshold=0.2)
    np.testing.assert_allclose([curve.tpr[-1], curve.fpi[-1]], [1.0, 0.0])


def test_froc_each_mass_once_and_best_overlap_first():
    truths = [np.array([[0, 0, 10, 10], [0, 6, 10, 16]])]
    # The first detection overlaps mass 1 (IoU 0.6) more than mass 0 (IoU 0.25): it takes mass 1,
    # so the second detection, on mass 0 only, still finds mass 0.
    boxes = np.array([[0, 4, 10, 14], [0, 0, 10, 9], [0, 0, 10, 10]])
    curve = metrics.froc([(boxes, np.array([0.9, 0.8, 0.7]))], truths)
    np.testing.assert_allclose(curve.tpr, [0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(curve.fpi, [0, 0, 0, 0])  # the third is a duplicate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_froc_matches_loop_reference_on_random_data(seed):
    predictions, truths = random_detection_set(np.random.default_rng(seed))
    curve = metrics.froc(predictions, truths, iou_threshold=0.3)
    for threshold, tpr, fpi in zip(curve.thresholds[1:], curve.tpr[1:], curve.fpi[1:],
                                   strict=True):
        ref_tpr, ref_fpi = reference_froc_point(predictions, truths, threshold, 0.3)
        assert (tpr, fpi) == pytest.approx((ref_tpr, ref_fpi))
    assert np.all(np.diff(curve.fpi) >= 0) and np.all(np.diff(curve.tpr) >= 0)


def test_froc_keeps_a_tie_group_of_infinite_scores_together():
    """Three detections scored +inf (two hits, one FP) are one operating point, not three."""
    truths = [np.array([[0, 0, 10, 10]]), np.array([[20, 20, 30, 30]])]
    predictions = [(np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), np.array([np.inf, np.inf])),
                   (np.array([[20, 20, 30, 30], [0, 0, 5, 5]]), np.array([np.inf, 0.4]))]
    curve = metrics.froc(predictions, truths)
    np.testing.assert_allclose(curve.thresholds, [np.inf, np.inf, 0.4])
    np.testing.assert_allclose(curve.tpr, [0, 1, 1])
    np.testing.assert_allclose(curve.fpi, [0, 0.5, 1.0])


def test_froc_without_detections_stays_at_zero():
    truths = [np.array([[0, 0, 10, 10]]), np.zeros((0, 4))]
    curve = metrics.froc([(np.zeros((0, 4)), np.zeros(0))] * 2, truths)
    assert curve.tpr.tolist() == [0.0] and curve.fpi.tolist() == [0.0]
    assert curve.tpr_at() == {0.5: 0.0, 1.0: 0.0, 2.0: 0.0, 3.67: 0.0, 5.0: 0.0}


def test_froc_rejects_bad_input():
    predictions, truths = hand_case()
    with pytest.raises(ValueError, match="4 prediction entries but 3"):
        metrics.froc(predictions, truths[:3])
    with pytest.raises(ValueError, match="no mass"):
        metrics.froc([(np.zeros((0, 4)), np.zeros(0))], [np.zeros((0, 4))])
    with pytest.raises(ValueError, match=r"predictions\[0\] scores has 1 entries"):
        metrics.froc([(np.zeros((2, 4)), np.zeros(1))], [np.ones((1, 4))])


def test_mean_froc_over_folds():
    predictions, truths = hand_case()
    first = metrics.froc(predictions, truths)
    second = metrics.froc(predictions, truths, duplicate_is_fp=True)
    grid = np.array([0.0, 0.25, 0.5, 1.0, 1.0])
    _, mean, std = metrics.mean_froc([first, second], grid)
    # first: 2/3, 1, 1, 1; second: 2/3, 2/3, 1, 1 (its FPI jumps from 0 to 0.5 at threshold 0.8)
    np.testing.assert_allclose(mean, [2 / 3, 5 / 6, 1, 1, 1])
    np.testing.assert_allclose(std, [0, np.std([1, 2 / 3], ddof=1), 0, 0, 0], atol=1e-12)
    _, single_mean, single_std = metrics.mean_froc([second], grid)
    np.testing.assert_allclose(single_mean, [2 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_array_equal(single_std, 0.0)


def test_tpr_vs_iou_hand_worked():
    predictions, truths = hand_case()
    sweep = metrics.tpr_vs_iou(predictions, truths, fpi=0.5)
    # IoUs of the TPs: 1.0 (A), 0.5 (B, mass 1), 0.8 (B, mass 2); the duplicate's is 0.68.
    # <= 0.4: the base curve, TPR 1 at FPI 0.5. 0.5-0.6: the IoU-0.5 detection turns FP.
    # 0.7: the duplicate turns FP as well (still 2/3). 0.8-0.9: the IoU-0.8 one too.
    expected = {0.1: 1, 0.2: 1, 0.3: 1, 0.4: 1, 0.5: 2 / 3, 0.6: 2 / 3, 0.7: 2 / 3,
                0.8: 1 / 3, 0.9: 1 / 3}
    assert list(sweep) == list(expected)
    assert sweep == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_tpr_vs_iou_non_increasing_on_random_data(seed):
    predictions, truths = random_detection_set(np.random.default_rng(seed), n_images=20)
    values = list(metrics.tpr_vs_iou(predictions, truths, fpi=1.0).values())
    assert np.all(np.diff(values) <= 1e-12)
    assert values[0] > values[-1]  # the data is not degenerate


# ------------------------------------------------------------------------------ segmentation


def test_dice_and_iou_hand_worked():
    a = box_mask((8, 8), (0, 0, 4, 4))  # 16 pixels
    b = box_mask((8, 8), (2, 2, 6, 6))  # 16 pixels, 4 shared
    assert metrics.dice(a, b) == pytest.approx(2 * 4 / 32)
    assert metrics.mask_iou(a, b) == pytest.approx(4 / 28)
    assert metrics.dice(a, a) == 1.0 and metrics.mask_iou(a, a) == 1.0
    empty = np.zeros((8, 8), dtype=bool)
    assert metrics.dice(empty, empty) == 1.0 and metrics.mask_iou(empty, empty) == 1.0
    assert metrics.dice(a, empty) == 0.0 and metrics.mask_iou(a, empty) == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.dice(a, np.zeros((8, 9)))
    assert metrics.dice(a.astype(np.uint8), b.astype(float)) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="binary"):
        metrics.mask_iou(a * 0.7, b)


def test_detected_dice_picks_best_detection_and_excludes_misses():
    shape = (64, 64)
    gt_boxes = np.array([[10, 10, 20, 20], [40, 40, 50, 50]])
    gt_masks = np.stack([box_mask(shape, b) for b in gt_boxes], axis=-1)
    pred_boxes = np.array([[11, 11, 21, 21], [10, 10, 20, 20], [0, 50, 8, 60]])
    pred_masks = np.stack(
        [
            box_mask(shape, (11, 11, 21, 21)),  # box IoU 81/119
            box_mask(shape, (10, 10, 15, 20)),  # box IoU 1, half the mass -> Dice 2*50/150
            box_mask(shape, (0, 50, 8, 60)),  # far away
        ],
        axis=-1,
    )
    result = metrics.detected_dice(pred_masks, pred_boxes, [0.99, 0.5, 0.9], gt_masks, gt_boxes)
    assert result.dices == pytest.approx([100 / 150])
    assert result.n_missed == 1


def test_detected_dice_ties_go_to_higher_score_and_boundary_counts():
    shape = (32, 32)
    gt_boxes = np.array([[0, 0, 10, 10]])
    gt_masks = box_mask(shape, gt_boxes[0])[..., None]
    pred_boxes = np.array([[0, 0, 10, 4], [0, 0, 10, 4]])  # box IoU exactly 0.4, twice
    pred_masks = np.stack([box_mask(shape, (0, 0, 10, 4)), box_mask(shape, (0, 0, 10, 10))], -1)
    high_second = metrics.detected_dice(pred_masks, pred_boxes, [0.3, 0.6], gt_masks, gt_boxes)
    high_first = metrics.detected_dice(pred_masks, pred_boxes, [0.6, 0.3], gt_masks, gt_boxes)
    assert high_second.dices == [1.0] and high_second.n_missed == 0
    assert high_first.dices == pytest.approx([2 * 40 / 140])
    below = metrics.detected_dice(pred_masks, pred_boxes, [0.6, 0.3], gt_masks, gt_boxes,
                                  iou_threshold=0.41)
    assert below.dices == [] and below.n_missed == 1


def test_detected_dice_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="full image resolution"):
        metrics.detected_dice(np.zeros((8, 8, 1)), np.ones((1, 4)), [0.5],
                              np.zeros((16, 16, 1)), np.ones((1, 4)))
    with pytest.raises(ValueError, match=r"pred_masks must have shape \[H, W, 2\]"):
        metrics.detected_dice(np.zeros((8, 8, 1)), np.ones((2, 4)), [0.5, 0.4],
                              np.zeros((8, 8, 1)), np.ones((1, 4)))


def test_case_detected():
    gt = np.array([[0, 0, 10, 10], [50, 50, 60, 60]])
    assert metrics.case_detected(np.array([[50, 50, 60, 54]]), gt)  # IoU exactly 0.4
    assert not metrics.case_detected(np.array([[50, 50, 60, 53]]), gt)  # IoU 0.3
    assert not metrics.case_detected(np.zeros((0, 4)), gt)
    assert not metrics.case_detected(np.array([[0, 0, 10, 10]]), np.zeros((0, 4)))


# -------------------------------------------------------------------------------- statistics


def test_mean_std_sample_std_and_format():
    values = [0.90, 0.92, 0.94, 0.91, 0.93]
    mean, std = metrics.mean_std(values)
    assert mean == pytest.approx(statistics.mean(values))
    assert std == pytest.approx(statistics.stdev(values))  # ddof=1
    assert metrics.format_mean_std(values) == "0.92 +- 0.02"
    assert metrics.format_mean_std([0.5], digits=3) == "0.500 +- 0.000"
    assert metrics.mean_std([0.7]) == (0.7, 0.0)
    with pytest.raises(ValueError, match="no values"):
        metrics.mean_std([])


def test_paired_t_test_equals_scipy_and_hand_formula():
    a = [0.92, 0.93, 0.90, 0.94, 0.91]
    b = [0.89, 0.90, 0.88, 0.91, 0.90]
    t, p = metrics.paired_t_test(a, b)
    reference = stats.ttest_rel(a, b)
    assert (t, p) == pytest.approx((reference.statistic, reference.pvalue))
    d = np.subtract(a, b)
    assert t == pytest.approx(d.mean() / (d.std(ddof=1) / np.sqrt(d.size)))
    assert p == pytest.approx(2 * stats.t.sf(abs(t), df=d.size - 1))


def test_paired_t_test_of_constant_differences_is_undefined():
    # 0.705 - 0.682 in floating point differs in the last bits from fold to fold.
    a = [31 / 44, 31 / 44 + 0.1, 31 / 44 + 0.3]
    b = [30 / 44, 30 / 44 + 0.1, 30 / 44 + 0.3]
    t, p = metrics.paired_t_test(a, b)
    assert np.isnan(t) and np.isnan(p)
    assert all(np.isnan(v) for v in metrics.paired_t_test([1, 1], [1, 1]))


def test_paired_t_test_rejects_bad_input():
    with pytest.raises(ValueError, match="a has 3 values and b has 2"):
        metrics.paired_t_test([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2 pairs"):
        metrics.paired_t_test([1.0], [2.0])


# ---------------------------------------------------------------------------- per-image AP


def ap_case():
    gt_boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]])
    gt_class_ids = np.array([1, 1, 1, 2])
    pred_boxes = np.array([
        [0, 0, 10, 10],  # 0.9 class 1 -> TP
        [0, 0, 10, 10],  # 0.8 class 1, same mass again -> FP
        [60, 60, 70, 70],  # 0.7 class 1 on a class-2 mass -> FP
        [20, 20, 30, 25],  # 0.6 class 1, IoU exactly 0.5 -> TP (>=)
        [60, 60, 70, 70],  # 0.5 class 2 -> TP
    ])
    pred_class_ids = np.array([1, 1, 1, 1, 2])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    return gt_boxes, gt_class_ids, pred_boxes, pred_class_ids, scores


def masks_of(boxes, shape=(80, 80)) -> np.ndarray:
    return np.stack([box_mask(shape, b) for b in boxes], axis=-1)


def test_compute_ap_hand_worked():
    gt_boxes, gt_ids, pred_boxes, pred_ids, scores = ap_case()
    order = np.array([3, 0, 4, 2, 1])  # input order must not matter
    ap, precisions, recalls, overlaps = metrics.compute_ap(
        gt_boxes, gt_ids, None, pred_boxes[order], pred_ids[order], scores[order], None
    )
    # precision 1, 1/2, 1/3, 2/4, 3/5 at recall 1/4, 1/4, 1/4, 2/4, 3/4; envelope 1, .6, .6, .6
    assert ap == pytest.approx(0.25 * 1 + 0.25 * 0.6 + 0.25 * 0.6)
    np.testing.assert_allclose(recalls, [0, 0.25, 0.25, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(precisions, [1, 1, 0.6, 0.6, 0.6, 0.6, 0])
    assert overlaps.shape == (5, 4) and overlaps[3, 1] == pytest.approx(0.5)  # in score order


def test_compute_ap_masks_padding_and_threshold():
    gt_boxes, gt_ids, pred_boxes, pred_ids, scores = ap_case()
    padded_gt = np.concatenate([gt_boxes, np.zeros((2, 4))])
    padded_ids = np.concatenate([gt_ids, [0, 0]])
    ap_masks, *_ = metrics.compute_ap(
        padded_gt, padded_ids, masks_of(padded_gt), pred_boxes, pred_ids, scores,
        masks_of(pred_boxes), use_masks=True,
    )
    assert ap_masks == pytest.approx(0.55)
    # Above 0.5 the IoU-0.5 detection is an FP: precision 1, 1/2, 1/3, 1/4, 2/5 -> .25 + .25*.4
    ap_strict, *_ = metrics.compute_ap(gt_boxes, gt_ids, None, pred_boxes, pred_ids, scores,
                                       None, iou_threshold=0.51)
    assert ap_strict == pytest.approx(0.25 + 0.25 * 0.4)
    ap_none, *_ = metrics.compute_ap(np.zeros((0, 4)), [], None, pred_boxes, pred_ids, scores,
                                     None)
    assert np.isnan(ap_none)
    with pytest.raises(ValueError, match="pred_masks is required"):
        metrics.compute_ap(gt_boxes, gt_ids, masks_of(gt_boxes), pred_boxes, pred_ids, scores,
                           None, use_masks=True)


# ------------------------------------------------------------------------- COCO-style AP


SHAPE = (48, 64)


def ellipse(centre, radii, shape=SHAPE) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2 <= 1.0


def tight_box(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], dtype=np.float64)


def coco_records():
    """Five images, two classes: hits at various IoUs, duplicates, wrong classes, misses, an
    image without ground truth, a score tie across images, and exact-IoU rectangles."""
    rng = np.random.default_rng(11)
    layouts = [
        # (gt: [(centre, radii, class)], pred: [(centre, radii, class, score)])
        ([((12, 12), (6, 8), 1), ((30, 40), (9, 12), 2)],
         [((12, 13), (6, 8), 1, 0.9), ((31, 40), (8, 11), 2, 0.8), ((12, 12), (5, 7), 1, 0.6),
          ((30, 42), (9, 12), 1, 0.55)]),
        ([((20, 20), (10, 10), 1), ((10, 50), (5, 6), 1), ((36, 50), (6, 9), 2)],
         [((21, 22), (9, 10), 1, 0.7), ((38, 10), (5, 5), 1, 0.8), ((36, 52), (7, 10), 2, 0.35),
          ((10, 52), (5, 7), 1, 0.3)]),
        ([],
         [((20, 30), (8, 8), 2, 0.65), ((10, 10), (4, 4), 1, 0.2)]),
        ([((24, 32), (12, 16), 2), ((8, 8), (4, 5), 1)],
         [((25, 34), (11, 14), 2, 0.8), ((24, 30), (14, 18), 2, 0.5), ((9, 9), (4, 4), 1, 0.45),
          ((40, 60), (3, 3), 1, 0.4)]),
    ]
    records = []
    for truths, preds in layouts:
        gt_masks = [ellipse(c, r) for c, r, _ in truths]
        pred_masks = [ellipse(c, r) & (rng.uniform(size=SHAPE) > 0.05) for c, r, _, _ in preds]
        records.append({
            "gt_masks": np.stack(gt_masks, -1) if gt_masks else np.zeros((*SHAPE, 0), bool),
            "gt_boxes": np.array([tight_box(m) for m in gt_masks]).reshape(-1, 4),
            "gt_class_ids": np.array([k for _, _, k in truths], dtype=int),
            "pred_masks": np.stack(pred_masks, -1),
            # Predicted boxes are not the masks' boxes: jittered, non-integer.
            "pred_boxes": np.array([tight_box(m) + rng.normal(0, 0.7, 4) for m in pred_masks]),
            "pred_class_ids": np.array([k for _, _, k, _ in preds], dtype=int),
            "pred_scores": np.array([s for _, _, _, s in preds]),
        })
    records.append(rectangle_record())
    return records


def rectangle_record():
    """Class-1 rectangles whose IoUs are exact: matching rules decide the outcome here."""
    gt_boxes = np.array([
        [0, 0, 10, 10], [0, 2, 10, 12],  # a, b
        [20, 0, 30, 10], [20, 3, 30, 13],  # c, d
        [35, 20, 45, 40],  # e
    ], dtype=np.float64)
    pred_boxes = np.array([
        [0, 1, 10, 11],  # 0.95: IoU 90/110 with a and with b: the tie goes to the later, b
        [0, 0, 10, 10],  # 0.90: a (1.0); had a been taken, b at 80/120 fails above 0.65
        [20, 2, 30, 12],  # 0.80: c 80/120, d 90/110: the best, d
        [20, 0, 30, 10],  # 0.75: c (1.0); had c been taken, d at 70/130 fails above 0.55
        [35, 20, 45, 30],  # 0.70: e, IoU exactly 0.5: a hit at threshold 0.5 (>=)
    ], dtype=np.float64)
    return {
        "gt_boxes": gt_boxes,
        "gt_class_ids": np.ones(5, dtype=int),
        "gt_masks": masks_of(gt_boxes, SHAPE),
        "pred_boxes": pred_boxes,
        "pred_class_ids": np.ones(5, dtype=int),
        "pred_scores": np.array([0.95, 0.9, 0.8, 0.75, 0.7]),
        "pred_masks": masks_of(pred_boxes, SHAPE),
    }


def encode(mask: np.ndarray) -> dict:
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))


def pycocotools_precision(records, iou_type: str, iou_thresholds) -> np.ndarray:
    """COCOeval's precision [T, R, K] for the records (area 'all', up to 1000 detections)."""
    images, annotations, results = [], [], []
    for image_id, record in enumerate(records, start=1):
        images.append({"id": image_id, "height": SHAPE[0], "width": SHAPE[1]})
        for i, (box, class_id) in enumerate(zip(record["gt_boxes"], record["gt_class_ids"],
                                                strict=True)):
            y1, x1, y2, x2 = box
            rle = encode(record["gt_masks"][..., i])
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(class_id),
                "bbox": [x1, y1, x2 - x1, y2 - y1], "segmentation": rle,
                "area": float(coco_mask.area(rle)), "iscrowd": 0,
            })
        for i, (box, class_id, score) in enumerate(zip(
                record["pred_boxes"], record["pred_class_ids"], record["pred_scores"],
                strict=True)):
            result = {"image_id": image_id, "category_id": int(class_id), "score": float(score)}
            if iou_type == "bbox":
                y1, x1, y2, x2 = box
                result["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            else:
                result["segmentation"] = encode(record["pred_masks"][..., i])
            results.append(result)
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = {"images": images, "annotations": annotations,
                                "categories": [{"id": 1}, {"id": 2}]}
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), iou_type)
        evaluation.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
        evaluation.params.maxDets = [1000]
        evaluation.params.areaRng = [[0, 1e10]]
        evaluation.params.areaRngLbl = ["all"]
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation.eval["precision"][:, :, :, 0, 0]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_coco_style_ap_equals_pycocotools(iou_type):
    records = coco_records()
    thresholds = np.linspace(0.5, 0.95, 10)
    ours = metrics.coco_style_ap(records, iou_thresholds=thresholds,
                                 use_masks=iou_type == "segm")
    reference = pycocotools_precision(records, iou_type, thresholds)  # [T, R, K]
    per_threshold = reference.mean(axis=1)  # [T, K]
    for k, class_id in enumerate((1, 2)):
        for t, threshold in enumerate(thresholds):
            assert ours["per_iou"][float(threshold)][class_id] == pytest.approx(
                per_threshold[t, k], abs=1e-6
            )
        assert ours["per_class"][class_id] == pytest.approx(per_threshold[:, k].mean(), abs=1e-6)
    assert ours["mAP"] == pytest.approx(reference.mean(), abs=1e-6)
    # The case is not trivial: APs differ over thresholds and are neither 0 nor 1 throughout.
    assert len({round(v, 6) for v in per_threshold.ravel()}) > 4


def test_coco_style_ap_at_05_and_absent_class():
    records = coco_records()
    ours = metrics.coco_style_ap(records, class_ids=[1, 2, 3])
    reference = pycocotools_precision(records, "bbox", [0.5]).mean(axis=1)[0]
    assert [ours["per_class"][1], ours["per_class"][2]] == pytest.approx(reference, abs=1e-6)
    assert np.isnan(ours["per_class"][3])  # no ground truth: COCO's -1, left out of the mean
    assert ours["mAP"] == pytest.approx(reference.mean(), abs=1e-6)
    with pytest.raises(ValueError, match=r"records\[0\] lacks \['pred_scores'\]"):
        metrics.coco_style_ap([{k: v for k, v in records[0].items() if k != "pred_scores"}])
