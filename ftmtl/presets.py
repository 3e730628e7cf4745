"""Named configurations of FT-MTL-Net and of its Mask R-CNN twin.

- ``paper``: the network of the paper (section 2): ResNet-50 C4 (stride 16, 1024 channels),
  the paper's heads (shared 7x7 ROIAlign, mean-pooled class/box head, two-deconv mask head with
  256 channels, class-agnostic boxes), 512x512 input, normal(0, 0.05) head init, SGD lr 0.005
  momentum 0.9, 8 images a batch.
- ``fpn``: Matterport's layout (ResNet-50 FPN, 1024-d FC class head, 14x14 mask ROIs with four
  convolutions and one deconvolution) with the same transfer and training settings. Boxes are
  class-agnostic here too: the sequential inference order refines a box before it is classified.
- ``paper_cpu``, ``fpn_cpu``: the same structures with the tiny backbone, narrow mask head
  and few ROIs, trained from scratch on a CPU: GroupNorm, Adam, one joint stage with warm-up
  and cosine decay, 128-px training crops of images prepared at 384 px (docs/training.md).

``make_config(preset, model)`` gives FT-MTL-Net (``model="ftmtl"``) or its twin
(``model="maskrcnn"``); the two differ only in TRANSFER_BRANCH and in NAME (so their runs go to
different log folders). ``build_model`` always builds ``FTMTLNet``: the twin is FTMTLNet without
the transfer branch, so both run the paper's sequential inference and the malignant veto and
compare the transfer alone. (Matterport's inference order is ``mrcnn.model.MaskRCNN``.)
"""

from __future__ import annotations

import copy
import difflib
import numbers
import os
from typing import Any

import numpy as np
import tensorflow as tf

from ftmtl.model import FTMTLConfig, FTMTLNet, image_size_overrides, prepared_image_size
from mrcnn.config import ConfigError

MODELS = ("ftmtl", "maskrcnn")

_PAPER: dict[str, Any] = {
    "BACKBONE": "resnet50",
    "FEATURE_LAYOUT": "c4",
    "HEAD_LAYOUT": "paper",
    "POOL_SIZE": 7,
    "MASK_SHAPE": (28, 28),
    "MASK_HEAD_CHANNELS": 256,
    "CLASS_SPECIFIC_BOXES": False,
    "NUM_CLASSES": 3,  # background, benign, malignant
    "IMAGE_RESIZE_MODE": "square",
    "IMAGE_MIN_DIM": 512,
    "IMAGE_MAX_DIM": 512,
    "HEAD_INIT_STD": 0.05,
    # Masses span about 10 to 250 px at 512 px: all scales on the single stride-16 map.
    "RPN_ANCHOR_SCALES": (32, 64, 128, 256),
    "RPN_ANCHOR_RATIOS": (0.5, 1, 2),
    "OPTIMIZER": "sgd",
    "LEARNING_RATE": 0.005,
    "LEARNING_MOMENTUM": 0.9,
    "IMAGES_PER_GPU": 8,
    # He et al. 2017 for C4: 64 sampled ROIs an image in training, 300 proposals at test.
    "TRAIN_ROIS_PER_IMAGE": 64,
    "POST_NMS_ROIS_INFERENCE": 300,
    "MAX_GT_INSTANCES": 10,
    # The paper keeps proposals "above a threshold (e.g. 0.5)"; 20 detections an image leave
    # room for FROC points up to 5 false positives per image.
    "DETECTION_MIN_CONFIDENCE": 0.5,
    "DETECTION_MAX_INSTANCES": 20,
    # The newest five checkpoints of a run (what resuming and `--weights last` read): every
    # epoch's, as Matterport keeps them, is 7 GB for the paper's 30 epochs at 245 MB and
    # 650 MB for fpn_cpu's 48. KEEP_CHECKPOINTS=None keeps them all.
    "KEEP_CHECKPOINTS": 5,
}

