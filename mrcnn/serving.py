"""``MaskRCNN.detect``'s pre- and post-processing as TensorFlow ops, for a graph that serves
images with neither numpy nor this package (``ftmtl.export`` writes one as a SavedModel).

Each step does what its numpy counterpart in ``detect`` does: ``mold_images`` is
``mrcnn.data.mold_inputs`` (channels, resize, padding, MEAN_PIXEL, image_meta) with the anchors
of ``mrcnn.anchors.get_anchors``; ``to_input_pixels`` is ``mrcnn.model.to_original_pixels``;
``paste_masks`` is ``mrcnn.data.unmold_mask``. ``detect`` resizes as skimage does (bilinear,
half-pixel centres, zeros beyond the edges, no anti-aliasing; ``mrcnn.resample``); here the
same sampling is a pair of interpolation matrices, so both paths agree to float rounding
(tests/test_export.py).

A batch is one tensor: its images share one size, and so one scale, padding and window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from mrcnn.anchors import anchors_per_location, generate_pyramid_anchors

F64 = tf.float64


@dataclass(frozen=True)
class MoldedBatch:
    """The model's inputs for a batch, and what maps its outputs back to the given images."""

    images: tf.Tensor  # [B, h, w, C] float32: resized, padded, MEAN_PIXEL subtracted
    image_meta: tf.Tensor  # [B, IMAGE_META_SIZE] float32
    anchors: tf.Tensor  # [B, A, 4] float32, normalised to (h, w)
    window: tf.Tensor  # [4] float64: (y1, x1, y2, x2) of the image inside the padding, pixels
    image_shape: tf.Tensor  # [2] int32: (H, W) of the given images

    def model_inputs(self) -> dict[str, tf.Tensor]:
        return {"input_image": self.images, "input_image_meta": self.image_meta,
                "input_anchors": self.anchors}


# ------------------------------------------------------------------------------- molding
def image_batch(images: tf.Tensor, channels: int) -> tf.Tensor:
    """[B, H, W] or [B, H, W, 1 | 3] images of any real dtype -> float32 [B, H, W, channels],
    gray and colour converted as ``mrcnn.data.to_channels`` does."""
    tf.debugging.assert_rank_in(images, [3, 4],
                                message="images must be [batch, H, W] or [batch, H, W, C]")
    images = tf.cast(images, tf.float32)
    images = tf.reshape(images, tf.concat([tf.shape(images)[:3], [-1]], axis=0))
    if channels == 1:
        return tf.reduce_mean(images, axis=-1, keepdims=True)
    given = tf.shape(images)[3]
    tf.debugging.assert_equal(tf.logical_or(given == 1, given == channels), True,
                              message=f"images must have 1 or {channels} channels")
    shape = tf.concat([tf.shape(images)[:3], [channels]], axis=0)
    return tf.ensure_shape(tf.broadcast_to(images, shape), [None, None, None, channels])


def resize_scale(height: tf.Tensor, width: tf.Tensor, config) -> tf.Tensor:
    """The float64 factor ``mrcnn.data.resize_scale`` gives for the config's resize mode."""
    mode = config.IMAGE_RESIZE_MODE
    scale = tf.constant(1.0, F64)
    if mode == "none":
        return scale
    h, w = tf.cast(height, F64), tf.cast(width, F64)
    if config.IMAGE_MIN_DIM:
        scale = tf.maximum(scale, float(config.IMAGE_MIN_DIM) / tf.minimum(h, w))
    if config.IMAGE_MIN_SCALE:
        scale = tf.maximum(scale, float(config.IMAGE_MIN_SCALE))
    if config.IMAGE_MAX_DIM and mode == "square":
        longest = tf.maximum(h, w)
        max_dim = float(config.IMAGE_MAX_DIM)
        scale = tf.where(tf.round(longest * scale) > max_dim, max_dim / longest, scale)
    return scale


