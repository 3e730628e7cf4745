
"""FTMTLNet: the transfer's gradient into the mask head, the paper's sequential inference order,
detect()'s extra outputs and the veto in the graph, weight loading, and a tiny training run on
synthetic INbreast."""

from __future__ import annotations

import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from ftmtl.model import BASELINE_CLASSIFIER_LAYER, FTMTL_CLASSIFIER_LAYER, FTMTLNet
from ftmtl.presets import build_model, make_config
from ftmtl.veto import VETO_MIN_CONFIDENCE, case_malignancy_score
from mrcnn.anchors import get_anchors
from mrcnn.config import Config, ConfigError
from mrcnn.data import DataGenerator, mold_inputs
from samples.shapes.shapes import ShapesDataset

# Training-mode models create a run folder: keep it out of the checkout.
MODEL_DIR = tempfile.mkdtemp(prefix="ftmtl-test-")

SIZE = 64
TINY = {"IMAGE_MIN_DIM": SIZE, "IMAGE_MAX_DIM": SIZE, "MEAN_PIXEL": 128.0,
        "RPN_ANCHOR_SCALES": (8, 16, 32, 64), "MASK_HEAD_CHANNELS": 16}
DECONVS = ("mrcnn_mask_deconv1", "mrcnn_mask_deconv2")


def find_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """A layer by name, searching nested models too."""
    for layer in model.layers:
        if layer.name == name:
            return layer
        if isinstance(layer, keras.Model):
            try:
                return find_layer(layer, name)
            except KeyError:
                continue
    raise KeyError(name)


@pytest.fixture(scope="module")
def shapes_batch():
    dataset = ShapesDataset()
    dataset.load_shapes(4, SIZE, SIZE, seed=3)
    dataset.prepare()
    config = make_config("paper_cpu", **TINY)
    return DataGenerator(dataset, config, shuffle=False, steps=1, workers=1)[0]


# ------------------------------------------------------------------------------ gradients
def class_loss_gradients(config, batch) -> dict[str, np.ndarray | None]:
    net = FTMTLNet("training", config, MODEL_DIR)
    model = net.keras_model
    kernels = {name: find_layer(model, name).kernel for name in DECONVS}
    with tf.GradientTape() as tape:
        outputs = model(batch, training=True)
        loss = model.compute_losses(batch, outputs)["mrcnn_class_loss"]
    assert float(loss) > 0
    grads = tape.gradient(loss, list(kernels.values()))
    return {name: None if g is None else g.numpy() for name, g in zip(kernels, grads,
                                                                        strict=True)}


def reaches(grad) -> bool:
    return grad is not None and bool(np.any(grad != 0))


def test_class_loss_gradient_reaches_the_mask_deconvolutions(shapes_batch):
    grads = class_loss_gradients(make_config("paper_cpu", **TINY), shapes_batch)
    assert all(reaches(grads[name]) for name in DECONVS)


def test_stop_gradient_and_the_baseline_keep_the_class_loss_out_of_the_mask_head(shapes_batch):
    stopped = class_loss_gradients(
        make_config("paper_cpu", TRANSFER_STOP_GRADIENT=True, **TINY), shapes_batch)
    baseline = class_loss_gradients(make_config("paper_cpu", "maskrcnn", **TINY), shapes_batch)
    for grads in (stopped, baseline):
        assert not any(reaches(grads[name]) for name in DECONVS)


def test_class_specific_boxes_are_refused_for_any_config(tmp_path):
    class Plain(Config):
        NAME = "plain"
        NUM_CLASSES = 3
        BACKBONE = "tiny"
        IMAGE_MIN_DIM = IMAGE_MAX_DIM = 64
        CLASS_SPECIFIC_BOXES = True

    with pytest.raises(ConfigError, match=r"Plain\.CLASS_SPECIFIC_BOXES"):
        FTMTLNet("inference", Plain(), tmp_path)


# ------------------------------------------------------------------------ inference order
# Four disjoint proposals (normalised), and the box head's shift: dy = +0.5 box heights.
PROPOSALS = np.array([[0.05, 0.05, 0.30, 0.30], [0.05, 0.55, 0.30, 0.85],
                      [0.50, 0.05, 0.70, 0.45], [0.45, 0.50, 0.70, 0.90]], np.float32)
