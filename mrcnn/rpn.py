"""Region proposal network: the head shared over feature levels, and the proposal layer."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from mrcnn.box_ops import tf_apply_box_deltas, tf_clip_boxes
from mrcnn.precision import FLOAT32, Float32Layer


def build_rpn_model(anchor_stride: int, anchors_per_location: int, depth: int,
                    kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform"
                    ) -> keras.Model:
    """The RPN head as its own model named ``rpn_model`` (Matterport's name, so legacy weight
    files whose nested ``rpn_model`` group holds ``rpn_conv_shared``, ``rpn_class_raw`` and
    ``rpn_bbox_pred`` load into it). It is applied to every pyramid level with shared weights.

    Returns a model mapping a feature map [B, h, w, depth] to
    ``[rpn_class_logits [B, h*w*k, 2], rpn_probs [B, h*w*k, 2], rpn_bbox [B, h*w*k, 4]]``.
    """
    feature_map = keras.Input(shape=(None, None, depth), name="input_rpn_feature_map")
    shared = layers.Conv2D(512, 3, padding="same", activation="relu", strides=anchor_stride,
                           kernel_initializer=kernel_initializer,
                           name="rpn_conv_shared")(feature_map)
    raw_scores = layers.Conv2D(2 * anchors_per_location, 1, padding="valid",
                               kernel_initializer=kernel_initializer, dtype=FLOAT32,
                               name="rpn_class_raw")(shared)
    class_logits = layers.Reshape((-1, 2), name="rpn_class_logits_flat",
                                  dtype=FLOAT32)(raw_scores)
    probs = layers.Activation("softmax", name="rpn_class_xxx", dtype=FLOAT32)(class_logits)
    raw_deltas = layers.Conv2D(4 * anchors_per_location, 1, padding="valid",
                               kernel_initializer=kernel_initializer, dtype=FLOAT32,
                               name="rpn_bbox_pred")(shared)
    deltas = layers.Reshape((-1, 4), name="rpn_bbox_flat", dtype=FLOAT32)(raw_deltas)
    return keras.Model(feature_map, [class_logits, probs, deltas], name="rpn_model")


class ProposalLayer(Float32Layer):
    """Turns anchor scores and deltas into ``proposal_count`` normalised proposals per image.

    Keeps the ``pre_nms_limit`` best anchors, applies their deltas, clips to the image, and runs
    NMS. Output rows are sorted by score; missing rows are zero (padding).
    Inputs: ``[rpn_probs [B, A, 2], rpn_bbox [B, A, 4], anchors [B, A, 4]]``.
    """

    supports_jit = False

    def __init__(self, proposal_count: int, nms_threshold: float, pre_nms_limit: int,
                 bbox_std_dev, **kwargs) -> None:
        super().__init__(**kwargs)
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(pre_nms_limit)
        self.bbox_std_dev = [float(v) for v in bbox_std_dev]

    def call(self, inputs):
        probs, deltas, anchors = inputs
        scores = probs[:, :, 1]
        deltas = deltas * tf.constant(self.bbox_std_dev, dtype=deltas.dtype)
        limit = tf.minimum(self.pre_nms_limit, tf.shape(anchors)[1])
        top_scores, top_idx = tf.math.top_k(scores, k=limit, sorted=True)
        top_deltas = tf.gather(deltas, top_idx, batch_dims=1)
        top_anchors = tf.gather(anchors, top_idx, batch_dims=1)
        boxes = tf_apply_box_deltas(tf.reshape(top_anchors, [-1, 4]),
                                    tf.reshape(tf.cast(top_deltas, tf.float32), [-1, 4]))
        boxes = tf_clip_boxes(boxes, tf.constant([0.0, 0.0, 1.0, 1.0]))
        boxes = tf.reshape(boxes, tf.shape(top_anchors))
        nms_boxes, _, _, _ = tf.image.combined_non_max_suppression(
            boxes[:, :, tf.newaxis, :], tf.cast(top_scores, tf.float32)[:, :, tf.newaxis],
            max_output_size_per_class=self.proposal_count,
            max_total_size=self.proposal_count,
            iou_threshold=self.nms_threshold,
            score_threshold=float("-inf"),
            pad_per_class=False,
            clip_boxes=False,
        )
        return tf.stop_gradient(nms_boxes)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.proposal_count, 4)

    def get_config(self):
        config = super().get_config()
        config.update(proposal_count=self.proposal_count, nms_threshold=self.nms_threshold,
                      pre_nms_limit=self.pre_nms_limit, bbox_std_dev=self.bbox_std_dev)
        return config
