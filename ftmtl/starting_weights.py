"""Where a training run starts: one function reads the weight keywords and loads them.

The command line's ``--weights``, ``run_crossval(weights=)`` and the accuracy benchmark's
``--weights`` all take the same words:

- ``none`` (or None): the initialisers, training from scratch (the ``*_cpu`` presets' default);
- ``imagenet``: Keras' ResNet ImageNet weights for the backbone, downloaded once (internet);
  ``imagenet:PATH``: a local copy of that ``.h5`` (the ResNet presets' default);
- ``coco``: Matterport's ``mask_rcnn_coco.h5`` (downloaded once) without its class-specific
  layers, which do not fit three classes;
- ``last``: the newest checkpoint of this configuration under the model's ``model_dir``;
- a path to an ``.h5`` file, loaded by layer name.

Loading one of our checkpoints continues its run (its folder and epoch count), as in
Matterport, unless ``continue_run=False``: cross-validation starts every fold from the same
file at epoch 0 in the fold's own folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

NONE, IMAGENET, COCO, LAST = "none", "imagenet", "coco", "last"
RESNETS = ("resnet50", "resnet101")


def default_weights(config) -> str:
    """``imagenet`` for ResNet backbones, ``none`` for the others (the tiny one trains from
    scratch)."""
    return IMAGENET if config.BACKBONE in RESNETS else NONE


def uses_pretrained_recipe(weights: str | os.PathLike | None, config) -> bool:
    """Whether a run trains with the paper's staged schedule (pretrained weights) or the
    from-scratch joint stage. ``last`` continues the recipe the preset starts with, so a
    resumed run keeps its schedule."""
    if weights is None or str(weights) == LAST:
        weights = default_weights(config)
    return str(weights) != NONE


def check_weights(weights: str | os.PathLike | None,
                  words: Sequence[str] = (NONE, IMAGENET, COCO, LAST)) -> None:
    """Refuse what ``load_starting_weights`` would refuse only after the data has loaded: a
    word it does not know, an ``imagenet:PATH`` or a file path that does not exist. ``words``:
    the keywords this command takes (evaluate and detect take ``last`` and paths only)."""
    if weights is None:
        return
    text = str(weights)
    if text in words or (IMAGENET in words and text.startswith(IMAGENET + ":")
                         and Path(text.partition(":")[2]).is_file()):
        return
    if Path(text).is_file():
        return
    what = (f"the file {text.partition(':')[2]!r} does not exist"
            if text.startswith(IMAGENET + ":") else f"{text!r} is neither a keyword nor a file")
    choices = [*words, *([IMAGENET + ":PATH"] if IMAGENET in words else []), "a .h5 PATH"]
    raise ValueError(f"--weights: {what}; choose {', '.join(choices)}")


def checkpoint_file(model, weights: str | os.PathLike) -> Path:
    """``last`` (the newest checkpoint of this config under the model's model_dir) or a path
    that must be a file."""
    path = Path(model.find_last()) if str(weights) == LAST else Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights {weights}: {path} is not a file")
    return path


def load_starting_weights(model, weights: str | os.PathLike | None,
                          exclude: Sequence[str] | None = None,
                          continue_run: bool = True) -> None:
    """Initialise ``model`` from ``weights`` (the words above). ``exclude``: layer names left
    as initialised when loading a file. ``continue_run=False`` keeps the model's own new run
    folder at epoch 0 whatever file it loads (``last`` is refused then: it means resuming)."""
    weights = NONE if weights is None else str(weights)
    if weights == NONE:
        logger.info("starting from the initialisers (no pre-trained weights)")
        return
    if weights == IMAGENET or weights.startswith(IMAGENET + ":"):
        loader = getattr(model, "load_imagenet_weights", None)
        if loader is None:
            raise ValueError(f"weights {weights!r}: this model has no load_imagenet_weights(); "
                             f"give a weights file instead")
        report = loader(weights.partition(":")[2] or IMAGENET)
        logger.info("ImageNet backbone: %s", report.summary())
        return
    if weights == LAST and not continue_run:
        raise ValueError("weights 'last' resumes a run; here every run starts afresh (an "
                         "unfinished cross-validation run resumes by itself)")
    if weights == COCO:
        _load_coco(model, continue_run)
        return
    path = checkpoint_file(model, weights)
    logger.info("weights from %s", path)
    _load_file(model, path, list(exclude or []), continue_run)


def _load_coco(model, continue_run: bool) -> None:
    from mrcnn.weights import COCO_CLASS_SPECIFIC_LAYERS, coco_weights_path

    path = coco_weights_path(download=True)
    try:
        _load_file(model, path, list(COCO_CLASS_SPECIFIC_LAYERS), continue_run)
    except ValueError as err:
        raise ValueError(f"{path}: COCO weights do not fit this network ({err}); they are "
                         f"Matterport's FPN layout: use the fpn preset") from err


def _load_file(model, path: str | os.PathLike, exclude: list[str], continue_run: bool) -> None:
    model.load_weights(path, exclude=exclude, continue_run=continue_run)
