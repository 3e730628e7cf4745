"""Inference post-processing on hand-made ROIs and scores."""

import numpy as np
import pytest
import tensorflow as tf
from tiny_config import TinyConfig

from mrcnn.data import compose_image_meta
from mrcnn.detection import DetectionLayer, classify, refine_boxes


class Cfg(TinyConfig):
    NAME = "det"
    DETECTION_MAX_INSTANCES = 4
    DETECTION_MIN_CONFIDENCE = 0.5
    DETECTION_NMS_THRESHOLD = 0.3
    CLASS_SPECIFIC_BOXES = True


def meta(window=(0, 0, 64, 64)):
    return compose_image_meta(0, (64, 64, 3), (64, 64, 3), window, 1.0, [1, 1, 1])


def run(cfg, rois, probs, deltas, window=(0, 0, 64, 64), score_mode="class"):
    layer = DetectionLayer(cfg, score_mode=score_mode)
    det, keep = layer([tf.constant(rois[None], tf.float32), tf.constant(probs[None], tf.float32),
                       tf.constant(deltas[None], tf.float32), tf.constant(meta(window)[None])])
    return det.numpy()[0], keep.numpy()[0]


def test_filter_nms_and_padding():
    cfg = Cfg()
    rois = np.array([
        [0.1, 0.1, 0.4, 0.4],    # class 1, 0.9
        [0.11, 0.1, 0.41, 0.4],  # class 1, 0.8: overlaps the first -> suppressed
        [0.11, 0.1, 0.41, 0.4],  # class 2, 0.7: other class -> kept
        [0.6, 0.6, 0.9, 0.9],    # background wins -> dropped
        [0.5, 0.1, 0.7, 0.3],    # class 2, 0.4 < min confidence -> dropped
        [0.0, 0.0, 0.0, 0.0],    # padding
    ], np.float32)
    probs = np.array([
        [0.05, 0.9, 0.05], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7], [0.8, 0.1, 0.1],
        [0.3, 0.3, 0.4], [0.0, 1.0, 0.0]], np.float32)
    deltas = np.zeros((6, 3, 4), np.float32)
    det, keep = run(cfg, rois, probs, deltas)
    assert keep.tolist() == [0, 2, -1, -1]
    np.testing.assert_allclose(det[0], [0.1, 0.1, 0.4, 0.4, 1, 0.9], atol=1e-6)
    np.testing.assert_allclose(det[1], [0.11, 0.1, 0.41, 0.4, 2, 0.7], atol=1e-6)
    assert not det[2:].any()


def test_class_specific_deltas_and_window_clip():
    cfg = Cfg()
    rois = np.array([[0.2, 0.2, 0.4, 0.4]], np.float32)
    probs = np.array([[0.0, 0.0, 1.0]], np.float32)
    deltas = np.zeros((1, 3, 4), np.float32)
    # class 2's deltas move the box down by half its height (dy = 0.5 / std 0.1 = 5)
    deltas[0, 2] = [5.0, 0.0, 0.0, 0.0]
    deltas[0, 1] = [-5.0, 0.0, 0.0, 0.0]  # must be ignored
    det, _ = run(cfg, rois, probs, deltas)
    np.testing.assert_allclose(det[0, :4], [0.3, 0.2, 0.5, 0.4], atol=1e-6)
    # a window that ends at y = 32 px (0.5) clips the refined box's bottom edge... and top
    det, _ = run(cfg, rois, probs, deltas, window=(0, 0, 28, 64))
    np.testing.assert_allclose(det[0, :4], [0.3, 0.2, 28 / 64, 0.4], atol=1e-6)


def test_foreground_score_mode():
    class_ids, scores = classify(tf.constant([[0.4, 0.35, 0.25]]), "foreground")
    assert class_ids.numpy().tolist() == [1]
    assert scores.numpy()[0] == pytest.approx(0.6)
    class_ids, scores = classify(tf.constant([[0.4, 0.35, 0.25]]), "class")
    assert class_ids.numpy().tolist() == [0] and scores.numpy()[0] == pytest.approx(0.4)


def test_refine_boxes_class_agnostic():
    rois = tf.constant([[0.2, 0.2, 0.4, 0.4]])
    deltas = tf.constant([[[0.0, 5.0, 0.0, 0.0]]])  # K = 1: shared by every class
    out = refine_boxes(rois, deltas, tf.constant([2]), np.array([0.1, 0.1, 0.2, 0.2]),
                       tf.constant([0.0, 0.0, 1.0, 1.0]))
    np.testing.assert_allclose(out.numpy(), [[0.2, 0.3, 0.4, 0.5]], atol=1e-6)
