"""The per-ROI heads: ROI features, box/class head and mask head, in two layouts.

``paper``: one 7x7 ROIAlign shared by the heads; the class/box head global-average-pools it
(1024-d on ResNet C4) and applies one FC layer each; the mask head upsamples it with two
transposed convolutions to 28x28x256 (theta4) and predicts one sigmoid map per class.
``matterport``: 7x7 ROIs through two 1024-d "FC" layers (as convolutions) for class and box; a
separate 14x14 ROIAlign for the mask head with four 3x3 convolutions and one transposed
convolution to 28x28x256.

Per-ROI layers act on ``[B*N, ...]``: ROIs are folded into the batch axis (Keras 3's
``TimeDistributed`` unrolls a Python loop over ROIs, far too slow for hundreds of ROIs).
Layer names are Matterport's where a Matterport layer exists, so its weight files load.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers, ops

from mrcnn.norm import config_norm, norm_layer
from mrcnn.precision import FLOAT32
from mrcnn.roi_align import PyramidROIAlign, ROIAlign


@dataclass
class HeadOutputs:
    """Symbolic outputs of the heads for N ROIs per image."""

    class_feature: keras.KerasTensor  # [B, N, F] feature the classifier and box regressor see
    bbox_deltas: keras.KerasTensor  # [B, N, K, 4], K = NUM_CLASSES or 1 (class-agnostic)
    mask_feature: keras.KerasTensor | None = None  # [B, N, 28, 28, 256] (theta4)
    masks: keras.KerasTensor | None = None  # [B, N, 28, 28, NUM_CLASSES] sigmoid
    class_logits: keras.KerasTensor | None = None  # [B, N, NUM_CLASSES]
    class_probs: keras.KerasTensor | None = None


class WholeInputConv2D(layers.Conv2D):
    """A Conv2D whose kernel covers its whole input: Matterport's "FC" layers of the box head
    (``mrcnn_class_conv1``, 7x7 valid on 7x7 ROIs, and ``mrcnn_class_conv2``, 1x1 on 1x1).

    Such a convolution is one matrix product, and it runs as one: on a CPU oneDNN's convolution
    of this shape takes 2.5x as long as the matmul (forward) and 1.7x (forward and backward).
    The weights are a Conv2D's, under the same names, so weight files load as before."""

    def convolution_op(self, inputs, kernel):
        height, width, channels, filters = kernel.shape
        covers_input = (tuple(inputs.shape[1:3]) == (height, width) and self.padding == "valid"
                        and tuple(self.dilation_rate) == (1, 1)
                        and self.data_format == "channels_last")
        if not covers_input:
            return super().convolution_op(inputs, kernel)
        size = height * width * channels
        product = ops.matmul(ops.reshape(inputs, (-1, size)), ops.reshape(kernel, (size, filters)))
        return ops.reshape(product, (-1, 1, 1, filters))


def head_initializer(config) -> str | keras.initializers.Initializer:
    """Normal(0, HEAD_INIT_STD) for non-backbone layers when configured (the paper: 0.05)."""
    if config.HEAD_INIT_STD is None:
        return "glorot_uniform"
    return keras.initializers.RandomNormal(mean=0.0, stddev=float(config.HEAD_INIT_STD))


def fold_rois(x: keras.KerasTensor) -> keras.KerasTensor:
    """[B, N, ...] -> [B*N, ...]."""
    return ops.reshape(x, (-1, *x.shape[2:]))


def unfold_rois(x: keras.KerasTensor, num_rois: int) -> keras.KerasTensor:
    """[B*N, ...] -> [B, N, ...]."""
    return ops.reshape(x, (-1, num_rois, *x.shape[1:]))


def roi_features(rois, feature_maps, image_meta, pool_size: int, name: str):
    """ROIAlign from the single C4 map, or from the pyramid level that suits each ROI."""
    if len(feature_maps) == 1:
        return ROIAlign((pool_size, pool_size), name=name)([rois, feature_maps[0]])
    return PyramidROIAlign((pool_size, pool_size), name=name)([rois, image_meta, *feature_maps])


