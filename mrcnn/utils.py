"""Matterport's ``mrcnn.utils`` names, re-exported from the modules that now hold them, so that
``from mrcnn import utils; utils.Dataset``, ``utils.compute_overlaps`` and ``utils.compute_ap``
keep working."""

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
from mrcnn.instance_eval import compute_ap, compute_ap_range, compute_matches, compute_recall
from mrcnn.weights import COCO_WEIGHTS_URL as COCO_MODEL_URL
from mrcnn.weights import download_trained_weights

__all__ = [
    "COCO_MODEL_URL",
    "Dataset",
    "apply_box_deltas",
    "box_refinement",
    "compose_image_meta",
    "compute_ap",
    "compute_ap_range",
    "compute_matches",
    "compute_overlaps",
    "compute_overlaps_masks",
    "compute_recall",
    "denorm_boxes",
    "download_trained_weights",
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
