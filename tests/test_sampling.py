"""Class-balanced online sampling (mrcnn/sampling.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mrcnn.sampling import (
    DEFAULT_MASS_FREE_SHARE,
    MASS_FREE_LABEL,
    PAPER_WEIGHTS,
    ClassBalancedSampler,
    _systematic_counts,
)

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


# ------------------------------------------------------------------------------- shares
# 4 images without a mass, 3 benign, 2 malignant. Masses: 3 x 150 + 2 x 75 = 600 = 0.8 of a
# default epoch of 750; each normal image gets 0.2 x 750 / 4 = 37.5 draws of it.
WITH_NORMALS = ["normal"] * 4 + ["benign"] * 3 + ["malignant"] * 2
SHARE = {"normal": 0.2}


def label_totals(labels, indices) -> dict:
    totals: dict = {}
    for index in indices.tolist():
        totals[labels[index]] = totals.get(labels[index], 0) + 1
    return totals


def test_mass_free_label_is_the_one_fold_stratum_gives():
    from ftmtl.inbreast.folds import fold_stratum

    assert fold_stratum({"masses": [], "mass_label": None}) == MASS_FREE_LABEL == "normal"
    assert DEFAULT_MASS_FREE_SHARE == 0.2


def test_share_is_exact_over_an_epoch_of_100():
    sampler = ClassBalancedSampler(WITH_NORMALS, PAPER_WEIGHTS, seed=0, shares=SHARE)
    indices = sampler.epoch_indices(100)
    # Normal 0.2 x 100 / 4 = 5 each; benign 150 x 100 / 750 = 20 each; malignant 10 each.
    assert np.bincount(indices, minlength=9).tolist() == [5, 5, 5, 5, 20, 20, 20, 10, 10]
    assert sampler.expected_counts(100) == pytest.approx(
        {"normal": 20.0, "benign": 60.0, "malignant": 20.0})


def test_default_epoch_with_a_share_keeps_the_paper_counts_of_the_masses():
    sampler = ClassBalancedSampler(WITH_NORMALS, PAPER_WEIGHTS, seed=1, shares=SHARE)
    assert sampler.default_epoch_size() == 750
    for epoch in range(20):
        counts = np.bincount(sampler.epoch_indices(epoch=epoch), minlength=9)
        assert counts[4:].tolist() == [150, 150, 150, 75, 75]
        # 37.5 each: 37 or 38, and 150 together.
        assert set(counts[:4].tolist()) <= {37, 38} and counts[:4].sum() == 150


def test_shares_and_weights_together():
    labels = ["normal", "normal", "benign", "malignant"]
    weights = {"benign": 3, "malignant": 1, "normal": 1000}  # a shared label ignores its weight
    sampler = ClassBalancedSampler(labels, weights, seed=2, shares={"normal": 0.5})
    # Half the draws to the 2 normal images, the other half 3 : 1 to benign : malignant.
    assert sampler.default_epoch_size() == 8
    assert np.bincount(sampler.epoch_indices()).tolist() == [2, 2, 3, 1]
    assert np.bincount(sampler.epoch_indices(80)).tolist() == [20, 20, 30, 10]
    assert sampler.expected_counts(80) == pytest.approx(
        {"normal": 40.0, "benign": 30.0, "malignant": 10.0})
    np.testing.assert_allclose(sampler.probabilities, [0.25, 0.25, 0.375, 0.125])


def test_shares_summing_to_one_over_every_label():
    shares = {"normal": 0.5, "benign": 0.25, "malignant": 0.25}
    sampler = ClassBalancedSampler(WITH_NORMALS, {}, seed=3, shares=shares)
    assert sampler.default_epoch_size() == len(WITH_NORMALS)  # once per sample on average
    indices = sampler.epoch_indices(100)
    # 12.5, 8.33 and 12.5 draws per sample: each label's total is exact.
    assert label_totals(WITH_NORMALS, indices) == {"normal": 50, "benign": 25, "malignant": 25}
    counts = np.bincount(indices, minlength=9)
    assert set(counts[:4].tolist()) <= {12, 13} and set(counts[4:7].tolist()) <= {8, 9}


def test_zero_share_leaves_the_label_out():
    sampler = ClassBalancedSampler(WITH_NORMALS, PAPER_WEIGHTS, shares={"normal": 0.0})
    assert not np.isin(sampler.epoch_indices(500), [0, 1, 2, 3]).any()
    assert sampler.default_epoch_size() == 600


def test_label_totals_stay_within_one_when_labels_are_interleaved():
    # Every sample's draws have a fractional part; the labels are mixed in the list.
    labels = ["benign", "normal", "malignant", "normal", "benign", "normal", "malignant",
              "normal", "benign", "normal", "malignant"]
    shares = {"normal": 0.3}
    sampler = ClassBalancedSampler(labels, {"benign": 2.3, "malignant": 1.1}, seed=5,
                                   shares=shares)
    for n in (7, 13, 29, 101):
        expected = sampler.expected_counts(n)
        assert expected["normal"] == pytest.approx(0.3 * n)
        for epoch in range(40):
            indices = sampler.epoch_indices(n, epoch=epoch)
            totals = label_totals(labels, indices)
            for label, value in expected.items():
                assert abs(totals.get(label, 0) - value) < 1, (n, epoch, label)


def test_share_over_many_epochs_matches_in_expectation():
    # 3 normal images, 0.25 of 10 draws = 2.5 per epoch: 2 or 3, 2.5 on average.
    labels = ["normal"] * 3 + ["benign"] * 5
    sampler = ClassBalancedSampler(labels, PAPER_WEIGHTS, seed=0, shares={"normal": 0.25})
    totals = [label_totals(labels, sampler.epoch_indices(10, epoch=e)).get("normal", 0)
              for e in range(400)]
    assert set(totals) == {2, 3}
    # Std of the mean of a fair 2-or-3 draw over 400 epochs: 0.025; allow 4 of them.
    assert np.mean(totals) == pytest.approx(2.5, abs=0.1)


def test_shares_are_reproducible_per_seed():
    first = ClassBalancedSampler(WITH_NORMALS, PAPER_WEIGHTS, seed=4, shares=SHARE)
    again = ClassBalancedSampler(WITH_NORMALS, PAPER_WEIGHTS, seed=4, shares=SHARE)
    np.testing.assert_array_equal(first.epoch_indices(101, epoch=1),
                                  again.epoch_indices(101, epoch=1))
    other = ClassBalancedSampler(WITH_NORMALS, PAPER_WEIGHTS, seed=5, shares=SHARE)
    assert not np.array_equal(first.epoch_indices(101, epoch=1),
                              other.epoch_indices(101, epoch=1))


@pytest.mark.parametrize(
    ("labels", "shares", "message"),
    [
        (WITH_NORMALS, {"normal": -0.1}, r"shares\['normal'\] must be in \[0, 1\]"),
        (WITH_NORMALS, {"normal": 1.5}, r"shares\['normal'\] must be in \[0, 1\]"),
        (WITH_NORMALS, {"normal": float("nan")}, r"shares\['normal'\]"),
        (WITH_NORMALS, {"normal": 0.6, "benign": 0.6}, "shares must sum to at most 1, got 1.2"),
        (WITH_NORMALS, {"normal": 0.4, "benign": 0.6}, r"\['malignant'\] are not in shares"),
        (["normal", "normal"], {"normal": 0.2}, "total weight 0"),
        (["normal", "benign"], {"normal": 0.2, "benign": 0.0}, "total weight 0"),
    ],
)
def test_bad_shares(labels, shares, message):
    with pytest.raises(ValueError, match=message):
        ClassBalancedSampler(labels, PAPER_WEIGHTS, shares=shares)


def test_share_of_an_absent_label_is_reported_and_goes_to_the_others(caplog):
    with caplog.at_level(logging.WARNING, logger="mrcnn.sampling"):
        sampler = ClassBalancedSampler(WITH_NORMALS, PAPER_WEIGHTS, seed=6,
                                       shares={"normal": 0.2, "calcification": 0.3})
    assert "calcification" in caplog.text
    assert sampler.shares == {"normal": 0.2}
    plain = ClassBalancedSampler(WITH_NORMALS, PAPER_WEIGHTS, seed=6, shares=SHARE)
    np.testing.assert_array_equal(sampler.epoch_indices(100), plain.epoch_indices(100))
    # A set without normal images: the share has nobody to go to, the weights decide alone.
    caplog.clear()
    masses = ["benign", "benign", "malignant"]
    with caplog.at_level(logging.WARNING, logger="mrcnn.sampling"):
        only_masses = ClassBalancedSampler(masses, PAPER_WEIGHTS, shares=SHARE)
    assert "'normal'" in caplog.text
    assert np.bincount(only_masses.epoch_indices()).tolist() == [150, 150, 75]


def _old_epoch_indices(labels, weights, seed, n, epoch):
    """The sampler before shares existed, verbatim, as the reference for shares=None."""
    sample_weights = np.array([weights.get(lab, 1.0) for lab in labels])
    rng = np.random.default_rng([seed, int(epoch)])
    expected = sample_weights * (n / sample_weights.sum())
    counts = np.floor(expected).astype(np.int64)
    remainder = n - int(counts.sum())
    if remainder > 0:
        counts += _systematic_counts(expected - counts, remainder, rng)
    return rng.permutation(np.repeat(np.arange(len(labels), dtype=np.int64), counts))


def test_no_shares_keeps_the_old_draws():
    sampler = ClassBalancedSampler(LABELS, PAPER_WEIGHTS, seed=3, shares=None)
    assert sampler.shares is None
    assert np.bincount(sampler.epoch_indices(), minlength=6).tolist() == [150, 150, 150, 75, 75, 1]
    rng = np.random.default_rng(1)
    labels = rng.choice(["a", "b", "c"], size=23).tolist()
    weights = {"a": 0.7, "b": 4.2}
    sampler = ClassBalancedSampler(labels, weights, seed=9)
    for n, epoch in ((10, 0), (57, 1), (1000, 2)):
        np.testing.assert_array_equal(sampler.epoch_indices(n, epoch=epoch),
                                      _old_epoch_indices(labels, weights, 9, n, epoch))


# ------------------------------------------------------------------------------ callers
def test_config_share_is_validated():
    from ftmtl.model import FTMTLConfig
    from ftmtl.presets import make_config
    from mrcnn.config import ConfigError

    assert FTMTLConfig.MASS_FREE_SHARE == DEFAULT_MASS_FREE_SHARE
    assert make_config("paper_cpu", MASS_FREE_SHARE=0.5).MASS_FREE_SHARE == 0.5
    for bad in (-0.1, 1.5, float("nan"), "0.2", True):
        with pytest.raises(ConfigError, match="MASS_FREE_SHARE"):
            make_config("paper_cpu", MASS_FREE_SHARE=bad)


def test_balanced_sampler_gives_mass_free_images_their_share():
    from types import SimpleNamespace

    from ftmtl.inbreast.folds import balanced_sampler

    infos = ([{"masses": [], "mass_label": None}] * 4
             + [{"masses": [1], "mass_label": "benign"}] * 3
             + [{"masses": [1], "mass_label": "malignant"}] * 2)
    sampler = balanced_sampler(SimpleNamespace(image_info=infos), seed=0, mass_free_share=0.2)
    assert np.bincount(sampler.epoch_indices(100)).tolist() == [5, 5, 5, 5, 20, 20, 20, 10, 10]
    assert sampler.seed == 0 and sampler.shares == {"normal": 0.2}


def test_balanced_weights_draw_each_class_equally_in_total():
    from mrcnn.sampling import balanced_weights

    labels = ["benign"] * 2 + ["malignant"] * 4 + ["normal"] * 3
    weights = balanced_weights(labels, ("benign", "malignant"))
    assert weights == {"benign": 2.0, "malignant": 1.0}
    assert balanced_weights(["benign"] * 3, ("benign", "malignant")) == {"benign": 1.0}
    assert balanced_weights([], ("benign",)) == {}


def test_balanced_sampler_weights_option():
    from types import SimpleNamespace

    from ftmtl.inbreast.folds import balanced_sampler

    infos = ([{"masses": [], "mass_label": None}] * 2
             + [{"masses": [1], "mass_label": "benign"}] * 2
             + [{"masses": [1], "mass_label": "malignant"}] * 4)
    dataset = SimpleNamespace(image_info=infos)
    counts = np.bincount(balanced_sampler(dataset, 0, 0.2, "balanced").epoch_indices(100))
    # 20 draws for the two normal images; benign and malignant share 80 equally: 40 each.
    assert counts.tolist() == [10, 10, 20, 20, 10, 10, 10, 10]
    paper = np.bincount(balanced_sampler(dataset, 0, 0.2, "paper").epoch_indices(100))
    assert paper[2:4].sum() == 40 and paper[4:].sum() == 40  # 150 x 2 against 75 x 4
    with pytest.raises(ValueError, match="weights must be one of"):
        balanced_sampler(dataset, 0, 0.2, "uniform")


def test_sampler_weights_setting_is_validated():
    from ftmtl.presets import make_config
    from mrcnn.config import ConfigError

    assert make_config("paper").SAMPLER_WEIGHTS == "paper"
    assert make_config("fpn_cpu").SAMPLER_WEIGHTS == "balanced"
    with pytest.raises(ConfigError, match="SAMPLER_WEIGHTS"):
        make_config("paper_cpu", SAMPLER_WEIGHTS="uniform")
