"""Feature extractors: ResNet-50/101 with Matterport's layer names, the FPN, a tiny test net.

Layer names are kept identical to Matterport's Mask R-CNN so that its ``.h5`` weight files load by
name (see ``mrcnn.weights``). ``build_backbone`` turns a Config into the feature maps the RPN and
the heads run on, for both layouts: the paper's single stride-16 map ("c4") and Matterport's
pyramid ("fpn").

Normalisation follows Config.NORM (``mrcnn.norm``): frozen BatchNorm (Matterport's
TRAIN_BN=False, for pretrained weights), trained BatchNorm, or GroupNorm (training from
scratch). Code that toggles ``trainable`` per layer (``train(layers=...)``) must leave
``BatchNorm`` layers frozen under ``frozen_batch``. The FPN gets GroupNorm after each of its
convolutions under ``group`` (as detectron2's GN recipes); with BatchNorm it stays norm-free, as
Matterport's, so weight files map one to one.
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Sequence
from typing import Any

from keras import layers

from mrcnn.norm import BN_EPSILON, BatchNorm, config_norm, norm_layer, resolve_norm

__all__ = ["BN_EPSILON", "BatchNorm", "LAYER_PRESETS", "backbone_layer_regex", "build_backbone",
           "build_fpn", "resnet_graph", "tiny_graph"]

RESNET_STAGE_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
# Bottleneck width per stage; each block outputs 4x this many channels.
_STAGE_FILTERS = {2: 64, 3: 128, 4: 256, 5: 512}

_HEAD_PATTERNS = ("mrcnn_.*", "rpn_.*", "fpn_.*")


def _norm(x: Any, name: str, norm: str) -> Any:
    """``norm`` layer named ``name`` applied to ``x`` (its channel count picks the groups)."""
    return norm_layer(norm, name, int(x.shape[-1]))(x)


# --------------------------------------------------------------------------------------- ResNet
def block_letter(index: int) -> str:
    """Block 0 -> 'a', 1 -> 'b', ... (ResNet-101's stage 4 runs to 'w')."""
    return string.ascii_lowercase[index]


def _bottleneck(
    x: Any, stage: int, block: str, strides: int, shortcut_conv: bool, norm: str
) -> Any:
    """1x1 -> 3x3 -> 1x1 bottleneck with a residual; a conv block (shortcut_conv) projects the
    shortcut with a strided 1x1 conv, an identity block adds its input unchanged."""
    width = _STAGE_FILTERS[stage]
    conv = f"res{stage}{block}_branch"
    bn = f"bn{stage}{block}_branch"

    y = layers.Conv2D(width, 1, strides=strides, use_bias=True, name=conv + "2a")(x)
    y = _norm(y, bn + "2a", norm)
    y = layers.Activation("relu", name=conv + "2a_relu")(y)
    y = layers.Conv2D(width, 3, padding="same", use_bias=True, name=conv + "2b")(y)
    y = _norm(y, bn + "2b", norm)
    y = layers.Activation("relu", name=conv + "2b_relu")(y)
    y = layers.Conv2D(4 * width, 1, use_bias=True, name=conv + "2c")(y)
    y = _norm(y, bn + "2c", norm)

    if shortcut_conv:
        shortcut = layers.Conv2D(4 * width, 1, strides=strides, use_bias=True, name=conv + "1")(x)
        shortcut = _norm(shortcut, bn + "1", norm)
    else:
        shortcut = x
    y = layers.Add(name=f"res{stage}{block}_add")([y, shortcut])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(y)


def _resnet_stage(x: Any, stage: int, n_blocks: int, norm: str) -> Any:
    strides = 1 if stage == 2 else 2
    x = _bottleneck(x, stage, "a", strides, shortcut_conv=True, norm=norm)
    for index in range(1, n_blocks):
        x = _bottleneck(x, stage, block_letter(index), 1, shortcut_conv=False, norm=norm)
    return x


def resnet_graph(
    input_image: Any,
    architecture: str = "resnet50",
    stage5: bool = True,
    train_bn: bool | None = False,
    norm: str | None = None,
) -> list[Any]:
    """ResNet-50/101 feature maps [C1, C2, C3, C4, C5] (C5 is None without stage 5).

    Strides: C1 4 (Matterport's C1 is taken after the stem's max pool), C2 4, C3 8, C4 16, C5 32.
    The number of input channels follows ``input_image``. ``norm`` (see ``mrcnn.norm``; None:
    from ``train_bn`` as Matterport's TRAIN_BN).
    """
    norm = resolve_norm(norm, train_bn)
    if architecture not in RESNET_STAGE_BLOCKS:
        raise ValueError(
            f"architecture must be one of {sorted(RESNET_STAGE_BLOCKS)}, got {architecture!r}"
        )
    blocks = RESNET_STAGE_BLOCKS[architecture]

    # Stem. The pooling is ZeroPadding2D(1) + 'valid', as in keras.applications.ResNet50, so that
    # its ImageNet weights give identical features. Matterport pooled with padding='same', which
    # on even sizes pads only at the bottom/right and shifts the grid by one pixel.
    x = layers.ZeroPadding2D(3, name="conv1_pad")(input_image)
    x = layers.Conv2D(64, 7, strides=2, use_bias=True, name="conv1")(x)
    x = _norm(x, "bn_conv1", norm)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    C1 = x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)

    C2 = x = _resnet_stage(x, 2, blocks[0], norm)
    C3 = x = _resnet_stage(x, 3, blocks[1], norm)
    C4 = x = _resnet_stage(x, 4, blocks[2], norm)
    C5 = _resnet_stage(x, 5, blocks[3], norm) if stage5 else None
    return [C1, C2, C3, C4, C5]


