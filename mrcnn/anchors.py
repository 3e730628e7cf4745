"""Anchor boxes: one set of shapes at every feature cell, in the order the RPN predicts them.

Order is a fact kept for Matterport weight compatibility: positions row-major (y, then x) and,
at one position, ``for ratio in ratios: for scale in scales``. Unlike Matterport, an anchor is
centred on its feature cell, at ``((i + 0.5) * stride, (j + 0.5) * stride)`` (docs/DESIGN.md).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from mrcnn.box_ops import norm_boxes


def generate_anchors(
    scales: Sequence[float],
    ratios: Sequence[float],
    shape: Sequence[int],
    feature_stride: float,
    anchor_stride: int,
) -> np.ndarray:
    """Pixel anchors [N, 4] float32 of one feature map of size ``shape`` (h, w).

    ``ratio`` is width / height: an anchor is ``scale / sqrt(ratio)`` high and
    ``scale * sqrt(ratio)`` wide.
    """
    ratio_grid, scale_grid = np.meshgrid(
        np.asarray(ratios, np.float64), np.asarray(scales, np.float64), indexing="ij"
    )
    heights = (scale_grid / np.sqrt(ratio_grid)).reshape(-1)  # ratio-major, scale fastest
    widths = (scale_grid * np.sqrt(ratio_grid)).reshape(-1)
    centre_y = (np.arange(0, shape[0], anchor_stride) + 0.5) * feature_stride
    centre_x = (np.arange(0, shape[1], anchor_stride) + 0.5) * feature_stride
    centre_y, centre_x = np.meshgrid(centre_y, centre_x, indexing="ij")  # row-major positions
    centre_y = centre_y.reshape(-1, 1)
    centre_x = centre_x.reshape(-1, 1)
    anchors = np.stack(
        [
            centre_y - 0.5 * heights,
            centre_x - 0.5 * widths,
            centre_y + 0.5 * heights,
            centre_x + 0.5 * widths,
        ],
        axis=-1,
    )  # [positions, shapes, 4]
    return anchors.reshape(-1, 4).astype(np.float32)


def generate_pyramid_anchors(
    scales: Sequence[float],
    ratios: Sequence[float],
    feature_shapes: Sequence[Sequence[int]],
    feature_strides: Sequence[float],
    anchor_stride: int,
) -> np.ndarray:
    """Anchors [A, 4] of every level, concatenated level by level.

    One level carries all scales (the C4 layout); several levels carry one scale each, in
    order (the FPN layout).
    """
    if len(feature_shapes) != len(feature_strides):
        raise ValueError(
            f"anchors: {len(feature_shapes)} feature shapes but {len(feature_strides)} strides"
        )
    if len(feature_shapes) == 1:
        scales_per_level = [list(scales)]
    elif len(scales) == len(feature_shapes):
        scales_per_level = [[scale] for scale in scales]
    else:
        raise ValueError(
            f"anchors: RPN_ANCHOR_SCALES needs one scale per level ({len(feature_shapes)}), "
            f"got {len(scales)}"
        )
    return np.concatenate(
        [
            generate_anchors(level_scales, ratios, shape, stride, anchor_stride)
            for level_scales, shape, stride in zip(
                scales_per_level, feature_shapes, feature_strides, strict=True
            )
        ],
        axis=0,
    )


def compute_backbone_shapes(config, image_shape: Sequence[int]) -> np.ndarray:
    """Feature map sizes [L, 2]: ceil(H / stride), ceil(W / stride) per backbone stride."""
    return np.array(_feature_shapes(config.BACKBONE_STRIDES, image_shape), dtype=np.int64)


def _feature_shapes(strides: Sequence[int], image_shape: Sequence[int]) -> list[tuple[int, int]]:
    return [
        (math.ceil(image_shape[0] / stride), math.ceil(image_shape[1] / stride))
        for stride in strides
    ]


def anchors_per_location(config) -> int:
    """Anchors at one feature cell: every ratio x scale on one level, else every ratio."""
    if len(config.BACKBONE_STRIDES) == 1:
        return len(config.RPN_ANCHOR_RATIOS) * len(config.RPN_ANCHOR_SCALES)
    return len(config.RPN_ANCHOR_RATIOS)


def get_anchors(config, image_shape: Sequence[int]) -> np.ndarray:
    """Normalised anchors [A, 4] float32 for a model input of ``image_shape`` (read-only, cached).

    Repeated calls with the same anchor settings and image size return the same array.
    """
    return _cached_anchors(
        tuple(float(s) for s in config.RPN_ANCHOR_SCALES),
        tuple(float(r) for r in config.RPN_ANCHOR_RATIOS),
        tuple(int(s) for s in config.BACKBONE_STRIDES),
        int(config.RPN_ANCHOR_STRIDE),
        (int(image_shape[0]), int(image_shape[1])),
    )


@functools.lru_cache(maxsize=32)
def _cached_anchors(
    scales: tuple[float, ...],
    ratios: tuple[float, ...],
    strides: tuple[int, ...],
    anchor_stride: int,
    image_size: tuple[int, int],
) -> np.ndarray:
    shapes = _feature_shapes(strides, image_size)
    anchors = generate_pyramid_anchors(scales, ratios, shapes, strides, anchor_stride)
    anchors = norm_boxes(anchors, image_size)
    anchors.setflags(write=False)
    return anchors
