"""FT-MTL-Net: Mask R-CNN whose classifier also sees the mask-weighted mask-head features.

``FTMTLNet`` sub-classes ``mrcnn.model.MaskRCNN`` and overrides two things:

- ``build_classifier``: the ROI feature (1024-d on ResNet C4) is concatenated with the 256-d
  ``MaskWeightedTransfer`` of the mask head (theta4 weighted by the foreground maps), then one
  FC layer and a softmax give (background, benign, malignant). In training the mask head runs on
  every sampled ROI already (``MaskRCNN.build_training_heads``), so nothing else changes there.
- ``build_inference_heads``: the paper's sequential order (section 2.3): proposals -> the box
  head refines them (class-agnostic deltas) -> ROIAlign on the refined boxes -> mask head
  (M_b, M_m, theta4) -> transfer -> classifier -> confidence filter, per-class NMS, top-K. The
  detection score is 1 - p(background), the class the arg-max over the foreground classes, the
  mask the selected ROI's map of that class. The malignant veto adds one score per image.

``TRANSFER_BRANCH = False`` gives the baseline twin: the same network, layer names and inference
order without the transfer (1024 -> FC(3), Matterport's ``mrcnn_class_logits``), so the two
differ by exactly the 256 x NUM_CLASSES kernel entries of the transfer's input to the classifier.

Layer names. The FT-MTL classifier is ``mrcnn_ftmtl_class_logits``: its kernel is (F + 256) x K,
not the baseline's F x K, and a different name keeps a baseline or Matterport checkpoint's
``mrcnn_class_logits`` out of it (reported as unused, the classifier keeps its initial values)
and an FT-MTL checkpoint's classifier out of a baseline model (reported as missing). The
``mrcnn_`` prefix keeps it in Matterport's trainable-layer presets ("heads", "3+", ...) and in
any ``mrcnn_.*`` pattern, so training schedules need no special case. The transfer layer is
``mrcnn_ftmtl_transfer`` (no weights).

Memory at inference. The mask head runs on every refined proposal (POST_NMS_ROIS_INFERENCE of
them), not only on the final detections: theta4 costs 28 x 28 x MASK_HEAD_CHANNELS floats per
ROI (0.8 MB at 256 channels) and the transfer holds a second tensor of that size, so about
0.5 GB per image at 300 proposals (the paper preset) and 1.6 GB per image at 1000
(Matterport's FPN default; the fpn preset keeps 100); set IMAGES_PER_GPU of the inference
config accordingly. Only the selected detections' masks leave the graph.

Layer sharing at inference. The class feature of a refined box comes from the same box head that
predicted the refinement, applied a second time. To share its weights the inference graph wraps
the configured box head (``mrcnn.heads``) in a nested model ``mrcnn_box_head``; weight files
still match by the inner layer names (``mrcnn_bbox_fc``, ``mrcnn_class_conv1``, ...).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow as tf
from keras import layers

from ftmtl.inbreast.intensity import DEFAULT_WINDOW, WINDOWS
from ftmtl.prefilter import PrefilterRefined
from ftmtl.transfer import MaskWeightedTransfer
from ftmtl.veto import (
    BENIGN_CLASS_ID,
    MALIGNANT_CLASS_ID,
    VETO_MIN_CONFIDENCE,
    MalignantVeto,
)
from mrcnn.config import Config, ConfigError
from mrcnn.detection import (
    classify,
    detection_settings,
    refine_boxes,
    select_detections,
    split_layer_config,
    window_from_meta,
)
from mrcnn.heads import (
    apply_box_head,
    box_head_model,
    classifier,
    head_initializer,
    mask_head,
    roi_features,
)
from mrcnn.model import MaskRCNN
from mrcnn.precision import Float32Layer
from mrcnn.targets import valid_roi_mask

TRANSFER_LAYER = "mrcnn_ftmtl_transfer"
FTMTL_CLASSIFIER_LAYER = "mrcnn_ftmtl_class_logits"
BASELINE_CLASSIFIER_LAYER = "mrcnn_class_logits"

# FT-MTL settings and their values for a Config that does not define them (e.g. a plain
# mrcnn Config or a sample's config): the full FT-MTL-Net.
FTMTL_DEFAULTS: dict[str, Any] = {
    "TRANSFER_BRANCH": True,
    "TRANSFER_STOP_GRADIENT": False,
    "BENIGN_CLASS_ID": BENIGN_CLASS_ID,
    "MALIGNANT_CLASS_ID": MALIGNANT_CLASS_ID,
    "VETO_MIN_CONFIDENCE": VETO_MIN_CONFIDENCE,
    "PREFILTER_MAX_ROIS": 0,
    "PREFILTER_NMS_THRESHOLD": 0.7,
}


def ftmtl_setting(config, name: str) -> Any:
    """An FT-MTL setting of ``config``, or its default when the config class lacks it."""
    return getattr(config, name, FTMTL_DEFAULTS[name])


def check_ftmtl_config(config) -> None:
    """Raise ConfigError naming the attribute if the config cannot run FT-MTL-Net's graph."""
    name = type(config).__name__
    if config.CLASS_SPECIFIC_BOXES:
        raise ConfigError(f"{name}.CLASS_SPECIFIC_BOXES: FT-MTL-Net refines boxes before it "
                          f"classifies them, so it needs class-agnostic deltas; set it to False")
    for attr in ("BENIGN_CLASS_ID", "MALIGNANT_CLASS_ID"):
        value = ftmtl_setting(config, attr)
        if not 0 < int(value) < config.NUM_CLASSES:
            raise ConfigError(f"{name}.{attr}: must be a foreground class id below NUM_CLASSES "
                              f"({config.NUM_CLASSES}), got {value}")
    if ftmtl_setting(config, "BENIGN_CLASS_ID") == ftmtl_setting(config, "MALIGNANT_CLASS_ID"):
        raise ConfigError(f"{name}.MALIGNANT_CLASS_ID: must differ from BENIGN_CLASS_ID")
    veto = ftmtl_setting(config, "VETO_MIN_CONFIDENCE")
    if isinstance(veto, bool) or not isinstance(veto, int | float) or not 0 <= veto <= 1:
        raise ConfigError(f"{name}.VETO_MIN_CONFIDENCE: must be a number in [0, 1], "
                          f"got {veto!r}")
    _check_prefilter(config, name)


