"""The paper's training schedule (Table 1) as data, and a runner that trains stage by stage.

Table 1, after the ImageNet backbone (step 1) and the normal(0, 0.05) initialisation of every
other layer (step 2, Config.HEAD_INIT_STD):

- ``rpn`` (step 3): backbone and RPN trained end to end on the RPN losses only;
- ``heads`` (step 4): backbone and RPN frozen, the heads trained with the unified loss
  L_uni = l1 L_cls + l2 L_box + l3 L_mask (eq. 10);
- ``all`` (step 5): backbone and heads trained together with L_uni; the RPN stays frozen.

In the ``heads`` and ``all`` stages the RPN losses are still computed and logged but weigh 0, as
in eq. 10. Every value is a default: build your own list of ``Stage`` to change them. The batch
size and momentum come from the config (IMAGES_PER_GPU, LEARNING_MOMENTUM; 8 and 0.9 in the
presets).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras

from mrcnn.backbone import backbone_layer_regex
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
    None: the config's LOSS_WEIGHTS), for how many epochs, at which learning rate."""

    name: str
    layers: str
    loss_weights: dict[str, float] | None = None
    epochs: int = PAPER_EPOCHS_PER_STAGE
    learning_rate: float = PAPER_LEARNING_RATE

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
        Stage("all", _either(backbone, HEAD_LAYERS), _weights(config, HEAD_LOSSES),
              epochs, learning_rate),
    ]


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
                                     **train_kwargs))
    return histories
