"""Matterport's per-image evaluation with Matterport's signatures and meaning: ``compute_matches``,
``compute_ap``, ``compute_ap_range`` (mask IoU) and ``compute_recall`` (box IoU), re-exported by
``mrcnn.utils`` so that Matterport's notebooks and scripts keep working.

The matching and the AP are ``mrcnn.average_precision``'s (``compute_matches`` / ``compute_ap``
with ``use_masks=True``), which also offers box IoU and COCO's AP over a dataset. Where the results
differ from Matterport's code, on purpose:

- a ground truth matched to the best-scoring prediction cannot be matched again (Matterport skips
  matched ground truths with ``gt_match > 0``, which misses the one matched to prediction 0);
- a row whose box has no area is padding and dropped wherever it is (Matterport trims all-zero
  rows from the end);
- an image without ground truth has AP and recall NaN (Matterport divides by zero);
- the match indices are int arrays (Matterport's are float), still -1 where there is no match;
- ``compute_ap_range`` logs each AP at INFO level instead of printing it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from mrcnn import average_precision
from mrcnn.box_ops import compute_overlaps

logger = logging.getLogger(__name__)

# COCO's IoU thresholds 0.50, 0.55, ..., 0.95 (Matterport's default range, without the rounding
# error of np.arange).
AP_RANGE = np.linspace(0.5, 0.95, 10)


def compute_matches(gt_boxes: np.ndarray, gt_class_ids: np.ndarray, gt_masks: np.ndarray,
                    pred_boxes: np.ndarray, pred_class_ids: np.ndarray, pred_scores: np.ndarray,
                    pred_masks: np.ndarray, iou_threshold: float = 0.5,
                    score_threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt_match [N_gt], pred_match [N_pred], overlaps [N_pred, N_gt]) of one image by mask IoU.

    Predictions, best score first, each take the unmatched ground truth of their class they
    overlap most; gt_match holds the matched prediction's index in score order, pred_match the
    ground truth's, -1 for none; overlaps has the predictions in score order. Despite its name,
    Matterport's ``score_threshold`` bounds the overlap, not the score: a match needs a mask IoU
    of at least both thresholds.
    """
    return average_precision.compute_matches(
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks,
        iou_threshold=max(float(iou_threshold), float(score_threshold)), use_masks=True)


def compute_ap(gt_boxes: np.ndarray, gt_class_ids: np.ndarray, gt_masks: np.ndarray,
               pred_boxes: np.ndarray, pred_class_ids: np.ndarray, pred_scores: np.ndarray,
               pred_masks: np.ndarray, iou_threshold: float = 0.5
               ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(AP, precisions, recalls, overlaps) of one image at a mask IoU threshold: VOC's all-point
    AP over the matches of ``compute_matches``; precisions and recalls are the padded,
    non-increasing envelope it integrates."""
    return average_precision.compute_ap(
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks,
        iou_threshold=iou_threshold, use_masks=True)


def compute_ap_range(gt_box: np.ndarray, gt_class_id: np.ndarray, gt_mask: np.ndarray,
                     pred_box: np.ndarray, pred_class_id: np.ndarray, pred_score: np.ndarray,
                     pred_mask: np.ndarray, iou_thresholds: Sequence[float] | None = None,
                     verbose: int = 1) -> float:
    """The mean of ``compute_ap`` over mask IoU thresholds (default 0.50, 0.55, ..., 0.95, COCO's
    AP of one image without its 101-point sampling); ``verbose`` logs each AP and the mean."""
    thresholds = (AP_RANGE if iou_thresholds is None
                  else np.asarray(iou_thresholds, dtype=np.float64).reshape(-1))
    if thresholds.size == 0:
        raise ValueError("compute_ap_range: iou_thresholds is empty")
    aps = []
    for threshold in thresholds:
        ap, *_ = compute_ap(gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score,
                            pred_mask, iou_threshold=float(threshold))
        if verbose:
            logger.info("AP @%.2f: %.3f", threshold, ap)
        aps.append(ap)
    mean = float(np.mean(aps))
    if verbose:
        logger.info("AP @%.2f-%.2f: %.3f", thresholds[0], thresholds[-1], mean)
    return mean


def compute_recall(pred_boxes: np.ndarray, gt_boxes: np.ndarray, iou: float
                   ) -> tuple[float, np.ndarray]:
    """(recall, positive_ids): the share of ground-truth boxes that are the best box-IoU match
    of some prediction with IoU >= ``iou``, and the indices of those predictions. Without any
    ground truth the recall is NaN."""
    overlaps = compute_overlaps(pred_boxes, gt_boxes)
    if overlaps.shape[1] == 0:
        return float("nan"), np.zeros(0, dtype=np.int64)
    positive_ids = np.flatnonzero(overlaps.max(axis=1) >= iou)
    found = np.unique(overlaps[positive_ids].argmax(axis=1))
    return found.size / overlaps.shape[1], positive_ids
