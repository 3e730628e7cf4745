"""Model and training configuration.

Attribute names follow Matterport's ``mrcnn.config.Config`` on purpose, so existing scripts and
their sub-classes keep working. New attributes (layout choices for the paper's network) are
documented inline. Sub-class, override class attributes, then instantiate: ``__init__`` validates
the values and computes the derived ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from mrcnn.image_meta import image_meta_size
from mrcnn.lr_schedule import DECAYS as LR_DECAYS
from mrcnn.norm import NORMS

# Values of Config.MIXED_PRECISION (Keras dtype policy names; None is float32).
MIXED_PRECISION_POLICIES = (None, "mixed_bfloat16", "mixed_float16")

logger = logging.getLogger(__name__)

FEATURE_LAYOUTS = ("c4", "fpn")
HEAD_LAYOUTS = ("paper", "matterport")
RESIZE_MODES = ("square", "pad64", "none", "crop")
DETECTION_SCORES = ("class", "foreground")
KNOWN_BACKBONES = ("resnet50", "resnet101", "tiny")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the attribute."""


class Config:
    """Base configuration. Sub-class it and override what differs."""

    # Name of the configuration; used in log and checkpoint folder names.
    NAME: str | None = None

    # Devices and batch. The global batch is IMAGES_PER_GPU * GPU_COUNT; under a
    # tf.distribute strategy GPU_COUNT is the number of replicas.
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2

    STEPS_PER_EPOCH = 1000
    VALIDATION_STEPS = 50

    # Backbone: "resnet50", "resnet101", "tiny" (a small conv net for fast tests), or a
    # callable ``f(input_image, config) -> list of feature maps`` (one per level of
    # BACKBONE_STRIDES).
    BACKBONE: str | Callable[..., Any] = "resnet101"
    # "fpn": Matterport's pyramid P2-P6; "c4": a single stride-16 map (the paper's layout).
    FEATURE_LAYOUT = "fpn"
    # "matterport": FC class head (mrcnn_class_conv1/2) and 4-conv + deconv mask head on
    # 14x14 ROIs. "paper": global-average-pool class/box head, 2-deconv mask head on the
    # shared 7x7 ROI feature.
    HEAD_LAYOUT = "matterport"
    # Channel widths of the "tiny" backbone, one per stage (stride 2 each, after a stride-2 stem).
    TINY_BACKBONE_FILTERS: tuple[int, ...] = (16, 32, 64, 64, 64)
    # Only used when BACKBONE is a callable: the strides of the maps it returns.
    COMPUTE_BACKBONE_SHAPE = None

    # Size of the fully-connected layers in the classification head.
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024
    # Channels of the top-down pyramid layers.
    TOP_DOWN_PYRAMID_SIZE = 256

    # Number of classes including background.
    NUM_CLASSES = 1

    # Anchors. With FEATURE_LAYOUT "fpn" there is one scale per pyramid level; with "c4" all
    # scales are placed on the single stride-16 map.
    RPN_ANCHOR_SCALES: tuple[int, ...] = (32, 64, 128, 256, 512)
    RPN_ANCHOR_RATIOS: tuple[float, ...] = (0.5, 1, 2)
    RPN_ANCHOR_STRIDE = 1
    RPN_NMS_THRESHOLD = 0.7
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256
    PRE_NMS_LIMIT = 6000
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000
    # Add the ground-truth boxes to the proposals before ROI sampling (as torchvision does):
    # gives the heads positives from the first step, before the RPN has learnt anything.
    ADD_GT_TO_PROPOSALS = True

    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)

    # Resizing: "square" (resize then pad to IMAGE_MAX_DIM x IMAGE_MAX_DIM), "pad64" (pad to a
    # multiple of 64), "none", "crop" (scale so the short side is at least IMAGE_MIN_DIM; training
    # takes random IMAGE_MIN_DIM x IMAGE_MIN_DIM crops, inference the whole image padded at the
    # bottom/right to a multiple of the largest backbone stride).
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    IMAGE_MIN_SCALE = 0
    IMAGE_CHANNEL_COUNT = 3
    # "crop" mode only: the probability that a training crop is placed to contain a randomly
    # chosen instance of the image (when it has any); otherwise the crop is uniformly random,
    # so crops without instances, which teach the background, still occur.
    CROP_INSTANCE_SHARE = 0.5

    # Subtracted from images before the network. For grayscale data scaled to [0, 255] use
    # one value per channel as well.
    MEAN_PIXEL: Any = np.array([123.7, 116.8, 103.9])

    TRAIN_ROIS_PER_IMAGE = 200
    ROI_POSITIVE_RATIO = 0.33

    POOL_SIZE = 7
    MASK_POOL_SIZE = 14
    MASK_SHAPE = (28, 28)
    # Channels of the mask head's layers, and so of theta4 (the paper: 256). Smaller values
    # only for quick CPU experiments: the head runs on every sampled ROI.
    MASK_HEAD_CHANNELS = 256

    MAX_GT_INSTANCES = 100

    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    # False: one set of 4 deltas for all classes (the paper); True: 4 per class (Matterport).
    CLASS_SPECIFIC_BOXES = True

    DETECTION_MAX_INSTANCES = 100
    DETECTION_MIN_CONFIDENCE = 0.7
    DETECTION_NMS_THRESHOLD = 0.3
    # How MaskRCNN's DetectionLayer classifies and scores an ROI (mrcnn.detection.classify):
    # "class" (Matterport's): the arg-max over all classes, scored by its probability, so an ROI
    # whose arg-max is the background is dropped; "foreground" (FT-MTL-Net's): the arg-max over
    # the foreground classes, scored 1 - p(background), so an ROI that is more likely background
    # than any one class can still be kept. DETECTION_MIN_CONFIDENCE applies to that score.
    DETECTION_SCORE = "class"

    # "sgd" (SGD with LEARNING_MOMENTUM, Matterport's and the paper's) or "adam" (converges
    # faster from scratch on small problems; LEARNING_MOMENTUM is then beta_1).
    OPTIMIZER = "sgd"
    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9
    WEIGHT_DECAY = 0.0001
    # Learning-rate schedule of each train() call (mrcnn/lr_schedule.py): a linear warm-up over
    # LR_WARMUP_STEPS steps, then LR_DECAY: "constant" (Matterport's), "cosine" or "step". A
    # LearningRateSchedule passed to train() is used as it is.
    LR_WARMUP_STEPS = 0
    LR_DECAY = "constant"

    LOSS_WEIGHTS: ClassVar[dict[str, float]] = {
        "rpn_class_loss": 1.0,
        "rpn_bbox_loss": 1.0,
        "mrcnn_class_loss": 1.0,
        "mrcnn_bbox_loss": 1.0,
        "mrcnn_mask_loss": 1.0,
    }

    # Matterport's switch to train the heads on ROIs given as an input instead of the RPN's;
    # only True (the RPN's proposals) is implemented, and False is refused, not ignored.
    USE_RPN_ROIS = True
    # Train BatchNorm layers? Matterport's meaning: False freezes them (right with pretrained
    # weights and small batches), True or None trains them. Used only when NORM is None.
    TRAIN_BN: bool | None = False
    # Normalisation of the backbone, the FPN and the heads (mrcnn/norm.py): "frozen_batch",
    # "batch" or "group" (GroupNorm: trains from scratch at any batch size); None follows
    # TRAIN_BN (False -> "frozen_batch", True/None -> "batch").
    NORM: str | None = None
    GRADIENT_CLIP_NORM = 5.0
    # Checkpoints kept in a run folder: the newest N (None: every epoch's, as Matterport).
    KEEP_CHECKPOINTS: int | None = None
    # An epoch-log value (e.g. "val_loss", "loss", "val_mrcnn_class_loss") whose best epoch is
    # kept apart as mask_rcnn_<name>_best.h5, whatever KEEP_CHECKPOINTS deletes: minimised when
    # the name ends in "loss", maximised otherwise. None: no best copy (Matterport).
    BEST_CHECKPOINT_METRIC: str | None = None

    # Standard deviation of the normal initialiser of non-backbone layers; None keeps Keras'
    # defaults (Glorot uniform). The paper uses 0.05.
    HEAD_INIT_STD: float | None = None

    # Workers of the input pipeline (threads building batches in parallel).
    DATA_WORKERS = 2

    # Keras mixed-precision policy the layers compute in: None (float32), "mixed_bfloat16"
    # (CPUs with AVX-512 BF16 or AMX, recent GPUs) or "mixed_float16" (GPUs, with loss
    # scaling). Variables, box geometry and losses stay float32; see mrcnn/precision.py.
    MIXED_PRECISION: str | None = None

    def __init__(self) -> None:
        self.BATCH_SIZE = self.IMAGES_PER_GPU * self.GPU_COUNT
        self.MEAN_PIXEL = np.asarray(self.MEAN_PIXEL, dtype=np.float32).reshape(-1)
        if self.MEAN_PIXEL.size == 1:
            self.MEAN_PIXEL = np.repeat(self.MEAN_PIXEL, self.IMAGE_CHANNEL_COUNT)
        self.RPN_BBOX_STD_DEV = np.asarray(self.RPN_BBOX_STD_DEV, dtype=np.float32)
        self.BBOX_STD_DEV = np.asarray(self.BBOX_STD_DEV, dtype=np.float32)
        self.LOSS_WEIGHTS = dict(self.LOSS_WEIGHTS)
        self.validate()
        if self.IMAGE_RESIZE_MODE == "crop":
            self.IMAGE_SHAPE = np.array(
                [self.IMAGE_MIN_DIM, self.IMAGE_MIN_DIM, self.IMAGE_CHANNEL_COUNT]
            )
        else:
            self.IMAGE_SHAPE = np.array(
                [self.IMAGE_MAX_DIM, self.IMAGE_MAX_DIM, self.IMAGE_CHANNEL_COUNT]
            )
        # image_meta: id, original shape, image shape, window, scale, active class ids
        # (mrcnn.image_meta owns the layout).
        self.IMAGE_META_SIZE = image_meta_size(self.NUM_CLASSES)
        self.BACKBONE_STRIDES = self.backbone_strides()

    # ----------------------------------------------------------------------------- derived
    def backbone_strides(self) -> list[int]:
        """Strides of the feature maps the RPN runs on, one per level."""
        if callable(self.BACKBONE) and self.COMPUTE_BACKBONE_SHAPE is not None:
            return list(self.COMPUTE_BACKBONE_SHAPE)
        if self.FEATURE_LAYOUT == "c4":
            return [16]
        return [4, 8, 16, 32, 64]

    def max_stride(self) -> int:
        return max(self.backbone_strides())

    # -------------------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise ConfigError naming the first bad attribute."""

        def fail(attr: str, why: str) -> None:
            raise ConfigError(f"{type(self).__name__}.{attr}: {why}")

        if self.NUM_CLASSES < 2:
            fail("NUM_CLASSES", f"must be >= 2 (background + at least one class), got "
                 f"{self.NUM_CLASSES}")
        if self.FEATURE_LAYOUT not in FEATURE_LAYOUTS:
            fail("FEATURE_LAYOUT", f"must be one of {FEATURE_LAYOUTS}, got {self.FEATURE_LAYOUT!r}")
        if self.HEAD_LAYOUT not in HEAD_LAYOUTS:
            fail("HEAD_LAYOUT", f"must be one of {HEAD_LAYOUTS}, got {self.HEAD_LAYOUT!r}")
        if not callable(self.BACKBONE) and self.BACKBONE not in KNOWN_BACKBONES:
            fail("BACKBONE", f"must be one of {KNOWN_BACKBONES} or a callable, got "
                 f"{self.BACKBONE!r}")
        if self.IMAGE_RESIZE_MODE not in RESIZE_MODES:
            fail("IMAGE_RESIZE_MODE", f"must be one of {RESIZE_MODES}, got "
                 f"{self.IMAGE_RESIZE_MODE!r}")
        if self.DETECTION_SCORE not in DETECTION_SCORES:
            fail("DETECTION_SCORE", f"must be one of {DETECTION_SCORES}, got "
                 f"{self.DETECTION_SCORE!r}")
        if self.USE_RPN_ROIS is not True:
            fail("USE_RPN_ROIS", "only True is supported: the heads train on the RPN's "
                 "proposals (Matterport's input_rois path is not implemented)")
        if self.IMAGE_CHANNEL_COUNT not in (1, 3):
            fail("IMAGE_CHANNEL_COUNT", f"must be 1 or 3, got {self.IMAGE_CHANNEL_COUNT}")
        if self.MEAN_PIXEL.size != self.IMAGE_CHANNEL_COUNT:
            fail("MEAN_PIXEL", f"needs {self.IMAGE_CHANNEL_COUNT} values, got "
                 f"{self.MEAN_PIXEL.size}")
        stride = self.max_stride()
        if self.IMAGE_RESIZE_MODE in ("square", "pad64") and self.IMAGE_MAX_DIM % stride:
            fail("IMAGE_MAX_DIM", f"must be divisible by the largest backbone stride {stride}, "
                 f"got {self.IMAGE_MAX_DIM}")
        if self.IMAGE_RESIZE_MODE == "crop" and self.IMAGE_MIN_DIM % stride:
            fail("IMAGE_MIN_DIM", f"must be divisible by the largest backbone stride {stride} "
                 f"in crop mode, got {self.IMAGE_MIN_DIM}")
        if not 0 <= self.CROP_INSTANCE_SHARE <= 1:
            fail("CROP_INSTANCE_SHARE", f"must be in [0, 1], got {self.CROP_INSTANCE_SHARE}")
        if self.IMAGE_MIN_DIM > self.IMAGE_MAX_DIM:
            fail("IMAGE_MIN_DIM", f"{self.IMAGE_MIN_DIM} exceeds IMAGE_MAX_DIM "
                 f"{self.IMAGE_MAX_DIM}")
        n_levels = len(self.backbone_strides())
        if n_levels > 1 and len(self.RPN_ANCHOR_SCALES) != n_levels:
            fail("RPN_ANCHOR_SCALES", f"the FPN layout needs one scale per level "
                 f"({n_levels}), got {len(self.RPN_ANCHOR_SCALES)}")
        if not 0 < self.ROI_POSITIVE_RATIO <= 1:
            fail("ROI_POSITIVE_RATIO", f"must be in (0, 1], got {self.ROI_POSITIVE_RATIO}")
        for attr in ("IMAGES_PER_GPU", "GPU_COUNT", "TRAIN_ROIS_PER_IMAGE",
                     "RPN_TRAIN_ANCHORS_PER_IMAGE", "POST_NMS_ROIS_TRAINING",
                     "POST_NMS_ROIS_INFERENCE", "MAX_GT_INSTANCES", "DETECTION_MAX_INSTANCES",
                     "POOL_SIZE", "MASK_POOL_SIZE", "MASK_HEAD_CHANNELS"):
            if int(getattr(self, attr)) < 1:
                fail(attr, f"must be a positive integer, got {getattr(self, attr)}")
        if self.HEAD_LAYOUT == "paper" and tuple(self.MASK_SHAPE) != (
            4 * self.POOL_SIZE, 4 * self.POOL_SIZE
        ):
            fail("MASK_SHAPE", f"the paper head upsamples POOL_SIZE x4: needs "
                 f"({4 * self.POOL_SIZE}, {4 * self.POOL_SIZE}), got {tuple(self.MASK_SHAPE)}")
        if self.HEAD_LAYOUT == "matterport" and tuple(self.MASK_SHAPE) != (
            2 * self.MASK_POOL_SIZE, 2 * self.MASK_POOL_SIZE
        ):
            fail("MASK_SHAPE", f"the matterport head upsamples MASK_POOL_SIZE x2: needs "
                 f"({2 * self.MASK_POOL_SIZE}, {2 * self.MASK_POOL_SIZE}), got "
                 f"{tuple(self.MASK_SHAPE)}")
        keep = self.KEEP_CHECKPOINTS
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            fail("KEEP_CHECKPOINTS", f"must be None or an integer >= 1, got "
                 f"{self.KEEP_CHECKPOINTS!r}")
        best = self.BEST_CHECKPOINT_METRIC
        if best is not None and (not isinstance(best, str) or not best.strip()):
            fail("BEST_CHECKPOINT_METRIC", f"must be None or the name of an epoch-log value "
                 f"such as 'val_loss', got {best!r}")
        if self.MIXED_PRECISION not in MIXED_PRECISION_POLICIES:
            fail("MIXED_PRECISION", f"must be one of {MIXED_PRECISION_POLICIES}, got "
                 f"{self.MIXED_PRECISION!r}")
        if self.NORM is not None and self.NORM not in NORMS:
            fail("NORM", f"must be one of {NORMS} or None, got {self.NORM!r}")
        if self.LR_DECAY not in LR_DECAYS:
            fail("LR_DECAY", f"must be one of {LR_DECAYS}, got {self.LR_DECAY!r}")
        if isinstance(self.LR_WARMUP_STEPS, bool) or int(self.LR_WARMUP_STEPS) < 0:
            fail("LR_WARMUP_STEPS", f"must be an integer >= 0, got {self.LR_WARMUP_STEPS!r}")
        if self.OPTIMIZER not in ("sgd", "adam"):
            fail("OPTIMIZER", f"must be 'sgd' or 'adam', got {self.OPTIMIZER!r}")
        unknown = set(self.LOSS_WEIGHTS) - set(Config.LOSS_WEIGHTS)
        if unknown:
            fail("LOSS_WEIGHTS", f"unknown loss names {sorted(unknown)}")

    # ------------------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """All upper-case attributes, numpy arrays as lists (JSON-friendly)."""
        out: dict[str, Any] = {}
        for name in sorted(dir(self)):
            if not name.isupper() or name.startswith("_"):
                continue
            value = getattr(self, name)
            if callable(value) and not isinstance(value, type):
                value = getattr(value, "__name__", repr(value))
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    def display(self) -> None:
        """Log every configuration value (Matterport printed them; we log at INFO)."""
        lines = ["Configurations:"]
        lines += [f"{name:30} {value}" for name, value in self.to_dict().items()]
        text = "\n".join(lines)
        logger.info(text)
        if not logger.isEnabledFor(logging.INFO):
            # Interactive users call display() to see the values; show them even with logging
            # left unconfigured.
            import sys

            sys.stdout.write(text + "\n")
