"""Evaluation metrics of docs/method.md §5: ROC/AUC, FROC, the IoU sweep, Dice, paired tests, AP.

Everything works on plain numpy inputs. Boxes are pixel boxes ``(y1, x1, y2, x2)`` with
``y2``/``x2`` exclusive (docs/DESIGN.md); masks are bool ``[H, W]`` or ``[H, W, N]``.

Conventions chosen here (the paper does not state them):

- FROC: a detection is a true positive when its box IoU with a ground-truth mass is strictly
  above the threshold (the paper's "> 0.2"). Detections are matched greedily in descending score
  order, each to the still unmatched mass it overlaps most; a detection that only hits masses
  already found is a duplicate, by default neither a TP nor a FP (``duplicate_is_fp``).
- "Detected" (Dice, the AUC on detected cases) means box IoU >= 0.4, as docs/method.md §5 says.
- Spreads over folds (``mean_std``, the ROC and FROC bands) are sample standard deviations
  (ddof=1), as papers' "mean +- std" usually are; a single value has spread 0.

The instance AP (``compute_ap``, ``compute_matches``, ``coco_style_ap``) is Mask R-CNN's, from
``mrcnn.average_precision``, re-exported here; the input checks (``mrcnn.eval_inputs``) and the
greedy matching (``mrcnn.average_precision.greedy_match``) are shared with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from sklearn import metrics as sk_metrics

# compute_ap, compute_matches, coco_style_ap and COCO_RECALL_THRESHOLDS are re-exported.
from mrcnn.average_precision import COCO_RECALL_THRESHOLDS as COCO_RECALL_THRESHOLDS
from mrcnn.average_precision import coco_style_ap as coco_style_ap
from mrcnn.average_precision import compute_ap as compute_ap
from mrcnn.average_precision import compute_matches as compute_matches
from mrcnn.average_precision import greedy_match, score_order
from mrcnn.box_ops import compute_overlaps
from mrcnn.eval_inputs import check_binary, check_boxes, check_mask_stack, check_vector

ROC_GRID = np.linspace(0.0, 1.0, 101)
FROC_POINTS = (0.5, 1.0, 2.0, 3.67, 5.0)
IOU_SWEEP = tuple(float(t) for t in np.round(np.arange(0.1, 0.91, 0.1), 2))


def _sample_std(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Sample std (ddof=1) along axis; 0 when there is only one value."""
    if values.shape[axis] < 2:
        return np.zeros(np.delete(values.shape, axis))
    return np.std(values, axis=axis, ddof=1)


# ------------------------------------------------------------------------------------ ROC


def _binary_labels(labels: np.ndarray | Sequence, scores: np.ndarray | Sequence, where: str):
    y = np.asarray(labels).reshape(-1)
    s = check_vector(scores, f"{where}: scores", length=y.shape[0])
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"metrics.{where}: labels must be 0/1 (or bool), got {np.unique(y)}")
    present = np.unique(y.astype(int))
    if present.size < 2:
        raise ValueError(
            f"metrics.{where}: labels contain only class {present.tolist()}; ROC needs both "
            "benign (0) and malignant (1) cases"
        )
    return y.astype(int), s


def roc_auc(labels: np.ndarray | Sequence, scores: np.ndarray | Sequence) -> float:
    """Area under the ROC curve of binary labels (1 = malignant) and scores."""
    y, s = _binary_labels(labels, scores, "roc_auc")
    return float(sk_metrics.roc_auc_score(y, s))


def roc_curve(
    labels: np.ndarray | Sequence, scores: np.ndarray | Sequence
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) of sklearn's ROC; starts at (0, 0) and ends at (1, 1)."""
    y, s = _binary_labels(labels, scores, "roc_curve")
    fpr, tpr, thresholds = sk_metrics.roc_curve(y, s)
    return fpr, tpr, thresholds