SHIFT = 0.5


def shifted(boxes: np.ndarray, dy: float) -> np.ndarray:
    h = boxes[:, 2] - boxes[:, 0]
    out = boxes.copy()
    out[:, 0] += dy * h
    out[:, 2] += dy * h
    return out


def order_net(preset: str) -> FTMTLNet:
    """An inference net whose RPN proposes its input anchors unchanged (zero deltas), four of
    them after NMS. Its scores are all about 0.5 but not exactly equal (the softmax rounds
    differently across SIMD lanes on some CPUs), so no test may rely on ties among them."""
    overrides = {**TINY, "PRE_NMS_LIMIT": 100_000, "POST_NMS_ROIS_INFERENCE": 4,
                 "DETECTION_MIN_CONFIDENCE": 0.0, "DETECTION_MAX_INSTANCES": 4,
                 # Glorot init: outputs that vary clearly with the boxes (0.05 is nearly flat).
                 "HEAD_INIT_STD": None}
    if preset == "fpn_cpu":
        overrides["RPN_ANCHOR_SCALES"] = (8, 16, 32, 64, 128)
    config = make_config(preset, **overrides)
    net = FTMTLNet("inference", config, MODEL_DIR)
    for name in ("rpn_class_raw", "rpn_bbox_pred"):
        layer = find_layer(net.keras_model, name)
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    return net


def set_box_shift(net: FTMTLNet, dy: float) -> None:
    layer = find_layer(net.keras_model, "mrcnn_bbox_fc")
    kernel, bias = layer.get_weights()
    bias = np.zeros_like(bias)
    bias[0] = dy / net.config.BBOX_STD_DEV[0]
    layer.set_weights([np.zeros_like(kernel), bias])


def run_with_proposals(net: FTMTLNet, image: np.ndarray, proposals: np.ndarray) -> dict:
    molded, metas, _ = mold_inputs([image], net.config)
    # Every anchor row is one of the (disjoint) proposals, cyclically: whichever rows score
    # best, NMS keeps exactly one copy of each proposal.
    count = get_anchors(net.config, (SIZE, SIZE)).shape[0]
    anchors = np.resize(proposals, (count, 4))[np.newaxis].astype(np.float32)
    return net.run_graph({"input_image": molded, "input_image_meta": metas,
                          "input_anchors": anchors})


def by_box(outputs: dict, key: str, boxes: np.ndarray) -> np.ndarray:
    """Rows of outputs[key] for each of ``boxes``, matched on refined_rois."""
    refined = outputs["refined_rois"][0]
    rows = [int(np.argmin(np.abs(refined - box).sum(axis=1))) for box in boxes]
    np.testing.assert_allclose(refined[rows], boxes, atol=1e-5)
    return outputs[key][0][rows]


@pytest.fixture(scope="module", params=["paper_cpu", "fpn_cpu"])
def order_runs(request):
    keras.utils.set_random_seed(7)  # module fixtures run before the per-test seeding
    net = order_net(request.param)
    image = np.random.default_rng(0).uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
    set_box_shift(net, SHIFT)
    refined_by_head = run_with_proposals(net, image, PROPOSALS)
    set_box_shift(net, 0.0)
    proposed_there = run_with_proposals(net, image, shifted(PROPOSALS, SHIFT))
    unshifted = run_with_proposals(net, image, PROPOSALS)
    return refined_by_head, proposed_there, unshifted


def test_refined_rois_are_the_proposals_moved_by_the_box_head(order_runs):
    refined_by_head, _, unshifted = order_runs
    target = shifted(PROPOSALS, SHIFT)
    assert by_box(refined_by_head, "refined_rois", target).shape == (4, 4)
    # With zero deltas the proposals stay where they are.
    by_box(unshifted, "refined_rois", PROPOSALS)


def assert_same_and_clearly_different(same, also_same, different):
    """``same`` equals ``also_same`` (float round-off only) and differs from ``different`` by
    far more than that round-off."""
    round_off = max(float(np.abs(same - also_same).max()), 1e-6)
    assert round_off < 1e-4
    assert float(np.abs(same - different).max()) > 50 * round_off


