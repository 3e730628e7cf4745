"""COCO's formats: run-length encoded masks, and an evaluation run's ground truth and detections
as the two JSON files pycocotools reads (``COCO(gt)``, ``gt.loadRes(results)``, ``COCOeval``).

``write_coco`` takes the ``CasePrediction``s of ``ftmtl.evaluation.predict_dataset`` and writes,
in the original DICOMs' pixels:

- ``coco_gt.json``: ``images`` (the dataset's image ids, the cases' ``file_name``, for
  INbreast the file id, and the DICOMs' sizes), ``categories`` (our class ids: 1 benign,
  2 malignant), ``annotations`` (one per mass: RLE mask, ``bbox``, ``area`` = the mask's pixel
  count, ``iscrowd`` 0);
- ``coco_results.json``: one entry per detection: ``image_id``, ``category_id``, ``bbox``,
  ``score``, ``segmentation`` (RLE of the predicted mask pasted back at full resolution).

Boxes are COCO's ``[x, y, width, height]`` of our ``(y1, x1, y2, x2)`` (exclusive ends), so
COCO's box IoU equals ``mrcnn.box_ops.compute_overlaps``. Detection boxes keep their sub-pixel
values (those our box AP scores). Annotation ids count from 1: COCOeval records a match by the
annotation id and reads 0 as none.

Masks are uncompressed RLE (``{"size": [h, w], "counts": [...]}``, runs over the column-major
pixels, the first a run of zeros, possibly empty): no pycocotools needed to write or read them,
and ``pycocotools.mask.frPyObjects`` accepts them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ftmtl.inbreast.dataset import CLASS_IDS

if TYPE_CHECKING:
    from ftmtl.evaluation import CasePrediction, MaskStack

GT_FILE = "coco_gt.json"
RESULTS_FILE = "coco_results.json"
# Our class ids by name, as INbreastDataset registers them (0 is the background).
CATEGORIES: dict[int, str] = {class_id: name for name, class_id in CLASS_IDS.items()}


# ------------------------------------------------------------------------------------- RLE
def rle_encode(mask: np.ndarray, box: Sequence[int] | np.ndarray | None = None
               ) -> dict[str, Any]:
    """COCO-style uncompressed RLE of a 2-D mask: runs over the column-major (Fortran order)
    pixels, alternating background and foreground, the first run background (possibly 0).

    Only the mask's tight ``box`` (y1, x1, y2, x2; all zero when nothing is set; found here
    when not given) is read: a full-size mammogram's mask is mostly background, and encoding
    all of it was most of ``inbreast detect``'s JSON time (benchmarks/bench_detect_host.py).
    """
    from mrcnn.box_ops import extract_bboxes  # here: importing this module needs no TensorFlow

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode: the mask must be 2-D [h, w], got shape {mask.shape}")
    height, width = (int(v) for v in mask.shape)
    box = extract_bboxes(mask[..., None])[0] if box is None else np.asarray(box, np.int64)
    if not np.any(box):
        return {"size": [height, width], "counts": [height * width] if mask.size else []}
    rows, cols = slice(int(box[0]), int(box[2])), slice(int(box[1]), int(box[3]))
    # The region with a background row above and below: in column-major order every column
    # then starts and ends with background, so its changes are the mask's own.
    padded = np.zeros((rows.stop - rows.start + 2, cols.stop - cols.start), dtype=bool)
    padded[1:-1] = mask[rows, cols]
    flat = padded.ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    column, row = np.divmod(changes, padded.shape[0])
    starts = (cols.start + column) * height + rows.start + row - 1  # in the whole mask
    # A run that ends on the last row and one that starts on the next column's first row
    # meet at the same index: no change there. A run ending on the last pixel ends the list.
    starts, repeats = np.unique(starts, return_counts=True)
    starts = starts[(repeats % 2 == 1) & (starts < height * width)]
    counts = np.diff(np.concatenate(([0], starts, [height * width]))).tolist()
    return {"size": [height, width], "counts": counts}


def rle_decode(rle: Mapping[str, Any]) -> np.ndarray:
    """The bool [h, w] mask of an uncompressed COCO RLE (``rle_encode``'s output)."""
    try:
        height, width = (int(v) for v in rle["size"])
        counts = np.asarray(rle["counts"], dtype=np.int64).reshape(-1)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"rle_decode: need 'size' [h, w] and a list of integer 'counts' "
                         f"({err})") from err
    if height < 0 or width < 0 or (counts < 0).any():
        raise ValueError(f"rle_decode: 'size' and 'counts' must be non-negative, got size "
                         f"{[height, width]}")
    if int(counts.sum()) != height * width:
        raise ValueError(f"rle_decode: 'counts' add up to {int(counts.sum())} pixels, 'size' "
                         f"{[height, width]} has {height * width}")
    values = np.arange(counts.size) % 2 == 1  # runs alternate background, foreground
    flat = np.repeat(values, counts)
    return flat.reshape((height, width), order="F")


