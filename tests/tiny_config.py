"""Tiny configurations the tests share. TinyConfig (the data-layer and config tests): 64 px,
tiny backbone, three classes, a few anchors and ground-truth slots, one data worker.
TinyShapesConfig: a fast shapes network for tests of training mechanics."""

from __future__ import annotations

from mrcnn.config import Config
from samples.shapes.shapes import ShapesConfig


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



class TinyShapesConfig(ShapesConfig):
    """ShapesConfig's settings before it became the from-scratch recipe: 64 px, the paper's C4
    heads, frozen BatchNorm, SGD. For tests of mechanics (resuming, determinism, several
    devices, non-finite values, memory) that need a real, fast network, not one that learns."""

    NAME = "tiny_shapes"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    HEAD_LAYOUT = "paper"
    NORM = "frozen_batch"
    OPTIMIZER = "sgd"
    LR_WARMUP_STEPS = 0
    LR_DECAY = "constant"
    RPN_ANCHOR_SCALES = (8, 16, 32)
    IMAGES_PER_GPU = 2
    STEPS_PER_EPOCH = 20
