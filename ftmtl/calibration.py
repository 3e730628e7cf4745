"""Calibration of the case malignancy score: the reliability diagram's bins and the expected
calibration error (ECE).

The score is read as the probability that the case is malignant. Binning: ``n_bins``
equal-width bins on [0, 1], bin b holding the scores in [b / n, (b + 1) / n) and the last bin
also the score 1. ECE = sum over the bins of (cases in the bin / all cases) * |fraction
malignant in the bin - mean score in the bin|: the gap between what the score says and what
happens, weighted by bin count; an empty bin adds nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_BINS = 10
BINNING = "equal-width bins on [0, 1], the gaps weighted by bin count"


@dataclass(frozen=True)
class ReliabilityBins:
    """Per bin: how many cases, their mean score and the fraction of them that is positive
    (both NaN for an empty bin)."""

    edges: np.ndarray  # [B + 1]
    counts: np.ndarray  # [B] int
    mean_score: np.ndarray  # [B]
    fraction_positive: np.ndarray  # [B]

    @property
    def n_cases(self) -> int:
        return int(self.counts.sum())

    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean |fraction positive - mean
        score| over the bins."""
        filled = self.counts > 0
        gaps = np.abs(self.fraction_positive[filled] - self.mean_score[filled])
        return float(np.sum(self.counts[filled] * gaps) / self.n_cases)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (an empty bin's NaN as None)."""
        def listed(values: np.ndarray) -> list[float | None]:
            return [float(v) if math.isfinite(v) else None for v in values]

        return {"n_bins": int(self.counts.size), "binning": BINNING,
                "edges": [float(e) for e in self.edges],
                "counts": [int(c) for c in self.counts], "mean_score": listed(self.mean_score),
                "fraction_positive": listed(self.fraction_positive)}


def reliability_bins(labels: np.ndarray | Sequence, scores: np.ndarray | Sequence,
                     n_bins: int = DEFAULT_BINS) -> ReliabilityBins:
    """Bin binary ``labels`` (1 = positive) by their ``scores`` (probabilities in [0, 1])."""
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if int(n_bins) < 1:
        raise ValueError(f"calibration: n_bins must be >= 1, got {n_bins}")
    if y.size != s.size:
        raise ValueError(f"calibration: {y.size} labels but {s.size} scores")
    if y.size == 0:
        raise ValueError("calibration: no cases given")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"calibration: labels must be 0/1 (or bool), got {np.unique(y)}")
    outside = s[~((s >= 0) & (s <= 1))]  # NaN fails both comparisons
    if outside.size:
        raise ValueError(f"calibration: scores must be probabilities in [0, 1], got "
                         f"{outside[:3].tolist()}")
    n_bins = int(n_bins)
    index = np.minimum(np.floor(s * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    filled = counts > 0
    mean_score = np.full(n_bins, np.nan)
    fraction = np.full(n_bins, np.nan)
    mean_score[filled] = np.bincount(index, weights=s, minlength=n_bins)[filled] / counts[filled]
    fraction[filled] = (np.bincount(index, weights=y.astype(np.float64), minlength=n_bins)[filled]
                        / counts[filled])
    return ReliabilityBins(edges=np.arange(n_bins + 1) / n_bins, counts=counts,
                           mean_score=mean_score, fraction_positive=fraction)


def expected_calibration_error(labels: np.ndarray | Sequence, scores: np.ndarray | Sequence,
                               n_bins: int = DEFAULT_BINS) -> float:
    """ECE of probabilities ``scores`` for binary ``labels`` (see the module doc)."""
    return reliability_bins(labels, scores, n_bins).ece()
