"""ftmtl.bootstrap: every resample's AUC against sklearn's roc_auc_score of the cases drawn,
every resample's TPR against ftmtl.metrics.froc of the images drawn, and intervals whose answer
is known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ftmtl import bootstrap
from ftmtl.bootstrap import (
    auc_resamples,
    detection_events,
    percentile_interval,
    resample_counts,
    tpr_at_fpi_resamples,
)
from ftmtl.metrics import FROC_POINTS, froc, label_detections, roc_auc


def drawn(counts_row: np.ndarray) -> np.ndarray:
    """The case indices one resample drew, each as often as it was drawn."""
    return np.repeat(np.arange(counts_row.size), counts_row)


def test_resample_counts_draw_n_cases_with_replacement_reproducibly():
    counts = resample_counts(7, resamples=50, seed=3)
    assert counts.shape == (50, 7) and (counts.sum(axis=1) == 7).all()
    assert (counts > 1).any()  # with replacement: some case drawn twice
    np.testing.assert_array_equal(counts, resample_counts(7, resamples=50, seed=3))
    assert not np.array_equal(counts, resample_counts(7, resamples=50, seed=4))
    # Each resample draws the cases uniformly: over many, every case averages one draw.
    many = resample_counts(7, resamples=20000, seed=0)
    np.testing.assert_allclose(many.mean(axis=0), 1.0, atol=0.03)
    with pytest.raises(ValueError, match="resamples >= 1"):
        resample_counts(5, resamples=0)


def test_each_auc_resample_is_sklearns_auc_of_the_cases_drawn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=40)
    scores = np.round(labels * 0.3 + rng.uniform(size=40), 1)  # rounded: many ties
    counts = resample_counts(40, resamples=200, seed=1)
    aucs = auc_resamples(labels, scores, counts)
    for row, auc in zip(counts, aucs, strict=True):
        cases = drawn(row)
        assert auc == pytest.approx(roc_auc_score(labels[cases], scores[cases]), abs=1e-12)


def test_a_resample_without_both_classes_has_no_auc():
    labels, scores = np.array([1, 0, 0, 0]), np.array([0.9, 0.1, 0.4, 0.2])
    counts = resample_counts(4, resamples=300, seed=0)
    aucs = auc_resamples(labels, scores, counts)
    one_class = (counts[:, 0] == 0) | (counts[:, 1:].sum(axis=1) == 0)
    assert one_class.any() and (~one_class).any()
    assert np.isnan(aucs[one_class]).all()
    np.testing.assert_allclose(aucs[~one_class], 1.0)  # the malignant case scores highest


def test_perfectly_separated_scores_give_the_interval_one_one():
    labels = np.repeat([0, 1], 30)
    scores = np.where(labels == 1, 0.8, 0.2) + np.linspace(0, 0.1, 60)
    aucs = auc_resamples(labels, scores, resample_counts(60, resamples=500, seed=0))
    assert percentile_interval(aucs) == (1.0, 1.0)


def test_the_interval_surrounds_the_point_auc():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, size=300)
    scores = labels * 0.5 + rng.normal(size=300)
    point = roc_auc(labels, scores)
    low, high = percentile_interval(auc_resamples(labels, scores,
                                                  resample_counts(300, 1000, seed=2)))
    assert low < point < high
    # The bootstrap distribution of an AUC from 300 cases is close to symmetric about it.
    assert (low + high) / 2 == pytest.approx(point, abs=0.01)
    # Its width is about 4 standard errors; Hanley and McNeil's for this AUC and these counts:
    q1, q2 = point / (2 - point), 2 * point ** 2 / (1 + point)
    n1, n0 = labels.sum(), (1 - labels).sum()
    se = np.sqrt((point * (1 - point) + (n1 - 1) * (q1 - point ** 2)
                  + (n0 - 1) * (q2 - point ** 2)) / (n1 * n0))
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_percentile_interval():
    assert percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))
    # NaN left out
    assert percentile_interval([np.nan, *np.arange(101.0)]) == pytest.approx((2.5, 97.5))
    assert percentile_interval(np.arange(101.0), level=0.5) == pytest.approx((25.0, 75.0))
    low, high = percentile_interval([np.nan, np.nan])
    assert np.isnan(low) and np.isnan(high)


# ------------------------------------------------------------------------------------ FROC


def random_images(rng, n_images: int):
    """Images with 0-2 masses, a jittered hit on most of them, false positives, and scores
    rounded so that they tie across images."""
    predictions, truths = [], []
    for _ in range(n_images):
        n_masses = int(rng.integers(0, 3))
        corners = rng.uniform(0, 80, size=(n_masses, 2))
        masses = np.hstack([corners, corners + 20])
        hits = masses[rng.uniform(size=n_masses) < 0.8] + rng.integers(-4, 5, size=(1, 4))
        misses = rng.uniform(0, 90, size=(int(rng.integers(0, 4)), 2))
        boxes = np.vstack([hits, np.hstack([misses, misses + 10])]).reshape(-1, 4)
        predictions.append((boxes, np.round(rng.uniform(size=len(boxes)), 1)))
        truths.append(masses)
    return predictions, truths


def test_each_tpr_resample_is_the_froc_of_the_images_drawn():
    rng = np.random.default_rng(0)
    predictions, truths = random_images(rng, 25)
    counts = resample_counts(25, resamples=40, seed=7)
    events = detection_events(predictions, truths, iou_threshold=0.2)
    tprs = tpr_at_fpi_resamples(events, counts, FROC_POINTS)
    assert tprs.shape == (40, len(FROC_POINTS))
    for row, tpr in zip(counts, tprs, strict=True):
        images = drawn(row)
        curve = froc([predictions[i] for i in images], [truths[i] for i in images], 0.2)
        np.testing.assert_allclose(tpr, curve.tpr_at_array(FROC_POINTS), atol=1e-12)
    # All images once: the FROC of the whole set.
    whole = tpr_at_fpi_resamples(events, np.ones((1, 25)), FROC_POINTS)[0]
    np.testing.assert_allclose(whole, froc(predictions, truths).tpr_at_array(FROC_POINTS))


def test_the_froc_in_small_chunks_is_the_same(monkeypatch):
    predictions, truths = random_images(np.random.default_rng(1), 20)
    events = detection_events(predictions, truths)
    counts = resample_counts(20, resamples=30, seed=0)
    expected = tpr_at_fpi_resamples(events, counts, FROC_POINTS)
    monkeypatch.setattr(bootstrap, "_FROC_CHUNK_VALUES", 1)  # one resample at a time
    np.testing.assert_array_equal(tpr_at_fpi_resamples(events, counts, FROC_POINTS), expected)


def test_a_resample_without_a_mass_has_no_tpr():
    mass = np.array([[10.0, 10, 30, 30]])
    predictions = [(mass + 1, np.array([0.9]))] + [(mass, np.array([0.5]))] * 3
    truths = [mass] + [np.zeros((0, 4))] * 3  # only the first image has a mass
    counts = resample_counts(4, resamples=200, seed=0)
    tprs = tpr_at_fpi_resamples(detection_events(predictions, truths), counts, [0.0, 5.0])
    without = counts[:, 0] == 0
    assert without.any() and (~without).any()
    assert np.isnan(tprs[without]).all()
    np.testing.assert_allclose(tprs[~without], 1.0)  # its hit scores above every FP


def test_events_carry_the_frocs_labels():
    predictions, truths = random_images(np.random.default_rng(2), 6)
    events = detection_events(predictions, truths)
    for image, ((boxes, scores), masses) in enumerate(zip(predictions, truths, strict=True)):
        is_tp, is_fp = label_detections(boxes, scores, masses)
        mine = events.image == image
        assert events.is_tp[mine].sum() == is_tp.sum() and events.is_fp[mine].sum() == is_fp.sum()
        assert events.masses[image] == len(masses)
    with pytest.raises(ValueError, match="2 prediction entries but 1"):
        detection_events(predictions[:2], truths[:1])
    with pytest.raises(ValueError, match=r"counts must be \[resamples, 6\]"):
        tpr_at_fpi_resamples(events, np.ones((3, 5)), FROC_POINTS)


def test_no_detection_at_all_finds_nothing():
    mass = np.array([[10.0, 10, 30, 30]])
    predictions = [(np.zeros((0, 4)), np.zeros(0))] * 3
    events = detection_events(predictions, [mass] * 3)
    tprs = tpr_at_fpi_resamples(events, resample_counts(3, resamples=5), FROC_POINTS)
    np.testing.assert_array_equal(tprs, 0.0)