def _interpolate_roc(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """TPR of the piecewise-linear ROC at each grid FPR.

    At an FPR where the curve rises vertically the top of the rise is taken (the best TPR reached
    at that FPR); between points the curve is linear.
    """
    last = np.searchsorted(fpr, grid, side="right") - 1  # last curve point with fpr <= x
    last = np.clip(last, 0, fpr.size - 1)
    following = np.minimum(last + 1, fpr.size - 1)
    span = fpr[following] - fpr[last]
    fraction = np.divide(grid - fpr[last], span, out=np.zeros_like(grid), where=span > 0)
    return tpr[last] + fraction * (tpr[following] - tpr[last])


def mean_roc(
    curves: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], grid: np.ndarray = ROC_GRID
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid, mean TPR, std TPR) of fold ROC curves interpolated onto one FPR grid (the band)."""
    grid = np.asarray(grid, dtype=np.float64)
    rows = [_interpolate_roc(np.asarray(f), np.asarray(t), grid) for f, t, _ in curves]
    if not rows:
        raise ValueError("metrics.mean_roc: no curves given")
    tprs = np.stack(rows)
    return grid, tprs.mean(axis=0), _sample_std(tprs)


# ------------------------------------------------------------------------------------- FROC


@dataclass(frozen=True)
class FrocCurve:
    """FROC operating points, from the strictest threshold (+inf: no detection) downwards.

    ``thresholds[i]`` keeps the detections with score >= it; ``fpi`` and ``tpr`` never decrease.
    """

    fpi: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    n_images: int = 0
    n_masses: int = 0

    def tpr_at(self, fpi_points: Iterable[float] = FROC_POINTS,
               interpolation: str = "step") -> dict[float, float]:
        """TPR at each FPI point. ``"step"`` (what our reports use): the TPR of the most
        lenient threshold whose FPI does not exceed the point (the best TPR reachable within
        that FP budget). ``"linear"``: linear between the operating points around it (MONAI's
        ``compute_froc_score`` and the CAMELYON16 evaluation read FROC curves this way). Past
        the curve's last point (all detections kept) the last TPR holds either way."""
        points = [float(p) for p in fpi_points]
        return dict(zip(points, self.tpr_at_array(points, interpolation).tolist(), strict=True))

    def tpr_at_array(self, fpi_points: Iterable[float],
                     interpolation: str = "step") -> np.ndarray:
        """``tpr_at`` as an array in the order of the points (duplicates kept)."""
        points = np.asarray(list(fpi_points), dtype=np.float64)
        if not np.all(points >= 0):
            raise ValueError(f"FrocCurve.tpr_at: FPI points must be >= 0, got {points}")
        if interpolation == "step":
            return self.tpr[np.searchsorted(self.fpi, points, side="right") - 1]
        if interpolation == "linear":
            # One point per FPI value, the highest TPR reached at it (the top of each vertical
            # step), so that the x values increase strictly.
            last = np.append(self.fpi[1:] != self.fpi[:-1], True)
            return np.interp(points, self.fpi[last], self.tpr[last])
        raise ValueError(f"FrocCurve.tpr_at: interpolation must be 'step' or 'linear', got "
                         f"{interpolation!r}")


