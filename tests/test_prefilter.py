"""The inference prefilter (ftmtl.prefilter): its NMS against a numpy reference and a
hand-worked example, the config's checks, and FT-MTL-Net with it on: the mask head and the
classifier see exactly the prefiltered boxes, and a prefilter that keeps everything changes
nothing."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import tensorflow as tf

from ftmtl.export import CUSTOM_OBJECTS
from ftmtl.model import FTMTLNet
from ftmtl.prefilter import PrefilterRefined, prefilter_boxes
from ftmtl.presets import make_config
from mrcnn.config import ConfigError

MODEL_DIR = tempfile.mkdtemp(prefix="ftmtl-test-")
SIZE = 64
TINY = {"IMAGE_MIN_DIM": SIZE, "IMAGE_MAX_DIM": SIZE, "MEAN_PIXEL": 128.0,
        "RPN_ANCHOR_SCALES": (8, 16, 32, 64, 128), "MASK_HEAD_CHANNELS": 16,
        "POST_NMS_ROIS_INFERENCE": 24, "DETECTION_MAX_INSTANCES": 6,
        "DETECTION_MIN_CONFIDENCE": 0.0, "HEAD_INIT_STD": None}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    y1, x1 = max(a[0], b[0]), max(a[1], b[1])
    y2, x2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, y2 - y1) * max(0.0, x2 - x1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def reference_prefilter(boxes: np.ndarray, max_rois: int, threshold: float) -> np.ndarray:
    """Greedy NMS over the real rows in their order, the first max_rois kept, zero padded."""
    kept: list[np.ndarray] = []
    for box in boxes:
        if (box[2] - box[0]) * (box[3] - box[1]) <= 0:
            continue
        if all(iou(box, other) <= threshold for other in kept):
            kept.append(box)
        if len(kept) == max_rois:
            break
    out = np.zeros((max_rois, 4), np.float32)
    if kept:
        out[:len(kept)] = kept
    return out


def test_a_hand_worked_example():
    a = [0.1, 0.1, 0.3, 0.3]
    a_copy = [0.1, 0.1, 0.3, 0.32]  # IoU 0.909 with a
    b = [0.5, 0.5, 0.7, 0.7]
    c = [0.1, 0.5, 0.2, 0.9]
    boxes = np.array([a, a_copy, b, [0, 0, 0, 0], c], np.float32)
    kept = prefilter_boxes(boxes, 2, 0.7).numpy()
    np.testing.assert_allclose(kept, [a, b])
    kept = prefilter_boxes(boxes, 5, 0.7).numpy()
    np.testing.assert_allclose(kept, [a, b, c, [0] * 4, [0] * 4])
    kept = prefilter_boxes(boxes, 5, 0.95).numpy()
    np.testing.assert_allclose(kept, [a, a_copy, b, c, [0] * 4])


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_a_numpy_reference(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    for _ in range(10):
        corners = rng.uniform(0, 1, (30, 2, 2))
        boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
        boxes = boxes[:, [0, 1, 2, 3]].astype(np.float32)
        boxes[-5:] = 0.0  # padding rows at the end, as the proposal layer writes them
        got = prefilter_boxes(boxes, 12, threshold).numpy()
        np.testing.assert_allclose(got, reference_prefilter(boxes, 12, threshold), atol=1e-7)


def test_the_layer_maps_a_batch_and_round_trips_its_config():
    rng = np.random.default_rng(1)
    corners = rng.uniform(0, 1, (2, 20, 2, 2))
    boxes = np.concatenate([corners.min(axis=2), corners.max(axis=2)], axis=2)
    layer = PrefilterRefined(8, 0.5)
    out = layer(tf.constant(boxes, tf.float32)).numpy()
    assert out.shape == (2, 8, 4)
    for image in range(2):
        np.testing.assert_allclose(out[image], reference_prefilter(boxes[image], 8, 0.5),
                                   atol=1e-7)
    again = PrefilterRefined.from_config(layer.get_config())
    assert (again.max_rois, again.nms_threshold) == (8, 0.5)
    assert CUSTOM_OBJECTS["PrefilterRefined"] is PrefilterRefined
    with pytest.raises(ValueError, match="max_rois"):
        PrefilterRefined(0, 0.5)
    with pytest.raises(ValueError, match="nms_threshold"):
        PrefilterRefined(4, 0.0)


@pytest.mark.parametrize("overrides, match", [
    ({"PREFILTER_MAX_ROIS": -1}, "PREFILTER_MAX_ROIS: must be 0"),
    ({"PREFILTER_MAX_ROIS": 2.5}, "PREFILTER_MAX_ROIS expects an integer"),
    ({"PREFILTER_MAX_ROIS": 10, "PREFILTER_NMS_THRESHOLD": 1.5}, "PREFILTER_NMS_THRESHOLD"),
])
def test_the_config_refuses_bad_values(overrides, match):
    with pytest.raises(ConfigError, match=match):
        make_config("fpn_cpu", **{**TINY, **overrides})


# ------------------------------------------------------------------------------ in the net
def net_with(weights, **overrides) -> FTMTLNet:
    net = FTMTLNet("inference", make_config("fpn_cpu", **{**TINY, **overrides}), MODEL_DIR)
    if weights is not None:
        net.keras_model.set_weights(weights)
    return net


@pytest.fixture(scope="module")
def strict_and_image():
    tf.keras.utils.set_random_seed(11)
    strict = net_with(None)
    image = np.random.default_rng(2).uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
    return strict, image


def outputs_of(net: FTMTLNet, image: np.ndarray) -> dict[str, np.ndarray]:
    return net.forward([image])[0]


def test_mask_head_and_classifier_see_the_prefiltered_boxes(strict_and_image):
    strict, image = strict_and_image
    filtered = net_with(strict.keras_model.get_weights(), PREFILTER_MAX_ROIS=6,
                        PREFILTER_NMS_THRESHOLD=0.3)
    before, after = outputs_of(strict, image), outputs_of(filtered, image)
    refined = before["refined_rois"][0]
    expected = prefilter_boxes(refined, 6, 0.3).numpy()
    assert after["refined_rois"].shape[1] == 6
    np.testing.assert_allclose(after["refined_rois"][0], expected, atol=1e-6)
    real = (expected[:, 2] > expected[:, 0]) & (expected[:, 3] > expected[:, 1])
    assert real.sum() >= 2
    # Each kept box gets the class probabilities the strict order gave it.
    rows = [int(np.argmin(np.abs(refined - box).sum(axis=1))) for box in expected[real]]
    np.testing.assert_allclose(after["mrcnn_class"][0][real], before["mrcnn_class"][0][rows],
                               atol=1e-5)


def test_a_prefilter_that_keeps_every_box_changes_nothing(strict_and_image):
    strict, image = strict_and_image
    keep_all = net_with(strict.keras_model.get_weights(),
                        PREFILTER_MAX_ROIS=TINY["POST_NMS_ROIS_INFERENCE"],
                        PREFILTER_NMS_THRESHOLD=1.0)
    before, after = outputs_of(strict, image), outputs_of(keep_all, image)
    for key in ("detections", "detection_probs", "mrcnn_mask", "case_score"):
        np.testing.assert_allclose(after[key], before[key], atol=1e-5, err_msg=key)


def test_a_prefiltering_network_round_trips_through_the_keras_file(strict_and_image, tmp_path):
    from ftmtl.export import load_keras_model
    from mrcnn.anchors import get_anchors
    from mrcnn.data import mold_inputs

    strict, image = strict_and_image
    net = net_with(strict.keras_model.get_weights(), PREFILTER_MAX_ROIS=6)
    path = tmp_path / "model.keras"
    net.keras_model.save(path)
    loaded = load_keras_model(path)
    molded, metas, _ = mold_inputs([image], net.config)
    anchors = get_anchors(net.config, tuple(molded.shape[1:3]))[np.newaxis]
    batch = {"input_image": molded, "input_image_meta": metas, "input_anchors": anchors}
    expected, got = net.keras_model(batch), loaded(batch)
    assert np.asarray(got["refined_rois"]).shape[1] == 6
    for key in ("refined_rois", "detections", "case_score"):
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(expected[key]), atol=1e-5)
