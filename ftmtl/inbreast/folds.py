"""Patient-grouped, label-stratified k-fold splits (two views of one breast never leak)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from mrcnn.sampling import MASS_FREE_LABEL, PAPER_WEIGHTS, ClassBalancedSampler, balanced_weights

# Values of FTMTLConfig.SAMPLER_WEIGHTS.
SAMPLER_WEIGHTS = ("paper", "balanced")


def fold_stratum(info: dict[str, Any]) -> str:
    """The class a sample is stratified by: its masses' label, or "normal" without masses."""
    return info["mass_label"] if info.get("masses") else "normal"


def patient_folds(dataset: Any, k: int = 5, seed: int = 0
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train_ids, test_ids) pairs of image ids; each patient's images fall in one test fold."""
    infos = dataset.image_info
    ids = np.arange(len(infos))
    groups = np.array([info["patient_id"] for info in infos])
    strata = np.array([fold_stratum(info) for info in infos])
    patients = len(set(groups.tolist()))
    if k < 2:
        raise ValueError(f"patient_folds: k must be at least 2, got {k}")
    if k > patients:
        raise ValueError(f"patient_folds: k={k} folds but only {patients} patients")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(ids[train], ids[test]) for train, test in splitter.split(ids, strata, groups)]


def balanced_sampler(dataset: Any, seed: int, mass_free_share: float,
                     weights: str = "paper") -> ClassBalancedSampler:
    """Class balance drawn online: images without a mass get ``mass_free_share`` of the draws
    (Config.MASS_FREE_SHARE), so that the background and the false positives per image are
    learned; the masses share the rest in proportion to their label's weight: ``weights``
    "paper" (benign 150, malignant 75, the paper's augmentation factors for INbreast's mix) or
    "balanced" (inverse to each label's count: both drawn equally; Config.SAMPLER_WEIGHTS).
    The CLI, cross-validation and the benchmarks all build it here."""
    if weights not in SAMPLER_WEIGHTS:
        raise ValueError(f"balanced_sampler: weights must be one of {SAMPLER_WEIGHTS}, got "
                         f"{weights!r}")
    labels = [fold_stratum(info) for info in dataset.image_info]
    label_weights = (PAPER_WEIGHTS if weights == "paper"
                     else balanced_weights(labels, tuple(PAPER_WEIGHTS)))
    return ClassBalancedSampler(labels, label_weights, seed=seed,
                                shares={MASS_FREE_LABEL: mass_free_share})
