"""Patient-grouped, label-stratified folds."""

from __future__ import annotations

import numpy as np
import pytest

from ftmtl.inbreast import INbreastDataset, patient_folds
from ftmtl.inbreast.folds import fold_stratum


def dataset_of(patients):
    """patients: list of (patient id, [(mass label or None, number of masses), ...])."""
    dataset = INbreastDataset()
    for patient, images in patients:
        for n, (label, count) in enumerate(images):
            dataset.add_image("inbreast", f"{patient}-{n}", None, file_name=f"{patient}-{n}",
                              patient_id=patient, mass_label=label, masses=[object()] * count)
    dataset.prepare()
    return dataset


def ten_patients():
    patients = []
    for p in range(10):
        label = "benign" if p % 2 else "malignant"
        patients.append((f"p{p}", [(label, 1), (label, 2), (None, 0)]))
    return dataset_of(patients)


def test_folds_group_patients_stratify_labels_and_cover_the_dataset():
    dataset = ten_patients()
    folds = patient_folds(dataset, k=5, seed=0)
    assert len(folds) == 5
    patients = np.array([info["patient_id"] for info in dataset.image_info])
    strata = np.array([fold_stratum(info) for info in dataset.image_info])
    seen_patients = set()
    all_test = []
    for train, test in folds:
        assert not set(train) & set(test)
        assert sorted([*train, *test]) == list(range(len(dataset.image_info)))
        test_patients = set(patients[test])
        assert not test_patients & set(patients[train])
        assert not test_patients & seen_patients
        seen_patients |= test_patients
        assert {"benign", "malignant", "normal"} <= set(strata[test])
        all_test.extend(test)
    assert sorted(all_test) == list(range(len(dataset.image_info)))


def test_seed_changes_the_split_and_is_reproducible():
    dataset = ten_patients()
    first = [test.tolist() for _, test in patient_folds(dataset, k=5, seed=0)]
    again = [test.tolist() for _, test in patient_folds(dataset, k=5, seed=0)]
    other = [test.tolist() for _, test in patient_folds(dataset, k=5, seed=3)]
    assert first == again
    assert sorted(map(sorted, first)) != sorted(map(sorted, other))


def test_more_folds_than_patients_is_a_clear_error():
    dataset = dataset_of([("a", [("benign", 1)]), ("b", [("malignant", 1)])])
    with pytest.raises(ValueError, match="k=3 folds but only 2 patients"):
        patient_folds(dataset, k=3)
    with pytest.raises(ValueError, match="at least 2"):
        patient_folds(dataset, k=1)


def test_stratum_of_an_image_without_masses_is_normal():
    assert fold_stratum({"mass_label": None, "masses": []}) == "normal"
    assert fold_stratum({"mass_label": "malignant", "masses": [1]}) == "malignant"
