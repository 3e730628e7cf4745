"""The tiny C4 configuration the data-layer and config tests share: 64 px, tiny backbone, three
classes, a few anchors and ground-truth slots, one data worker."""

from __future__ import annotations

from mrcnn.config import Config


class TinyConfig(Config):
    NAME = "tiny"
    NUM_CLASSES = 3
    BACKBONE = "tiny"
    FEATURE_LAYOUT = "c4"
    HEAD_LAYOUT = "paper"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 3
    MINI_MASK_SHAPE = (28, 28)
    IMAGES_PER_GPU = 2
    DATA_WORKERS = 1