# ----------------------------------------------------------------------------------------- tiny
def tiny_graph(
    input_image: Any,
    filters: Sequence[int] = (16, 32, 64, 64, 64),
    stage5: bool = True,
    train_bn: bool | None = False,
    norm: str | None = None,
) -> list[Any]:
    """A small conv net for fast tests: [C1..C5] at strides 2, 4, 8, 16, 32 (C5 None without
    stage 5). Each stage is a strided 3x3 conv and a 3x3 conv, each with a norm layer (``norm``,
    as in ``resnet_graph``) and ReLU; layers are named ``tiny_c{stage}_...``."""
    norm = resolve_norm(norm, train_bn)
    if len(filters) != 5:
        raise ValueError(f"tiny backbone needs 5 channel widths (TINY_BACKBONE_FILTERS), got "
                         f"{tuple(filters)}")
    maps: list[Any] = []
    # Trained from scratch: bring mean-subtracted pixels (about +-128) to about +-1 first.
    x = layers.Rescaling(1.0 / 128.0, name="tiny_rescale")(input_image)
    for stage, width in enumerate(filters, start=1):
        if stage == 5 and not stage5:
            maps.append(None)
            break
        for index, strides in ((1, 2), (2, 1)):
            prefix = f"tiny_c{stage}"
            x = layers.Conv2D(
                width, 3, strides=strides, padding="same", name=f"{prefix}_conv{index}"
            )(x)
            x = _norm(x, f"{prefix}_bn{index}", norm)
            x = layers.Activation("relu", name=f"{prefix}_relu{index}")(x)
        maps.append(x)
    return maps


# ------------------------------------------------------------------------------------------ FPN
def build_fpn(C2: Any, C3: Any, C4: Any, C5: Any, pyramid_size: int,
              norm: str | None = None) -> list[Any]:
    """Feature pyramid [P2, P3, P4, P5, P6] (strides 4..64), Matterport's layer names: a top-down
    path of 1x1 lateral convs and 2x nearest upsampling, then a 3x3 conv on each level; P6 is P5
    subsampled by 2. ``norm="group"`` adds GroupNorm after every conv (``<conv name>_gn``)."""

    def conv(x: Any, kernel: int, name: str) -> Any:
        x = layers.Conv2D(pyramid_size, kernel, padding="same", name=name)(x)
        return _norm(x, f"{name}_gn", "group") if norm == "group" else x

    P5 = conv(C5, 1, "fpn_c5p5")
    P4 = layers.Add(name="fpn_p4add")([
        layers.UpSampling2D(2, name="fpn_p5upsampled")(P5), conv(C4, 1, "fpn_c4p4")])
    P3 = layers.Add(name="fpn_p3add")([
        layers.UpSampling2D(2, name="fpn_p4upsampled")(P4), conv(C3, 1, "fpn_c3p3")])
    P2 = layers.Add(name="fpn_p2add")([
        layers.UpSampling2D(2, name="fpn_p3upsampled")(P3), conv(C2, 1, "fpn_c2p2")])
    P2 = conv(P2, 3, "fpn_p2")
    P3 = conv(P3, 3, "fpn_p3")
    P4 = conv(P4, 3, "fpn_p4")
    P5 = conv(P5, 3, "fpn_p5")
    P6 = layers.MaxPooling2D(1, strides=2, name="fpn_p6")(P5)
    return [P2, P3, P4, P5, P6]


