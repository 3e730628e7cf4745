"""Serving export: the graph's molding and unmolding (mrcnn.serving) against detect's numpy
steps, and the exported SavedModel (ftmtl.export, `inbreast export`) run in a fresh process that
imports TensorFlow and numpy only, against ``model.detect`` on the same images: FT-MTL-Net
through the CLI, a plain Mask R-CNN through the library."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ftmtl.cli import main
from ftmtl.export import (
    FLOAT_SIGNATURE,
    UINT16_SIGNATURE,
    detections_in_input_pixels,
    export_model,
    from_stored_values,
    load_keras_model,
    score_case_from_detections,
)
from ftmtl.inbreast.intensity import full_range, percentile_window
from ftmtl.model import ftmtl_setting
from ftmtl.presets import build_model, sized_config
from ftmtl.veto import MalignantVeto, case_malignancy_score
from mrcnn import serving
from mrcnn.anchors import get_anchors
from mrcnn.data import mold_inputs, unmold_mask
from mrcnn.model import MaskRCNN
from tests.tiny_config import TinyConfig

# The CLI's tiny FT-MTL-Net (tests/test_cli.py): paper_cpu, images prepared at 64 px; every
# detection kept, so the comparison has ten a image.
CLI_OPTIONS = ["--preset", "paper_cpu", "--image-size", "64", "--set", "IMAGE_MIN_DIM=64",
               "--set", "DETECTION_MIN_CONFIDENCE=0.0"]
CLI_OVERRIDES = {"IMAGE_MIN_DIM": 64, "DETECTION_MIN_CONFIDENCE": 0.0, "IMAGES_PER_GPU": 1}

# Runs in a fresh interpreter: each job is (SavedModel, inputs .npz keyed by signature, outputs
# .npz); it fails if anything of ours was imported.
SERVE = """
import sys
import numpy as np
import tensorflow as tf

for saved_model, inputs, outputs in zip(*[iter(sys.argv[1:])] * 3):
    loaded = tf.saved_model.load(saved_model)
    given = np.load(inputs)
    results = {}
    for signature in given.files:
        served = loaded.signatures[signature](images=tf.constant(given[signature]))
        results.update({f"{signature}__{k}": v.numpy() for k, v in served.items()})
    np.savez(outputs, **results)
ours = sorted(m for m in sys.modules if m.split(".")[0] in ("ftmtl", "mrcnn", "samples"))
assert not ours, f"the serving process imported {ours}"
"""


class PlainConfig(TinyConfig):
    """A plain Mask R-CNN (Matterport's inference order, class scores), square 64-px input."""

    NAME = "plain"
    POST_NMS_ROIS_INFERENCE = 64
    DETECTION_MAX_INSTANCES = 40
    DETECTION_MIN_CONFIDENCE = 0.0


# ------------------------------------------------------------------------- graph steps
@pytest.mark.parametrize(("mode", "min_dim", "max_dim"), [
    ("square", 64, 128), ("square", 100, 128), ("pad64", 64, 128), ("crop", 64, 64),
    ("none", 0, 128)])
@pytest.mark.parametrize("shape", [(40, 50), (64, 64), (37, 91), (130, 90)])
def test_molding_in_the_graph_is_mold_inputs(mode, min_dim, max_dim, shape):
    class ModeConfig(TinyConfig):
        IMAGE_RESIZE_MODE = mode
        IMAGE_MIN_DIM = min_dim
        IMAGE_MAX_DIM = max_dim

    config = ModeConfig()
    image = np.random.default_rng(7).uniform(0, 255, (*shape, 3)).astype(np.float32)
    molded, metas, windows = mold_inputs([image], config)
    graph = serving.mold_images(tf.constant(image[np.newaxis]), config)
    assert graph.images.shape == molded.shape
    np.testing.assert_allclose(graph.images.numpy(), molded, atol=1e-4)
    np.testing.assert_array_equal(graph.image_meta.numpy(), metas)
    np.testing.assert_array_equal(graph.window.numpy(), windows[0])
    np.testing.assert_allclose(graph.anchors.numpy()[0], get_anchors(config, molded.shape[1:3]),
                               atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 90, 70), (1, 1100, 700), (2, 60, 40, 3)])