def _check_prefilter(config, name: str) -> None:
    cap = ftmtl_setting(config, "PREFILTER_MAX_ROIS")
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
        raise ConfigError(f"{name}.PREFILTER_MAX_ROIS: must be 0 (off) or a positive integer, "
                          f"got {cap!r}")
    threshold = ftmtl_setting(config, "PREFILTER_NMS_THRESHOLD")
    if (isinstance(threshold, bool) or not isinstance(threshold, int | float)
            or not 0 < threshold <= 1):
        raise ConfigError(f"{name}.PREFILTER_NMS_THRESHOLD: must be a number in (0, 1], "
                          f"got {threshold!r}")


class FTMTLConfig(Config):
    """Config with FT-MTL-Net's own settings (see ``ftmtl.presets`` for complete presets)."""

    NUM_CLASSES = 3  # background, benign, malignant
    HEAD_LAYOUT = "paper"
    FEATURE_LAYOUT = "c4"
    CLASS_SPECIFIC_BOXES = False
    # FT-MTL-Net and its twin score a detection 1 - p(background) (the paper's); their
    # sequential inference has no other mode, so "class" is refused here.
    DETECTION_SCORE = "foreground"

    # The mask-weighted transfer into the classifier. False: the plain Mask R-CNN twin.
    TRANSFER_BRANCH = True
    # Ablation: stop the classification loss's gradient at the transfer (theta4 and M_w), so
    # that only the mask loss trains the mask head.
    TRANSFER_STOP_GRADIENT = False
    # Class ids the malignant veto reads.
    BENIGN_CLASS_ID = BENIGN_CLASS_ID
    MALIGNANT_CLASS_ID = MALIGNANT_CLASS_ID
    # The veto reads detections scoring at least this (the paper's 0.5), also when
    # DETECTION_MIN_CONFIDENCE keeps lower ones for the FROC (ftmtl.veto says why).
    VETO_MIN_CONFIDENCE = VETO_MIN_CONFIDENCE
    # Inference: how many refined boxes the mask head and the classifier see (ftmtl.prefilter).
    # 0: all of them (the paper's strict order); N: those left by a class-agnostic NMS at
    # PREFILTER_NMS_THRESHOLD in proposal-score order, at most N (so also at most N
    # detections). Training is the same either way. Off in every preset: on the
    # fpn_cpu checkpoints of the accuracy benchmark it cost box AP (benchmarks/README.md).
    PREFILTER_MAX_ROIS = 0
    PREFILTER_NMS_THRESHOLD = 0.7
    # Share of training draws that are images without a mass, used by the class-balanced
    # sampler (mrcnn.sampling.DEFAULT_MASS_FREE_SHARE says why).
    MASS_FREE_SHARE = 0.2
    # How the sampler weighs benign against malignant masses: "paper" (150 / 75, the paper's
    # augmentation factors, which balance INbreast's own mix) or "balanced" (inverse to each
    # label's count in the training set: both drawn equally, whatever the data's mix).
    SAMPLER_WEIGHTS = "paper"
    # Long side, in pixels, of the breast-cropped images the INbreast reader prepares (the
    # resolution the network sees). None: IMAGE_MAX_DIM (square mode: the model input);
    # in crop mode a number is needed (training crops of IMAGE_MIN_DIM are cut from images of
    # this size, and inference runs on the whole image at this size).
    PREPARED_IMAGE_SIZE: int | None = None
    # How stored values become the network's [0, 1] input (ftmtl.inbreast.intensity):
    # "percentile" (each image's 0.5th-99.9th percentiles, whatever the detector's range),
    # "dicom" (the file's own VOI LUT or window; percentile where it has none) or
    # "full_range" (value / (2**BitsStored - 1), how checkpoints before this option read).
    INTENSITY_WINDOW = "percentile"
    # Epochs of the one joint stage when training from scratch (ftmtl.schedule.scratch_schedule;
    # the paper's staged schedule from pretrained weights runs 10 epochs a stage).
    SCRATCH_EPOCHS = 30

    def validate(self) -> None:
        super().validate()
        check_ftmtl_config(self)
        if self.DETECTION_SCORE != "foreground":
            raise ConfigError(f"{type(self).__name__}.DETECTION_SCORE: FT-MTL-Net's sequential "
                              f"inference scores detections 1 - p(background) ('foreground'); "
                              f"got {self.DETECTION_SCORE!r} (the 'class' score is "
                              f"mrcnn.model.MaskRCNN's)")
        if self.SAMPLER_WEIGHTS not in ("paper", "balanced"):
            raise ConfigError(f"{type(self).__name__}.SAMPLER_WEIGHTS: must be 'paper' or "
                              f"'balanced', got {self.SAMPLER_WEIGHTS!r}")
        size = self.PREPARED_IMAGE_SIZE
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                                 or size < 1):
            raise ConfigError(f"{type(self).__name__}.PREPARED_IMAGE_SIZE: must be None or a "
                              f"positive integer, got {size!r}")
        if size is None and self.IMAGE_RESIZE_MODE == "crop":
            raise ConfigError(f"{type(self).__name__}.PREPARED_IMAGE_SIZE: crop mode needs the "
                              f"size of the images the crops are cut from")
        if self.INTENSITY_WINDOW not in WINDOWS:
            raise ConfigError(f"{type(self).__name__}.INTENSITY_WINDOW: must be one of "
                              f"{', '.join(map(repr, WINDOWS))}, got {self.INTENSITY_WINDOW!r}")
        share = self.MASS_FREE_SHARE
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ConfigError(f"{type(self).__name__}.MASS_FREE_SHARE: must be a number in "
                              f"[0, 1], got {share!r}")


