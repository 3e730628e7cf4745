"""ROIAlign against a loop reference, hand-worked samples, gradients, FPN levels, Keras use."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.roi_align import (
    PyramidROIAlign,
    ROIAlign,
    crop_and_resize_aligned,
    level_for_boxes,
    roi_align,
)

# ---------------------------------------------------------------------------- reference


def bilinear(feature: np.ndarray, y: float, x: float) -> np.ndarray:
    """Value of feature [h, w, C] at index-space point (y, x).

    Points up to one cell outside the map read the border (clamped); further out read 0.
    """
    height, width = feature.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(feature.shape[2])
    y = min(max(y, 0.0), height - 1.0)
    x = min(max(x, 0.0), width - 1.0)
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    wy, wx = y - y0, x - x0
    return (
        feature[y0, x0] * (1 - wy) * (1 - wx)
        + feature[y0, x1] * (1 - wy) * wx
        + feature[y1, x0] * wy * (1 - wx)
        + feature[y1, x1] * wy * wx
    )


def reference_roi_align(feature, box, output_size, sampling_ratio):
    """ROIAlign of one normalised box on feature [h, w, C], written out loop by loop."""
    height, width = feature.shape[:2]
    pool_h, pool_w = output_size
    top, left = box[0] * height, box[1] * width
    bin_h = (box[2] - box[0]) * height / pool_h
    bin_w = (box[3] - box[1]) * width / pool_w
    out = np.zeros((pool_h, pool_w, feature.shape[2]))
    for i in range(pool_h):
        for j in range(pool_w):
            total = np.zeros(feature.shape[2])
            for a in range(sampling_ratio):
                for b in range(sampling_ratio):
                    # sub-cell centre in feature coordinates; value at index k lives at k + 0.5
                    y = top + i * bin_h + (a + 0.5) * bin_h / sampling_ratio
                    x = left + j * bin_w + (b + 0.5) * bin_w / sampling_ratio
                    total += bilinear(feature, y - 0.5, x - 0.5)
            out[i, j] = total / sampling_ratio**2
    return out


def random_boxes(rng, count, low=-0.05, high=1.05):
    """Normalised boxes, most inside the map, some up to half a cell beyond its edge."""
    corners = rng.uniform(low, high, size=(count, 2, 2))
    return np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1).astype(np.float32)


# -------------------------------------------------------------------- crop_and_resize_aligned


@pytest.mark.parametrize(
    ("map_size", "output_size", "sampling_ratio"),
    [
        ((8, 8), (7, 7), 1),
        ((8, 8), (7, 7), 2),
        ((13, 6), (3, 5), 2),
        ((5, 17), (4, 2), 1),
        ((16, 16), (2, 3), 3),
        ((1, 4), (2, 2), 2),
    ],
)
def test_matches_loop_reference(map_size, output_size, sampling_ratio):
    rng = np.random.default_rng(sum(map_size) + sampling_ratio)
    images = rng.uniform(size=(2, *map_size, 3)).astype(np.float32)
    boxes = random_boxes(rng, 12)
    box_indices = rng.integers(0, 2, size=12).astype(np.int32)
    got = crop_and_resize_aligned(images, boxes, box_indices, output_size, sampling_ratio)
    expected = np.stack(
        [
            reference_roi_align(images[i], box, output_size, sampling_ratio)
            for box, i in zip(boxes, box_indices, strict=True)
        ]
    )
    assert got.shape == (12, *output_size, 3)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_far_outside_reads_zero_near_outside_clamps():
    feature = np.arange(1.0, 17.0, dtype=np.float32).reshape(1, 4, 4, 1)
    boxes = np.array(
        [
            [2.0, 2.0, 3.0, 3.0],  # entirely far outside the map
            [-0.25, -0.25, 0.0, 0.0],  # one cell above-left: sample at index -1.0, clamps
        ],
        dtype=np.float32,
    )
    got = crop_and_resize_aligned(feature, boxes, np.zeros(2, np.int32), (1, 1), 1).numpy()
    np.testing.assert_allclose(got[:, 0, 0, 0], [0.0, 1.0], atol=1e-6)


def test_samples_at_bin_centres_unlike_plain_crop_and_resize():
    # value = 10 * row + col, so bilinear reads are exact: index (r, c) reads 10 r + c
    ramp = (10 * np.arange(4)[:, None] + np.arange(4)[None, :]).astype(np.float32)
    feature = ramp.reshape(1, 4, 4, 1)
    whole = np.array([[0.0, 0.0, 1.0, 1.0]], dtype=np.float32)
    # 2 x 2 bins of 2 x 2 cells: bin centres at coordinates 1 and 3, i.e. indices 0.5 and 2.5
    ours = crop_and_resize_aligned(feature, whole, [0], (2, 2), 1).numpy()[0, ..., 0]
    np.testing.assert_allclose(ours, [[5.5, 7.5], [25.5, 27.5]], atol=1e-5)
    # crop_and_resize puts its 2 x 2 samples on the corner cells instead
    plain = tf.image.crop_and_resize(feature, whole, [0], [2, 2]).numpy()[0, ..., 0]
    np.testing.assert_allclose(plain, [[0.0, 3.0], [30.0, 33.0]], atol=1e-5)


def test_sampling_ratio_averages_sub_cells():
    # one row [0, 0, 8, 0]; the whole box as one bin
    feature = np.array([0, 0, 8, 0], dtype=np.float32).reshape(1, 1, 4, 1)
    whole = np.array([[0.0, 0.0, 1.0, 1.0]], dtype=np.float32)
    # s = 1: one sample at coordinate 2 = index 1.5, halfway between 0 and 8
    one = crop_and_resize_aligned(feature, whole, [0], (1, 1), 1).numpy().item()
    # s = 2: samples at coordinates 1 and 3 = indices 0.5 (reads 0) and 2.5 (reads 4)
    two = crop_and_resize_aligned(feature, whole, [0], (1, 1), 2).numpy().item()
    assert one == pytest.approx(4.0, abs=1e-5)
    assert two == pytest.approx(2.0, abs=1e-5)


def test_gradient_reaches_feature_map_not_boxes():
    rng = np.random.default_rng(5)
    feature = tf.Variable(rng.normal(size=(2, 6, 6, 3)).astype(np.float32))
    boxes = tf.Variable(random_boxes(rng, 5, low=0.0, high=1.0))
    indices = tf.constant([0, 1, 1, 0, 1], tf.int32)
    with tf.GradientTape(persistent=True) as tape:
        pooled = crop_and_resize_aligned(feature, boxes, indices, (3, 3), 2)
        total = tf.reduce_sum(pooled)
    grad = tape.gradient(total, feature).numpy()
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    # bilinear weights of every sample sum to 1 and all samples lie inside the clamp zone,
    # so the gradient of the sum of all outputs sums to the number of outputs
    assert grad.sum() == pytest.approx(float(tf.size(pooled)), rel=1e-5)
    assert tape.gradient(total, boxes) is None


def test_rejects_bad_sampling_ratio():
    with pytest.raises(ValueError, match="sampling_ratio"):
        crop_and_resize_aligned(np.zeros((1, 4, 4, 1), np.float32), np.zeros((1, 4)), [0],
                                (2, 2), 0)


def test_batched_roi_align_matches_reference():
    rng = np.random.default_rng(6)
    feature = rng.uniform(size=(3, 10, 12, 2)).astype(np.float32)
    boxes = random_boxes(rng, 12).reshape(3, 4, 4)
    got = roi_align(feature, boxes, (3, 3), 2).numpy()
    assert got.shape == (3, 4, 3, 3, 2)
    for b in range(3):
        for n in range(4):
            expected = reference_roi_align(feature[b], boxes[b, n], (3, 3), 2)
            np.testing.assert_allclose(got[b, n], expected, atol=1e-5)


# -------------------------------------------------------------------------------- levels


def square_box(size_px: float, image_px: float = 1024.0) -> list[float]:
    side = size_px / image_px
    return [0.1, 0.1, 0.1 + side, 0.1 + side]


def test_level_for_boxes_hand_picked_sizes():
    # size -> 4 + round(log2(size / 224)), clipped to 2..5
    cases = {
        224: 4,  # canonical
        112: 3,
        56: 2,
        20: 2,  # log2 -> -3.5, clipped
        448: 5,
        896: 5,  # 6, clipped
        160: 4,  # log2(160/224) = -0.49 rounds to 0
        150: 3,  # log2(150/224) = -0.58 rounds to -1
    }
    boxes = tf.constant([square_box(size) for size in cases], tf.float32)
    levels = level_for_boxes(boxes, tf.constant([1024, 1024]))
    assert levels.dtype == tf.int32
    np.testing.assert_array_equal(levels.numpy(), list(cases.values()))


def test_level_for_boxes_uses_pixel_area_and_per_image_shapes():
    boxes = tf.constant(
        [
            [[0.0, 0.0, 0.4375, 0.21875],  # 224 x 224 px in a 512 x 1024 input: level 4
             [0.0, 0.0, 0.0, 0.0]],  # padding: lowest level
            [[0.0, 0.0, 0.4375, 0.4375],  # 112 x 112 px in a 256 x 256 input: level 3
             [0.0, 0.0, 0.75, 0.125]],  # 192 x 32 px: sqrt -> 78.4, log2(78.4 / 224) = -1.52
        ],
        tf.float32,
    )
    image_shapes = tf.constant([[512, 1024], [256, 256]])
    np.testing.assert_array_equal(level_for_boxes(boxes, image_shapes).numpy(), [[4, 2], [3, 2]])


# ------------------------------------------------------------------------------- pyramid

IMAGE_SIZE = 512
POOL = (3, 3)


def image_meta(batch: int, height: int = IMAGE_SIZE, width: int = IMAGE_SIZE) -> np.ndarray:
    """Matterport's meta layout for 2 classes; only the image shape at [4:6] matters here."""
    meta = np.zeros((batch, 12 + 2), dtype=np.float32)
    meta[:, 1:4] = meta[:, 4:7] = (height, width, 3)
    meta[:, 7:11] = (0, 0, height, width)
    meta[:, 11] = 1.0
    return meta


