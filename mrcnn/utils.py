"""Matterport's ``mrcnn.utils`` names, re-exported from the modules that now hold them, so that
``from mrcnn import utils; utils.Dataset`` and ``utils.compute_overlaps`` keep working."""

from mrcnn.anchors import generate_anchors, generate_pyramid_anchors
from mrcnn.box_ops import (
    apply_box_deltas,
    box_refinement,
    compute_overlaps,
    compute_overlaps_masks,
    denorm_boxes,
    extract_bboxes,
    non_max_suppression,
    norm_boxes,
)
from mrcnn.data import (
    compose_image_meta,
    expand_mask,
    minimize_mask,
    mold_image,
    parse_image_meta,
    resize_image,
    resize_mask,
    unmold_image,
    unmold_mask,
)
from mrcnn.dataset import Dataset

__all__ = [
    "Dataset",
    "apply_box_deltas",
    "box_refinement",
    "compose_image_meta",
    "compute_overlaps",
    "compute_overlaps_masks",
    "denorm_boxes",
    "expand_mask",
    "extract_bboxes",
    "generate_anchors",
    "generate_pyramid_anchors",
    "minimize_mask",
    "mold_image",
    "non_max_suppression",
    "norm_boxes",
    "parse_image_meta",
    "resize_image",
    "resize_mask",
    "unmold_image",
    "unmold_mask",
]
