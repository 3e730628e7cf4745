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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from sklearn import metrics as sk_metrics

from mrcnn.box_ops import compute_overlaps, compute_overlaps_masks, valid_boxes

ROC_GRID = np.linspace(0.0, 1.0, 101)
FROC_POINTS = (0.5, 1.0, 2.0, 3.67, 5.0)
IOU_SWEEP = tuple(float(t) for t in np.round(np.arange(0.1, 0.91, 0.1), 2))
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)

# ------------------------------------------------------------------------------ input checks


def _boxes(boxes: np.ndarray | Sequence, name: str) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"metrics: {name} must have shape [N, 4], got {array.shape}")
    return array


def _vector(values: np.ndarray | Sequence, name: str, length: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if length is not None and array.shape[0] != length:
        raise ValueError(f"metrics: {name} has {array.shape[0]} entries, expected {length}")
    if np.isnan(array).any():
        raise ValueError(f"metrics: {name} contains NaN")
    return array


def _as_bool(masks: np.ndarray, name: str) -> np.ndarray:
    """Bool masks; 0/1 numbers are accepted, soft masks (probabilities) are refused."""
    array = np.asarray(masks)
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        raise ValueError(f"metrics: {name} must be binary (bool or 0/1); threshold it first")
    return array.astype(bool)


def _masks(masks: np.ndarray | None, name: str, count: int | None = None) -> np.ndarray:
    if masks is None:
        raise ValueError(f"metrics: {name} is required (masks are compared)")
    array = _as_bool(masks, name)
    if array.ndim != 3 or (count is not None and array.shape[-1] != count):
        expected = "[H, W, N]" if count is None else f"[H, W, {count}]"
        raise ValueError(f"metrics: {name} must have shape {expected}, got {array.shape}")
    return array


def _sample_std(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Sample std (ddof=1) along axis; 0 when there is only one value."""
    if values.shape[axis] < 2:
        return np.zeros(np.delete(values.shape, axis))
    return np.std(values, axis=axis, ddof=1)


# ------------------------------------------------------------------------------------ ROC


def _binary_labels(labels: np.ndarray | Sequence, scores: np.ndarray | Sequence, where: str):
    y = np.asarray(labels).reshape(-1)
    s = _vector(scores, f"{where}: scores", length=y.shape[0])
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


# ---------------------------------------------------------------------------------- matching


def _greedy_match(
    overlaps: np.ndarray, iou_threshold: float, strict: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Match detections (rows, already in descending score order) to ground truths (columns).

    Each detection takes the unmatched ground truth it overlaps most among those that qualify
    (IoU > threshold when strict, else >=); ties go to the later ground truth, as in COCO.
    Returns (matched ground-truth index or -1 per detection, duplicate flag per detection):
    a duplicate qualifies only for ground truths that are already matched.
    """
    detections, truths = overlaps.shape
    matched_to = np.full(detections, -1, dtype=np.int64)
    duplicate = np.zeros(detections, dtype=bool)
    taken = np.zeros(truths, dtype=bool)
    for d in range(detections):
        row = overlaps[d]
        qualifies = row > iou_threshold if strict else row >= iou_threshold
        free = qualifies & ~taken
        if free.any():
            best = np.max(row[free])
            g = int(np.flatnonzero(free & (row == best))[-1])
            matched_to[d] = g
            taken[g] = True
        else:
            duplicate[d] = bool(qualifies.any())
    return matched_to, duplicate


def _score_order(scores: np.ndarray) -> np.ndarray:
    """Descending score order; equal scores keep their input order (COCO's mergesort)."""
    return np.argsort(-scores, kind="mergesort")


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
    order = _score_order(scores)
    matched_to, duplicate = _greedy_match(
        compute_overlaps(boxes[order], truths), iou_threshold, strict=True
    )
    is_tp = np.zeros(scores.shape[0], dtype=bool)
    is_fp = np.zeros(scores.shape[0], dtype=bool)
    is_tp[order] = matched_to >= 0
    is_fp[order] = (matched_to < 0) & (duplicate_is_fp | ~duplicate)
    return is_tp, is_fp


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
        boxes = _boxes(boxes, f"froc: predictions[{i}] boxes")
        scores = _vector(scores, f"froc: predictions[{i}] scores", length=boxes.shape[0])
        truths = _boxes(truths, f"froc: ground_truths[{i}]")
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
    order = _score_order(scores)
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
    a, b = _as_bool(a, f"{where}: a"), _as_bool(b, f"{where}: b")
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
    pred_boxes = _boxes(pred_boxes, "detected_dice: pred_boxes")
    gt_boxes = _boxes(gt_boxes, "detected_dice: gt_boxes")
    scores = _vector(pred_scores, "detected_dice: pred_scores", length=pred_boxes.shape[0])
    pred_masks = _masks(pred_masks, "detected_dice: pred_masks", pred_boxes.shape[0])
    gt_masks = _masks(gt_masks, "detected_dice: gt_masks", gt_boxes.shape[0])
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
        _boxes(pred_boxes, "case_detected: pred_boxes"), _boxes(gt_boxes, "case_detected: gt_boxes")
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


# ---------------------------------------------------------------------- Mask R-CNN AP (VOC)


def _class_ids(values: np.ndarray | Sequence, name: str, length: int) -> np.ndarray:
    array = np.asarray(values).reshape(-1)
    if array.shape[0] != length:
        raise ValueError(f"metrics: {name} has {array.shape[0]} entries, expected {length}")
    return array.astype(np.int64)


@dataclass(frozen=True)
class _Instances:
    """One image's checked ground truth and predictions; predictions by descending score."""

    gt_boxes: np.ndarray
    gt_class_ids: np.ndarray
    gt_masks: np.ndarray | None
    pred_boxes: np.ndarray
    pred_class_ids: np.ndarray
    pred_scores: np.ndarray
    pred_masks: np.ndarray | None

    def of_class(self, class_id: int) -> _Instances:
        gt = self.gt_class_ids == class_id
        pred = self.pred_class_ids == class_id
        return _Instances(
            self.gt_boxes[gt], self.gt_class_ids[gt], _take(self.gt_masks, gt),
            self.pred_boxes[pred], self.pred_class_ids[pred], self.pred_scores[pred],
            _take(self.pred_masks, pred),
        )

    def overlaps(self, use_masks: bool) -> np.ndarray:
        """IoU [N_pred, N_gt] of the masks when use_masks, else of the boxes."""
        if use_masks:
            return compute_overlaps_masks(self.pred_masks, self.gt_masks)
        return compute_overlaps(self.pred_boxes, self.gt_boxes)


def _take(masks: np.ndarray | None, index: np.ndarray) -> np.ndarray | None:
    return None if masks is None else masks[..., index]


def _instances(
    gt_boxes: np.ndarray,
    gt_class_ids: np.ndarray,
    gt_masks: np.ndarray | None,
    pred_boxes: np.ndarray,
    pred_class_ids: np.ndarray,
    pred_scores: np.ndarray,
    pred_masks: np.ndarray | None,
    use_masks: bool,
    where: str,
) -> _Instances:
    """Check one image's arrays, drop padding rows (``valid_boxes``: no area) and sort the
    predictions by descending score (ties keep their order)."""
    gt_boxes = _boxes(gt_boxes, f"{where} gt_boxes")
    gt_class_ids = _class_ids(gt_class_ids, f"{where} gt_class_ids", gt_boxes.shape[0])
    pred_boxes = _boxes(pred_boxes, f"{where} pred_boxes")
    pred_class_ids = _class_ids(pred_class_ids, f"{where} pred_class_ids", pred_boxes.shape[0])
    pred_scores = _vector(pred_scores, f"{where} pred_scores", length=pred_boxes.shape[0])
    if use_masks:
        gt_masks = _masks(gt_masks, f"{where} gt_masks", gt_boxes.shape[0])
        pred_masks = _masks(pred_masks, f"{where} pred_masks", pred_boxes.shape[0])
    else:
        gt_masks = pred_masks = None
    gt = valid_boxes(gt_boxes)
    pred = np.flatnonzero(valid_boxes(pred_boxes))
    pred = pred[_score_order(pred_scores[pred])]
    return _Instances(
        gt_boxes[gt], gt_class_ids[gt], _take(gt_masks, gt),
        pred_boxes[pred], pred_class_ids[pred], pred_scores[pred], _take(pred_masks, pred),
    )


def _all_point_ap(precisions: np.ndarray, recalls: np.ndarray):
    """VOC all-point AP: the area under the precision envelope (precision made non-increasing),
    with the curve padded to start at recall 0 and end at recall 1 with precision 0."""
    precisions = np.concatenate([[0.0], precisions, [0.0]])
    recalls = np.concatenate([[0.0], recalls, [1.0]])
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.flatnonzero(recalls[1:] != recalls[:-1]) + 1
    ap = float(np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps]))
    return ap, precisions, recalls


