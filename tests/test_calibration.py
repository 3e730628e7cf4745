"""ftmtl.calibration: reliability bins and the ECE against hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from ftmtl.calibration import expected_calibration_error, reliability_bins

# Eight cases in four of the ten bins:
#   bin 0 [0.0, 0.1): 0.05, 0.08 both negative -> mean 0.065, fraction 0,   gap 0.065
#   bin 3 [0.3, 0.4): 0.32 +, 0.38 -           -> mean 0.35,  fraction 1/2, gap 0.15
#   bin 5 [0.5, 0.6): 0.55 +                   -> mean 0.55,  fraction 1,   gap 0.45
#   bin 9 [0.9, 1.0]: 0.91 +, 0.99 +, 1.0 -    -> mean 2.9/3, fraction 2/3, gap 0.3
# ECE = (2 * 0.065 + 2 * 0.15 + 1 * 0.45 + 3 * 0.3) / 8 = 1.78 / 8 = 0.2225
SCORES = [0.05, 0.08, 0.32, 0.38, 0.55, 0.91, 0.99, 1.0]
LABELS = [0, 0, 1, 0, 1, 1, 1, 0]


def test_ece_of_a_hand_worked_example():
    assert expected_calibration_error(LABELS, SCORES) == pytest.approx(0.2225, abs=1e-12)


def test_reliability_bins_of_the_hand_worked_example():
    bins = reliability_bins(LABELS, SCORES)
    np.testing.assert_allclose(bins.edges, np.arange(11) / 10)
    assert bins.counts.tolist() == [2, 0, 0, 2, 0, 1, 0, 0, 0, 3]
    filled = bins.counts > 0
    np.testing.assert_allclose(bins.mean_score[filled], [0.065, 0.35, 0.55, 2.9 / 3])
    np.testing.assert_allclose(bins.fraction_positive[filled], [0.0, 0.5, 1.0, 2 / 3])
    assert np.isnan(bins.mean_score[~filled]).all()  # empty bins have no mean
    assert bins.n_cases == 8
    saved = bins.to_dict()
    assert saved["n_bins"] == 10 and saved["counts"] == bins.counts.tolist()
    assert saved["mean_score"][1] is None and saved["fraction_positive"][3] == 0.5


def test_a_calibrated_score_has_no_error_and_one_bin_is_the_mean_gap():
    # A quarter of the cases scored 0.25 are positive, three quarters of those scored 0.75.
    labels = [1, 0, 0, 0, 1, 1, 1, 0]
    scores = [0.25] * 4 + [0.75] * 4
    assert expected_calibration_error(labels, scores) == pytest.approx(0.0, abs=1e-12)
    # One bin: the ECE is |mean label - mean score|; with a positive scored 0.5 added,
    # |5/9 - 5.5/9| = 0.5/9.
    assert expected_calibration_error(labels + [1], scores + [0.5], n_bins=1) == pytest.approx(
        0.5 / 9, abs=1e-12)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*1\.2"):
        reliability_bins([0, 1], [0.3, 1.2])
    with pytest.raises(ValueError, match="probabilities"):
        reliability_bins([0, 1], [0.3, float("nan")])
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        reliability_bins([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="labels must be 0/1"):
        reliability_bins([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="n_bins"):
        reliability_bins([0, 1], [0.1, 0.2], n_bins=0)
    with pytest.raises(ValueError, match="no cases"):
        reliability_bins([], [])