def interpolation_matrix(size, start, length, source: int | tf.Tensor) -> tf.Tensor:
    """float64 [..., size, source] weights that resample ``source`` values onto the positions
    start .. start + length - 1 of an axis of ``size`` (rows elsewhere are zero): linear, with
    half-pixel centres and zeros beyond the source's ends, as ``skimage.transform.resize``
    with order=1, mode="constant" and no anti-aliasing. ``start`` and ``length`` may be
    tensors of any shape [...]."""
    start = tf.cast(start, F64)[..., tf.newaxis]
    length = tf.cast(length, F64)[..., tf.newaxis]
    positions = tf.range(tf.cast(size, F64), dtype=F64) - start
    coords = (positions + 0.5) * (tf.cast(source, F64) / tf.maximum(length, 1.0)) - 0.5
    lower = tf.floor(coords)
    frac = (coords - lower)[..., tf.newaxis]
    index = tf.cast(lower, tf.int32)
    depth = tf.cast(source, tf.int32)
    weights = (tf.one_hot(index, depth, dtype=F64) * (1.0 - frac)
               + tf.one_hot(index + 1, depth, dtype=F64) * frac)  # out of range: all zero
    inside = (positions >= 0.0) & (positions < length)
    return tf.where(inside[..., tf.newaxis], weights, tf.zeros_like(weights))


def resize_images(images: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Bilinear resize of float32 [B, H, W, C] to [B, height, width, C] (see
    ``interpolation_matrix``), computed in float64 as skimage does."""
    shape = tf.shape(images)
    rows = interpolation_matrix(height, 0, height, shape[1])
    cols = interpolation_matrix(width, 0, width, shape[2])
    resized = tf.einsum("yh,bhwc->bywc", rows, tf.cast(images, F64))
    return tf.cast(tf.einsum("xw,bywc->byxc", cols, resized), tf.float32)


def padding(height: tf.Tensor, width: tf.Tensor, config) -> tuple[tf.Tensor, ...]:
    """(top, bottom, left, right) zero padding of a resized image of height x width, as
    ``mrcnn.data.resize_image`` (square, pad64) or ``resize_to_stride`` (crop) pads it."""
    mode = config.IMAGE_RESIZE_MODE
    zero = tf.constant(0, tf.int32)
    if mode == "square":
        extra_h = config.IMAGE_MAX_DIM - height
        extra_w = config.IMAGE_MAX_DIM - width
        return extra_h // 2, extra_h - extra_h // 2, extra_w // 2, extra_w - extra_w // 2
    if mode == "pad64":
        extra_h, extra_w = tf.math.floormod(-height, 64), tf.math.floormod(-width, 64)
        return extra_h // 2, extra_h - extra_h // 2, extra_w // 2, extra_w - extra_w // 2
    if mode == "crop":
        stride = max(config.BACKBONE_STRIDES)
        return zero, tf.math.floormod(-height, stride), zero, tf.math.floormod(-width, stride)
    return zero, zero, zero, zero


def mold_images(images: tf.Tensor, config) -> MoldedBatch:
    """``mold_inputs`` for a batch tensor [B, H, W] or [B, H, W, C]: the model's inputs."""
    images = image_batch(images, int(config.IMAGE_CHANNEL_COUNT))
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    scale = resize_scale(height, width, config)
    new_h = tf.cast(tf.round(tf.cast(height, F64) * scale), tf.int32)
    new_w = tf.cast(tf.round(tf.cast(width, F64) * scale), tf.int32)
    resized = tf.cond(tf.equal(scale, 1.0), lambda: images,
                      lambda: resize_images(images, new_h, new_w))
    top, bottom, left, right = padding(new_h, new_w, config)
    padded = tf.pad(resized, [[0, 0], [top, bottom], [left, right], [0, 0]])
    molded = padded - tf.constant(np.asarray(config.MEAN_PIXEL, np.float32))
    if config.IMAGE_RESIZE_MODE == "square":
        side = int(config.IMAGE_MAX_DIM)
        molded = tf.ensure_shape(molded, [None, side, side, None])
    molded_shape = tf.shape(molded)[1:3]
    window = tf.stack([top, left, top + new_h, left + new_w])
    meta = image_meta_row(tf.shape(images)[1:], tf.shape(molded)[1:], window, scale,
                          int(config.NUM_CLASSES))
    batch = shape[0]
    anchors = graph_anchors(config, molded_shape)
    return MoldedBatch(
        images=molded,
        image_meta=tf.tile(meta[tf.newaxis], [batch, 1]),
        anchors=tf.tile(anchors[tf.newaxis], [batch, 1, 1]),
        window=tf.cast(window, F64),
        image_shape=shape[1:3],
    )


def image_meta_row(original_shape, molded_shape, window, scale, num_classes: int) -> tf.Tensor:
    """One image_meta row (``mrcnn.image_meta`` layout) with image id 0 and no active class
    ids, as ``mold_inputs`` writes it."""
    parts = [tf.zeros([1]), original_shape, molded_shape, window, scale[tf.newaxis],
             tf.zeros([num_classes])]
    return tf.concat([tf.cast(p, tf.float32) for p in parts], axis=0)


def graph_anchors(config, image_shape: tf.Tensor) -> tf.Tensor:
    """``get_anchors(config, image_shape)`` for an image shape known only in the graph:
    float32 [A, 4], normalised.

    The anchor shapes of each level come from ``generate_pyramid_anchors`` itself, on a
    one-cell map at stride 0 (centred at the origin); the graph adds them to every cell's
    centre, positions row-major and shapes fastest, as that function orders them."""
    strides = [int(s) for s in config.BACKBONE_STRIDES]
    per_cell = anchors_per_location(config)
    shapes = generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                                      [(1, 1)] * len(strides), [0.0] * len(strides),
                                      1).reshape(len(strides), per_cell, 4)
    size = tf.cast(image_shape, F64)
    levels = []
    for stride, offsets in zip(strides, shapes, strict=True):
        rows = tf.math.ceil(size[0] / stride)
        cols = tf.math.ceil(size[1] / stride)
        step = float(config.RPN_ANCHOR_STRIDE)
        centre_y = (tf.range(0.0, rows, step, dtype=F64) + 0.5) * stride
        centre_x = (tf.range(0.0, cols, step, dtype=F64) + 0.5) * stride
        grid_y, grid_x = tf.meshgrid(centre_y, centre_x, indexing="ij")
        centres = tf.reshape(tf.stack([grid_y, grid_x, grid_y, grid_x], axis=-1), [-1, 1, 4])
        levels.append(tf.reshape(centres + tf.constant(offsets, F64), [-1, 4]))
    pixels = tf.cast(tf.concat(levels, axis=0), tf.float32)
    height, width = tf.cast(image_shape[0], tf.float32), tf.cast(image_shape[1], tf.float32)
    return pixels / tf.stack([height, width, height, width])