# ------------------------------------------------------------------------------------- backbone
def build_backbone(input_image: Any, config: Any) -> tuple[list[Any], list[Any]]:
    """(rpn_feature_maps, mrcnn_feature_maps) for ``config``.

    FEATURE_LAYOUT "c4": ([C4], [C4]) - one stride-16 map (1024 channels for ResNet; ResNet is
    built without stage 5). "fpn": ([P2..P6], [P2..P5]) - P6 feeds only the RPN.

    A callable BACKBONE is called as ``config.BACKBONE(input_image, config)`` and returns one map
    per entry of ``config.BACKBONE_STRIDES``. The RPN gets all of them; the heads get the same
    maps, except in the "fpn" layout where the last (coarsest, P6's role) is RPN-only.
    """
    if callable(config.BACKBONE):
        return _callable_backbone(input_image, config)
    c4_only = config.FEATURE_LAYOUT == "c4"
    norm = config_norm(config)
    if config.BACKBONE == "tiny":
        maps = tiny_graph(input_image, config.TINY_BACKBONE_FILTERS, stage5=not c4_only,
                          norm=norm)
    else:
        maps = resnet_graph(input_image, config.BACKBONE, stage5=not c4_only, norm=norm)
    _, C2, C3, C4, C5 = maps
    if c4_only:
        return [C4], [C4]
    pyramid = build_fpn(C2, C3, C4, C5, config.TOP_DOWN_PYRAMID_SIZE, norm=norm)
    return pyramid, pyramid[:4]


def _callable_backbone(input_image: Any, config: Any) -> tuple[list[Any], list[Any]]:
    backbone = config.BACKBONE
    if inspect.ismethod(backbone) and backbone.__self__ is config:
        # A function set as a class attribute of the Config comes back bound to the config;
        # call the plain function, as for a staticmethod or an instance attribute.
        backbone = backbone.__func__
    maps = list(backbone(input_image, config))
    expected = len(config.BACKBONE_STRIDES)
    if len(maps) != expected:
        raise ValueError(
            f"{type(config).__name__}.BACKBONE returned {len(maps)} feature maps, but "
            f"BACKBONE_STRIDES ({list(config.BACKBONE_STRIDES)}; set COMPUTE_BACKBONE_SHAPE) "
            f"needs {expected}"
        )
    if config.FEATURE_LAYOUT == "fpn":
        return maps, maps[:-1]
    return maps, maps


# ------------------------------------------------------------------------- trainable-layer regex
def _stage_patterns(first_stage: int) -> list[str]:
    """Backbone layer patterns of stages first_stage..5 (ResNet and tiny)."""
    patterns = []
    for stage in range(first_stage, 6):
        patterns += [f"res{stage}.*", f"bn{stage}.*"]
    patterns.append(f"tiny_c[{first_stage}-5].*")
    return patterns


def _alternatives(patterns: Sequence[str]) -> str:
    return "|".join(f"({pattern})" for pattern in patterns)


# Matterport's train(layers=...) presets, matched with re.fullmatch against layer names. The tiny
# backbone's tiny_c{n} layers belong to stage n. Stage 1 (conv1, bn_conv1, tiny_c1) is only in
# "all".
LAYER_PRESETS: dict[str, str] = {
    "heads": _alternatives(_HEAD_PATTERNS),
    "3+": _alternatives([*_stage_patterns(3), *_HEAD_PATTERNS]),
    "4+": _alternatives([*_stage_patterns(4), *_HEAD_PATTERNS]),
    "5+": _alternatives([*_stage_patterns(5), *_HEAD_PATTERNS]),
    "all": ".*",
}


def backbone_layer_regex(config: Any) -> str:
    """Regex (for re.fullmatch) of the layers ``build_backbone(.., config)`` creates, the FPN
    included in the "fpn" layout.

    For a callable BACKBONE the layer names are unknown: the regex then matches every layer whose
    name does not start with ``rpn_`` or ``mrcnn_`` (the RPN and the heads).
    """
    if callable(config.BACKBONE):
        return r"(?!rpn_|mrcnn_).*"
    if config.BACKBONE == "tiny":
        patterns = ["tiny_c[1-5].*"]
    else:
        patterns = ["conv1", "bn_conv1", "res[2-5].*", "bn[2-5].*"]
    if config.FEATURE_LAYOUT == "fpn":
        patterns.append("fpn_.*")
    return _alternatives(patterns)