# ------------------------------------------------------------------------------ documents
def coco_box(box: Sequence[float]) -> list[float]:
    """COCO's ``[x, y, width, height]`` of a pixel box ``(y1, x1, y2, x2)``, y2/x2 exclusive."""
    y1, x1, y2, x2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def _checked_category(case: CasePrediction, field: str, class_id: int,
                      categories: Mapping[int, str]) -> int:
    if class_id not in categories:
        known = ", ".join(f"{k} {v}" for k, v in sorted(categories.items()))
        raise ValueError(f"CasePrediction {case.file_name!r}: {field} holds class id {class_id},"
                         f" which is not a category ({known})")
    return class_id


def _instance_rle(stack: MaskStack, index: int) -> dict[str, Any]:
    return rle_encode(stack.dense([index])[..., 0])


def coco_ground_truth(cases: Sequence[CasePrediction],
                      categories: Mapping[int, str] = CATEGORIES) -> dict[str, Any]:
    """The cases' masses as a COCO ground-truth document (see the module docstring)."""
    images, annotations = [], []
    seen: dict[int, str] = {}
    for case in cases:
        if case.image_id in seen:
            raise ValueError(f"CasePrediction {case.file_name!r}: image_id {case.image_id} is "
                             f"also {seen[case.image_id]!r}'s; COCO needs one id an image")
        seen[case.image_id] = case.file_name
        height, width = case.original_shape
        images.append({"id": int(case.image_id), "file_name": case.file_name,
                       "height": int(height), "width": int(width)})
        for n, (box, class_id) in enumerate(zip(case.gt_boxes, case.gt_class_ids, strict=True)):
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": int(case.image_id),
                "category_id": _checked_category(case, "gt_class_ids", int(class_id),
                                                 categories),
                "segmentation": _instance_rle(case.gt_masks, n),
                "area": int(case.gt_masks.crops[n].sum()),
                "bbox": coco_box(box),
                "iscrowd": 0,
            })
    return {
        "info": {"description": "ftmtl evaluation ground truth, in the DICOMs' pixels"},
        "images": images,
        "categories": [{"id": int(k), "name": v, "supercategory": "mass"}
                       for k, v in sorted(categories.items())],
        "annotations": annotations,
    }


def coco_results(cases: Sequence[CasePrediction],
                 categories: Mapping[int, str] = CATEGORIES) -> list[dict[str, Any]]:
    """The cases' detections in COCO's results format (see the module docstring)."""
    results = []
    for case in cases:
        masks = case.original_masks()
        for n, (box, class_id, score) in enumerate(zip(case.rois, case.class_ids, case.scores,
                                                       strict=True)):
            results.append({
                "image_id": int(case.image_id),
                "category_id": _checked_category(case, "class_ids", int(class_id), categories),
                "bbox": coco_box(box),
                "score": float(score),
                "segmentation": _instance_rle(masks, n),
            })
    return results


def write_coco(cases: Sequence[CasePrediction], out_dir: str | os.PathLike,
               categories: Mapping[int, str] = CATEGORIES) -> tuple[Path, Path]:
    """Write ``coco_gt.json`` and ``coco_results.json`` of the cases into ``out_dir``; returns
    their paths (ground truth, results)."""
    ground_truth = coco_ground_truth(cases, categories)
    results = coco_results(cases, categories)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gt_path, results_path = out / GT_FILE, out / RESULTS_FILE
    gt_path.write_text(json.dumps(ground_truth) + "\n", encoding="utf-8")
    results_path.write_text(json.dumps(results) + "\n", encoding="utf-8")
    return gt_path, results_path
