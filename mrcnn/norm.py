"""Normalisation layers: one switch (Config.NORM) for the backbone, the FPN and the heads.

- ``frozen_batch``: BatchNorm with fixed statistics and affine parameters (Matterport's
  TRAIN_BN=False). Right for ImageNet or COCO weights; from random weights it is an identity
  (mean 0, variance 1), so a network trained from scratch has no normalisation at all.
- ``batch``: BatchNorm that learns and tracks batch statistics (TRAIN_BN=True). Needs batches
  large enough for useful statistics.
- ``group``: GroupNorm (Wu & He 2018), independent of the batch size; with it Mask R-CNN trains
  from random weights (He, Girshick & Dollar, "Rethinking ImageNet Pre-training", 2018).

Config.NORM None keeps Matterport's meaning of TRAIN_BN: False -> ``frozen_batch``, True or None
-> ``batch``. Norm layers keep Matterport's names (``bn2a_branch2a``, ``mrcnn_mask_bn1``), so a
weight file's convolutions load into a GroupNorm model by name; its BatchNorm statistics have no
place there and are reported as skipped.
"""

from __future__ import annotations

from typing import Any

from keras import layers

NORMS = ("batch", "frozen_batch", "group")
# Keras-2's default BN epsilon, which Matterport's networks (and their COCO weights) were trained
# with. keras.applications' ResNets use 1.001e-5; mrcnn.weights.convert_keras_resnet rescales
# gamma so that their weights give exactly the same outputs under this epsilon.
BN_EPSILON = 1e-3
GN_EPSILON = 1e-5


class BatchNorm(layers.BatchNormalization):
    """Matterport's class name for batch normalisation.

    Freezing is done through ``trainable=False``: a non-trainable Keras 3 BN always normalises
    with its moving statistics, whatever the ``training`` flag, and its gamma/beta get no
    gradient. (Matterport's ``training=False`` call argument is not enough in Keras 3: a
    functional model passes its own ``training`` flag down to every layer.) The class exists so
    that callers can tell these layers apart (``isinstance(layer, BatchNorm)``).
    """


class GroupNorm(layers.GroupNormalization):
    """GroupNorm under a class of our own, so that callers can tell norm layers apart.

    It computes in float32 whatever the model's mixed-precision policy: its group moments in
    bfloat16 move the losses by several percent (Keras' BatchNorm takes the same care). The
    next layer casts its float32 output back to the policy's dtype."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("dtype", "float32")  # mrcnn.precision.FLOAT32 (it imports config)
        super().__init__(**kwargs)


def resolve_norm(norm: str | None, train_bn: bool | None = False) -> str:
    """The norm kind in force: ``norm`` when given, else Matterport's TRAIN_BN meaning."""
    if norm is None:
        return "frozen_batch" if train_bn is False else "batch"
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS} or None, got {norm!r}")
    return norm


def config_norm(config: Any) -> str:
    """The norm kind a Config asks for (NORM, or TRAIN_BN when NORM is None)."""
    return resolve_norm(getattr(config, "NORM", None), getattr(config, "TRAIN_BN", False))


def group_count(channels: int, max_groups: int = 32) -> int:
    """The largest number of groups <= max_groups that divides ``channels`` (so narrow layers,
    e.g. 16 or 24 channels, still get a valid GroupNorm)."""
    channels, max_groups = int(channels), int(max_groups)
    if channels < 1 or max_groups < 1:
        raise ValueError(f"group_count: channels and max_groups must be >= 1, got {channels}, "
                         f"{max_groups}")
    for groups in range(min(channels, max_groups), 0, -1):
        if channels % groups == 0:
            return groups
    return 1  # unreachable: 1 divides everything


def norm_layer(kind: str, name: str, channels: int, max_groups: int = 32) -> layers.Layer:
    """A norm layer of ``kind`` (see NORMS) for a map of ``channels`` channels."""
    if kind == "group":
        return GroupNorm(groups=group_count(channels, max_groups), epsilon=GN_EPSILON, name=name)
    if kind in ("batch", "frozen_batch"):
        return BatchNorm(epsilon=BN_EPSILON, name=name, trainable=kind == "batch")
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def is_norm_layer(layer: layers.Layer) -> bool:
    return isinstance(layer, (layers.BatchNormalization, layers.GroupNormalization))
