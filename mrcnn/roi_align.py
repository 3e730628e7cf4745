"""ROIAlign (He et al. 2017, "aligned"): fixed-size features for boxes, single map or pyramid.

Sampling follows docs/DESIGN.md: a normalised box times (h, w) gives feature coordinates, where
the value at index ``i`` lives at ``i + 0.5``. The box is cut into ``ph x pw`` bins, each bin into
``s x s`` sub-cells, every sub-cell centre is read bilinearly and each bin averages its samples.

``tf.image.crop_and_resize`` samples a regular grid whose first and last points sit on the box
edges. The ``(ph*s) x (pw*s)`` sub-cell centres form such a grid too, only inset by half a
sub-cell, so we hand crop_and_resize that inset box and then average ``s x s`` blocks. Before
that the map is padded by one replicated cell on every side: a sample up to one cell outside the
map then reads the border value (clamping); further out it reads 0 (torchvision's rule; boxes
inside the image never sample further than half a cell outside).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from mrcnn.image_meta import parse_image_meta_graph
from mrcnn.precision import Float32Layer

# Level assignment of the FPN paper (eq. 1): a 224 x 224 box belongs to level 4.
CANONICAL_SIZE = 224.0
CANONICAL_LEVEL = 4
MIN_LEVEL = 2
MAX_LEVEL = 5


def _output_size(output_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(output_size, int):
        return output_size, output_size
    height, width = (int(v) for v in output_size)
    return height, width


def _sample_grid_boxes(boxes: tf.Tensor, map_size: tf.Tensor, samples: int) -> tf.Tensor:
    """One axis of the crop_and_resize boxes whose edge samples are the sub-cell centres.

    ``boxes`` holds (start, end) normalised coordinates [N, 2] of one axis, ``map_size`` the
    unpadded map size and ``samples`` the sample count along that axis; the result addresses
    the map padded by one cell per side.
    """
    start = boxes[:, 0] * map_size
    length = (boxes[:, 1] - boxes[:, 0]) * map_size
    half_step = 0.5 * length / samples
    # Index of a point at coordinate c on the padded map: c - 0.5 + 1.
    first = start + half_step + 0.5
    last = start + length - half_step + 0.5
    # crop_and_resize maps a normalised coordinate t to index t * (size - 1); padded size - 1
    # is map_size + 1.
    return tf.stack([first, last], axis=1) / (map_size + 1.0)


def _channels(tensor: tf.Tensor) -> int | tf.Tensor:
    """Channel count, static when known so that reshapes keep it."""
    return tensor.shape[-1] if tensor.shape[-1] is not None else tf.shape(tensor)[-1]


def _unflatten(pooled: tf.Tensor, boxes: tf.Tensor, channels: int | tf.Tensor) -> tf.Tensor:
    """[B*N, ph, pw, C] back to [B, N, ph, pw, C], keeping every static size that is known."""
    dynamic = tf.shape(boxes)
    batch = boxes.shape[0] if boxes.shape[0] is not None else dynamic[0]
    count = boxes.shape[1] if boxes.shape[1] is not None else dynamic[1]
    return tf.reshape(pooled, [batch, count, pooled.shape[1], pooled.shape[2], channels])


def crop_and_resize_aligned(
    images: tf.Tensor,
    boxes: tf.Tensor,
    box_indices: tf.Tensor,
    output_size: int | Sequence[int],
    sampling_ratio: int = 2,
) -> tf.Tensor:
    """ROIAlign of normalised boxes [N, 4] on images [M, h, w, C] -> [N, ph, pw, C].

    ``box_indices`` [N] picks the image of each box. ``sampling_ratio`` s gives s x s samples per
    bin; s = 1 is plain bin-centre bilinear sampling. Gradients reach ``images`` only.
    """
    if int(sampling_ratio) < 1:
        raise ValueError(f"roi_align: sampling_ratio must be >= 1, got {sampling_ratio}")
    samples = int(sampling_ratio)
    pool_height, pool_width = _output_size(output_size)
    images = tf.convert_to_tensor(images)
    boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
    shape = tf.shape(images)
    height = tf.cast(shape[1], tf.float32)
    width = tf.cast(shape[2], tf.float32)
    rows = _sample_grid_boxes(tf.gather(boxes, [0, 2], axis=1), height, pool_height * samples)
    cols = _sample_grid_boxes(tf.gather(boxes, [1, 3], axis=1), width, pool_width * samples)
    grid_boxes = tf.stack([rows[:, 0], cols[:, 0], rows[:, 1], cols[:, 1]], axis=1)
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    sampled = tf.image.crop_and_resize(
        padded,
        grid_boxes,
        tf.cast(box_indices, tf.int32),
        [pool_height * samples, pool_width * samples],
        method="bilinear",
        extrapolation_value=0.0,
    )
    if samples > 1:
        # The mean of each s x s block, as average pooling: on a CPU oneDNN's pooling is
        # 10-15x faster than a reshape and Eigen's reduction over two strided axes.
        sampled = tf.nn.avg_pool2d(sampled, ksize=samples, strides=samples, padding="VALID")
    if images.dtype.is_floating and images.dtype != tf.float32:
        sampled = tf.cast(sampled, images.dtype)
    return sampled


def roi_align(
    feature_map: tf.Tensor,
    boxes: tf.Tensor,
    output_size: int | Sequence[int],
    sampling_ratio: int = 2,
) -> tf.Tensor:
    """ROIAlign of batched boxes [B, N, 4] on feature_map [B, h, w, C] -> [B, N, ph, pw, C]."""
    pool_height, pool_width = _output_size(output_size)
    boxes = tf.convert_to_tensor(boxes)
    batch_and_count = tf.shape(boxes)[:2]
    flat_boxes = tf.reshape(boxes, [-1, 4])
    box_indices = tf.repeat(tf.range(batch_and_count[0]), batch_and_count[1])
    pooled = crop_and_resize_aligned(
        feature_map, flat_boxes, box_indices, (pool_height, pool_width), sampling_ratio
    )
    return _unflatten(pooled, boxes, _channels(feature_map))


def level_for_boxes(boxes: tf.Tensor, image_shape: tf.Tensor) -> tf.Tensor:
    """Pyramid level (int32, MIN_LEVEL..MAX_LEVEL) of normalised boxes [..., 4].

    ``image_shape`` is the model input (H, W): a [2] tensor, or [B, 2] for boxes [B, N, 4].
    Level ``4 + round(log2(sqrt(h * w) / 224))`` with h, w in input pixels (FPN paper; the
    rounding is Matterport's). Empty (padding) boxes land on the lowest level.
    """
    boxes = tf.cast(boxes, tf.float32)
    image_shape = tf.cast(image_shape, tf.float32)
    if image_shape.shape.rank == 2:
        image_shape = image_shape[:, None, :]
    heights = (boxes[..., 2] - boxes[..., 0]) * image_shape[..., 0]
    widths = (boxes[..., 3] - boxes[..., 1]) * image_shape[..., 1]
    # At least one square pixel, so an empty box gives a finite (lowest) level, not log2(0).
    size = tf.sqrt(tf.maximum(heights * widths, 1.0))
    level = CANONICAL_LEVEL + tf.round(tf.math.log(size / CANONICAL_SIZE) / tf.math.log(2.0))
    return tf.cast(tf.clip_by_value(level, MIN_LEVEL, MAX_LEVEL), tf.int32)


class ROIAlign(Float32Layer):
    """ROIAlign on one feature map: call([boxes [B, N, 4], feature_map]) -> [B, N, ph, pw, C]."""

    def __init__(self, pool_shape: int | Sequence[int], sampling_ratio: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.pool_shape = _output_size(pool_shape)
        self.sampling_ratio = int(sampling_ratio)
        self.supports_jit = False  # crop_and_resize has no XLA kernel

    def call(self, inputs):
        boxes, feature_map = inputs
        return roi_align(feature_map, boxes, self.pool_shape, self.sampling_ratio)

    def compute_output_shape(self, input_shape):
        boxes_shape, map_shape = input_shape
        return (boxes_shape[0], boxes_shape[1], *self.pool_shape, map_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(pool_shape=list(self.pool_shape), sampling_ratio=self.sampling_ratio)
        return config


class PyramidROIAlign(Float32Layer):
    """ROIAlign over FPN levels P2..P5, each box on the level its size picks.

    call([boxes [B, N, 4], image_meta [B, META], p2, p3, p4, p5]) -> [B, N, ph, pw, C] in the
    order of the input boxes (Matterport's input order). The model input size (H, W) is read
    from image_meta's image shape.
    """

    def __init__(self, pool_shape: int | Sequence[int], sampling_ratio: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.pool_shape = _output_size(pool_shape)
        self.sampling_ratio = int(sampling_ratio)
        self.supports_jit = False  # data-dependent level split and crop_and_resize

    def call(self, inputs):
        boxes, image_meta, *feature_maps = inputs
        if len(feature_maps) != MAX_LEVEL - MIN_LEVEL + 1:
            raise ValueError(
                f"{self.name}: expects maps for levels P{MIN_LEVEL}..P{MAX_LEVEL}, got "
                f"{len(feature_maps)}"
            )
        boxes = tf.cast(boxes, tf.float32)
        image_shape = parse_image_meta_graph(image_meta)["image_shape"][:, :2]
        levels = tf.reshape(level_for_boxes(boxes, image_shape), [-1])
        batch_and_count = tf.shape(boxes)[:2]
        flat_boxes = tf.reshape(boxes, [-1, 4])
        image_indices = tf.repeat(tf.range(batch_and_count[0]), batch_and_count[1])

        pooled, order = [], []
        for level, feature_map in enumerate(feature_maps, start=MIN_LEVEL):
            chosen = tf.cast(tf.where(tf.equal(levels, level))[:, 0], tf.int32)
            pooled.append(
                crop_and_resize_aligned(
                    feature_map,
                    tf.gather(flat_boxes, chosen),
                    tf.gather(image_indices, chosen),
                    self.pool_shape,
                    self.sampling_ratio,
                )
            )
            order.append(chosen)
        # The levels' outputs, concatenated, are a permutation of the boxes: undo it.
        restore = tf.math.invert_permutation(tf.concat(order, axis=0))
        pooled = tf.gather(tf.concat(pooled, axis=0), restore)
        return _unflatten(pooled, boxes, _channels(feature_maps[0]))

    def compute_output_shape(self, input_shape):
        boxes_shape = input_shape[0]
        return (boxes_shape[0], boxes_shape[1], *self.pool_shape, input_shape[2][-1])

    def get_config(self):
        config = super().get_config()
        config.update(pool_shape=list(self.pool_shape), sampling_ratio=self.sampling_ratio)
        return config