def prepared_image_size(config) -> int:
    """Long side of the prepared (breast-cropped, resized) images: PREPARED_IMAGE_SIZE, or
    IMAGE_MAX_DIM when unset. The reader, the CLI, cross-validation and the benchmarks all ask
    here."""
    size = getattr(config, "PREPARED_IMAGE_SIZE", None)
    return int(config.IMAGE_MAX_DIM if size is None else size)


def intensity_window(config) -> str:
    """The intensity window the reader prepares images with: INTENSITY_WINDOW, or the
    default of ``ftmtl.inbreast.intensity`` for a config without one (mrcnn's Config)."""
    return str(getattr(config, "INTENSITY_WINDOW", DEFAULT_WINDOW))


def image_size_overrides(config, size: int | None) -> dict[str, int]:
    """Config overrides for a requested image size (the CLI's --image-size): the model input
    in square mode (IMAGE_MIN_DIM = IMAGE_MAX_DIM = size), the prepared images' long side in
    crop mode (the crop stays IMAGE_MIN_DIM)."""
    if size is None:
        return {}
    if config.IMAGE_RESIZE_MODE == "crop":
        return {"PREPARED_IMAGE_SIZE": int(size)}
    return {"IMAGE_MIN_DIM": int(size), "IMAGE_MAX_DIM": int(size)}