def compute_ap(
    gt_boxes: np.ndarray,
    gt_class_ids: np.ndarray,
    gt_masks: np.ndarray | None,
    pred_boxes: np.ndarray,
    pred_class_ids: np.ndarray,
    pred_scores: np.ndarray,
    pred_masks: np.ndarray | None,
    iou_threshold: float = 0.5,
    use_masks: bool = False,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """AP of one image (Matterport's name): (ap, precisions, recalls, overlaps).

    Predictions, in descending score order, match the unmatched ground truth of their class
    they overlap most with IoU >= iou_threshold (box IoU, or mask IoU when use_masks). The AP is
    VOC's all-point interpolation; precisions/recalls are the padded envelope it integrates.
    overlaps [N_pred, N_gt] has the predictions in score order. All-zero box rows are padding
    and dropped. Without any ground truth the AP is undefined: NaN.
    """
    image = _instances(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids,
                       pred_scores, pred_masks, use_masks, "compute_ap:")
    overlaps = image.overlaps(use_masks)
    same_class = image.pred_class_ids[:, None] == image.gt_class_ids[None, :]
    matched_to, _ = _greedy_match(np.where(same_class, overlaps, -1.0), iou_threshold, False)
    if image.gt_boxes.shape[0] == 0:
        return float("nan"), np.zeros(0), np.zeros(0), overlaps
    hits = np.cumsum(matched_to >= 0)
    precisions = hits / np.arange(1, hits.size + 1)
    recalls = hits / image.gt_boxes.shape[0]
    ap, precisions, recalls = _all_point_ap(precisions, recalls)
    return ap, precisions, recalls, overlaps


# ----------------------------------------------------------------------------- COCO-style AP

_RECORD_KEYS = ("gt_boxes", "gt_class_ids", "gt_masks", "pred_boxes", "pred_class_ids",
                "pred_scores", "pred_masks")
_REQUIRED_KEYS = tuple(key for key in _RECORD_KEYS if not key.endswith("_masks"))


def _coco_class_ap(
    images: Sequence[_Instances], class_id: int, iou_threshold: float, use_masks: bool
) -> float:
    """AP of one class over the dataset at one IoU threshold, by COCO's rules.

    Per image, detections in descending score order match the unmatched ground truth of the class
    with the highest IoU >= threshold (ties: the later one). Over the dataset detections are
    ranked by score (ties: image order, then in-image order), precision is made non-increasing
    and read at the 101 recall thresholds 0, 0.01, ..., 1 (0 past the highest recall reached).
    """
    threshold = min(iou_threshold, 1.0 - 1e-10)  # COCO's guard so that IoU 1.0 still matches
    scores, hits, n_truths = [], [], 0
    for image in images:
        of_class = image.of_class(class_id)
        matched_to, _ = _greedy_match(of_class.overlaps(use_masks), threshold, strict=False)
        scores.append(of_class.pred_scores)
        hits.append(matched_to >= 0)
        n_truths += of_class.gt_boxes.shape[0]
    if n_truths == 0:
        return float("nan")
    ranking = _score_order(np.concatenate(scores))
    is_hit = np.concatenate(hits)[ranking]
    tp = np.cumsum(is_hit).astype(np.float64)
    fp = np.cumsum(~is_hit).astype(np.float64)
    recall = tp / n_truths
    precision = np.maximum.accumulate((tp / (tp + fp + np.spacing(1)))[::-1])[::-1]
    at = np.searchsorted(recall, COCO_RECALL_THRESHOLDS, side="left")
    sampled = np.zeros(COCO_RECALL_THRESHOLDS.size)
    reached = at < precision.size
    sampled[reached] = precision[at[reached]]
    return float(sampled.mean())


def coco_style_ap(
    per_image_records: Sequence[Mapping],
    iou_thresholds: Sequence[float] = (0.5,),
    use_masks: bool = False,
    class_ids: Sequence[int] | None = None,
) -> dict:
    """Per-class AP over a dataset computed as COCOeval does (area "all", no detection limit).

    Each record is a mapping with compute_ap's argument names: gt_boxes, gt_class_ids,
    pred_boxes, pred_class_ids, pred_scores, and gt_masks/pred_masks ([H, W, N]) when use_masks.
    class_ids defaults to the classes present in the ground truth. Returns
    ``{"per_iou": {iou: {class: AP}}, "per_class": {class: AP averaged over iou_thresholds},
    "mAP": mean of per_class}``; a class without ground truth gets NaN and is left out of the
    mean (COCO's -1).
    """
    if not per_image_records:
        raise ValueError("metrics.coco_style_ap: no image records given")
    images = []
    for i, record in enumerate(per_image_records):
        missing = [key for key in _REQUIRED_KEYS if key not in record]
        if missing:
            raise ValueError(f"metrics.coco_style_ap: records[{i}] lacks {missing}")
        arrays = [record.get(key) for key in _RECORD_KEYS]
        images.append(_instances(*arrays, use_masks, f"coco_style_ap: records[{i}]"))
    if class_ids is None:
        class_ids = np.unique(np.concatenate([im.gt_class_ids for im in images])).tolist()
    class_ids = [int(c) for c in class_ids]
    per_iou = {
        float(t): {c: _coco_class_ap(images, c, float(t), use_masks) for c in class_ids}
        for t in iou_thresholds
    }
    per_class = {c: float(np.mean([per_iou[t][c] for t in per_iou])) for c in class_ids}
    valid = [ap for ap in per_class.values() if not np.isnan(ap)]
    return {
        "per_iou": per_iou,
        "per_class": per_class,
        "mAP": float(np.mean(valid)) if valid else float("nan"),
    }
