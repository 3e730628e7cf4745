"""Config.DETECTION_SCORE: Matterport's "class" score (an ROI whose arg-max is the background is
dropped) against FT-MTL-Net's "foreground" score (1 - p(background)), on hand-made probabilities;
the config's validation; the plain MaskRCNN reading it; the presets keeping "foreground"."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tiny_config import TinyConfig

from mrcnn.config import ConfigError
from mrcnn.data import compose_image_meta
from mrcnn.detection import DetectionLayer, classify

# Three disjoint ROIs (normalised) and their (background, benign, malignant) probabilities.
ROIS = np.array([[0.05, 0.05, 0.30, 0.30],   # benign wins outright: 0.7
                 [0.50, 0.05, 0.80, 0.30],   # background is the arg-max (0.45), yet
                 #                             1 - p(bg) = 0.55 with malignant ahead of benign
                 [0.50, 0.50, 0.80, 0.80]],  # background 0.9: noise in either mode
                np.float32)
PROBS = np.array([[0.20, 0.70, 0.10],
                  [0.45, 0.20, 0.35],
                  [0.90, 0.05, 0.05]], np.float32)


class ScoreConfig(TinyConfig):
    NAME = "score"
    DETECTION_MAX_INSTANCES = 3
    DETECTION_MIN_CONFIDENCE = 0.5
    CLASS_SPECIFIC_BOXES = True


def detections(config) -> np.ndarray:
    """The DetectionLayer's real rows (y1, x1, y2, x2, class_id, score) for ROIS and PROBS."""
    meta = compose_image_meta(0, (64, 64, 3), (64, 64, 3), (0, 0, 64, 64), 1.0, [1, 1, 1])
    deltas = np.zeros((1, len(ROIS), config.NUM_CLASSES, 4), np.float32)
    out, _ = DetectionLayer(config)([tf.constant(ROIS[None]), tf.constant(PROBS[None]),
                                     tf.constant(deltas), tf.constant(meta[None])])
    rows = out.numpy()[0]
    return rows[rows[:, 4] > 0]


def config_with(score: str) -> ScoreConfig:
    return type("Scored", (ScoreConfig,), {"DETECTION_SCORE": score})()


def test_classify_by_hand():
    class_ids, scores = classify(tf.constant(PROBS), "class")
    assert class_ids.numpy().tolist() == [1, 0, 0]
    np.testing.assert_allclose(scores.numpy(), [0.70, 0.45, 0.90], atol=1e-6)
    class_ids, scores = classify(tf.constant(PROBS), "foreground")
    assert class_ids.numpy().tolist() == [1, 2, 1]  # ties (0.05, 0.05) go to the first class
    np.testing.assert_allclose(scores.numpy(), [0.80, 0.55, 0.10], atol=1e-6)
    with pytest.raises(ValueError, match="score_mode must be one of"):
        classify(tf.constant(PROBS), "background")


def test_class_mode_drops_a_background_argmax_roi():
    assert ScoreConfig().DETECTION_SCORE == "class"  # Matterport's default
    rows = detections(ScoreConfig())
    assert rows[:, 4].tolist() == [1]
    np.testing.assert_allclose(rows[0], [*ROIS[0], 1, 0.70], atol=1e-6)


def test_foreground_mode_keeps_it_with_one_minus_background():
    rows = detections(config_with("foreground"))
    # Sorted by score: the benign ROI (1 - 0.2), then the background-argmax ROI as malignant.
    np.testing.assert_allclose(rows, [[*ROIS[0], 1, 0.80], [*ROIS[1], 2, 0.55]], atol=1e-6)


@pytest.mark.parametrize("value", ["Class", "background", "", None])
def test_config_refuses_another_value(value):
    with pytest.raises(ConfigError, match=r"Scored\.DETECTION_SCORE: must be one of "
                                          r"\('class', 'foreground'\)"):
        config_with(value)


def test_the_plain_model_builds_its_detection_layer_from_the_config(tmp_path):
    from mrcnn.model import MaskRCNN

    for score in ("class", "foreground"):
        model = MaskRCNN("inference", config_with(score), tmp_path)
        assert model.keras_model.get_layer("mrcnn_detection").score_mode == score


def test_ftmtl_presets_keep_the_foreground_score_and_refuse_class():
    from ftmtl.presets import PRESETS, make_config

    for preset in PRESETS:
        for model in ("ftmtl", "maskrcnn"):
            assert make_config(preset, model).DETECTION_SCORE == "foreground"
    with pytest.raises(ConfigError, match=r"DETECTION_SCORE: FT-MTL-Net's sequential inference "
                                          r"scores detections 1 - p\(background\)"):
        make_config("paper_cpu", "maskrcnn", DETECTION_SCORE="class")
