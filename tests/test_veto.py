"""The malignant veto on hand-worked cases, and the in-graph layer against the numpy function."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ftmtl.veto import MalignantVeto, case_malignancy_score

# (class_ids, class_probs (bg, benign, malignant), proposal p(malignant), expected score)
CASES = {
    "one malignant box": (
        [2], [[0.1, 0.2, 0.7]], [0.7, 0.3], 0.7),
    "several benign boxes": (
        [1, 1, 1], [[0.2, 0.6, 0.2], [0.05, 0.9, 0.05], [0.3, 0.5, 0.2]], [0.2, 0.05, 0.2],
        1.0 - 0.9),
    # The benign-predicted box has a higher p(malignant) (0.48) than either malignant box: the
    # score is the best p(malignant) among the malignant boxes only.
    "mixed": (
        [1, 2, 2], [[0.0, 0.52, 0.48], [0.5, 0.2, 0.3], [0.6, 0.15, 0.25]], [0.48, 0.3, 0.25],
        0.3),
    "no detection": (
        [], np.zeros((0, 3)), [0.2, 0.65, 0.1], 0.65),
    "only padding rows": (
        [0, 0], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [0.4], 0.4),
    "no detection and no proposal": (
        [], np.zeros((0, 3)), [], 0.0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hand_worked_cases(name):
    class_ids, probs, proposals, expected = CASES[name]
    assert case_malignancy_score(class_ids, probs, proposals) == pytest.approx(expected)


def test_a_weak_malignant_box_can_lower_the_case_score():
    """The paper's rule, pinned as documented in ftmtl/veto.py: one malignant box decides the
    case, even when it is weaker than the benign evidence it replaces."""
    benign_only = case_malignancy_score([1], [[0.20, 0.55, 0.25]], [0.3])
    with_weak_malignant = case_malignancy_score([1, 2], [[0.20, 0.55, 0.25],
                                                         [0.25, 0.35, 0.40]], [0.3])
    assert benign_only == pytest.approx(0.45)
    assert with_weak_malignant == pytest.approx(0.40)
    assert with_weak_malignant < benign_only


def test_padding_rows_among_detections_are_ignored():
    score = case_malignancy_score([1, 0, 0], [[0.1, 0.8, 0.1], [0, 0, 0], [0, 0, 0]], [0.9])
    assert score == pytest.approx(0.2)


def test_other_class_ids_can_be_read():
    # Classes: 0 bg, 1 malignant, 2 benign.
    probs = [[0.1, 0.3, 0.6]]
    assert case_malignancy_score([2], probs, [0.3], benign_class=2,
                                 malignant_class=1) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="class_probs has 3 classes"):
        case_malignancy_score([1], probs, [], benign_class=1, malignant_class=3)


def _batch_from_cases(names, detections_per_image=4, proposals_per_image=5):
    """Pad the cases into graph tensors: detections [B, D, 6], probs [B, D, 3], proposal
    probs [B, N, 3] and proposals [B, N, 4] (zero rows are padding)."""
    b = len(names)
    detections = np.zeros((b, detections_per_image, 6), np.float32)
    det_probs = np.zeros((b, detections_per_image, 3), np.float32)
    prop_probs = np.zeros((b, proposals_per_image, 3), np.float32)
    proposals = np.zeros((b, proposals_per_image, 4), np.float32)
    for i, name in enumerate(names):
        class_ids, probs, prop_mal, _ = CASES[name]
        d = len(class_ids)
        detections[i, :d, :4] = [0.1, 0.1, 0.3, 0.3]
        detections[i, :d, 4] = class_ids
        det_probs[i, :d] = np.asarray(probs).reshape(d, 3)
        n = len(prop_mal)
        prop_probs[i, :n, 2] = prop_mal
        prop_probs[i, :n, 1] = 1.0 - np.asarray(prop_mal)
        proposals[i, :n] = [0.2, 0.2, 0.5, 0.6]
        # A padding proposal row with a large p(malignant) must not count.
        prop_probs[i, n:, 2] = 0.99
    return detections, det_probs, prop_probs, proposals


def test_layer_matches_the_hand_worked_cases_per_batch_item():
    names = list(CASES)
    inputs = _batch_from_cases(names)
    scores = MalignantVeto()([tf.constant(x) for x in inputs]).numpy()
    assert scores.shape == (len(names),)
    np.testing.assert_allclose(scores, [CASES[n][3] for n in names], rtol=1e-6, atol=1e-6)


def test_layer_equals_numpy_on_random_batches():
    rng = np.random.default_rng(0)
    b, d, n = 16, 5, 7
    det_probs = rng.dirichlet([1, 1, 1], size=(b, d)).astype(np.float32)
    prop_probs = rng.dirichlet([1, 1, 1], size=(b, n)).astype(np.float32)
    class_ids = rng.integers(0, 3, size=(b, d))
    class_ids[:4] = 0  # some images without any detection
    detections = np.zeros((b, d, 6), np.float32)
    detections[..., 4] = class_ids
    proposals = np.tile(np.array([0.1, 0.1, 0.4, 0.4], np.float32), (b, n, 1))
    proposals[:, 5:] = 0.0  # padding
    proposals[1] = 0.0  # an image without proposals
    scores = MalignantVeto()([tf.constant(x) for x in
                              (detections, det_probs, prop_probs, proposals)]).numpy()
    for i in range(b):
        valid = np.any(proposals[i] != 0, axis=1)
        expected = case_malignancy_score(class_ids[i], det_probs[i], prop_probs[i, valid, 2])
        assert scores[i] == pytest.approx(expected, abs=1e-6)


def test_mismatched_rows_are_refused_with_the_shapes():
    with pytest.raises(ValueError, match=r"class_probs must be \[D, K\] with D = 2"):
        case_malignancy_score([1, 2], [[0.1, 0.2, 0.7]], [])


def test_detections_below_the_veto_threshold_count_as_none():
    probs = [[0.1, 0.2, 0.7], [0.05, 0.9, 0.05]]
    # The malignant box scores 0.4: below 0.5 it is left out and the benign one decides.
    assert case_malignancy_score([2, 1], probs, [0.6], scores=[0.4, 0.95],
                                 min_confidence=0.5) == pytest.approx(1.0 - 0.9)
    # Without a threshold the low-confidence malignant box decides.
    assert case_malignancy_score([2, 1], probs, [0.6], scores=[0.4, 0.95]) == pytest.approx(0.7)
    # Every box below: the proposal fallback, as for an image without detections.
    assert case_malignancy_score([2, 1], probs, [0.6], scores=[0.4, 0.45],
                                 min_confidence=0.5) == pytest.approx(0.6)
    # A score exactly at the threshold counts.
    assert case_malignancy_score([2], probs[:1], [0.6], scores=[0.5],
                                 min_confidence=0.5) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="1 scores for 2 class ids"):
        case_malignancy_score([2, 1], probs, [], scores=[0.4], min_confidence=0.5)


def test_layer_threshold_equals_numpy_on_random_batches():
    rng = np.random.default_rng(1)
    b, d, n = 16, 5, 7
    det_probs = rng.dirichlet([1, 1, 1], size=(b, d)).astype(np.float32)
    prop_probs = rng.dirichlet([1, 1, 1], size=(b, n)).astype(np.float32)
    detections = np.zeros((b, d, 6), np.float32)
    detections[..., 4] = rng.integers(0, 3, size=(b, d))
    detections[..., 5] = rng.uniform(0.05, 1.0, size=(b, d))
    proposals = np.tile(np.array([0.1, 0.1, 0.4, 0.4], np.float32), (b, n, 1))
    layer = MalignantVeto(min_confidence=0.5)
    assert MalignantVeto.from_config(layer.get_config()).min_confidence == 0.5
    scores = layer([tf.constant(x) for x in
                    (detections, det_probs, prop_probs, proposals)]).numpy()
    for i in range(b):
        expected = case_malignancy_score(detections[i, :, 4], det_probs[i], prop_probs[i, :, 2],
                                         scores=detections[i, :, 5], min_confidence=0.5)
        assert scores[i] == pytest.approx(expected, abs=1e-6)