def num_box_sets(config) -> int:
    return config.NUM_CLASSES if config.CLASS_SPECIFIC_BOXES else 1


def box_regressor(feature, num_rois: int, config, init) -> keras.KerasTensor:
    """FC from the ROI feature to 4 deltas per class (or one class-agnostic set)."""
    k = num_box_sets(config)
    deltas = layers.Dense(4 * k, kernel_initializer=init, name="mrcnn_bbox_fc",
                          dtype=FLOAT32)(feature)
    return layers.Reshape((num_rois, k, 4), name="mrcnn_bbox", dtype=FLOAT32)(deltas)


def classifier(feature, config, init, name: str = "mrcnn_class_logits"):
    """FC from the ROI feature to class logits and softmax probabilities."""
    logits = layers.Dense(config.NUM_CLASSES, kernel_initializer=init, name=name,
                          dtype=FLOAT32)(feature)
    probs = layers.Activation("softmax", name="mrcnn_class", dtype=FLOAT32)(logits)
    return logits, probs


# ------------------------------------------------------------------------------- paper layout
def paper_box_head(roi_feature, num_rois: int, config) -> tuple:
    """Global mean pool of the 7x7 ROI feature -> (class feature [B,N,C], deltas)."""
    init = head_initializer(config)
    feature = ops.mean(roi_feature, axis=(2, 3))
    return feature, box_regressor(feature, num_rois, config, init)


def _norm_relu(x, name: str, config, always: bool = True):
    """Norm (Config.NORM) then ReLU. ``always=False`` skips a frozen BatchNorm, which from the
    layer's initial statistics is an identity: layouts that had no norm layer keep none."""
    kind = config_norm(config)
    if always or kind != "frozen_batch":
        x = norm_layer(kind, name, int(x.shape[-1]))(x)
    return layers.Activation("relu")(x)


def paper_mask_head(roi_feature, num_rois: int, config) -> tuple:
    """Two 2x transposed convolutions 7->14->28 with 256 channels (theta4), then 1x1 sigmoid.
    With a trained norm (NORM "batch" or "group") each deconvolution is followed by one
    (``mrcnn_mask_deconv{i}_norm``); the paper's head has none."""
    init = head_initializer(config)
    x = fold_rois(roi_feature)
    channels = config.MASK_HEAD_CHANNELS
    for i in (1, 2):
        x = layers.Conv2DTranspose(channels, 2, strides=2, kernel_initializer=init,
                                   name=f"mrcnn_mask_deconv{i}")(x)
        x = _norm_relu(x, f"mrcnn_mask_deconv{i}_norm", config, always=False)
    theta4 = x
    masks = layers.Conv2D(config.NUM_CLASSES, 1, activation="sigmoid", kernel_initializer=init,
                          name="mrcnn_mask", dtype=FLOAT32)(theta4)
    return unfold_rois(theta4, num_rois), unfold_rois(masks, num_rois)


# -------------------------------------------------------------------------- matterport layout
def matterport_box_head(roi_feature, num_rois: int, config) -> tuple:
    """Two FC layers (a POOL_SIZE conv and a 1x1 conv) of FPN_CLASSIF_FC_LAYERS_SIZE units."""
    init = head_initializer(config)
    size = config.FPN_CLASSIF_FC_LAYERS_SIZE
    x = fold_rois(roi_feature)
    x = WholeInputConv2D(size, config.POOL_SIZE, padding="valid", kernel_initializer=init,
                         name="mrcnn_class_conv1")(x)
    x = _norm_relu(x, "mrcnn_class_bn1", config)
    x = WholeInputConv2D(size, 1, kernel_initializer=init, name="mrcnn_class_conv2")(x)
    x = _norm_relu(x, "mrcnn_class_bn2", config)
    feature = unfold_rois(ops.reshape(x, (-1, size)), num_rois)
    return feature, box_regressor(feature, num_rois, config, init)