def _label_image(
    boxes: np.ndarray, scores: np.ndarray, truths: np.ndarray, iou_threshold: float,
    duplicate_is_fp: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(is TP, is FP) per detection of one image, in the input order."""
    order = score_order(scores)
    matched_to, duplicate = greedy_match(
        compute_overlaps(boxes[order], truths), iou_threshold, strict=True
    )
    is_tp = np.zeros(scores.shape[0], dtype=bool)
    is_fp = np.zeros(scores.shape[0], dtype=bool)
    is_tp[order] = matched_to >= 0
    is_fp[order] = (matched_to < 0) & (duplicate_is_fp | ~duplicate)
    return is_tp, is_fp


def label_detections(
    boxes: np.ndarray | Sequence, scores: np.ndarray | Sequence,
    truths: np.ndarray | Sequence, iou_threshold: float = 0.2, duplicate_is_fp: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(is TP, is FP) per detection of one image as ``froc``'s greedy matching labels them;
    the labels hold at every score threshold, so a FROC can be re-counted from them
    (``ftmtl.bootstrap`` does, once per resample)."""
    boxes = check_boxes(boxes, "label_detections: boxes")
    scores = check_vector(scores, "label_detections: scores", length=boxes.shape[0])
    truths = check_boxes(truths, "label_detections: truths")
    return _label_image(boxes, scores, truths, iou_threshold, duplicate_is_fp)


def _per_lesion_events(
    boxes: np.ndarray, scores: np.ndarray, truths: np.ndarray, iou_threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, is TP, is FP) events of one image, the per-lesion way: one TP event per mass
    that some detection hits, at the best score among those; one FP event per detection that
    hits no mass. Detections on an already-found mass count for nothing."""
    hits = compute_overlaps(boxes, truths) > iou_threshold  # [N, G]
    found = hits.any(axis=0)
    mass_scores = np.where(hits, scores[:, None], -np.inf).max(axis=0, initial=-np.inf)[found]
    false = scores[~hits.any(axis=1)]
    events = np.concatenate([mass_scores, false])
    is_tp = np.arange(events.size) < mass_scores.size
    return events, is_tp, ~is_tp


MATCHINGS = ("greedy", "per_lesion")


def froc(
    predictions: Sequence[tuple[np.ndarray, np.ndarray]],
    ground_truths: Sequence[np.ndarray],
    iou_threshold: float = 0.2,
    duplicate_is_fp: bool = False,
    matching: str = "greedy",
) -> FrocCurve:
    """FROC over a set of images: TPR (found masses / all masses) against FPs per image.

    predictions: per image (boxes [N, 4], scores [N]); ground_truths: per image boxes [G, 4]
    (G = 0 for images without a mass; they still count as images). A detection hits a mass when
    their IoU is > iou_threshold. ``matching``:

    - ``"greedy"`` (what our reports use): within an image, detections by descending score each
      take the unmatched mass they overlap most; a lower threshold only adds detections, so
      every label holds at every threshold. A box over two masses finds one; a detection on a
      mass already found is a duplicate (an FP with ``duplicate_is_fp``, else ignored).
    - ``"per_lesion"`` (LUNA16's and CAMELYON16's count): a mass is found at a threshold when
      any detection kept there hits it; a detection is an FP when it hits no mass. A box over
      two masses finds both; duplicates are ignored (``duplicate_is_fp`` must stay False).
    """
    if matching not in MATCHINGS:
        raise ValueError(f"metrics.froc: matching must be one of {MATCHINGS}, got {matching!r}")
    if matching == "per_lesion" and duplicate_is_fp:
        raise ValueError("metrics.froc: duplicate_is_fp applies to greedy matching only "
                         "(per-lesion counting ignores detections on a found mass)")
    if len(predictions) != len(ground_truths):
        raise ValueError(
            f"metrics.froc: {len(predictions)} prediction entries but {len(ground_truths)} "
            "ground-truth entries (one each per image)"
        )
    if not predictions:
        raise ValueError("metrics.froc: no images given")
    all_scores, all_tp, all_fp = [], [], []
    n_masses = 0
    for i, ((boxes, scores), truths) in enumerate(zip(predictions, ground_truths, strict=True)):
        boxes = check_boxes(boxes, f"froc: predictions[{i}] boxes")
        scores = check_vector(scores, f"froc: predictions[{i}] scores", length=boxes.shape[0])
        truths = check_boxes(truths, f"froc: ground_truths[{i}]")
        if matching == "greedy":
            is_tp, is_fp = _label_image(boxes, scores, truths, iou_threshold, duplicate_is_fp)
        else:
            scores, is_tp, is_fp = _per_lesion_events(boxes, scores, truths, iou_threshold)
        all_scores.append(scores)
        all_tp.append(is_tp)
        all_fp.append(is_fp)
        n_masses += truths.shape[0]
    if n_masses == 0:
        raise ValueError("metrics.froc: the ground truths hold no mass; TPR is undefined")
    return _froc_curve(
        np.concatenate(all_scores), np.concatenate(all_tp), np.concatenate(all_fp),
        n_images=len(predictions), n_masses=n_masses,
    )


def _froc_curve(
    scores: np.ndarray, is_tp: np.ndarray, is_fp: np.ndarray, n_images: int, n_masses: int
) -> FrocCurve:
    order = score_order(scores)
    scores, tp, fp = scores[order], np.cumsum(is_tp[order]), np.cumsum(is_fp[order])
    # One operating point per distinct score: the last detection holding that score. (Scores
    # are compared, not differenced: inf - inf is NaN, which would split a tie group of +inf.)
    ends = np.flatnonzero(np.append(scores[1:] != scores[:-1], True)) if scores.size else \
        np.zeros(0, dtype=np.int64)
    thresholds = np.concatenate([[np.inf], scores[ends]])
    tpr = np.concatenate([[0.0], tp[ends] / n_masses])
    fpi = np.concatenate([[0.0], fp[ends] / n_images])
    return FrocCurve(fpi=fpi, tpr=tpr, thresholds=thresholds, n_images=n_images,
                     n_masses=n_masses)


def mean_froc(
    curves: Iterable[FrocCurve], fpi_grid: np.ndarray | Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpi_grid, mean TPR, std TPR) of fold FROC curves, each read with ``tpr_at``."""
    grid = np.asarray(fpi_grid, dtype=np.float64)
    rows = [curve.tpr_at_array(grid) for curve in curves]
    if not rows:
        raise ValueError("metrics.mean_froc: no curves given")
    tprs = np.stack(rows)
    return grid, tprs.mean(axis=0), _sample_std(tprs)


def tpr_vs_iou(
    predictions: Sequence[tuple[np.ndarray, np.ndarray]],
    ground_truths: Sequence[np.ndarray],
    fpi: float = 3.67,
    iou_thresholds: Iterable[float] = IOU_SWEEP,
) -> dict[float, float]:
    """TPR at a fixed FPI for each IoU threshold (TP when IoU > threshold), the paper's sweep."""
    sweep = {}
    for threshold in iou_thresholds:
        curve = froc(predictions, ground_truths, iou_threshold=float(threshold))
        sweep[float(threshold)] = float(curve.tpr_at_array([fpi])[0])
    return sweep


# ------------------------------------------------------------------------------ segmentation


def _mask_pair(a: np.ndarray, b: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = check_binary(a, f"{where}: a"), check_binary(b, f"{where}: b")
    if a.shape != b.shape:
        raise ValueError(f"metrics.{where}: masks differ in shape, {a.shape} and {b.shape}")
    return a, b


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2|A n B| / (|A| + |B|); two empty masks agree perfectly, so they give 1.0."""
    a, b = _mask_pair(a, b, "dice")
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """|A n B| / |A u B|; two empty masks give 1.0, as for ``dice``."""
    a, b = _mask_pair(a, b, "mask_iou")
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


@dataclass(frozen=True)
class DetectedDice:
    """Dice of each detected mass (in ground-truth order) and how many masses were missed."""

    dices: list[float] = field(default_factory=list)
    n_missed: int = 0


def detected_dice(
    pred_masks: np.ndarray,
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    gt_masks: np.ndarray,
    gt_boxes: np.ndarray,
    iou_threshold: float = 0.4,
) -> DetectedDice:
    """Dice at full resolution of each mass detected with box IoU >= iou_threshold.

    Each mass takes the detection that overlaps it most (ties: the higher score), independently
    of the other masses; undetected masses are left out of the Dice (the paper's setting) and
    counted in ``n_missed``.
    """
    pred_boxes = check_boxes(pred_boxes, "detected_dice: pred_boxes")
    gt_boxes = check_boxes(gt_boxes, "detected_dice: gt_boxes")
    scores = check_vector(pred_scores, "detected_dice: pred_scores", length=pred_boxes.shape[0])
    pred_masks = check_mask_stack(pred_masks, "detected_dice: pred_masks", pred_boxes.shape[0])
    gt_masks = check_mask_stack(gt_masks, "detected_dice: gt_masks", gt_boxes.shape[0])
    if pred_masks.shape[:2] != gt_masks.shape[:2]:
        raise ValueError(
            f"metrics.detected_dice: pred_masks {pred_masks.shape[:2]} and gt_masks "
            f"{gt_masks.shape[:2]} differ in size; compare at full image resolution"
        )
    overlaps = compute_overlaps(pred_boxes, gt_boxes)  # [N, G]
    dices, missed = [], 0
    for g in range(gt_boxes.shape[0]):
        candidates = np.flatnonzero(overlaps[:, g] >= iou_threshold)
        if candidates.size == 0:
            missed += 1
            continue
        # Highest IoU first, then highest score.
        best = candidates[np.lexsort((-scores[candidates], -overlaps[candidates, g]))[0]]
        dices.append(dice(pred_masks[..., best], gt_masks[..., g]))
    return DetectedDice(dices=dices, n_missed=missed)


def case_detected(
    pred_boxes: np.ndarray, gt_boxes: np.ndarray, iou_threshold: float = 0.4
) -> bool:
    """Whether any ground-truth mass is hit by a detection with box IoU >= iou_threshold."""
    overlaps = compute_overlaps(
        check_boxes(pred_boxes, "case_detected: pred_boxes"),
        check_boxes(gt_boxes, "case_detected: gt_boxes"),
    )
    return bool((overlaps >= iou_threshold).any())


# ------------------------------------------------------------------------------- statistics


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """(mean, sample std with ddof=1) of fold values; one value has std 0."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        raise ValueError("metrics.mean_std: no values given")
    return float(array.mean()), float(_sample_std(array))


def format_mean_std(values: Iterable[float], digits: int = 2) -> str:
    """"mean +- std" rounded to digits, e.g. "0.92 +- 0.01"."""
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(t, two-sided p) of the paired t-test of fold results a against b (scipy's ttest_rel).

    Differences that are all equal up to rounding (0.705 - 0.682 in every fold: counts over
    the same number of masses) have no spread: t and p are then NaN rather than a t of 1e15
    from the rounding error, which would read as p = 0."""
    a_arr = np.asarray(a, dtype=np.float64).reshape(-1)
    b_arr = np.asarray(b, dtype=np.float64).reshape(-1)
    if a_arr.shape != b_arr.shape:
        raise ValueError(
            f"metrics.paired_t_test: a has {a_arr.size} values and b has {b_arr.size}; "
            "pairs must match fold by fold"
        )
    if a_arr.size < 2:
        raise ValueError(f"metrics.paired_t_test: needs at least 2 pairs, got {a_arr.size}")
    diff = a_arr - b_arr
    scale = max(float(np.max(np.abs(a_arr))), float(np.max(np.abs(b_arr))), 1.0)
    if float(np.ptp(diff)) <= 1e-9 * scale:
        return float("nan"), float("nan")
    result = stats.ttest_rel(a_arr, b_arr)
    return float(result.statistic), float(result.pvalue)
