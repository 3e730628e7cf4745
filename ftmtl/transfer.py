"""The mask-weighted feature transfer of FT-MTL-Net (the paper, section 2.2.2, eq. 5-6).

The mask head's last feature map theta4 ([28, 28, 256] per ROI) is re-weighted by the ROI's own
segmentation: M_w, the per-pixel maximum of the foreground probability maps (benign and
malignant; the background map is left out, it says where the mass is *not*), multiplies every
channel of theta4 (theta5 = theta4 * M_w). A 2x2 max pool (28 -> 14) and a global mean pool
then compress theta5 to one 256-d vector per ROI, which the classifier concatenates with its
own ROI feature. The layer has no weights: the only parameters FT-MTL-Net adds to Mask R-CNN are
the classifier's 256 x NUM_CLASSES extra kernel entries.

Gradients of the classification loss flow through theta5 into both theta4 and M_w, so into the
mask head: that is the "feature transfer". ``stop_gradient=True`` cuts both paths (ablation).
"""

from __future__ import annotations

import tensorflow as tf
from keras import layers


class MaskWeightedTransfer(layers.Layer):
    """``[theta4 [B, N, h, w, C], masks [B, N, h, w, K]] -> [B, N, C]``.

    ``masks[..., 0]`` is the background map and is ignored; K must be at least 2. The 2x2 max
    pool uses stride 2 without padding, so an odd h or w drops its last row or column (the
    paper's 28x28 maps pool to 14x14 exactly).
    """

    def __init__(self, stop_gradient: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stop_gradient = bool(stop_gradient)

    def call(self, inputs):
        theta4, masks = inputs
        if self.stop_gradient:
            theta4, masks = tf.stop_gradient(theta4), tf.stop_gradient(masks)
        theta4 = tf.cast(theta4, self.compute_dtype)
        masks = tf.cast(masks, self.compute_dtype)
        weight_map = tf.reduce_max(masks[..., 1:], axis=-1, keepdims=True)  # M_w [B,N,h,w,1]
        theta5 = theta4 * weight_map
        shape = tf.shape(theta5)
        folded = tf.reshape(theta5, tf.concat([[-1], shape[2:]], axis=0))  # [B*N, h, w, C]
        pooled = tf.nn.max_pool2d(folded, ksize=2, strides=2, padding="VALID")
        vector = tf.reduce_mean(pooled, axis=(1, 2))  # [B*N, C]
        return tf.reshape(vector, tf.concat([shape[:2], shape[-1:]], axis=0))

    def compute_output_shape(self, input_shape):
        theta4_shape, masks_shape = input_shape
        if masks_shape[-1] is not None and masks_shape[-1] < 2:
            raise ValueError(f"{self.name}: the masks need a background and at least one "
                             f"foreground map, got {masks_shape[-1]} map(s)")
        return (theta4_shape[0], theta4_shape[1], theta4_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(stop_gradient=self.stop_gradient)
        return config
