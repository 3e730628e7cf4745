"""Config validation, derived values and display."""

import logging

import numpy as np
import pytest
from tiny_config import TinyConfig

from mrcnn.config import ConfigError


class Tiny(TinyConfig):
    RPN_ANCHOR_SCALES = (8, 16)


def test_derived_values():
    cfg = Tiny()
    assert cfg.BATCH_SIZE == cfg.IMAGES_PER_GPU * cfg.GPU_COUNT
    assert cfg.IMAGE_SHAPE.tolist() == [64, 64, 3]
    assert cfg.IMAGE_META_SIZE == 1 + 3 + 3 + 4 + 1 + 3
    assert cfg.BACKBONE_STRIDES == [16]


def test_fpn_strides_and_scales():
    class Fpn(Tiny):
        FEATURE_LAYOUT = "fpn"
        HEAD_LAYOUT = "matterport"
        RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)

    assert Fpn().BACKBONE_STRIDES == [4, 8, 16, 32, 64]


@pytest.mark.parametrize(
    ("attr", "value", "needle"),
    [
        ("NUM_CLASSES", 1, "NUM_CLASSES"),
        ("IMAGE_MAX_DIM", 72, "divisible by the largest backbone stride 16"),
        ("FEATURE_LAYOUT", "c5", "FEATURE_LAYOUT"),
        ("HEAD_LAYOUT", "other", "HEAD_LAYOUT"),
        ("BACKBONE", "vgg", "BACKBONE"),
        ("IMAGE_RESIZE_MODE", "stretch", "IMAGE_RESIZE_MODE"),
        ("MASK_SHAPE", (14, 14), "MASK_SHAPE"),
        ("ROI_POSITIVE_RATIO", 0.0, "ROI_POSITIVE_RATIO"),
        ("TRAIN_ROIS_PER_IMAGE", 0, "TRAIN_ROIS_PER_IMAGE"),
        ("IMAGE_CHANNEL_COUNT", 2, "IMAGE_CHANNEL_COUNT"),
        ("USE_RPN_ROIS", False, "input_rois path is not implemented"),
    ],
)
def test_validation_names_the_attribute(attr, value, needle):
    cls = type("Bad", (Tiny,), {attr: value})
    with pytest.raises(ConfigError, match=needle):
        cls()


def test_fpn_needs_one_scale_per_level():
    class Fpn(Tiny):
        FEATURE_LAYOUT = "fpn"
        HEAD_LAYOUT = "matterport"

    with pytest.raises(ConfigError, match="RPN_ANCHOR_SCALES"):
        Fpn()


def test_grayscale_mean_pixel_broadcasts():
    class Gray(Tiny):
        IMAGE_CHANNEL_COUNT = 1
        MEAN_PIXEL = 100.0

    cfg = Gray()
    assert cfg.MEAN_PIXEL.shape == (1,)
    assert cfg.IMAGE_SHAPE.tolist() == [64, 64, 1]


def test_to_dict_and_display(caplog):
    cfg = Tiny()
    d = cfg.to_dict()
    assert d["NUM_CLASSES"] == 3
    assert d["MEAN_PIXEL"] == pytest.approx(np.array([123.7, 116.8, 103.9]).tolist(), rel=1e-5)
    with caplog.at_level(logging.INFO, logger="mrcnn.config"):
        cfg.display()
    assert "NUM_CLASSES" in caplog.text
