"""Rebuilding a run's config and model from its checkpoint alone.

Every checkpoint a model writes describes its run (``mrcnn.run_config``: the config's every
attribute, the preset, the model kind, the overrides, the prepared image size, the class names,
the release that wrote it). ``config_from_checkpoint`` rebuilds the config it was trained with,
``load_model_from_checkpoint`` the model with its weights, so ``inbreast evaluate`` and
``inbreast detect`` need ``--weights`` only, and a copied ``.h5`` still loads.

Options given with a checkpoint (``--preset``, ``--model``, ``--image-size``, ``--set``, or the
same keywords in Python) are checked against it. Each config attribute is in one of three groups
(``tests/test_from_checkpoint.py`` checks that every attribute is in exactly one):

- ``ARCHITECTURE_SETTINGS`` must agree with the checkpoint: the layers' shapes (backbone,
  layouts, widths, classes, anchors) and what the weights learnt to read (the input geometry and
  normalisation, the scale of the box deltas, the class ids, the transfer branch). An option that
  contradicts the checkpoint is an error naming the option, the checkpoint's value and the given
  one; an option that agrees is fine. ``--preset`` and ``--model`` must agree too.
- ``INFERENCE_SETTINGS`` may differ on purpose: the detection thresholds and limits
  (``DETECTION_MIN_CONFIDENCE``, ``--min-confidence``, ...), the proposals kept, the veto's
  threshold, the batch, the precision.
- ``TRAINING_SETTINGS`` do nothing in an inference model (the optimizer, the sampling, the
  schedule, the run's NAME); they may be given, e.g. to go on training with another rate.

Checkpoints without a description (written before it was stored, or Matterport's) keep working
with explicit options: the config then comes from the options alone (preset ``paper`` and model
``ftmtl`` unless given), as before, and a log line says so.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ftmtl.model import FTMTLConfig, FTMTLNet, image_size_overrides
from ftmtl.presets import MODELS, PRESETS, check_override, sized_config
from mrcnn.checkpoint import find_last_checkpoint
from mrcnn.config import Config, ConfigError
from mrcnn.model import MaskRCNN
from mrcnn.run_config import ATTRIBUTE, RunConfigError, read_run_config

logger = logging.getLogger(__name__)

LAST = "last"
# What the options mean for a checkpoint without a description (the CLI's defaults).
DEFAULT_PRESET, DEFAULT_MODEL = "paper", "ftmtl"
# The intensity window of checkpoints written before INTENSITY_WINDOW existed (their run
# config lacks it, or they have none): the stored value over 2**BitsStored - 1.
LEGACY_INTENSITY_WINDOW = "full_range"
# Inference runs one image at a time (options may change it).
INFERENCE_BATCH = {"IMAGES_PER_GPU": 1, "GPU_COUNT": 1}

ARCHITECTURE_SETTINGS = frozenset({
    # the layers and their shapes
    "BACKBONE", "TINY_BACKBONE_FILTERS", "COMPUTE_BACKBONE_SHAPE", "FEATURE_LAYOUT",
    "HEAD_LAYOUT", "FPN_CLASSIF_FC_LAYERS_SIZE", "TOP_DOWN_PYRAMID_SIZE", "NUM_CLASSES",
    "POOL_SIZE", "MASK_POOL_SIZE", "MASK_SHAPE", "MASK_HEAD_CHANNELS", "CLASS_SPECIFIC_BOXES",
    "NORM", "TRAIN_BN", "TRANSFER_BRANCH",
    # the anchors the RPN's outputs refer to
    "RPN_ANCHOR_SCALES", "RPN_ANCHOR_RATIOS", "RPN_ANCHOR_STRIDE",
    # the images the weights learnt to read: geometry, scale, normalisation
    "IMAGE_RESIZE_MODE", "IMAGE_MIN_DIM", "IMAGE_MAX_DIM", "IMAGE_MIN_SCALE",
    "IMAGE_CHANNEL_COUNT", "MEAN_PIXEL", "PREPARED_IMAGE_SIZE", "INTENSITY_WINDOW",
    # what the outputs mean: delta scaling, class ids
    "RPN_BBOX_STD_DEV", "BBOX_STD_DEV", "BENIGN_CLASS_ID", "MALIGNANT_CLASS_ID",
})

INFERENCE_SETTINGS = frozenset({
    "DETECTION_MIN_CONFIDENCE", "DETECTION_MAX_INSTANCES", "DETECTION_NMS_THRESHOLD",
    "DETECTION_SCORE", "POST_NMS_ROIS_INFERENCE", "PRE_NMS_LIMIT", "RPN_NMS_THRESHOLD",
    "VETO_MIN_CONFIDENCE", "PREFILTER_MAX_ROIS", "PREFILTER_NMS_THRESHOLD", "IMAGES_PER_GPU",
    "GPU_COUNT", "MIXED_PRECISION",
})

TRAINING_SETTINGS = frozenset({
    "NAME", "STEPS_PER_EPOCH", "VALIDATION_STEPS", "RPN_TRAIN_ANCHORS_PER_IMAGE",
    "POST_NMS_ROIS_TRAINING", "ADD_GT_TO_PROPOSALS", "USE_MINI_MASK", "MINI_MASK_SHAPE",
    "CROP_INSTANCE_SHARE", "TRAIN_ROIS_PER_IMAGE", "ROI_POSITIVE_RATIO", "MAX_GT_INSTANCES",
    "OPTIMIZER", "LEARNING_RATE", "LEARNING_MOMENTUM", "WEIGHT_DECAY", "LR_WARMUP_STEPS",
    "LR_DECAY", "LOSS_WEIGHTS", "USE_RPN_ROIS", "GRADIENT_CLIP_NORM", "KEEP_CHECKPOINTS",
    "BEST_CHECKPOINT_METRIC",
    "HEAD_INIT_STD", "DATA_WORKERS", "TRANSFER_STOP_GRADIENT", "MASS_FREE_SHARE",
    "SAMPLER_WEIGHTS", "SCRATCH_EPOCHS",
})

# The model classes load_model_from_checkpoint builds, by the name checkpoints record (an
# allow-list: a file never names code to import).
NETWORKS: dict[str, type[MaskRCNN]] = {
    "ftmtl.model.FTMTLNet": FTMTLNet,
    "mrcnn.model.MaskRCNN": MaskRCNN,
}


class CheckpointMismatchError(ValueError):
    """An option contradicts the checkpoint's architecture; the message names the option, the
    checkpoint's value and the given one."""