@pytest.fixture(scope="module")
def pyramid_inputs():
    rng = np.random.default_rng(7)
    # P2..P5 at strides 4..32; each level offset by 100 * level so a wrong level shows
    maps = [
        (rng.uniform(size=(2, IMAGE_SIZE // stride, IMAGE_SIZE // stride, 2)) + 100 * level)
        .astype(np.float32)
        for level, stride in zip(range(2, 6), (4, 8, 16, 32), strict=True)
    ]
    sizes_px = [[50, 400, 100, 0, 200], [200, 100, 30, 450, 60]]  # 0: padding
    expected_levels = [[2, 5, 3, None, 4], [4, 3, 2, 5, 2]]
    boxes = np.zeros((2, 5, 4), dtype=np.float32)
    for b in range(2):
        for n, size in enumerate(sizes_px[b]):
            if size:
                top, left = rng.uniform(0, IMAGE_SIZE - size, size=2)
                boxes[b, n] = np.array([top, left, top + size, left + size]) / IMAGE_SIZE
    return boxes, image_meta(2), maps, expected_levels


def test_pyramid_pools_each_box_from_its_level(pyramid_inputs):
    boxes, meta, maps, expected_levels = pyramid_inputs
    layer = PyramidROIAlign(POOL, sampling_ratio=2)
    pooled = layer([tf.constant(boxes), tf.constant(meta), *maps]).numpy()
    assert pooled.shape == (2, 5, *POOL, 2)
    assert np.all(np.isfinite(pooled))
    levels = level_for_boxes(boxes, meta[:, 4:6]).numpy()
    for b in range(2):
        for n, level in enumerate(expected_levels[b]):
            if level is None:
                continue
            assert levels[b, n] == level
            expected = reference_roi_align(maps[level - 2][b], boxes[b, n], POOL, 2)
            np.testing.assert_allclose(pooled[b, n], expected, atol=1e-4)


def test_layers_in_functional_model(pyramid_inputs):
    boxes, meta, maps, _ = pyramid_inputs
    box_input = keras.Input((5, 4), name="boxes")
    meta_input = keras.Input((meta.shape[1],), name="meta")
    map_inputs = [keras.Input(m.shape[1:], name=f"p{level}") for level, m in enumerate(maps, 2)]
    pyramid = PyramidROIAlign(POOL, name="pyramid")([box_input, meta_input, *map_inputs])
    single = ROIAlign((2, 4), sampling_ratio=1, name="single")([box_input, map_inputs[1]])
    assert tuple(pyramid.shape) == (None, 5, *POOL, 2)
    assert tuple(single.shape) == (None, 5, 2, 4, 2)
    model = keras.Model([box_input, meta_input, *map_inputs], [pyramid, single])
    pyramid_out, single_out = model.predict([boxes, meta, *maps], verbose=0)
    direct = PyramidROIAlign(POOL)([tf.constant(boxes), tf.constant(meta), *maps])
    np.testing.assert_allclose(pyramid_out, direct.numpy(), atol=1e-6)
    np.testing.assert_allclose(single_out, roi_align(maps[1], boxes, (2, 4), 1).numpy(),
                               atol=1e-6)


def test_layers_config_round_trip():
    for layer_class in (ROIAlign, PyramidROIAlign):
        layer = layer_class((7, 5), sampling_ratio=3, name="pool")
        clone = layer_class.from_config(layer.get_config())
        assert clone.pool_shape == (7, 5) and clone.sampling_ratio == 3 and clone.name == "pool"
