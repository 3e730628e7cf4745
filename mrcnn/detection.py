"""Inference post-processing: box refinement, confidence filter, per-class NMS, top-K."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import tensorflow as tf

from mrcnn.box_ops import tf_apply_box_deltas, tf_batched_nms, tf_clip_boxes
from mrcnn.config import DETECTION_SCORES
from mrcnn.image_meta import parse_image_meta_graph
from mrcnn.precision import Float32Layer


def window_from_meta(image_meta: tf.Tensor) -> tf.Tensor:
    """The image area inside the padding, normalised: [B, 4] (y1, x1, y2, x2).

    The window is in pixels of the padded (molded) image, whose height and width divide it.
    """
    meta = parse_image_meta_graph(image_meta)
    shape = meta["image_shape"][:, :2]
    return meta["window"] / tf.concat([shape, shape], axis=1)


def refine_boxes(rois: tf.Tensor, deltas: tf.Tensor, class_ids: tf.Tensor, bbox_std_dev,
                 window: tf.Tensor) -> tf.Tensor:
    """Apply each ROI's predicted deltas (of its class, or the class-agnostic set) and clip.

    rois [N, 4], deltas [N, K, 4], class_ids [N], window [4] -> [N, 4].
    """
    k = tf.shape(deltas)[1]
    row = tf.where(k > 1, tf.cast(class_ids, tf.int32), tf.zeros_like(class_ids, tf.int32))
    chosen = tf.gather(deltas, row, batch_dims=1)
    chosen = tf.cast(chosen, tf.float32) * tf.constant(bbox_std_dev, tf.float32)
    return tf_clip_boxes(tf_apply_box_deltas(tf.cast(rois, tf.float32), chosen), window)


def classify(probs: tf.Tensor, score_mode: str) -> tuple[tf.Tensor, tf.Tensor]:
    """(class_ids, scores) per ROI.

    ``"class"`` (Matterport): the arg-max class over all classes and its probability.
    ``"foreground"`` (the paper): the arg-max foreground class, score = 1 - p(background).
    """
    if score_mode not in DETECTION_SCORES:
        raise ValueError(f"classify: score_mode must be one of {DETECTION_SCORES}, got "
                         f"{score_mode!r}")
    probs = tf.cast(probs, tf.float32)
    if score_mode == "foreground":
        class_ids = tf.argmax(probs[:, 1:], axis=1, output_type=tf.int32) + 1
        return class_ids, 1.0 - probs[:, 0]
    class_ids = tf.argmax(probs, axis=1, output_type=tf.int32)
    return class_ids, tf.gather(probs, class_ids, batch_dims=1)


def select_detections(boxes: tf.Tensor, class_ids: tf.Tensor, scores: tf.Tensor,
                      valid: tf.Tensor, min_confidence: float, nms_threshold: float,
                      max_instances: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Keep valid foreground ROIs above the confidence, per-class NMS, the best max_instances.

    Returns (detections [max_instances, 6] as (y1, x1, y2, x2, class_id, score), zero padded,
    kept ROI indices [max_instances], -1 padded).
    """
    keep = tf.where(valid & (class_ids > 0) & (scores >= min_confidence))[:, 0]
    keep = tf.cast(keep, tf.int32)
    nms = tf_batched_nms(tf.gather(boxes, keep), tf.gather(scores, keep),
                         tf.gather(class_ids, keep), nms_threshold, max_instances)
    keep = tf.gather(keep, nms)
    detections = tf.concat([
        tf.gather(boxes, keep),
        tf.cast(tf.gather(class_ids, keep), tf.float32)[:, tf.newaxis],
        tf.gather(scores, keep)[:, tf.newaxis],
    ], axis=1)
    pad = max_instances - tf.shape(keep)[0]
    detections = tf.pad(detections, [[0, pad], [0, 0]])
    keep = tf.pad(keep, [[0, pad]], constant_values=-1)
    return detections, keep


def detection_settings(config) -> dict[str, Any]:
    """The config values the detection layers read, JSON-ready: what their ``get_config``
    saves in a .keras file instead of the whole config."""
    return {
        "BBOX_STD_DEV": [float(v) for v in np.asarray(config.BBOX_STD_DEV).reshape(-1)],
        "DETECTION_MIN_CONFIDENCE": float(config.DETECTION_MIN_CONFIDENCE),
        "DETECTION_NMS_THRESHOLD": float(config.DETECTION_NMS_THRESHOLD),
        "DETECTION_MAX_INSTANCES": int(config.DETECTION_MAX_INSTANCES),
    }


def split_layer_config(layer_config: dict[str, Any]) -> tuple[SimpleNamespace, dict[str, Any]]:
    """A saved config of a layer built from a config's settings (the detection layers,
    ``mrcnn.targets.DetectionTargetLayer``) -> (its settings as a config-like object, the
    layer's other arguments): what ``from_config`` passes back to ``__init__``."""
    arguments = dict(layer_config)
    return SimpleNamespace(**arguments.pop("settings")), arguments


class DetectionLayer(Float32Layer):
    """Matterport's inference order: classify the proposals, refine their boxes, filter, NMS.

    Inputs ``[rois [B,N,4], class_probs [B,N,C], bbox_deltas [B,N,K,4], image_meta]``.
    Outputs ``[detections [B, D, 6], kept_roi_indices [B, D]]`` with D =
    DETECTION_MAX_INSTANCES; boxes are normalised to the model input. ``score_mode`` (see
    ``classify``) defaults to the config's DETECTION_SCORE.
    """

    supports_jit = False

    def __init__(self, config, score_mode: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.score_mode = config.DETECTION_SCORE if score_mode is None else score_mode
        if self.score_mode not in DETECTION_SCORES:
            raise ValueError(f"DetectionLayer: score_mode must be one of {DETECTION_SCORES}, "
                             f"got {self.score_mode!r}")

    def call(self, inputs):
        rois, probs, deltas, image_meta = inputs
        windows = window_from_meta(image_meta)
        cfg = self.config

        def one_image(args):
            r, p, d, w = args
            class_ids, scores = classify(p, self.score_mode)
            boxes = refine_boxes(r, d, class_ids, cfg.BBOX_STD_DEV, w)
            valid = tf.reduce_any(tf.not_equal(r, 0.0), axis=1)
            return select_detections(boxes, class_ids, scores, valid,
                                     cfg.DETECTION_MIN_CONFIDENCE,
                                     cfg.DETECTION_NMS_THRESHOLD,
                                     cfg.DETECTION_MAX_INSTANCES)

        detections, keep = tf.map_fn(
            one_image, (rois, probs, deltas, windows),
            fn_output_signature=(tf.TensorSpec([cfg.DETECTION_MAX_INSTANCES, 6], tf.float32),
                                 tf.TensorSpec([cfg.DETECTION_MAX_INSTANCES], tf.int32)))
        return detections, keep

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        d = self.config.DETECTION_MAX_INSTANCES
        return (batch, d, 6), (batch, d)

    def get_config(self):
        config = super().get_config()
        config.update(score_mode=self.score_mode, settings=detection_settings(self.config))
        return config

    @classmethod
    def from_config(cls, config):
        settings, arguments = split_layer_config(config)
        return cls(settings, **arguments)
