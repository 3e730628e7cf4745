"""Class-balanced online sampling (mrcnn/sampling.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mrcnn.sampling import PAPER_WEIGHTS, ClassBalancedSampler

LABELS = ["benign", "benign", "benign", "malignant", "malignant", "normal"]


def test_paper_weights():
    assert PAPER_WEIGHTS == {"benign": 150, "malignant": 75}


def test_default_epoch_gives_each_sample_its_weight():
    sampler = ClassBalancedSampler(LABELS, PAPER_WEIGHTS, seed=3)
    indices = sampler.epoch_indices()
    # 3 x 150 + 2 x 75 + 1 x 1 (a label missing from the weights counts once).
    assert sampler.default_epoch_size() == 601 and indices.shape == (601,)
    assert np.bincount(indices, minlength=6).tolist() == [150, 150, 150, 75, 75, 1]
    assert not np.all(np.diff(indices) >= 0)  # shuffled, not grouped by sample


def test_frequencies_follow_the_weights_on_a_large_draw():
    rng = np.random.default_rng(0)
    labels = rng.choice(["a", "b", "c", "d"], size=37).tolist()
    weights = {"a": 0.5, "b": 2.7, "c": 13.0}  # "d" gets 1
    sampler = ClassBalancedSampler(labels, weights, seed=1)
    n = 100_003
    counts = np.bincount(sampler.epoch_indices(n), minlength=len(labels))
    per_sample = np.array([weights.get(label, 1.0) for label in labels])
    expected = n * per_sample / per_sample.sum()
    assert counts.sum() == n
    assert np.all(np.abs(counts - expected) <= 1)
    for label, value in sampler.expected_counts(n).items():
        share = per_sample[[lab == label for lab in labels]].sum() / per_sample.sum()
        assert value == pytest.approx(n * share)


def test_remainders_are_unbiased_over_many_epochs():
    # 10 draws over 3 equal samples: 3 each plus one extra draw that must be fair.
    sampler = ClassBalancedSampler(["x", "y", "z"], {}, seed=0)
    totals = np.zeros(3)
    epochs = 600
    for epoch in range(epochs):
        counts = np.bincount(sampler.epoch_indices(10, epoch=epoch), minlength=3)
        assert set(counts.tolist()) <= {3, 4} and counts.sum() == 10
        totals += counts
    # Binomial std of the mean count: sqrt(p (1 - p) / epochs) ~ 0.019; allow 4 of them.
    np.testing.assert_allclose(totals / epochs, 10 / 3, atol=0.08)


def test_zero_weight_excludes_a_label():
    sampler = ClassBalancedSampler(LABELS, {"benign": 2, "malignant": 0, "normal": 1})
    indices = sampler.epoch_indices(1000)
    assert not np.isin(indices, [3, 4]).any()
    assert sampler.expected_counts(1000)["malignant"] == 0


def test_integer_labels():
    sampler = ClassBalancedSampler([1, 2, 2, 1], {1: 3, 2: 1})
    assert np.bincount(sampler.epoch_indices()).tolist() == [3, 1, 1, 3]
    assert sampler.expected_counts() == {1: 6.0, 2: 2.0}


def test_deterministic_per_seed_and_epoch():
    sampler = ClassBalancedSampler(LABELS, PAPER_WEIGHTS, seed=7)
    same = ClassBalancedSampler(LABELS, PAPER_WEIGHTS, seed=7)
    np.testing.assert_array_equal(sampler.epoch_indices(epoch=2), same.epoch_indices(epoch=2))
    assert not np.array_equal(sampler.epoch_indices(epoch=2), sampler.epoch_indices(epoch=3))
    other_seed = ClassBalancedSampler(LABELS, PAPER_WEIGHTS, seed=8)
    assert not np.array_equal(sampler.epoch_indices(epoch=2), other_seed.epoch_indices(epoch=2))


def test_epoch_sizes():
    sampler = ClassBalancedSampler(LABELS, PAPER_WEIGHTS)
    assert sampler.epoch_indices(0).shape == (0,)
    assert sampler.epoch_indices(8).shape == (8,)
    assert sampler.epoch_indices(8).dtype == np.int64
    assert len(sampler) == len(LABELS)
    with pytest.raises(ValueError, match="epoch size"):
        sampler.epoch_indices(-1)


@pytest.mark.parametrize(
    ("labels", "weights", "message"),
    [
        ([], {"benign": 1}, "empty"),
        (LABELS, {"benign": -1.0}, "'benign'"),
        (LABELS, {"malignant": float("nan")}, "finite"),
        (["benign", "malignant"], {"benign": 0, "malignant": 0}, "every sample has weight 0"),
    ],
)
def test_bad_input(labels, weights, message):
    with pytest.raises(ValueError, match=message):
        ClassBalancedSampler(labels, weights)


def test_unused_weight_is_reported(caplog):
    with caplog.at_level(logging.WARNING, logger="mrcnn.sampling"):
        ClassBalancedSampler(LABELS, {"malignent": 75})
    assert "malignent" in caplog.text
