"""Training schedules as data, and a runner that trains stage by stage.

Two recipes:

- ``paper_schedule``, fine-tuning from pretrained weights (the paper's Table 1), after the
  ImageNet backbone (step 1) and the normal(0, 0.05) initialisation of every other layer
  (step 2, Config.HEAD_INIT_STD):

  - ``rpn`` (step 3): backbone and RPN trained end to end on the RPN losses only;
  - ``heads`` (step 4): backbone and RPN frozen, the heads trained with the unified loss
    L_uni = l1 L_cls + l2 L_box + l3 L_mask (eq. 10); the RPN losses are logged but weigh 0;
  - ``all`` (step 5): everything trained, with L_uni and the RPN losses. The paper leaves the
    RPN out of this stage; but a backbone trained without the RPN losses moves the features
    the RPN was fitted on, and its proposals drift (docs/training.md).

- ``scratch_schedule``, training from random weights: one joint stage, every layer and every
  loss, a linear warm-up and a cosine decay (He, Girshick & Dollar 2018 train from scratch
  this way, with GroupNorm: Config.NORM = "group").

Every value is a default: build your own list of ``Stage`` to change them. The batch size and
momentum come from the config (IMAGES_PER_GPU, LEARNING_MOMENTUM).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras

from mrcnn.backbone import backbone_layer_regex
from mrcnn.lr_schedule import DECAYS as LR_DECAYS
from mrcnn.model import LOSS_NAMES

logger = logging.getLogger(__name__)

PAPER_EPOCHS_PER_STAGE = 10
PAPER_LEARNING_RATE = 0.005
RPN_LOSSES = ("rpn_class_loss", "rpn_bbox_loss")
HEAD_LOSSES = ("mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss")
RPN_LAYERS = r"rpn_.*"
HEAD_LAYERS = r"mrcnn_.*"  # FT-MTL-Net's own layers are named mrcnn_ftmtl_* too


@dataclass
class Stage:
    """One training stage: which layers train (a regex matched against whole layer names, or
    a Matterport preset such as "heads"), the weight of each loss (a loss left out weighs 0;
    None: the config's LOSS_WEIGHTS), for how many epochs, at which learning rate, with which
    warm-up steps and decay (None: the config's LR_WARMUP_STEPS and LR_DECAY)."""

    name: str
    layers: str
    loss_weights: dict[str, float] | None = None
    epochs: int = PAPER_EPOCHS_PER_STAGE
    learning_rate: float = PAPER_LEARNING_RATE
    warmup_steps: int | None = None
    decay: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.loss_weights or {}) - set(LOSS_NAMES)
        if unknown:
            raise ValueError(f"Stage {self.name!r}: loss_weights has unknown loss names "
                             f"{sorted(unknown)}; known: {list(LOSS_NAMES)}")
        if int(self.epochs) < 0:
            raise ValueError(f"Stage {self.name!r}: epochs must be >= 0, got {self.epochs}")
        if not self.learning_rate > 0:
            raise ValueError(f"Stage {self.name!r}: learning_rate must be > 0, got "
                             f"{self.learning_rate}")
        if self.warmup_steps is not None and int(self.warmup_steps) < 0:
            raise ValueError(f"Stage {self.name!r}: warmup_steps must be >= 0, got "
                             f"{self.warmup_steps}")
        if self.decay is not None and self.decay not in LR_DECAYS:
            raise ValueError(f"Stage {self.name!r}: decay must be one of {LR_DECAYS}, got "
                             f"{self.decay!r}")


def _either(*patterns: str) -> str:
    return "|".join(f"({pattern})" for pattern in patterns)


def _weights(config, trained: tuple[str, ...]) -> dict[str, float]:
    """The config's LOSS_WEIGHTS for the trained losses, 0 for the others."""
    return {name: float(config.LOSS_WEIGHTS.get(name, 1.0)) if name in trained else 0.0
            for name in LOSS_NAMES}


def paper_schedule(config, epochs: int = PAPER_EPOCHS_PER_STAGE,
                   learning_rate: float = PAPER_LEARNING_RATE) -> list[Stage]:
    """The three stages of Table 1 for the config's backbone (its layer names)."""
    backbone = backbone_layer_regex(config)
    return [
        Stage("rpn", _either(backbone, RPN_LAYERS), _weights(config, RPN_LOSSES),
              epochs, learning_rate),
        Stage("heads", HEAD_LAYERS, _weights(config, HEAD_LOSSES), epochs, learning_rate),
        Stage("all", _either(backbone, RPN_LAYERS, HEAD_LAYERS), _weights(config, LOSS_NAMES),
              epochs, learning_rate),
    ]


# Warm-up of the from-scratch schedule, in steps (capped at a tenth of the stage).
SCRATCH_WARMUP_STEPS = 200


def scratch_schedule(config, epochs: int, learning_rate: float | None = None,
                     warmup_steps: int | None = None, decay: str = "cosine") -> list[Stage]:
    """One joint stage for training from random weights: every layer, every loss (the
    config's LOSS_WEIGHTS), a linear warm-up (default: SCRATCH_WARMUP_STEPS, at most a tenth
    of the stage's steps) and a cosine decay. ``learning_rate`` defaults to the config's."""
    steps = int(epochs) * int(config.STEPS_PER_EPOCH)
    if warmup_steps is None:
        warmup_steps = min(SCRATCH_WARMUP_STEPS, steps // 10)
    rate = config.LEARNING_RATE if learning_rate is None else learning_rate
    return [Stage("joint", ".*", None, epochs, rate, int(warmup_steps), decay)]


def _loss_weights(model, stage: Stage) -> dict[str, float]:
    if stage.loss_weights is None:
        return dict(model.config.LOSS_WEIGHTS)
    return {name: float(stage.loss_weights.get(name, 0.0)) for name in LOSS_NAMES}


def run_schedule(model, train_dataset, val_dataset, stages: list[Stage], augmentation=None,
                 sampler=None, **train_kwargs) -> list[keras.callbacks.History]:
    """Train ``model`` (a MaskRCNN in training mode) through the stages in order.

    ``MaskRCNN.train``'s epochs are absolute, so stage i ends at the sum of the epochs of
    stages 0..i. A model resumed from a checkpoint (``model.epoch`` > 0) skips the stages it
    has finished and completes the one it stopped in. ``train_kwargs`` go to every
    ``model.train`` call (e.g. ``custom_callbacks``, ``verbose``). Returns the histories of the
    stages that ran.
    """
    histories = []
    end = 0
    for stage in stages:
        end += int(stage.epochs)
        if model.epoch >= end:
            logger.info("stage %s: already trained to epoch %d, skipped", stage.name, end)
            continue
        logger.info("stage %s: epochs %d to %d, lr %g, layers %s", stage.name, model.epoch,
                    end, stage.learning_rate, stage.layers)
        histories.append(model.train(train_dataset, val_dataset,
                                     learning_rate=stage.learning_rate, epochs=end,
                                     layers=stage.layers, augmentation=augmentation,
                                     sampler=sampler, loss_weights=_loss_weights(model, stage),
                                     lr_warmup_steps=stage.warmup_steps, lr_decay=stage.decay,
                                     **train_kwargs))
    return histories


def recipe_epochs(config, pretrained: bool) -> int:
    """Default epochs of ``schedule_for``: the paper's 10 per stage from pretrained weights,
    the config's SCRATCH_EPOCHS for the joint stage from scratch."""
    if pretrained:
        return PAPER_EPOCHS_PER_STAGE
    return int(getattr(config, "SCRATCH_EPOCHS", 3 * PAPER_EPOCHS_PER_STAGE))


def schedule_for(config, pretrained: bool, epochs: int,
                 learning_rate: float | None = None) -> list[Stage]:
    """The recipe for a run: the paper's three stages (``epochs`` each) when the backbone
    starts from pretrained weights, else the joint from-scratch stage of ``epochs``."""
    rate = config.LEARNING_RATE if learning_rate is None else learning_rate
    if pretrained:
        return paper_schedule(config, epochs, rate)
    return scratch_schedule(config, epochs, rate)