# ----------------------------------------------------------------------------- unmolding
def to_input_pixels(boxes: tf.Tensor, molded: MoldedBatch) -> tf.Tensor:
    """Normalised model-input boxes [B, D, 4] -> float64 boxes in the given images' pixels,
    rounded and clipped (``mrcnn.model.to_original_pixels``)."""
    molded_shape = tf.cast(tf.shape(molded.images)[1:3], tf.float32)
    h, w = molded_shape[0], molded_shape[1]
    pixels = tf.cast(tf.cast(boxes, tf.float32) * tf.stack([h, w, h, w]), F64)
    wy1, wx1, wy2, wx2 = tf.unstack(molded.window)
    original = tf.cast(molded.image_shape, F64)
    sy, sx = (wy2 - wy1) / original[0], (wx2 - wx1) / original[1]
    pixels = tf.round((pixels - tf.stack([wy1, wx1, wy1, wx1])) / tf.stack([sy, sx, sy, sx]))
    high = tf.stack([original[0], original[1], original[0], original[1]])
    return tf.clip_by_value(pixels, 0.0, high)


def paste_masks(masks: tf.Tensor, boxes: tf.Tensor, image_shape: tf.Tensor,
                threshold: float = 0.5) -> tf.Tensor:
    """Predicted [B, D, h, w] masks pasted into their pixel boxes [B, D, 4] (whole numbers,
    inside the image) of an image of ``image_shape`` (H, W): bool [B, D, H, W], each mask
    resized to its box and thresholded as ``mrcnn.data.unmold_mask`` does."""
    y1, x1, y2, x2 = tf.unstack(tf.cast(boxes, F64), axis=-1)
    mask_shape = tf.shape(masks)
    rows = interpolation_matrix(image_shape[0], y1, y2 - y1, mask_shape[2])  # [B, D, H, h]
    cols = interpolation_matrix(image_shape[1], x1, x2 - x1, mask_shape[3])  # [B, D, W, w]
    masks = tf.cast(masks, F64)
    full = tf.einsum("bdxw,bdyw->bdyx", cols, tf.einsum("bdyh,bdhw->bdyw", rows, masks))
    # skimage rounds its float64 result to the float32 of the masks before the threshold.
    return tf.cast(full, tf.float32) >= threshold
