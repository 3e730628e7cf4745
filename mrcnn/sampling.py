"""Class-balanced online sampling of training samples.

The paper balances benign and malignant masses by writing augmented copies to disk: 150 per
benign sample, 75 per malignant one. We draw the same mix online instead: each epoch is a list of
sample indices in which a sample appears in proportion to its label's weight, and each draw is
augmented afresh by the input pipeline, so no copies are written.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

# The paper's augmentation factors (FT-MTL-Net, section 3.4).
PAPER_WEIGHTS: dict[str, float] = {"benign": 150.0, "malignant": 75.0}


def _systematic_counts(
    fractions: np.ndarray, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """Pick ``draws`` items, item ``i`` with probability exactly ``fractions[i]`` (each < 1,
    summing to ``draws``): one uniform offset, then evenly spaced points on the cumulative sum."""
    cumulative = np.cumsum(fractions)
    cumulative *= draws / cumulative[-1]
    cumulative[-1] = draws
    points = rng.uniform() + np.arange(draws)
    picked = np.searchsorted(cumulative, points, side="right")
    return np.bincount(picked, minlength=len(fractions)).astype(np.int64)


class ClassBalancedSampler:
    """Draws epochs of sample indices with per-label weights.

    ``labels[i]`` is the label of sample ``i``; ``weights[label]`` its relative frequency per
    sample (labels missing from ``weights`` get 1; weight 0 leaves the sample out). An epoch of
    ``n`` draws uses residual resampling: sample ``i`` appears ``floor(n p_i)`` times, where
    ``p_i`` is its share of the total weight, plus one more with probability equal to the
    fractional part of ``n p_i`` (systematic sampling), and the list is shuffled. So every
    sample appears ``n p_i`` times on average, never more than one off, and in the default epoch
    (``n`` = sum of weights) exactly ``weight`` times when the weights are integers, like the
    paper's fixed number of augmented copies.
    """

    def __init__(
        self,
        labels: Sequence[Hashable],
        weights: Mapping[Hashable, float],
        seed: int = 0,
    ):
        if len(labels) == 0:
            raise ValueError("ClassBalancedSampler: labels is empty; there is nothing to sample")
        for label, weight in weights.items():
            if not math.isfinite(float(weight)) or float(weight) < 0:
                raise ValueError(
                    f"ClassBalancedSampler: weight of label {label!r} must be finite and >= 0, "
                    f"got {weight}"
                )
        self.labels = list(labels)
        self.weights = {label: float(w) for label, w in weights.items()}
        self.seed = int(seed)
        unused = [label for label in self.weights if label not in set(self.labels)]
        if unused:
            logger.warning(
                "ClassBalancedSampler: weights given for labels %s that no sample has", unused
            )
        self.sample_weights = np.array([self.weights.get(lab, 1.0) for lab in self.labels])
        total = self.sample_weights.sum()
        if total <= 0:
            raise ValueError(
                "ClassBalancedSampler: every sample has weight 0; give some label a positive weight"
            )
        self.probabilities = self.sample_weights / total

    def __len__(self) -> int:
        """Number of samples (not draws)."""
        return len(self.labels)

    def default_epoch_size(self) -> int:
        """Draws per epoch when none is given: the sum of the per-sample weights, rounded."""
        return int(round(float(self.sample_weights.sum())))

    def _epoch_size(self, n: int | None) -> int:
        size = self.default_epoch_size() if n is None else int(n)
        if size < 0:
            raise ValueError(f"ClassBalancedSampler: epoch size must be >= 0, got {n}")
        return size

    def epoch_indices(self, n: int | None = None, epoch: int = 0) -> np.ndarray:
        """Indices (int64) of the samples to use in epoch ``epoch``, ``n`` of them.

        Deterministic for (seed, epoch); different epochs give different orders and remainders.
        """
        size = self._epoch_size(n)
        rng = np.random.default_rng([self.seed, int(epoch)])
        # weights * (size / total) is exact when size equals the total weight.
        expected = self.sample_weights * (size / self.sample_weights.sum())
        counts = np.floor(expected).astype(np.int64)
        remainder = size - int(counts.sum())
        if remainder > 0:
            counts += _systematic_counts(expected - counts, remainder, rng)
        indices = np.repeat(np.arange(len(self), dtype=np.int64), counts)
        return rng.permutation(indices)

    def expected_counts(self, n: int | None = None) -> dict[Hashable, float]:
        """Expected draws per label in an epoch of ``n`` (default: the sum of the weights)."""
        expected = self._epoch_size(n) * self.probabilities
        counts: dict[Hashable, float] = {}
        for label, value in zip(self.labels, expected, strict=True):
            counts[label] = counts.get(label, 0.0) + float(value)
        return counts

    def __repr__(self) -> str:
        return (
            f"ClassBalancedSampler(samples={len(self)}, weights={self.weights!r}, "
            f"seed={self.seed})"
        )
