"""Bootstrap confidence intervals of case-level metrics: draw the cases with replacement,
recompute the metric on each resample, take percentiles.

A resample is a row of counts (how often each case was drawn; the row sums to the number of
cases), so each metric is a weighted sum over the original cases and no case list is rebuilt:

- the AUC is the Mann-Whitney statistic (P(malignant score > benign score) + half the ties)
  with the counts as weights: on every resample it equals sklearn's ``roc_auc_score`` of the
  cases drawn;
- the FROC re-counts the detections, labelled once by ``metrics.label_detections`` (greedy
  matching holds at every threshold), with the counts of their images as weights, and reads the
  TPR as ``FrocCurve.tpr_at`` does ("step"): on every resample it equals ``metrics.froc`` of the
  images drawn.

A resample on which a metric is undefined (an AUC without a benign or a malignant case, a FROC
without a mass) is left out of that metric's percentiles; the interval is NaN when none is
defined. The interval is the percentile one: the 2.5th and 97.5th percentiles (numpy's linear
interpolation) of the defined resamples, for a 95% level.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ftmtl.metrics import label_detections

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
LEVEL = 0.95
# Resamples handled at once by the FROC: their weights take rows x detections floats.
_FROC_CHUNK_VALUES = 4_000_000


def resample_counts(n_cases: int, resamples: int = DEFAULT_RESAMPLES,
                    seed: int = DEFAULT_SEED) -> np.ndarray:
    """[resamples, n_cases] int: how often each case is drawn in each resample of n_cases
    draws with replacement (numpy's default generator seeded with ``seed``)."""
    if int(n_cases) < 1 or int(resamples) < 1:
        raise ValueError(f"bootstrap: needs n_cases >= 1 and resamples >= 1, got {n_cases} "
                         f"and {resamples}")
    n, r = int(n_cases), int(resamples)
    draws = np.random.default_rng(seed).integers(0, n, size=(r, n))
    row_offsets = np.arange(r)[:, None] * n
    return np.bincount((draws + row_offsets).ravel(), minlength=r * n).reshape(r, n)


def percentile_interval(values: np.ndarray | Sequence[float], level: float = LEVEL
                        ) -> tuple[float, float]:
    """(low, high) percentiles of the finite values around the middle ``level``; NaNs when
    none is finite."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


# ------------------------------------------------------------------------------------ AUC


def auc_resamples(labels: np.ndarray | Sequence, scores: np.ndarray | Sequence,
                  counts: np.ndarray) -> np.ndarray:
    """AUC of each resample ([R]) of binary ``labels`` (1 = malignant) and ``scores``;
    ``counts`` [R, n] weights the cases. NaN where a resample lacks one of the classes."""
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    counts = np.asarray(counts, dtype=np.float64)
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"bootstrap: labels must be 0/1 (or bool), got {np.unique(y)}")
    if s.size != y.size or counts.ndim != 2 or counts.shape[1] != y.size:
        raise ValueError(f"bootstrap: {y.size} labels, {s.size} scores and counts of shape "
                         f"{counts.shape} must agree (counts [resamples, cases])")
    if not np.isfinite(s).all():
        raise ValueError("bootstrap: scores must be finite")
    positive = y.astype(bool)
    levels, level_of = np.unique(s, return_inverse=True)  # ascending score levels
    at_level = np.zeros((y.size, levels.size))
    at_level[np.arange(y.size), level_of] = 1.0
    pos_at = counts[:, positive] @ at_level[positive]  # [R, L] weighted positives per level
    neg_at = counts[:, ~positive] @ at_level[~positive]
    neg_below = np.cumsum(neg_at, axis=1) - neg_at
    wins = np.sum(pos_at * (neg_below + 0.5 * neg_at), axis=1)
    pairs = pos_at.sum(axis=1) * neg_at.sum(axis=1)
    return np.divide(wins, pairs, out=np.full(wins.shape, np.nan), where=pairs > 0)


# ----------------------------------------------------------------------------------- FROC


@dataclass(frozen=True)
class DetectionEvents:
    """Every detection of a set of images labelled TP/FP once, by descending score."""

    image: np.ndarray  # [E] the image each detection belongs to
    is_tp: np.ndarray  # [E] bool
    is_fp: np.ndarray  # [E] bool
    tie_end: np.ndarray  # [E] bool: the last detection of its score (an operating point)
    masses: np.ndarray  # [n_images] masses of each image


def detection_events(predictions: Sequence[tuple[np.ndarray, np.ndarray]],
                     ground_truths: Sequence[np.ndarray],
                     iou_threshold: float = 0.2) -> DetectionEvents:
    """Label the detections of each image as ``metrics.froc`` does (greedy matching, TP when
    IoU > iou_threshold, a duplicate neither TP nor FP). predictions: per image (boxes [N, 4],
    scores [N]); ground_truths: per image boxes [G, 4]."""
    if len(predictions) != len(ground_truths):
        raise ValueError(f"bootstrap: {len(predictions)} prediction entries but "
                         f"{len(ground_truths)} ground-truth entries (one each per image)")
    if not predictions:
        raise ValueError("bootstrap: no images given")
    images, scores, tps, fps, masses = [], [], [], [], []
    for index, ((boxes, image_scores), truths) in enumerate(
            zip(predictions, ground_truths, strict=True)):
        is_tp, is_fp = label_detections(boxes, image_scores, truths, iou_threshold)
        images.append(np.full(is_tp.size, index, dtype=np.int64))
        scores.append(np.asarray(image_scores, dtype=np.float64).reshape(-1))
        tps.append(is_tp)
        fps.append(is_fp)
        masses.append(np.asarray(truths).reshape(-1, 4).shape[0])
    all_scores = np.concatenate(scores)
    order = np.argsort(-all_scores, kind="mergesort")  # ties keep their order, as in froc
    ranked = all_scores[order]
    return DetectionEvents(
        image=np.concatenate(images)[order], is_tp=np.concatenate(tps)[order],
        is_fp=np.concatenate(fps)[order],
        tie_end=np.append(ranked[1:] != ranked[:-1], True)[:ranked.size],
        masses=np.asarray(masses, dtype=np.float64))


def tpr_at_fpi_resamples(events: DetectionEvents, counts: np.ndarray,
                         fpi_points: Iterable[float]) -> np.ndarray:
    """TPR at each FPI point for each resample ([R, P]); ``counts`` [R, n_images] weights the
    images. NaN where a resample holds no mass."""
    points = np.asarray(list(fpi_points), dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[1] != events.masses.size:
        raise ValueError(f"bootstrap: counts must be [resamples, {events.masses.size}] (one "
                         f"column per image), got {counts.shape}")
    if not np.all(points >= 0):
        raise ValueError(f"bootstrap: FPI points must be >= 0, got {points}")
    chunk = max(1, _FROC_CHUNK_VALUES // max(events.image.size, 1))
    return np.concatenate([_tpr_at_fpi(events, counts[first:first + chunk], points)
                           for first in range(0, counts.shape[0], chunk)])


def _tpr_at_fpi(events: DetectionEvents, counts: np.ndarray, points: np.ndarray) -> np.ndarray:
    weights = counts[:, events.image]  # [R, E]
    ends = events.tie_end
    start = np.zeros((counts.shape[0], 1))  # the first operating point: no detection kept
    found = np.hstack([start, np.cumsum(weights * events.is_tp, axis=1)[:, ends]])
    fpi = np.cumsum(weights * events.is_fp, axis=1)[:, ends] / counts.sum(axis=1)[:, None]
    n_masses = counts @ events.masses
    rows = np.arange(counts.shape[0])
    read = np.empty((counts.shape[0], points.size))
    for j, point in enumerate(points):
        # The step reading: the last operating point whose FPI does not exceed the point (the
        # FPI never decreases along a row).
        read[:, j] = found[rows, (fpi <= point).sum(axis=1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        read /= n_masses[:, None]
    read[n_masses == 0] = np.nan
    return read
