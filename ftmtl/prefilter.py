"""The optional prefilter of FT-MTL-Net's inference: fewer refined boxes for the mask head.

The paper's sequential order runs the mask head on every refined proposal, because the
classifier needs each box's mask-weighted features (theta4). With Matterport's mask head (four
256-channel convolutions on 14x14 ROIs, about 0.5 GMAC a box) that is most of the fpn preset's
inference time, and many refined proposals are near copies of each other: refinement moves the
proposals around one mass onto the same box.

``PrefilterRefined`` keeps, per image, the refined boxes that survive a class-agnostic NMS in
proposal-score order (the proposal layer emits its rows best first, so the row order is the
score), then the first ``max_rois`` of them. The mask head, the transfer and the classifier run
on those only, in the same order as before: every box the classifier sees still has its mask
first. ``FTMTLConfig.PREFILTER_MAX_ROIS`` (0: off, the strict order) and
``PREFILTER_NMS_THRESHOLD`` set it; benchmarks/README.md has both orders' accuracy and speed.
"""

from __future__ import annotations

import tensorflow as tf

from mrcnn.precision import Float32Layer
from mrcnn.targets import valid_roi_mask


def prefilter_boxes(boxes: tf.Tensor, max_rois: int, nms_threshold: float) -> tf.Tensor:
    """[max_rois, 4]: the rows of boxes [N, 4] (best first, all-zero rows are padding) kept by
    NMS at ``nms_threshold`` in row order, then the first ``max_rois``; zero padded."""
    boxes = tf.cast(boxes, tf.float32)
    count = tf.shape(boxes)[0]
    valid = valid_roi_mask(boxes[tf.newaxis])[0]
    # Row i scores count - i, so NMS visits the rows in their order; padding scores -1.
    rank_scores = tf.cast(count - tf.range(count), tf.float32)
    scores = tf.where(valid, rank_scores, -1.0)
    keep = tf.image.non_max_suppression(boxes, scores, max_rois, iou_threshold=nms_threshold,
                                        score_threshold=0.0)
    kept = tf.gather(boxes, keep)
    return tf.pad(kept, [[0, max_rois - tf.shape(kept)[0]], [0, 0]])


class PrefilterRefined(Float32Layer):
    """Refined boxes [B, N, 4] (rows best first) -> [B, max_rois, 4] (``prefilter_boxes``)."""

    supports_jit = False

    def __init__(self, max_rois: int, nms_threshold: float, **kwargs) -> None:
        super().__init__(**kwargs)
        if int(max_rois) < 1:
            raise ValueError(f"PrefilterRefined: max_rois must be at least 1, got {max_rois}")
        if not 0.0 < float(nms_threshold) <= 1.0:
            raise ValueError(f"PrefilterRefined: nms_threshold must be in (0, 1], got "
                             f"{nms_threshold}")
        self.max_rois = int(max_rois)
        self.nms_threshold = float(nms_threshold)

    def call(self, refined):
        return tf.map_fn(
            lambda boxes: prefilter_boxes(boxes, self.max_rois, self.nms_threshold),
            tf.cast(refined, tf.float32),
            fn_output_signature=tf.TensorSpec([self.max_rois, 4], tf.float32))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.max_rois, 4)

    def get_config(self):
        config = super().get_config()
        config.update(max_rois=self.max_rois, nms_threshold=self.nms_threshold)
        return config