def matterport_mask_head(roi_feature, num_rois: int, config) -> tuple:
    """Four 3x3 convolutions, one 2x transposed convolution (theta4), 1x1 sigmoid."""
    init = head_initializer(config)
    x = fold_rois(roi_feature)
    for i in range(1, 5):
        x = layers.Conv2D(config.MASK_HEAD_CHANNELS, 3, padding="same", kernel_initializer=init,
                          name=f"mrcnn_mask_conv{i}")(x)
        x = _norm_relu(x, f"mrcnn_mask_bn{i}", config)
    theta4 = layers.Conv2DTranspose(config.MASK_HEAD_CHANNELS, 2, strides=2, activation="relu",
                                    kernel_initializer=init, name="mrcnn_mask_deconv")(x)
    masks = layers.Conv2D(config.NUM_CLASSES, 1, activation="sigmoid", kernel_initializer=init,
                          name="mrcnn_mask", dtype=FLOAT32)(theta4)
    return unfold_rois(theta4, num_rois), unfold_rois(masks, num_rois)


def configured_box_head(roi_feature, num_rois: int, config) -> tuple:
    """The box/class head HEAD_LAYOUT names, on pooled ROI features -> (class_feature,
    bbox_deltas)."""
    head = paper_box_head if config.HEAD_LAYOUT == "paper" else matterport_box_head
    return head(roi_feature, num_rois, config)


def box_head_model(roi_feature, config) -> keras.Model:
    """The configured box/class head as one model, so that it can run on two sets of boxes
    with the same weights (FT-MTL-Net's proposals, then its refined boxes). It takes one ROI
    per row ([R, 1, P, P, C]), so the two sets may differ in size (the inference prefilter);
    ``apply_box_head`` runs it on [B, N, P, P, C]."""
    feature = keras.Input((1, *roi_feature.shape[2:]), name="mrcnn_box_head_input")
    class_feature, deltas = configured_box_head(feature, 1, config)
    return keras.Model(feature, [class_feature, deltas], name="mrcnn_box_head")


def apply_box_head(box_model: keras.Model, roi_feature) -> tuple:
    """``box_model`` (``box_head_model``) on ROI features [B, N, P, P, C] -> (class feature
    [B, N, F], deltas [B, N, k, 4])."""
    num_rois = int(roi_feature.shape[1])
    class_feature, deltas = box_model(ops.reshape(roi_feature, (-1, 1, *roi_feature.shape[2:])))
    return (ops.reshape(class_feature, (-1, num_rois, class_feature.shape[-1])),
            ops.reshape(deltas, (-1, num_rois, *deltas.shape[2:])))


def box_head(rois, feature_maps, image_meta, config) -> tuple:
    """ROIAlign + the configured box/class head -> (roi_feature, class_feature, bbox_deltas)."""
    feature = roi_features(rois, feature_maps, image_meta, config.POOL_SIZE,
                           name="roi_align_classifier")
    class_feature, deltas = configured_box_head(feature, rois.shape[1], config)
    return feature, class_feature, deltas


def mask_head(rois, feature_maps, image_meta, config, roi_feature=None) -> tuple:
    """The configured mask head -> (theta4, masks). The paper layout reuses the 7x7 ROI
    feature of the box head when given (same boxes); otherwise it pools its own."""
    num_rois = rois.shape[1]
    if config.HEAD_LAYOUT == "paper":
        if roi_feature is None:
            roi_feature = roi_features(rois, feature_maps, image_meta, config.POOL_SIZE,
                                       name="roi_align_mask")
        return paper_mask_head(roi_feature, num_rois, config)
    feature = roi_features(rois, feature_maps, image_meta, config.MASK_POOL_SIZE,
                           name="roi_align_mask")
    return matterport_mask_head(feature, num_rois, config)
