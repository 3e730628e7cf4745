"""Class-balanced online sampling of training samples.

The paper balances benign and malignant masses by writing augmented copies to disk: 150 per
benign sample, 75 per malignant one. We draw the same mix online instead: each epoch is a list of
sample indices in which a sample appears in proportion to its label's weight, and each draw is
augmented afresh by the input pipeline, so no copies are written.

Images without a mass have no weight in the paper; with weight 1 next to 150 and 75 they would
almost never be drawn. ``shares`` gives such a label a fixed share of the draws instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

# The paper's augmentation factors (FT-MTL-Net, section 3.4).
PAPER_WEIGHTS: dict[str, float] = {"benign": 150.0, "malignant": 75.0}


def balanced_weights(labels: Sequence[Hashable], classes: Sequence[Hashable]
                     ) -> dict[Hashable, float]:
    """Weights that draw every class of ``classes`` equally often in total: inverse to its
    sample count (the largest class gets 1). The paper's fixed 150/75 balance INbreast's own
    mix; on data with another mix (a synthetic set with as many benign as malignant masses)
    they would draw one class twice as often, and the classifier learns that prior."""
    counts = {c: sum(1 for label in labels if label == c) for c in classes}
    largest = max(counts.values(), default=0)
    return {c: largest / n for c, n in counts.items() if n}

# The label ``ftmtl.inbreast.folds.fold_stratum`` gives an image without a mass.
MASS_FREE_LABEL = "normal"

# Share of the training draws that are images without a mass. They teach the background and set
# the false positives per image (and so the malignant veto's operating point); a fifth of the
# draws keeps them present in every epoch without starving the masses of draws.
DEFAULT_MASS_FREE_SHARE = 0.2

# Tolerance on sums of shares (0.1 + 0.2 + 0.7 is not exactly 1 in floating point).
_TOLERANCE = 1e-9


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


def _check_shares(
    shares: Mapping[Hashable, float], present: set[Hashable]
) -> dict[Hashable, float]:
    """``shares`` as floats, checked; a label no sample has is reported and left out, so its
    share goes back to the other samples."""
    checked: dict[Hashable, float] = {}
    for label, share in shares.items():
        value = float(share)
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ValueError(
                f"ClassBalancedSampler: shares[{label!r}] must be in [0, 1], got {share}"
            )
        checked[label] = value
    total = sum(checked.values())
    if total > 1.0 + _TOLERANCE:
        raise ValueError(f"ClassBalancedSampler: shares must sum to at most 1, got {total:g}")
    absent = [label for label in checked if label not in present]
    if absent:
        logger.warning(
            "ClassBalancedSampler: shares given for labels %s that no sample has; their share "
            "goes to the other samples",
            absent,
        )
    return {label: value for label, value in checked.items() if label in present}


class ClassBalancedSampler:
    """Draws epochs of sample indices with per-label weights, or fixed per-label shares.

    ``labels[i]`` is the label of sample ``i``; ``weights[label]`` its relative frequency per
    sample (labels missing from ``weights`` get 1; weight 0 leaves the sample out). ``shares``
    (optional) fixes the fraction of every epoch's draws that goes to a label, spread evenly
    over its samples, whatever the weights (a label in ``shares`` ignores its weight); the rest
    of the draws go to the other samples by their weights. An epoch of ``n`` draws uses
    residual resampling: sample ``i`` appears ``floor(n p_i)`` times, where ``p_i`` is its
    probability, plus one more with probability equal to the fractional part of ``n p_i``
    (systematic sampling), and the list is shuffled. So every sample appears ``n p_i`` times on
    average, never more than one off (with ``shares``, every label's total too), and in the
    default epoch (``n`` = sum of weights, see ``default_epoch_size``) exactly ``weight`` times
    when the weights are integers, like the paper's fixed number of augmented copies.
    """

    def __init__(
        self,
        labels: Sequence[Hashable],
        weights: Mapping[Hashable, float],
        seed: int = 0,
        shares: Mapping[Hashable, float] | None = None,
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
        present = set(self.labels)
        unused = [label for label in self.weights if label not in present]
        if unused:
            logger.warning(
                "ClassBalancedSampler: weights given for labels %s that no sample has", unused
            )
        self.shares = None if shares is None else _check_shares(shares, present)
        weight_of = np.array([self.weights.get(lab, 1.0) for lab in self.labels])
        if self.shares is None:
            self.sample_weights = weight_of
            # The systematic step walks the samples in their own order.
            self._order = np.arange(len(self.labels))
        else:
            self.sample_weights = self._shared_weights(weight_of)
            # Each label's samples side by side, so that its total is within one of n * share.
            first = {label: i for i, label in reversed(list(enumerate(self.labels)))}
            self._order = np.argsort([first[lab] for lab in self.labels], kind="stable")
        total = self.sample_weights.sum()
        if total <= 0:
            raise ValueError(
                "ClassBalancedSampler: every sample has weight 0; give some label a positive weight"
            )
        self.probabilities = self.sample_weights / total

    def _shared_weights(self, weight_of: np.ndarray) -> np.ndarray:
        """Per-sample weights that give the labels in ``shares`` their share: the other samples
        keep their weights, which make up the remaining share, so the default epoch still
        draws each of them ``weight`` times."""
        shares = self.shares or {}
        listed = np.array([lab in shares for lab in self.labels])
        rest_share = max(0.0, 1.0 - sum(shares.values()))
        rest_weight = float(weight_of[~listed].sum())
        if rest_share > _TOLERANCE and rest_weight <= 0:
            raise ValueError(
                f"ClassBalancedSampler: shares leave {rest_share:g} of the draws to the labels "
                f"not in shares, but those samples have total weight 0 (or there are none); "
                f"make the shares sum to 1 or give those labels a positive weight"
            )
        if rest_share <= _TOLERANCE and rest_weight > 0:
            missing = sorted(
                {lab for lab, w in zip(self.labels, weight_of, strict=True)
                 if lab not in shares and w > 0},
                key=repr,
            )
            raise ValueError(
                f"ClassBalancedSampler: shares sum to 1 but labels {missing} are not in shares "
                f"and would never be drawn; list them in shares or lower the shares"
            )
        # Draws of a default epoch: the other samples' weights when they have a share,
        # otherwise one draw per sample on average.
        epoch = rest_weight / rest_share if rest_share > _TOLERANCE else float(len(self.labels))
        result = np.where(listed, 0.0, weight_of)
        for label, share in shares.items():
            members = np.array([lab == label for lab in self.labels])
            result[members] = share * epoch / members.sum()
        return result

    def __len__(self) -> int:
        """Number of samples (not draws)."""
        return len(self.labels)

    def default_epoch_size(self) -> int:
        """Draws per epoch when none is given: the sum of the per-sample weights, rounded (with
        ``shares``: the size at which the samples not in shares still get their weight each)."""
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
            order = self._order
            counts[order] += _systematic_counts((expected - counts)[order], remainder, rng)
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
            f"shares={self.shares!r}, seed={self.seed})"
        )