_FPN: dict[str, Any] = {
    **_PAPER,
    "FEATURE_LAYOUT": "fpn",
    "HEAD_LAYOUT": "matterport",
    "MASK_POOL_SIZE": 14,
    # One scale per pyramid level P2..P6.
    "RPN_ANCHOR_SCALES": (16, 32, 64, 128, 256),
    # Fewer ROIs than Matterport's FPN defaults (200 sampled, 1000 proposals): the paper's
    # sequential order runs the mask head on every sampled ROI and every proposal (the
    # classifier needs each one's theta4), and Matterport's mask head costs 0.5 GMAC an ROI, so
    # 1000 proposals took 1.2 TFLOP and 6.6 s an image on 2 CPU cores. A mammogram holds one to
    # three masses: 64 sampled ROIs (the paper preset's, He et al.'s for C4) and the RPN's 100
    # best proposals (5 x DETECTION_MAX_INSTANCES) leave ample room. benchmarks/README.md.
    "TRAIN_ROIS_PER_IMAGE": 64,
    "POST_NMS_ROIS_INFERENCE": 100,
}

# CPU runs from scratch: same layouts, the tiny backbone, and the recipe that trains from
# random weights (docs/training.md): GroupNorm everywhere, Adam, one joint stage with warm-up
# and cosine decay (ftmtl.schedule.scratch_schedule), random 128-px crops of images prepared
# at 384 px (masses keep 12-50 px instead of shrinking to 4-17 px), whole images at inference.
_CPU: dict[str, Any] = {
    "BACKBONE": "tiny",
    "NORM": "group",
    "OPTIMIZER": "adam",
    "LEARNING_RATE": 0.001,
    "LEARNING_MOMENTUM": 0.9,
    "IMAGE_RESIZE_MODE": "crop",
    "IMAGE_MIN_DIM": 128,
    "IMAGE_MAX_DIM": 128,
    "PREPARED_IMAGE_SIZE": 384,
    # Every crop of an image with a mass is placed around one, so the classifier learns from
    # whole outlines (a random crop cuts a mass and keeps its label); the sampler's mass-free
    # images (MASS_FREE_SHARE) still give random, background crops. Against 0.5 on seeds 9,
    # 10 and 11 (11 untouched by the choice): TPR@1 FPI +0.05, case AUC +0.07, box AP +0.06,
    # mass AUC (found) -0.05. On seeds 5-7, measured after the choice, TPR@1 FPI rose again
    # (0.83 against 0.77) and the case AUC did not (0.54 against 0.66, other pixel values:
    # docs/training.md).
    "CROP_INSTANCE_SHARE": 1.0,
    "SAMPLER_WEIGHTS": "balanced",
    "MASK_HEAD_CHANNELS": 32,
    "MINI_MASK_SHAPE": (28, 28),
    "IMAGES_PER_GPU": 4,
    "STEPS_PER_EPOCH": 50,
    # 2,400 steps: against 1,200, seed 0 of the accuracy benchmark found 38 of 44 test masses
    # instead of 31 (TPR at 1 FPI 0.73 against 0.59, box AP 0.30 against 0.11); the losses were
    # still falling at 1,200 (docs/training.md).
    "SCRATCH_EPOCHS": 48,
    "VALIDATION_STEPS": 2,
    "RPN_TRAIN_ANCHORS_PER_IMAGE": 64,
    "PRE_NMS_LIMIT": 512,
    "POST_NMS_ROIS_TRAINING": 128,
    "POST_NMS_ROIS_INFERENCE": 64,
    "TRAIN_ROIS_PER_IMAGE": 32,
    "DETECTION_MAX_INSTANCES": 10,
    # Two threads build the batches (Keras' ordered enqueuer). With one, Keras feeds them
    # through tf.data's from_generator, and the demo's training took 1.25x the wall time for
    # bitwise the same weights (8 epochs: 166 s against 133 s; benchmarks/README.md).
    "DATA_WORKERS": 2,
}

PRESETS: dict[str, dict[str, Any]] = {
    "paper": _PAPER,
    "fpn": _FPN,
    "paper_cpu": {**_PAPER, **_CPU, "RPN_ANCHOR_SCALES": (16, 32, 64)},
    "fpn_cpu": {**_FPN, **_CPU, "RPN_ANCHOR_SCALES": (8, 16, 32, 64, 128),
                "TOP_DOWN_PYRAMID_SIZE": 64, "FPN_CLASSIF_FC_LAYERS_SIZE": 128},
}