def test_classifier_and_masks_see_the_refined_boxes(order_runs):
    refined_by_head, proposed_there, unshifted = order_runs
    target = shifted(PROPOSALS, SHIFT)
    # Refining proposals by the head gives the same class probabilities and masks as
    # proposing the refined boxes directly: the mask head and the classifier ran on them.
    # Matterport's order would classify the unrefined proposals, whose outputs differ.
    assert_same_and_clearly_different(by_box(refined_by_head, "mrcnn_class", target),
                                      by_box(proposed_there, "mrcnn_class", target),
                                      by_box(unshifted, "mrcnn_class", PROPOSALS))
    # The detections are the refined boxes with their masks, in the same order in both runs.
    for key in ("detections", "mrcnn_mask", "detection_probs"):
        np.testing.assert_allclose(refined_by_head[key], proposed_there[key], atol=1e-5)
    assert_same_and_clearly_different(refined_by_head["mrcnn_mask"],
                                      proposed_there["mrcnn_mask"], unshifted["mrcnn_mask"])


def test_detections_use_the_foreground_score_and_the_veto_is_computed_in_graph(order_runs):
    outputs = order_runs[0]
    detections, probs = outputs["detections"][0], outputs["detection_probs"][0]
    real = detections[:, 4] > 0
    assert real.sum() == 4
    np.testing.assert_allclose(detections[real, 5], 1.0 - probs[real, 0], atol=1e-6)
    np.testing.assert_array_equal(detections[real, 4], 1 + probs[real, 1:].argmax(axis=1))
    assert np.all(np.diff(detections[real, 5]) <= 0)
    valid = np.any(outputs["refined_rois"][0] != 0, axis=1)
    expected = case_malignancy_score(detections[:, 4], probs,
                                     outputs["mrcnn_class"][0][valid, 2],
                                     scores=detections[:, 5], min_confidence=VETO_MIN_CONFIDENCE)
    assert outputs["case_score"][0] == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------------ detect and weights
@pytest.fixture(scope="module")
def saved_training_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    paths = {}
    for model in ("ftmtl", "maskrcnn"):
        net = build_model("training", make_config("paper_cpu", model, **TINY), folder)
        paths[model] = folder / f"{model}.h5"
        net.save_weights(paths[model])
    return paths


def test_a_training_checkpoint_loads_fully_into_the_inference_graph(saved_training_weights,
                                                                    tmp_path):
    net = build_model("inference", make_config("paper_cpu", **TINY), tmp_path)
    report = net.load_weights(saved_training_weights["ftmtl"])
    assert report.missing_in_file == [] and report.unused_in_file == []
    assert "mrcnn_bbox_fc" in report.loaded and FTMTL_CLASSIFIER_LAYER in report.loaded


def test_a_baseline_checkpoints_classifier_is_not_loaded_into_ftmtl(saved_training_weights,
                                                                    tmp_path):
    net = build_model("training", make_config("paper_cpu", **TINY), tmp_path)
    before = find_layer(net.keras_model, FTMTL_CLASSIFIER_LAYER).get_weights()
    report = net.load_weights(saved_training_weights["maskrcnn"])
    assert report.unused_in_file == [BASELINE_CLASSIFIER_LAYER]
    assert report.missing_in_file == [FTMTL_CLASSIFIER_LAYER]
    after = find_layer(net.keras_model, FTMTL_CLASSIFIER_LAYER).get_weights()
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_detect_adds_class_probabilities_and_the_case_score(tmp_path):
    net = build_model("inference", make_config("paper_cpu", **{
        **TINY, "DETECTION_MIN_CONFIDENCE": 0.0, "IMAGES_PER_GPU": 2}), tmp_path)
    rng = np.random.default_rng(1)
    images = [rng.uniform(0, 255, (50, 40, 3)).astype(np.float32) for _ in range(2)]
    outputs, _, _, _ = net.forward(images)
    results = net.detect(images)
    assert len(results) == 2
    for i, result in enumerate(results):
        n = len(result["class_ids"])
        assert n > 0
        assert result["class_probs"].shape == (n, 3)
        assert result["masks"].shape == (50, 40, n)
        np.testing.assert_allclose(result["scores"], 1.0 - result["class_probs"][:, 0],
                                   atol=1e-6)
        np.testing.assert_array_equal(result["class_ids"],
                                      1 + result["class_probs"][:, 1:].argmax(axis=1))
        assert result["case_score"] == pytest.approx(float(outputs["case_score"][i]))
        assert 0.0 <= result["case_score"] <= 1.0


