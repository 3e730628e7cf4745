"""Instance matching and average precision of detections against ground truth, by box or mask
IoU: VOC's all-point AP of one image (``compute_ap`` and its matching ``compute_matches``, with
``use_masks`` for mask IoU) and COCO's AP over a dataset (``coco_style_ap``, as COCOeval computes
it). ``mrcnn.instance_eval`` wraps the per-image ones in Matterport's signatures.

``greedy_match`` and ``score_order`` are the matching both APs are built on; ftmtl's FROC
(``ftmtl.metrics``) matches detections to masses with them too. Boxes are pixel boxes
``(y1, x1, y2, x2)``; a row whose box has no area is padding and dropped; masks are bool
``[H, W, N]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mrcnn.box_ops import compute_overlaps, compute_overlaps_masks, valid_boxes
from mrcnn.eval_inputs import check_boxes, check_class_ids, check_mask_stack, check_vector

COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)

# ---------------------------------------------------------------------------------- matching


def greedy_match(
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


def score_order(scores: np.ndarray) -> np.ndarray:
    """Descending score order; equal scores keep their input order (COCO's mergesort)."""
    return np.argsort(-scores, kind="mergesort")


# -------------------------------------------------------------------- AP of one image (VOC)


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
    gt_boxes = check_boxes(gt_boxes, f"{where} gt_boxes")
    gt_class_ids = check_class_ids(gt_class_ids, f"{where} gt_class_ids", gt_boxes.shape[0])
    pred_boxes = check_boxes(pred_boxes, f"{where} pred_boxes")
    pred_class_ids = check_class_ids(pred_class_ids, f"{where} pred_class_ids", pred_boxes.shape[0])
    pred_scores = check_vector(pred_scores, f"{where} pred_scores", length=pred_boxes.shape[0])
    if use_masks:
        gt_masks = check_mask_stack(gt_masks, f"{where} gt_masks", gt_boxes.shape[0])
        pred_masks = check_mask_stack(pred_masks, f"{where} pred_masks", pred_boxes.shape[0])
    else:
        gt_masks = pred_masks = None
    gt = valid_boxes(gt_boxes)
    pred = np.flatnonzero(valid_boxes(pred_boxes))
    pred = pred[score_order(pred_scores[pred])]
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


def _matches(image: _Instances, iou_threshold: float, use_masks: bool
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    overlaps = image.overlaps(use_masks)
    same_class = image.pred_class_ids[:, None] == image.gt_class_ids[None, :]
    pred_match, _ = greedy_match(np.where(same_class, overlaps, -1.0), iou_threshold, False)
    gt_match = np.full(image.gt_boxes.shape[0], -1, dtype=np.int64)
    matched = np.flatnonzero(pred_match >= 0)
    gt_match[pred_match[matched]] = matched
    return gt_match, pred_match, overlaps


def compute_matches(
    gt_boxes: np.ndarray,
    gt_class_ids: np.ndarray,
    gt_masks: np.ndarray | None,
    pred_boxes: np.ndarray,
    pred_class_ids: np.ndarray,
    pred_scores: np.ndarray,
    pred_masks: np.ndarray | None,
    iou_threshold: float = 0.5,
    use_masks: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``compute_ap``'s matching of one image (Matterport's name): (gt_match, pred_match,
    overlaps).

    Predictions, in descending score order, match the unmatched ground truth of their class
    they overlap most with IoU >= iou_threshold (box IoU, or mask IoU when use_masks).
    gt_match [N_gt] holds the matched prediction's index in score order, pred_match [N_pred]
    the matched ground truth's, -1 where none; overlaps [N_pred, N_gt] has the predictions in
    score order. All-zero box rows are padding and dropped.
    """
    image = _instances(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids,
                       pred_scores, pred_masks, use_masks, "compute_matches:")
    return _matches(image, iou_threshold, use_masks)


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

    Matches as ``compute_matches``. The AP is VOC's all-point interpolation; precisions/recalls
    are the padded envelope it integrates. overlaps [N_pred, N_gt] has the predictions in score
    order. Without any ground truth the AP is undefined: NaN.
    """
    image = _instances(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids,
                       pred_scores, pred_masks, use_masks, "compute_ap:")
    _, pred_match, overlaps = _matches(image, iou_threshold, use_masks)
    if image.gt_boxes.shape[0] == 0:
        return float("nan"), np.zeros(0), np.zeros(0), overlaps
    hits = np.cumsum(pred_match >= 0)
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
        matched_to, _ = greedy_match(of_class.overlaps(use_masks), threshold, strict=False)
        scores.append(of_class.pred_scores)
        hits.append(matched_to >= 0)
        n_truths += of_class.gt_boxes.shape[0]
    if n_truths == 0:
        return float("nan")
    ranking = score_order(np.concatenate(scores))
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
