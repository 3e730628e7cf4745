"""Anchors: hand-worked positions and sizes, Matterport's order, per-level scales, caching."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn.anchors import (
    anchors_per_location,
    compute_backbone_shapes,
    generate_anchors,
    generate_pyramid_anchors,
    get_anchors,
)
from mrcnn.config import Config


class TinyC4Config(Config):
    NAME = "tiny_c4"
    NUM_CLASSES = 2
    BACKBONE = "tiny"
    FEATURE_LAYOUT = "c4"
    HEAD_LAYOUT = "paper"
    IMAGE_MIN_DIM = IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (16, 32)
    RPN_ANCHOR_RATIOS = (0.5, 1, 2)


class TinyFPNConfig(Config):
    NAME = "tiny_fpn"
    NUM_CLASSES = 2
    BACKBONE = "tiny"
    FEATURE_LAYOUT = "fpn"
    HEAD_LAYOUT = "matterport"
    IMAGE_MIN_DIM = IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_ANCHOR_RATIOS = (0.5, 1, 2)


def test_generate_anchors_positions_hand_worked():
    anchors = generate_anchors([8], [1], shape=(2, 3), feature_stride=4, anchor_stride=1)
    # centres at (i + 0.5) * 4: rows 2, 6; columns 2, 6, 10; row-major; boxes 8 x 8
    expected = [
        [-2, -2, 6, 6], [-2, 2, 6, 10], [-2, 6, 6, 14],
        [2, -2, 10, 6], [2, 2, 10, 10], [2, 6, 10, 14],
    ]
    assert anchors.dtype == np.float32
    np.testing.assert_array_equal(anchors, expected)


def test_generate_anchors_shapes_ratio_major_scale_fastest():
    anchors = generate_anchors([8, 16], [0.25, 1], shape=(1, 1), feature_stride=16,
                               anchor_stride=1)
    # centre (8, 8); ratio = width / height: h = scale / sqrt(ratio), w = scale * sqrt(ratio)
    expected = [
        [0, 6, 16, 10],  # ratio 0.25, scale 8: 16 high, 4 wide
        [-8, 4, 24, 12],  # ratio 0.25, scale 16: 32 x 8
        [4, 4, 12, 12],  # ratio 1, scale 8
        [0, 0, 16, 16],  # ratio 1, scale 16
    ]
    np.testing.assert_allclose(anchors, expected, atol=1e-5)


def test_generate_anchors_anchor_stride_skips_cells():
    anchors = generate_anchors([4], [1], shape=(4, 3), feature_stride=4, anchor_stride=2)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    # cells 0 and 2 in y, 0 and 2 in x -> centres 2 and 10
    np.testing.assert_array_equal(centres, [[2, 2], [2, 10], [10, 2], [10, 10]])


def test_generate_anchors_order_on_a_larger_grid():
    scales, ratios, stride = [10, 20, 40], [0.5, 1, 2], 8
    anchors = generate_anchors(scales, ratios, shape=(5, 4), feature_stride=stride,
                               anchor_stride=1).reshape(5, 4, len(ratios), len(scales), 4)
    centre_y = (anchors[..., 0] + anchors[..., 2]) / 2
    centre_x = (anchors[..., 1] + anchors[..., 3]) / 2
    heights = anchors[..., 2] - anchors[..., 0]
    widths = anchors[..., 3] - anchors[..., 1]
    rows, cols = np.meshgrid(np.arange(5), np.arange(4), indexing="ij")
    np.testing.assert_allclose(centre_y, np.broadcast_to(((rows + 0.5) * stride)[..., None, None],
                                                          centre_y.shape), atol=1e-5)
    np.testing.assert_allclose(centre_x, np.broadcast_to(((cols + 0.5) * stride)[..., None, None],
                                                          centre_x.shape), atol=1e-5)
    for r, ratio in enumerate(ratios):
        for s, scale in enumerate(scales):
            np.testing.assert_allclose(heights[..., r, s], scale / np.sqrt(ratio), rtol=1e-5)
            np.testing.assert_allclose(widths[..., r, s], scale * np.sqrt(ratio), rtol=1e-5)


def test_pyramid_anchors_one_level_takes_all_scales():
    anchors = generate_pyramid_anchors([16, 32], [0.5, 1, 2], [(4, 4)], [16], 1)
    np.testing.assert_array_equal(anchors, generate_anchors([16, 32], [0.5, 1, 2], (4, 4), 16, 1))
    assert anchors.shape == (4 * 4 * 6, 4)


def test_pyramid_anchors_one_scale_per_level_in_level_order():
    shapes, strides, scales = [(4, 4), (2, 2)], [4, 8], [8, 16]
    anchors = generate_pyramid_anchors(scales, [1, 2], shapes, strides, 1)
    first = generate_anchors([8], [1, 2], (4, 4), 4, 1)
    second = generate_anchors([16], [1, 2], (2, 2), 8, 1)
    np.testing.assert_array_equal(anchors, np.concatenate([first, second]))


def test_pyramid_anchors_reject_scale_count_mismatch():
    with pytest.raises(ValueError, match="RPN_ANCHOR_SCALES"):
        generate_pyramid_anchors([8, 16, 32], [1], [(4, 4), (2, 2)], [4, 8], 1)


def test_compute_backbone_shapes():
    np.testing.assert_array_equal(compute_backbone_shapes(TinyC4Config(), (64, 64, 3)), [[4, 4]])
    np.testing.assert_array_equal(
        compute_backbone_shapes(TinyFPNConfig(), (70, 50)),
        # ceil(70 / s), ceil(50 / s) for s = 4, 8, 16, 32, 64
        [[18, 13], [9, 7], [5, 4], [3, 2], [2, 1]],
    )


def test_anchors_per_location():
    assert anchors_per_location(TinyC4Config()) == 6
    assert anchors_per_location(TinyFPNConfig()) == 3


@pytest.mark.parametrize("config_class", [TinyC4Config, TinyFPNConfig])
def test_get_anchors_counts_and_normalisation(config_class):
    config = config_class()
    anchors = get_anchors(config, config.IMAGE_SHAPE)
    shapes = compute_backbone_shapes(config, config.IMAGE_SHAPE)
    assert anchors.shape == (int(np.prod(shapes, axis=1).sum()) * anchors_per_location(config), 4)
    assert anchors.dtype == np.float32
    pixel = generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, shapes,
                                     config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
    np.testing.assert_allclose(anchors, pixel / 64.0, rtol=1e-6)


def test_get_anchors_fpn_count_hand_worked():
    # 16^2 + 8^2 + 4^2 + 2^2 + 1^2 = 341 positions, 3 ratios each
    assert get_anchors(TinyFPNConfig(), (64, 64)).shape == (1023, 4)


def test_get_anchors_is_cached_and_read_only():
    config = TinyC4Config()
    first = get_anchors(config, (64, 64, 3))
    assert get_anchors(config, (64, 64)) is first
    assert get_anchors(TinyC4Config(), (64, 64, 3)) is first  # same values, another instance
    with pytest.raises(ValueError):
        first[0, 0] = 1.0
    wider = get_anchors(config, (64, 128))
    assert wider is not first and wider.shape[0] == 2 * first.shape[0]

    class OtherScales(TinyC4Config):
        RPN_ANCHOR_SCALES = (8, 32)

    other = get_anchors(OtherScales(), (64, 64))
    assert other.shape == first.shape and not np.array_equal(other, first)
