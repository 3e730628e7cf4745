"""Patient-grouped, label-stratified k-fold splits (two views of one breast never leak)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


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