def test_detect_returns_the_rows_the_base_keeps_with_their_class_probabilities(tmp_path):
    """One rule (MaskRCNN.returned_rows) picks the rows of boxes, masks and class_probs:
    padding rows and boxes that fall in the padding beside the image are left out."""
    net = build_model("inference", make_config("paper_cpu", **{
        **TINY, "IMAGE_RESIZE_MODE": "square"}), tmp_path)
    image = np.zeros((50, 40, 3), dtype=np.float32)
    _, molded, _, windows = net.forward([image])
    h, w = molded.shape[1:3]
    y1, x1, y2, x2 = (int(v) for v in windows[0])
    assert x2 + 4 < w  # the 40-px width leaves padding on the right
    inside = [(y1 + 5) / h, (x1 + 5) / w, (y1 + 20) / h, (x1 + 15) / w]
    beside = [(y1 + 5) / h, (x2 + 1) / w, (y1 + 20) / h, (x2 + 4) / w]
    detections = np.zeros((6, 6), dtype=np.float32)
    detections[0] = [*inside, 2, 0.9]
    detections[1] = [*beside, 1, 0.8]
    detections[3] = [*inside, 1, 0.7]
    rows = net.returned_rows(detections, image.shape, (h, w), windows[0])
    assert rows.tolist() == [0, 3]
    probs = np.random.default_rng(2).dirichlet(np.ones(3), size=6).astype(np.float32)
    mask_shape = tuple(net.config.MASK_SHAPE)
    outputs = {"detections": detections[None], "detection_probs": probs[None],
               "mrcnn_mask": np.ones((1, 6, *mask_shape, 3), dtype=np.float32),
               "case_score": np.array([0.25], dtype=np.float32)}
    result = net.image_result(outputs, 0, image.shape, (h, w), windows[0])
    assert result["class_ids"].tolist() == [2, 1]
    np.testing.assert_array_equal(result["class_probs"], probs[[0, 3]])
    assert result["masks"].shape == (50, 40, 2) and result["case_score"] == 0.25


# -------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def synthetic_inbreast(tmp_path_factory):
    from ftmtl.inbreast.dataset import INbreastDataset
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    root = tmp_path_factory.mktemp("inbreast")
    generate_synthetic_inbreast(root, n_patients=3, seed=0, image_shape=(256, 192))
    dataset = INbreastDataset()
    dataset.load_inbreast(root, image_size=128)
    dataset.prepare()
    mean = float(np.mean([dataset.load_image(i).mean() for i in dataset.image_ids]))
    return dataset, mean


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ftmtl", "maskrcnn"])
def test_tiny_training_on_synthetic_inbreast(synthetic_inbreast, model, tmp_path):
    dataset, mean = synthetic_inbreast
    config = make_config("paper_cpu", model, MEAN_PIXEL=mean, STEPS_PER_EPOCH=8,
                         OPTIMIZER="adam", DETECTION_MIN_CONFIDENCE=0.0)
    net = build_model("training", config, tmp_path)
    history = net.train(dataset, None, learning_rate=0.001, epochs=4, layers="all",
                        verbose=0).history
    for name in ("loss", "rpn_class_loss", "mrcnn_class_loss"):
        assert history[name][-1] < history[name][0], (name, history[name])
    assert all(np.isfinite(history["loss"]))

    detector = build_model("inference", config, tmp_path)
    detector.load_weights(net.find_last())
    images = [dataset.load_image(i) for i in dataset.image_ids]
    results = detector.detect(images)
    assert len(results) == len(images)
    for image, result in zip(images, results, strict=True):
        assert np.isfinite(result["case_score"]) and 0.0 <= result["case_score"] <= 1.0
        assert np.all(np.isfinite(result["scores"]))
        assert np.all(np.isfinite(result["class_probs"]))
        assert result["masks"].shape[:2] == image.shape[:2]