# ------------------------------------------------------------------------ inference layers
class RefineProposals(Float32Layer):
    """Proposals moved by their class-agnostic deltas and clipped to the image window.

    Inputs ``[proposals [B, N, 4], deltas [B, N, 1, 4] (scaled by BBOX_STD_DEV), image_meta]``;
    output ``[B, N, 4]``, padding rows stay all zero.
    """

    supports_jit = False

    def __init__(self, bbox_std_dev, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bbox_std_dev = [float(v) for v in np.asarray(bbox_std_dev).reshape(-1)]

    def call(self, inputs):
        proposals, deltas, image_meta = inputs
        proposals = tf.cast(proposals, tf.float32)
        windows = window_from_meta(image_meta)

        def one_image(args):
            boxes, box_deltas, window = args
            agnostic = tf.zeros(tf.shape(boxes)[:1], tf.int32)
            return refine_boxes(boxes, box_deltas, agnostic, self.bbox_std_dev, window)

        refined = tf.map_fn(one_image, (proposals, deltas, windows),
                            fn_output_signature=tf.TensorSpec([None, 4], tf.float32))
        valid = valid_roi_mask(proposals)[..., tf.newaxis]
        return tf.stop_gradient(tf.where(valid, refined, 0.0))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(bbox_std_dev=self.bbox_std_dev)
        return config


class SequentialDetectionLayer(Float32Layer):
    """Detections from refined, already classified ROIs: confidence filter, per-class NMS,
    top-K (``mrcnn.detection.select_detections``) with the paper's foreground score.

    Inputs ``[refined [B, N, 4], probs [B, N, K], masks [B, N, h, w, K]]``. Outputs
    ``[detections [B, D, 6], masks [B, D, h, w, K], probs [B, D, K]]``, D =
    DETECTION_MAX_INSTANCES, rows aligned, zero padded.
    """

    supports_jit = False

    def __init__(self, config, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config

    def call(self, inputs):
        refined, probs, masks = inputs
        cfg = self.config
        count = cfg.DETECTION_MAX_INSTANCES

        def one_image(args):
            boxes, p, m = args
            class_ids, scores = classify(p, "foreground")
            valid = valid_roi_mask(boxes[tf.newaxis])[0]
            detections, keep = select_detections(
                boxes, class_ids, scores, valid, cfg.DETECTION_MIN_CONFIDENCE,
                cfg.DETECTION_NMS_THRESHOLD, count)
            real = keep >= 0
            rows = tf.maximum(keep, 0)
            kept_masks = tf.gather(tf.cast(m, tf.float32), rows)
            kept_masks = tf.where(real[:, None, None, None], kept_masks, 0.0)
            kept_probs = tf.where(real[:, None], tf.gather(tf.cast(p, tf.float32), rows), 0.0)
            return detections, kept_masks, kept_probs

        h, w, k = (int(v) for v in masks.shape[2:])
        return tf.map_fn(
            one_image, (refined, probs, masks),
            fn_output_signature=(tf.TensorSpec([count, 6], tf.float32),
                                 tf.TensorSpec([count, h, w, k], tf.float32),
                                 tf.TensorSpec([count, k], tf.float32)))

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        count = self.config.DETECTION_MAX_INSTANCES
        mask_shape = tuple(input_shape[2][2:])
        return (batch, count, 6), (batch, count, *mask_shape), (batch, count, mask_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(settings=detection_settings(self.config))
        return config

    @classmethod
    def from_config(cls, config):
        settings, arguments = split_layer_config(config)
        return cls(settings, **arguments)


# ------------------------------------------------------------------------------- the model
class FTMTLNet(MaskRCNN):
    """FT-MTL-Net (``TRANSFER_BRANCH`` True) or its Mask R-CNN twin (False), in ``training`` or
    ``inference`` mode; the API is MaskRCNN's. ``detect`` adds ``class_probs`` [N, K] per
    detection and the image's malignant-veto ``case_score``. Detections are always scored
    1 - p(background) (``DETECTION_SCORE = "foreground"``, which FTMTLConfig holds to; a plain
    Config's DETECTION_SCORE is not read)."""

    def __init__(self, mode: str, config, model_dir: str | os.PathLike,
                 strategy: tf.distribute.Strategy | None = None) -> None:
        check_ftmtl_config(config)
        super().__init__(mode, config, model_dir, strategy=strategy)

    @property
    def transfer_branch(self) -> bool:
        return bool(ftmtl_setting(self.config, "TRANSFER_BRANCH"))

    # --------------------------------------------------------------------------- heads
    def build_classifier(self, class_feature, mask_feature, masks):
        """FC(NUM_CLASSES) + softmax on the ROI feature concatenated with the transfer."""
        config = self.config
        init = head_initializer(config)
        if not self.transfer_branch:
            return classifier(class_feature, config, init, name=BASELINE_CLASSIFIER_LAYER)
        if mask_feature is None or masks is None:
            raise ValueError("FTMTLNet.build_classifier: the transfer branch needs the mask "
                             "head's theta4 and masks")
        transfer = MaskWeightedTransfer(
            stop_gradient=bool(ftmtl_setting(config, "TRANSFER_STOP_GRADIENT")),
            name=TRANSFER_LAYER)([mask_feature, masks])
        feature = layers.Concatenate(axis=-1, name="mrcnn_ftmtl_class_feature")(
            [class_feature, transfer])
        return classifier(feature, config, init, name=FTMTL_CLASSIFIER_LAYER)

    def build_inference_heads(self, rois, mrcnn_maps, image_meta) -> dict[str, Any]:
        """The paper's sequential order; see the module docstring."""
        config = self.config
        proposal_feature = roi_features(rois, mrcnn_maps, image_meta, config.POOL_SIZE,
                                        name="roi_align_classifier")
        box_model = box_head_model(proposal_feature, config)
        _, deltas = apply_box_head(box_model, proposal_feature)
        refined = RefineProposals(config.BBOX_STD_DEV, name="mrcnn_refined_rois")(
            [rois, deltas, image_meta])
        max_rois = ftmtl_setting(config, "PREFILTER_MAX_ROIS")
        if max_rois:
            refined = PrefilterRefined(
                max_rois, ftmtl_setting(config, "PREFILTER_NMS_THRESHOLD"),
                name="ftmtl_prefilter")(refined)
        refined_feature = roi_features(refined, mrcnn_maps, image_meta, config.POOL_SIZE,
                                       name="roi_align_refined")
        class_feature, _ = apply_box_head(box_model, refined_feature)
        theta4, masks = mask_head(refined, mrcnn_maps, image_meta, config,
                                  roi_feature=refined_feature)
        _, probs = self.build_classifier(class_feature, theta4, masks)
        detections, detection_masks, detection_probs = SequentialDetectionLayer(
            config, name="mrcnn_detection")([refined, probs, masks])
        case_score = MalignantVeto(
            benign_class=ftmtl_setting(config, "BENIGN_CLASS_ID"),
            malignant_class=ftmtl_setting(config, "MALIGNANT_CLASS_ID"),
            min_confidence=ftmtl_setting(config, "VETO_MIN_CONFIDENCE"),
            name="ftmtl_case_score")([detections, detection_probs, probs, refined])
        return {
            "detections": detections,
            "mrcnn_mask": detection_masks,
            "detection_probs": detection_probs,
            "mrcnn_class": probs,
            "mrcnn_bbox": deltas,
            "refined_rois": refined,
            "case_score": case_score,
        }

    # ------------------------------------------------------------------------- detect
    def detect(self, images: list[np.ndarray], verbose: int = 0) -> list[dict[str, np.ndarray]]:
        """MaskRCNN.detect's results plus ``class_probs`` [N, K] (the classifier's
        probabilities of each returned detection) and ``case_score`` (the malignant veto)."""
        if self.mode != "inference":
            raise ValueError("FTMTLNet.detect needs a model created in 'inference' mode")
        return super().detect(images, verbose)

    def image_result(self, outputs: dict[str, np.ndarray], index: int, image_shape,
                     molded_shape, window) -> dict[str, np.ndarray]:
        result = super().image_result(outputs, index, image_shape, molded_shape, window)
        rows = self.returned_rows(outputs["detections"][index], image_shape, molded_shape,
                                  window)
        result["class_probs"] = outputs["detection_probs"][index][rows].astype(np.float32)
        result["case_score"] = float(outputs["case_score"][index])
        return result