@dataclass(frozen=True)
class CheckpointRun:
    """A checkpoint's description of its run, checked (``read_checkpoint_run``)."""

    path: Path
    network: str
    project_version: str
    class_names: list[str] | None
    preset: str | None
    model: str | None  # "ftmtl" or "maskrcnn" (FTMTLNet with or without the transfer)
    overrides: dict[str, Any]
    image_size: int | None
    config: dict[str, Any]

    def summary(self) -> str:
        parts = [f"preset {self.preset}" if self.preset else "a custom config",
                 f"model {self.model or self.network}"]
        if self.image_size:
            parts.append(f"images prepared at {self.image_size} px")
        if self.class_names:
            parts.append(f"classes {', '.join(self.class_names)}")
        parts.append(f"written by ftmtl {self.project_version}")
        return ", ".join(parts)


def read_checkpoint_run(path: str | os.PathLike) -> CheckpointRun | None:
    """The run a checkpoint describes, or None for a checkpoint without a description. Raises
    RunConfigError naming the file and the field when the description is malformed."""
    document = read_run_config(path)
    if document is None:
        return None

    def field(name: str, kinds: tuple[type, ...], what: str) -> Any:
        value = document.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            raise RunConfigError(f"{path}: attribute '{ATTRIBUTE}', field '{name}': must be "
                                 f"{what} or null, got {value!r}")
        return value

    model = field("model", (str,), f"one of {MODELS}")
    if model is not None and model not in MODELS:
        raise RunConfigError(f"{path}: attribute '{ATTRIBUTE}', field 'model': must be one of "
                             f"{MODELS} or null, got {model!r}")
    image_size = field("image_size", (int,), "a positive integer")
    if image_size is not None and image_size < 1:
        raise RunConfigError(f"{path}: attribute '{ATTRIBUTE}', field 'image_size': must be a "
                             f"positive integer or null, got {image_size!r}")
    network = document["network"]
    if model is None and network == "ftmtl.model.FTMTLNet":
        model = MODELS[0] if document["config"].get("TRANSFER_BRANCH", True) else MODELS[1]
    return CheckpointRun(
        path=Path(path), network=network, project_version=document["project_version"],
        class_names=document["class_names"], preset=field("preset", (str,), "a preset name"),
        model=model, overrides=dict(field("overrides", (dict,), "an object") or {}),
        image_size=image_size, config=document["config"])