def test_the_graphs_intensity_windows_are_prepare_images(shape):
    gray = np.random.default_rng(4).integers(0, 3000, shape[:3]).astype(np.uint16)
    gray[0, :5] = 40  # some background
    stored = np.repeat(gray[..., np.newaxis], 3, -1) if len(shape) == 4 else gray
    for window, reference in (("percentile", percentile_window),
                              ("full_range", lambda image: full_range(image, 14))):
        graph = from_stored_values(tf.constant(stored), window).numpy()
        assert graph.shape == (*shape[:3], 1)  # gray: the float signature replicates it
        for i in range(shape[0]):
            np.testing.assert_allclose(graph[i, ..., 0], reference(gray[i]) * 255.0,
                                       atol=2e-4 * 255)
    # the serving signature's input has no static rank
    unknown = tf.function(lambda x: from_stored_values(x, "percentile"),
                          input_signature=[tf.TensorSpec(None, tf.uint16)])
    np.testing.assert_allclose(unknown(tf.constant(stored)).numpy(),
                               from_stored_values(tf.constant(stored), "percentile").numpy())


def test_gray_and_colour_batches_get_the_configured_channels():
    gray = np.arange(24, dtype=np.uint16).reshape(1, 4, 6)
    colour = serving.image_batch(tf.constant(gray), 3).numpy()
    assert colour.shape == (1, 4, 6, 3) and colour.dtype == np.float32
    np.testing.assert_array_equal(colour[..., 2], gray[0:1].astype(np.float32))
    rgb = np.random.default_rng(1).uniform(0, 255, (2, 4, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(serving.image_batch(tf.constant(rgb), 1).numpy(),
                               rgb.mean(axis=-1, keepdims=True), rtol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="1 or 3 channels"):
        serving.image_batch(tf.zeros([1, 4, 6, 2]), 3)
    with pytest.raises(ValueError, match=r"\[batch, H, W\]"):
        serving.image_batch(tf.zeros([4, 6]), 3)


def test_masks_pasted_in_the_graph_are_unmold_mask():
    mask = np.random.default_rng(3).uniform(0, 1, (28, 28)).astype(np.float32)
    height, width = 90, 70
    # Inside, touching the corners, the whole image, one pixel high, empty.
    boxes = np.array([[10, 5, 50, 40], [80, 60, 90, 70], [0, 0, 90, 70], [20, 20, 21, 60],
                      [5, 5, 5, 9]], dtype=np.float64)
    expected = np.stack([unmold_mask(mask, box, (height, width)) for box in boxes])
    pasted = serving.paste_masks(tf.constant(np.broadcast_to(mask, (1, len(boxes), 28, 28))),
                                 tf.constant(boxes[np.newaxis]), tf.constant([height, width]))
    np.testing.assert_array_equal(pasted.numpy()[0], expected)
    assert expected[:4].any(axis=(1, 2)).all() and not expected[4].any()


def test_detections_are_moved_to_the_front_with_their_masks():
    """Hand-made network outputs on a 64 x 64 image (square input, no resize): row 1's box
    collapses to zero height in pixels and row 3 is padding, so row 2 moves up with its mask."""
    molded = serving.mold_images(tf.zeros([1, 64, 64, 3]), TinyConfig())
    detections = np.array([[[0.1, 0.1, 0.5, 0.5, 1, 0.9],
                            [0.3, 0.3, 0.3, 0.6, 2, 0.8],
                            [0.5, 0.5, 0.9, 0.8, 2, 0.7],
                            [0, 0, 0, 0, 0, 0]]], dtype=np.float32)
    maps = np.zeros((1, 4, 28, 28, 3), np.float32)
    maps[0, 0, :, :, 1] = 1.0  # row 0, its class 1: the whole box
    maps[0, 1, :, :, 2] = 1.0  # the dropped row
    maps[0, 2, :, :14, 2] = 1.0  # row 2, its class 2: the box's left half
    probs = np.arange(12, dtype=np.float32).reshape(1, 4, 3)
    out = detections_in_input_pixels(
        {"detections": tf.constant(detections), "mrcnn_mask": tf.constant(maps),
         "detection_probs": tf.constant(probs)}, molded)
    out = {key: value.numpy() for key, value in out.items()}
    # 0.1 * 64 = 6.4 -> 6, 0.5 * 64 = 32, 0.9 * 64 = 57.6 -> 58, 0.8 * 64 = 51.2 -> 51.
    np.testing.assert_array_equal(out["boxes"][0], [[6, 6, 32, 32], [32, 32, 58, 51],
                                                     [0, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(out["class_ids"][0], [1, 2, 0, 0])
    np.testing.assert_allclose(out["scores"][0], [0.9, 0.7, 0, 0])
    np.testing.assert_array_equal(out["num_detections"], [2])
    np.testing.assert_array_equal(out["class_probs"][0], [probs[0, 0], probs[0, 2], [0] * 3,
                                                          [0] * 3])
    first = np.zeros((64, 64), bool)
    first[6:32, 6:32] = True
    np.testing.assert_array_equal(out["masks"][0, 0], first)
    second = unmold_mask(maps[0, 2, :, :, 2], (32, 32, 58, 51), (64, 64))
    assert second[32:58, 32:41].all() and not second[:, 42:].any()
    np.testing.assert_array_equal(out["masks"][0, 1], second)
    assert not out["masks"][0, 2:].any()


def test_the_case_score_without_class_probabilities_is_the_evaluation_fallback():
    class_ids = np.array([[2, 1, 0], [1, 0, 0], [0, 0, 0], [2, 1, 0]], np.int32)
    scores = np.array([[0.6, 0.9, 0], [0.7, 0, 0], [0, 0, 0], [0.4, 0.8, 0]], np.float32)
    veto = MalignantVeto(min_confidence=0.5)
    got = score_case_from_detections(
        veto, {"class_ids": tf.constant(class_ids), "scores": tf.constant(scores)}, 3).numpy()
    expected = []
    for ids, row in zip(class_ids, scores, strict=True):
        probs = np.zeros((3, 3))
        probs[np.arange(3), ids] = row
        expected.append(case_malignancy_score(ids, probs, np.zeros(0), scores=row,
                                              min_confidence=0.5))
    # By hand: malignant 0.6; benign 0.7 -> 0.3; nothing -> 0; the 0.4 malignant box is below
    # the veto's 0.5, so the benign 0.8 decides -> 0.2.
    np.testing.assert_allclose(expected, [0.6, 0.3, 0.0, 0.2], atol=1e-6)
    np.testing.assert_allclose(got, expected, atol=1e-6)


# ------------------------------------------------------------------------- the export
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Both models exported and served once in a fresh process: {name: (model, images by
    signature, served outputs by signature, export folder)}. Two exports and a process that
    imports TensorFlow: 12 to 50 s on two shared cores, so the tests using it are marked
    slow."""
    folder = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    # FT-MTL-Net through `inbreast export`, from a checkpoint of this model.
    config = sized_config("paper_cpu", "ftmtl", 64, dict(CLI_OVERRIDES))[0]
    ftmtl = build_model("inference", config, folder / "logs")
    weights = folder / "ftmtl.h5"
    ftmtl.save_weights(weights)
    assert main(["-q", "export", "--weights", str(weights), *CLI_OPTIONS,
                 "--out", str(folder / "ftmtl")]) == 0
    stored = rng.integers(0, 2**14, (2, 64, 48)).astype(np.uint16)
    ftmtl_inputs = {FLOAT_SIGNATURE: rng.uniform(0, 255, (2, 64, 48, 3)).astype(np.float32),
                    UINT16_SIGNATURE: stored}
    # A plain Mask R-CNN through the library: gray images that the square input resizes.
    plain = MaskRCNN("inference", PlainConfig(), folder / "logs")
    export_model(plain, folder / "plain")
    plain_inputs = {FLOAT_SIGNATURE: rng.uniform(0, 255, (2, 50, 40)).astype(np.float32)}

    jobs = {"ftmtl": (ftmtl, ftmtl_inputs), "plain": (plain, plain_inputs)}
    argv = []
    for name, (_, inputs) in jobs.items():
        np.savez(folder / f"{name}_in.npz", **inputs)
        argv += [str(folder / name / "saved_model"), str(folder / f"{name}_in.npz"),
                 str(folder / f"{name}_out.npz")]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("PYTHONPATH", None)
    run = subprocess.run([sys.executable, "-c", SERVE, *argv], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    served = {}
    for name in jobs:
        with np.load(folder / f"{name}_out.npz") as data:
            flat = {key: data[key] for key in data.files}
        served[name] = {signature: {key.split("__", 1)[1]: value
                                    for key, value in flat.items()
                                    if key.startswith(f"{signature}__")}
                        for signature in jobs[name][1]}
    return {name: (model, inputs, served[name], folder / name)
            for name, (model, inputs) in jobs.items()}


def detect_inputs(signature: str, images: np.ndarray) -> list[np.ndarray]:
    """The float images ``detect`` gets for a signature's input (the uint16 one: stored
    values through prepare_dicom's default intensity window, gray replicated)."""
    if signature == UINT16_SIGNATURE:
        gray = np.stack([percentile_window(image) for image in images])
        images = np.repeat(gray[..., np.newaxis] * np.float32(255.0), 3, -1)
    return list(images)


def assert_served_like_detect(served: dict[str, np.ndarray], expected: list[dict]) -> None:
    limit = served["boxes"].shape[1]
    assert any(result["masks"].any() for result in expected), "no mask to compare"
    for i, result in enumerate(expected):
        count = int(served["num_detections"][i])
        assert count == len(result["class_ids"])
        np.testing.assert_array_equal(served["class_ids"][i, :count], result["class_ids"])
        assert np.abs(served["boxes"][i, :count] - result["rois"]).max(initial=0) <= 1
        np.testing.assert_allclose(served["scores"][i, :count], result["scores"], atol=1e-4)
        masks = served["masks"][i, :count]
        reference = np.moveaxis(result["masks"], -1, 0)
        assert masks.shape == reference.shape
        assert (masks == reference).mean() > 0.999
        for got, want in zip(masks, reference, strict=True):
            union = (got | want).sum()
            assert union == 0 or (got & want).sum() / union > 0.95
        # Rows past the count are zero padding.
        assert count == limit or (not served["class_ids"][i, count:].any()
                                  and not served["masks"][i, count:].any()
                                  and not served["boxes"][i, count:].any())


@pytest.mark.slow
@pytest.mark.parametrize("signature", [FLOAT_SIGNATURE, UINT16_SIGNATURE])
def test_exported_ftmtl_serves_what_detect_finds(exported, signature):
    model, inputs, served, _ = exported["ftmtl"]
    out = served[signature]
    expected = model.detect(detect_inputs(signature, inputs[signature]))
    assert sum(len(r["class_ids"]) for r in expected) >= 10
    assert_served_like_detect(out, expected)
    np.testing.assert_allclose(out["case_score"], [r["case_score"] for r in expected],
                               atol=1e-5)
    for i, result in enumerate(expected):
        count = len(result["class_ids"])
        np.testing.assert_allclose(out["class_probs"][i, :count], result["class_probs"],
                                   atol=1e-5)
    assert out["masks"].shape[2:] == inputs[signature].shape[1:3]
    assert out["boxes"].dtype == np.int32 and out["masks"].dtype == bool


@pytest.mark.slow
def test_exported_plain_maskrcnn_serves_detect_and_the_evaluation_case_score(exported):
    model, inputs, served, _ = exported["plain"]
    out = served[FLOAT_SIGNATURE]
    expected = model.detect(list(inputs[FLOAT_SIGNATURE]))
    assert "class_probs" not in out
    assert_served_like_detect(out, expected)
    counts = [len(r["class_ids"]) for r in expected]
    assert min(counts) > 0 and max(counts) < PlainConfig.DETECTION_MAX_INSTANCES
    config = model.config
    for i, result in enumerate(expected):
        # ftmtl.evaluation's fallback: a detection's score stands for its class's probability.
        probs = np.zeros((len(result["class_ids"]), config.NUM_CLASSES))
        probs[np.arange(len(probs)), result["class_ids"]] = result["scores"]
        score = case_malignancy_score(
            result["class_ids"], probs, np.zeros(0), scores=result["scores"],
            min_confidence=ftmtl_setting(config, "VETO_MIN_CONFIDENCE"))
        assert out["case_score"][i] == pytest.approx(score, abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ftmtl", "plain"])
def test_the_keras_file_rebuilds_the_same_network(exported, name):
    model, inputs, _, folder = exported[name]
    images = list(inputs[FLOAT_SIGNATURE])
    molded, metas, _ = mold_inputs(images, model.config)
    anchors = get_anchors(model.config, molded.shape[1:3])
    batch = {"input_image": molded, "input_image_meta": metas,
             "input_anchors": np.broadcast_to(anchors, (len(images), *anchors.shape)).copy()}
    loaded = load_keras_model(folder / "model.keras")
    expected, got = model.keras_model(batch), loaded(batch)
    assert set(got) == set(expected)
    for key in ("detections", "mrcnn_mask", "case_score"):
        if key in expected:
            np.testing.assert_allclose(np.asarray(got[key]), np.asarray(expected[key]),
                                       atol=1e-5)


@pytest.mark.slow
def test_export_refuses_a_folder_that_holds_one(exported, caplog):
    model, _, _, folder = exported["plain"]
    with pytest.raises(FileExistsError, match="saved_model already exists"):
        export_model(model, folder)
    assert main(["-q", "export", "--weights", str(folder.parent / "ftmtl.h5"), *CLI_OPTIONS,
                 "--out", str(folder.parent / "ftmtl")]) == 2
    assert "already exists" in caplog.text


@pytest.mark.slow
def test_the_cli_export_writes_the_config_of_its_model(exported):
    model, _, _, folder = exported["ftmtl"]
    written = json.loads((folder / "config.json").read_text())
    assert written["PREPARED_IMAGE_SIZE"] == 64 and written["DETECTION_MIN_CONFIDENCE"] == 0.0
    assert written["NAME"] == model.config.NAME
    assert (folder / "saved_model" / "saved_model.pb").is_file()