def preset_values(preset: str, model: str = "ftmtl") -> dict[str, Any]:
    """The attribute values a preset sets (before overrides), NAME and TRANSFER_BRANCH
    included."""
    if preset not in PRESETS:
        raise ValueError(f"make_config: unknown preset {preset!r}; choose one of "
                         f"{sorted(PRESETS)}")
    if model not in MODELS:
        raise ValueError(f"make_config: model must be one of {MODELS}, got {model!r}")
    return {**PRESETS[preset], "NAME": f"{model}_{preset}",
            "TRANSFER_BRANCH": model == "ftmtl"}


def make_config(preset: str = "paper", model: str = "ftmtl", **overrides: Any) -> FTMTLConfig:
    """A validated config: the preset's values, then ``overrides`` (upper-case attribute
    names of FTMTLConfig, e.g. ``IMAGE_MAX_DIM=256``)."""
    values = preset_values(preset, model)
    for name, value in overrides.items():
        check_override(name, value, values)
    values.update(overrides)
    # Deep copies: a config class never shares a mutable value with a preset or the caller.
    values = copy.deepcopy(values)
    config_class = type(f"{_camel(values['NAME'])}Config", (FTMTLConfig,), values)
    config = config_class()
    # Checkpoints record how the config was made (mrcnn.run_config), so that evaluate and
    # detect rebuild it from the file (ftmtl.from_checkpoint).
    config_class.provenance = {"preset": preset, "model": model,
                               "overrides": copy.deepcopy(overrides),
                               "image_size": prepared_image_size(config)}
    return config


def check_override(name: str, value: Any, preset: dict[str, Any] | None = None) -> None:
    """Refuse an override whose name is not a config attribute (with the closest names) or
    whose value is not of the attribute's kind (with what the attribute expects)."""
    if not name.isupper() or not hasattr(FTMTLConfig, name):
        known = [n for n in dir(FTMTLConfig) if n.isupper()]
        close = difflib.get_close_matches(name.upper(), known, n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else \
            " (use the upper-case names of ftmtl.model.FTMTLConfig)"
        raise ConfigError(f"make_config: {name!r} is not a config attribute{hint}")
    current = (preset or {}).get(name, getattr(FTMTLConfig, name))
    expected = _kind(current)
    if expected is not None and value is not None and not isinstance(value, expected[0]):
        raise ConfigError(f"make_config: {name} expects {expected[1]} (like {current!r}), got "
                          f"{value!r} ({type(value).__name__})")


def _kind(default: Any) -> tuple[tuple[type, ...], str] | None:
    """The types an attribute with this default accepts, and their name for messages; None
    where any value may do (a None default, or callables)."""
    if default is None or callable(default):
        return None
    if isinstance(default, bool | np.bool_):
        return (bool, np.bool_), "True or False"
    if isinstance(default, numbers.Integral):
        return (numbers.Integral,), "an integer"
    if isinstance(default, numbers.Real):
        return (numbers.Real,), "a number"
    if isinstance(default, str):
        return (str,), "a string"
    if isinstance(default, np.ndarray):  # MEAN_PIXEL: one value a channel, or one for all
        return (tuple, list, np.ndarray, numbers.Real), "a number, tuple or list"
    if isinstance(default, tuple | list):
        return (tuple, list, np.ndarray), "a tuple or list"
    if isinstance(default, dict):
        return (dict,), "a dict"
    return None


def sized_config(preset: str, model: str, image_size: int | None,
                 overrides: dict[str, Any] | None = None) -> tuple[FTMTLConfig, dict[str, Any]]:
    """``make_config`` with an image size applied the way the preset's resize mode reads it
    (``ftmtl.model.image_size_overrides``; the explicit ``overrides`` win). Returns the config
    and the complete overrides."""
    overrides = dict(overrides or {})
    config = make_config(preset, model, **overrides)
    sized = image_size_overrides(config, image_size)
    if not sized:
        return config, overrides
    overrides = {**sized, **overrides}
    return make_config(preset, model, **overrides), overrides


def build_model(mode: str, config: FTMTLConfig, model_dir: str | os.PathLike,
                strategy: tf.distribute.Strategy | None = None) -> FTMTLNet:
    """FT-MTL-Net, or its twin when ``config.TRANSFER_BRANCH`` is False, built under
    ``strategy`` (default TensorFlow's; ``mrcnn.devices.strategy_for_gpus`` gives one)."""
    return FTMTLNet(mode, config, model_dir, strategy=strategy)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))