# ------------------------------------------------------------------------------ the config
def config_from_checkpoint(path: str | os.PathLike, mode: str = "inference", *,
                           preset: str | None = None, model: str | None = None,
                           image_size: int | None = None, **overrides: Any) -> Config:
    """The config ``path`` was trained with, for a ``mode`` ("inference": one image at a time,
    or "training") model, with the options applied: ``preset``, ``model`` and ``image_size``
    must agree with the checkpoint, as must ``overrides`` (upper-case attribute names) of
    ``ARCHITECTURE_SETTINGS``; other overrides apply. A checkpoint without a description gets
    the config of the options alone (``make_config``; preset paper, model ftmtl by default).
    Raises CheckpointMismatchError for a contradiction, RunConfigError for a malformed
    description."""
    return _config(path, read_checkpoint_run(path), mode, preset, model, image_size, overrides)


def load_model_from_checkpoint(path: str | os.PathLike, mode: str = "inference",
                               model_dir: str | os.PathLike | None = None,
                               **options: Any) -> MaskRCNN:
    """The model ``path`` belongs to, built from its description (``config_from_checkpoint``
    with ``options``) and its weights loaded; ``class_names`` is set from the description.
    ``model_dir``: where a training model would start new runs (default: the file's folder).
    A checkpoint without a description builds FT-MTL-Net from the options."""
    run = read_checkpoint_run(path)
    config = _config(path, run, mode, options.pop("preset", None), options.pop("model", None),
                     options.pop("image_size", None), options)
    network = FTMTLNet if run is None else NETWORKS.get(run.network)
    if network is None:
        raise RunConfigError(f"{path}: its network {run.network!r} is not one this function "
                             f"builds ({', '.join(sorted(NETWORKS))}); build your class with "
                             f"config_from_checkpoint(path)")
    net = network(mode, config, model_dir if model_dir is not None else Path(path).parent)
    net.load_weights(path)
    net.class_names = None if run is None else run.class_names
    return net


def _config(path, run: CheckpointRun | None, mode: str, preset: str | None, model: str | None,
            image_size: int | None, overrides: dict[str, Any]) -> Config:
    if mode not in ("training", "inference"):
        raise ValueError(f"mode must be 'training' or 'inference', got {mode!r}")
    batch = INFERENCE_BATCH if mode == "inference" else {}
    if run is None:
        return _config_from_options(path, preset, model, image_size, {**batch, **overrides})
    logger.info("config from %s: %s", path, run.summary())
    values = _stored_values(run)
    applied = _checked_options(run, _build(run, values), preset, model, image_size, overrides)
    for name, value in applied.items():
        if name in run.config and not _same_value(value, run.config[name]):
            logger.info("%s=%r (the checkpoint's run had %r)", name, value, run.config[name])
    return _build(run, {**values, **batch, **applied})


def _config_from_options(path, preset: str | None, model: str | None, image_size: int | None,
                         overrides: dict[str, Any]) -> Config:
    given = preset is not None or model is not None or image_size is not None
    logger.log(logging.INFO if given else logging.WARNING,
               "%s has no stored run config (written before checkpoints described their run, "
               "or not by ftmtl): the config comes from the options: preset %s, model %s, "
               "image size %s, overrides %s", path, preset or f"{DEFAULT_PRESET} (default)",
               model or f"{DEFAULT_MODEL} (default)",
               image_size or "the preset's", overrides or "none")
    return sized_config(preset or DEFAULT_PRESET, model or DEFAULT_MODEL, image_size,
                        {"INTENSITY_WINDOW": LEGACY_INTENSITY_WINDOW, **overrides})[0]


def _config_base(run: CheckpointRun) -> type[Config]:
    """FTMTLConfig for FT-MTL-Net (and configs with its settings), mrcnn's Config otherwise."""
    if run.network == "ftmtl.model.FTMTLNet" or "TRANSFER_BRANCH" in run.config:
        return FTMTLConfig
    return Config


def _stored_values(run: CheckpointRun) -> dict[str, Any]:
    """The stored attributes a config class takes (derived ones, such as BATCH_SIZE and
    IMAGE_SHAPE, are computed again), each checked for its kind; JSON lists back to tuples
    where the attribute is a tuple."""
    base = _config_base(run)
    values = {}
    for name, value in run.config.items():
        if not hasattr(base, name):
            continue
        try:
            check_override(name, value)
        except ConfigError as err:
            raise RunConfigError(f"{run.path}: attribute '{ATTRIBUTE}', field 'config': "
                                 f"{err}") from err
        default = getattr(base, name)
        values[name] = tuple(value) if isinstance(default, tuple) and isinstance(
            value, list) else value
    if hasattr(base, "INTENSITY_WINDOW") and "INTENSITY_WINDOW" not in run.config:
        values["INTENSITY_WINDOW"] = LEGACY_INTENSITY_WINDOW
    return values


