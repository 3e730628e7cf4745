
"""Presets: the paper's values, twins that differ only by the transfer branch, the 768-parameter
invariant on the real ResNet-50 networks, overrides and clear errors."""

from __future__ import annotations

import gc
import tempfile

import keras
import numpy as np
import pytest

from ftmtl.model import FTMTL_CLASSIFIER_LAYER, FTMTLConfig, FTMTLNet
from ftmtl.presets import PRESETS, build_model, make_config
from mrcnn.config import ConfigError

# Training-mode models create a run folder: keep it out of the checkout.
MODEL_DIR = tempfile.mkdtemp(prefix="ftmtl-test-")

# Parameter counts do not depend on the image size: build the real presets small.
SMALL = {"IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 128}


def trainable_weights_by_layer(model: keras.Model) -> dict[str, list[tuple[int, ...]]]:
    """Layer name -> shapes of its trainable weights, descending into nested models."""
    found: dict[str, list[tuple[int, ...]]] = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(trainable_weights_by_layer(layer))
        elif layer.trainable_weights:
            found[layer.name] = [tuple(w.shape) for w in layer.trainable_weights]
    return found


def parameter_count(weights: dict[str, list[tuple[int, ...]]]) -> int:
    return sum(int(np.prod(shape)) for shapes in weights.values() for shape in shapes)


@pytest.fixture(scope="module")
def preset_weights():
    """Trainable weights of the training graph of both presets and both models."""
    found = {}
    for preset in ("paper", "fpn"):
        for model in ("ftmtl", "maskrcnn"):
            net = build_model("training", make_config(preset, model, **SMALL), MODEL_DIR)
            found[preset, model] = trainable_weights_by_layer(net.keras_model)
            del net
            keras.backend.clear_session()
            gc.collect()
    return found


@pytest.mark.parametrize("preset", ["paper", "fpn"])
def test_ftmtl_has_exactly_256_x_3_more_trainable_parameters(preset_weights, preset):
    ftmtl = preset_weights[preset, "ftmtl"]
    baseline = preset_weights[preset, "maskrcnn"]
    assert parameter_count(ftmtl) - parameter_count(baseline) == 256 * 3 == 768
    # The difference is the classifier's kernel: (1024 + 256) x 3 against 1024 x 3, same bias;
    # every other layer is identical.
    assert ftmtl[FTMTL_CLASSIFIER_LAYER] == [(1280, 3), (3,)]
    assert baseline["mrcnn_class_logits"] == [(1024, 3), (3,)]
    assert set(ftmtl) - {FTMTL_CLASSIFIER_LAYER} == set(baseline) - {"mrcnn_class_logits"}
    for name in set(baseline) - {"mrcnn_class_logits"}:
        assert ftmtl[name] == baseline[name], name


def test_the_real_paper_network_has_the_paper_dimensions(preset_weights):
    weights = preset_weights["paper", "ftmtl"]
    # Two 2x deconvolutions of 256 channels on the 1024-channel C4 ROI feature, a 1x1 conv to
    # 3 sigmoid maps, class-agnostic box deltas.
    assert weights["mrcnn_mask_deconv1"] == [(2, 2, 256, 1024), (256,)]
    assert weights["mrcnn_mask_deconv2"] == [(2, 2, 256, 256), (256,)]
    assert weights["mrcnn_mask"] == [(1, 1, 256, 3), (3,)]
    assert weights["mrcnn_bbox_fc"] == [(1024, 4), (4,)]
    assert "res5a_branch2a" not in weights  # C4: no stage 5
    fpn = preset_weights["fpn", "ftmtl"]
    assert fpn["mrcnn_class_conv1"][0] == (7, 7, 256, 1024)
    assert fpn["mrcnn_mask_deconv"] == [(2, 2, 256, 256), (256,)]


def test_paper_preset_values():
    config = make_config("paper")
    expected = {
        "BACKBONE": "resnet50", "FEATURE_LAYOUT": "c4", "HEAD_LAYOUT": "paper",
        "POOL_SIZE": 7, "MASK_HEAD_CHANNELS": 256, "CLASS_SPECIFIC_BOXES": False,
        "NUM_CLASSES": 3, "HEAD_INIT_STD": 0.05, "OPTIMIZER": "sgd", "LEARNING_RATE": 0.005,
        "LEARNING_MOMENTUM": 0.9, "IMAGES_PER_GPU": 8, "BATCH_SIZE": 8,
        "RPN_ANCHOR_SCALES": (32, 64, 128, 256), "RPN_ANCHOR_RATIOS": (0.5, 1, 2),
        "TRANSFER_BRANCH": True, "TRANSFER_STOP_GRADIENT": False,
    }
    for name, value in expected.items():
        assert getattr(config, name) == value, name
    assert tuple(config.MASK_SHAPE) == (28, 28)
    assert config.IMAGE_SHAPE.tolist() == [512, 512, 3]
    assert config.BACKBONE_STRIDES == [16]
    assert isinstance(config, FTMTLConfig)


def test_fpn_preset_is_matterports_layout_with_the_transfer():
    config = make_config("fpn")
    assert (config.BACKBONE, config.FEATURE_LAYOUT, config.HEAD_LAYOUT) == (
        "resnet50", "fpn", "matterport")
    assert config.TRANSFER_BRANCH is True
    assert len(config.RPN_ANCHOR_SCALES) == len(config.BACKBONE_STRIDES) == 5
    assert config.CLASS_SPECIFIC_BOXES is False


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_twins_differ_only_by_the_transfer_branch_and_name(preset):
    ftmtl = make_config(preset, "ftmtl").to_dict()
    baseline = make_config(preset, "maskrcnn").to_dict()
    differing = {name for name in ftmtl if ftmtl[name] != baseline[name]}
    assert differing == {"TRANSFER_BRANCH", "NAME"}
    assert (ftmtl["TRANSFER_BRANCH"], baseline["TRANSFER_BRANCH"]) == (True, False)
    assert ftmtl["NAME"] != baseline["NAME"]


@pytest.mark.parametrize("preset,parent", [("paper_cpu", "paper"), ("fpn_cpu", "fpn")])
def test_cpu_variants_keep_the_structure(preset, parent):
    small, full = make_config(preset), make_config(parent)
    for name in ("FEATURE_LAYOUT", "HEAD_LAYOUT", "CLASS_SPECIFIC_BOXES", "NUM_CLASSES",
                 "POOL_SIZE", "MASK_SHAPE", "TRANSFER_BRANCH", "HEAD_INIT_STD"):
        assert getattr(small, name) == getattr(full, name), name
    assert small.IMAGE_MAX_DIM <= 256 and small.POST_NMS_ROIS_TRAINING <= 256


def test_overrides_apply_and_do_not_leak_into_the_preset():
    config = make_config("paper", "maskrcnn", IMAGE_MIN_DIM=256, IMAGE_MAX_DIM=256,
                         LOSS_WEIGHTS={"mrcnn_class_loss": 2.0}, TRANSFER_STOP_GRADIENT=True)
    assert config.IMAGE_SHAPE.tolist() == [256, 256, 3]
    assert config.LOSS_WEIGHTS == {"mrcnn_class_loss": 2.0}
    assert config.TRANSFER_BRANCH is False and config.TRANSFER_STOP_GRADIENT is True
    fresh = make_config("paper")
    assert fresh.IMAGE_MAX_DIM == 512 and fresh.TRANSFER_STOP_GRADIENT is False
    assert fresh.LOSS_WEIGHTS["mrcnn_mask_loss"] == 1.0


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_keep_a_bounded_number_of_checkpoints_unless_told(preset):
    # Matterport's base config keeps every epoch's; a preset run must not fill the disk.
    assert FTMTLConfig.KEEP_CHECKPOINTS is None
    assert make_config(preset).KEEP_CHECKPOINTS == 5
    assert make_config(preset, KEEP_CHECKPOINTS=None).KEEP_CHECKPOINTS is None


def test_bad_names_and_values_are_refused_clearly():
    with pytest.raises(ConfigError, match="'IMAGE_SIZE' is not a config attribute"):
        make_config("paper", IMAGE_SIZE=256)
    with pytest.raises(ConfigError, match="'image_max_dim' is not a config attribute; did "
                                          "you mean IMAGE_MAX_DIM"):
        make_config("paper", image_max_dim=256)
    with pytest.raises(ConfigError, match="did you mean DETECTION_MIN_CONFIDENCE"):
        make_config("paper", DETECTION_MIN_CONFIDNCE=0.3)
    with pytest.raises(ConfigError, match=r"IMAGE_MIN_DIM expects an integer \(like 512\), "
                                          r"got 'abc' \(str\)"):
        make_config("paper", IMAGE_MIN_DIM="abc")
    with pytest.raises(ConfigError, match="TRAIN_BN expects True or False"):
        make_config("paper", TRAIN_BN=1)
    with pytest.raises(ConfigError, match="RPN_ANCHOR_SCALES expects a tuple or list"):
        make_config("paper", RPN_ANCHOR_SCALES=32)
    # Numbers of another kind that mean the same, and None where the attribute allows it.
    assert make_config("paper", LEARNING_RATE=1, TRAIN_BN=None).LEARNING_RATE == 1
    assert make_config("paper", RPN_ANCHOR_SCALES=[32, 64, 128, 256]).RPN_ANCHOR_SCALES
    grey = make_config("paper", IMAGE_CHANNEL_COUNT=1, MEAN_PIXEL=np.float32(84.2))
    assert grey.MEAN_PIXEL.tolist() == pytest.approx([84.2])
    with pytest.raises(ConfigError, match="MEAN_PIXEL expects a number, tuple or list"):
        make_config("paper", MEAN_PIXEL="grey")
    with pytest.raises(ValueError, match="unknown preset 'papr'"):
        make_config("papr")
    with pytest.raises(ValueError, match="model must be one of"):
        make_config("paper", "mask_rcnn")
    with pytest.raises(ConfigError, match="CLASS_SPECIFIC_BOXES"):
        make_config("fpn", CLASS_SPECIFIC_BOXES=True)
    with pytest.raises(ConfigError, match="MALIGNANT_CLASS_ID"):
        make_config("paper", MALIGNANT_CLASS_ID=3)
    for bad in (1.5, -0.1, "0.5", True):
        with pytest.raises(ConfigError, match="VETO_MIN_CONFIDENCE"):
            make_config("paper", VETO_MIN_CONFIDENCE=bad)


def test_build_model_gives_ftmtlnet_for_both_twins(tmp_path):
    for model, classifier_name in (("ftmtl", FTMTL_CLASSIFIER_LAYER),
                                   ("maskrcnn", "mrcnn_class_logits")):
        config = make_config("paper_cpu", model, IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64)
        net = build_model("inference", config, tmp_path)
        assert isinstance(net, FTMTLNet)
        assert net.transfer_branch is (model == "ftmtl")
        names = trainable_weights_by_layer(net.keras_model)
        assert classifier_name in names
        assert "case_score" in net.keras_model.output