def _build(run: CheckpointRun, values: dict[str, Any]) -> Config:
    """A config class with ``values`` on the run's base, instantiated (so validated), which
    keeps the run's provenance for the checkpoints it writes in turn."""
    base = _config_base(run)
    name = "".join(part.capitalize() for part in str(values.get("NAME") or "checkpoint")
                   .replace("-", "_").split("_"))
    config_class = type(f"{name}Config", (base,), dict(values))
    config_class.provenance = {"preset": run.preset, "model": run.model,
                               "overrides": run.overrides, "image_size": run.image_size}
    try:
        return config_class()
    except ConfigError as err:
        raise RunConfigError(f"{run.path}: the config stored in attribute '{ATTRIBUTE}' (or an "
                             f"option given with it) is not valid: {err}") from err


def _checked_options(run: CheckpointRun, stored: Config, preset: str | None, model: str | None,
                     image_size: int | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides to apply; raises CheckpointMismatchError when an option contradicts the
    checkpoint's architecture."""
    if preset is not None and preset != run.preset:
        raise CheckpointMismatchError(
            f"--preset: {run.path} was trained with preset {run.preset!r}; the option gives "
            f"{preset!r} (leave --preset out to use the checkpoint's)")
    if model is not None and model != run.model:
        raise CheckpointMismatchError(
            f"--model: {run.path} is a checkpoint of model {run.model!r}; the option gives "
            f"{model!r} (leave --model out to use the checkpoint's)")
    if image_size is not None:
        for name, value in image_size_overrides(stored, image_size).items():
            _check_agrees(f"--image-size {image_size}", name, value, stored, run.path)
    applied = {}
    for name, value in overrides.items():
        check_override(name, value)
        if name in ARCHITECTURE_SETTINGS:
            _check_agrees(f"--set {name}", name, value, stored, run.path)
        else:
            applied[name] = value
    return applied


def _check_agrees(option: str, name: str, given: Any, stored: Config, path: Path) -> None:
    value = getattr(stored, name)
    if not _same_value(given, value):
        shown = value.tolist() if isinstance(value, np.ndarray) else value
        raise CheckpointMismatchError(
            f"{option}: {path} was trained with {name}={shown!r}; the option gives {given!r}. "
            f"{name} is part of the network's architecture, which must match the weights: "
            f"leave the option out to use the checkpoint's value")


def _same_value(given: Any, stored: Any) -> bool:
    """Equal as config values: numbers and number sequences within float32 rounding (a tuple
    equals its list; one number equals a sequence of that number, as MEAN_PIXEL broadcasts),
    anything else exactly."""
    if isinstance(given, str | bool | type(None)) or isinstance(stored, str | bool | type(None)):
        return type(given) is type(stored) and given == stored
    try:
        a = np.asarray(given, dtype=np.float64)
        b = np.asarray(stored, dtype=np.float64)
    except (TypeError, ValueError):
        return bool(given == stored)
    if a.shape != b.shape and a.ndim != 0:
        return False
    return bool(np.allclose(a, b, rtol=1e-6, atol=0.0))


# ----------------------------------------------------------------------- finding the file
_RUN_STAMP = re.compile(r"(\d{8}T\d{6})(?:_(\d+))?$")


def resolve_checkpoint(weights: str | os.PathLike, model_dir: str | os.PathLike,
                       model: str | None = None, preset: str | None = None,
                       name: str | None = None) -> Path:
    """The checkpoint file ``weights`` names: a path, or ``last``: the newest checkpoint under
    ``model_dir`` of the run NAME ``name`` if given, else of ``model`` (default ftmtl) and
    ``preset`` (default: any preset, the newest run wins)."""
    if str(weights) != LAST:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights {weights}: {path} is not a file")
        return path
    if name or preset:
        return find_last_checkpoint(model_dir, name or f"{model or DEFAULT_MODEL}_{preset}")
    model = model or DEFAULT_MODEL
    found = []
    for candidate in PRESETS:
        try:
            found.append(find_last_checkpoint(model_dir, f"{model}_{candidate}"))
        except FileNotFoundError:
            continue
    if not found:
        raise FileNotFoundError(
            f"no checkpoint of model {model!r} under {model_dir} (looked for "
            f"{model}_<preset><timestamp>/mask_rcnn_{model}_<preset>_NNNN.h5, preset one of "
            f"{', '.join(PRESETS)})")
    return max(found, key=lambda p: _run_order(p.parent.name))


def _run_order(folder: str) -> tuple[str, int]:
    """A run folder's start time and uniqueness suffix (``<name>20250101T120000_2``)."""
    match = _RUN_STAMP.search(folder)
    return (match[1], int(match[2] or 0)) if match else ("", 0)
