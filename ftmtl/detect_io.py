"""Detection on DICOM files: the model's input from a DICOM, the detections taken back to the
DICOM's own pixels, and the files ``inbreast detect`` writes (a PNG overlay and a JSON record).

The model sees the breast crop of the mammogram resized so its long side is ``image_size``
(exactly what ``INbreastDataset.load_image`` gives in training); ``detections_to_original``
undoes that crop and scale with the ``Transform`` recorded on the way in, so every box and mask
in the JSON is in the coordinates of the DICOM's pixel array (rows, columns). The JSON also
names the source's Study/Series/SOP Instance UIDs and the pixel spacing it states, and gives
each mass's area in pixels and mm^2 (``ftmtl.dicom_results`` writes the same detections as a
DICOM SEG and SR).

Masks are written as COCO-style uncompressed run-length encodings (``{"size": [h, w],
"counts": [...]}``, column-major runs starting with a run of zeros), readable by
``pycocotools.mask.frPyObjects`` and by ``rle_decode`` (``ftmtl.coco``, which also writes an
evaluation's COCO files); no pycocotools is needed to write them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ftmtl.coco import rle_decode, rle_encode  # noqa: F401  (rle_decode: read back the JSON)
from ftmtl.inbreast.dataset import CLASS_IDS
from ftmtl.inbreast.dicom_io import read_dicom
from ftmtl.inbreast.intensity import DEFAULT_WINDOW, file_voi
from ftmtl.inbreast.preprocess import Transform, prepare_image
from ftmtl.inbreast.records import DicomImage

logger = logging.getLogger(__name__)

BACKGROUND = "BG"
# Class names by class id, as INbreastDataset registers them (0 is the background).
CLASS_NAMES: tuple[str, ...] = (BACKGROUND, *sorted(CLASS_IDS, key=CLASS_IDS.get))
BOX_FORMAT = ("(y1, x1, y2, x2) in the DICOM's pixel rows and columns; y2 and x2 exclusive")
# The JSON's keys for the source's UIDs, and their DICOM keywords.
SOURCE_UIDS = {"study_instance_uid": "StudyInstanceUID",
               "series_instance_uid": "SeriesInstanceUID",
               "sop_instance_uid": "SOPInstanceUID"}
# Overlays of full-size mammograms are drawn on an image subsampled to about this long side.
OVERLAY_MAX_SIDE = 1024
# detections_to_original's key: a window [N, 4] of original pixels holding each mask.
MASK_WINDOWS = "mask_windows"
# zlib level of the overlay PNG: 1 takes a third of level 6's time on a mammogram overlay for
# a slightly larger file.
OVERLAY_PNG_COMPRESSION = 1


# ------------------------------------------------------------------------------- model input
def prepare_dicom(path: str | os.PathLike, image_size: int | None,
                  window: str = DEFAULT_WINDOW) -> tuple[np.ndarray, Transform, DicomImage]:
    """Read a DICOM and prepare it as training does: (image float32 [h, w, 3] in [0, 255],
    the Transform from DICOM pixels to that image, the DicomImage).

    Same steps as ``INbreastDataset.load_image`` (read_dicom, prepare_image: breast crop,
    resize so the long side is ``image_size``, the intensity ``window``; gray replicated to
    three channels). Unreadable files raise InbreastFormatError naming the file.
    """
    dicom = read_dicom(path)
    image, transform = prepare_pixels(dicom, image_size, window)
    return image, transform, dicom


def prepare_pixels(dicom: DicomImage, image_size: int | None,
                   window: str = DEFAULT_WINDOW) -> tuple[np.ndarray, Transform]:
    """``prepare_dicom`` on a DICOM already read: (image float32 [h, w, 3] in [0, 255], the
    Transform). Apart from reading, so that benchmarks/bench_detect_host.py times the two."""
    gray, _, transform = prepare_image(dicom.pixels, None, dicom.bits_stored, image_size,
                                       window, file_voi(dicom) if window == "dicom" else None)
    return np.repeat(gray[..., None] * np.float32(255.0), 3, axis=-1), transform


# ----------------------------------------------------------------------- back to the DICOM
def detections_to_original(result: Mapping[str, Any], transform: Transform) -> dict[str, Any]:
    """One image's ``detect`` result (in the prepared image's pixels) in original DICOM pixels.

    ``rois`` become int32 boxes in DICOM pixels (rounded, clipped to the image), ``masks``
    bool [H, W, N] at the DICOM's size; class ids, scores, class probabilities and the case
    score are copied unchanged. Where the paste can tell, ``MASK_WINDOWS`` [N, 4] holds a
    window of each mask (``Transform.mask_windows``), which the JSON and PNG writers search
    instead of the whole image.
    """
    rois = np.asarray(result["rois"], dtype=np.float64).reshape(-1, 4)
    height, width = transform.original_shape
    boxes = np.round(transform.to_original(rois))
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, height)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, width)
    masks = np.asarray(result["masks"], dtype=bool)
    if masks.ndim != 3 or masks.shape[-1] != len(rois):
        raise ValueError(f"detections_to_original: masks has shape {masks.shape} for "
                         f"{len(rois)} boxes; expected [h, w, {len(rois)}]")
    out = {key: value for key, value in result.items() if key not in ("rois", "masks")}
    out["rois"] = boxes.astype(np.int32)
    out["masks"] = transform.mask_to_original(masks)
    windows = transform.mask_windows(masks)
    if windows is not None:
        out[MASK_WINDOWS] = windows
    return out


# ----------------------------------------------------------------------------------- JSON
def detection_record(source: str | os.PathLike, image_shape: Sequence[int],
                     result: Mapping[str, Any], class_names: Sequence[str] = CLASS_NAMES,
                     extra: Mapping[str, Any] | None = None,
                     dicom: DicomImage | None = None) -> dict[str, Any]:
    """The JSON-ready record of one image's detections (``result`` in original pixels).

    With the source's ``dicom``, the record names its Study/Series/SOP Instance UIDs and pixel
    spacing, and each mass's area in mm^2 besides pixels (null where unknown).
    """
    from mrcnn.box_ops import extract_bboxes  # here: importing this module needs no TensorFlow

    spacing = known_pixel_spacing(dicom)
    rois = np.asarray(result["rois"]).reshape(-1, 4)
    class_ids = np.asarray(result["class_ids"]).reshape(-1)
    scores = np.asarray(result["scores"], dtype=np.float64).reshape(-1)
    probs = result.get("class_probs")
    masks = np.asarray(result["masks"], dtype=bool)
    tight = extract_bboxes(masks, result.get(MASK_WINDOWS))
    detections = []
    for i in range(len(rois)):
        entry: dict[str, Any] = {
            "box": [int(v) for v in rois[i]],
            "class_id": int(class_ids[i]),
            "class_name": _class_name(int(class_ids[i]), class_names),
            "score": float(scores[i]),
        }
        if probs is not None:
            entry["class_probabilities"] = {
                _class_name(k, class_names): float(p) for k, p in enumerate(probs[i])}
        rle, entry["area_px"] = _rle_and_area(masks[..., i], tight[i])
        entry["area_mm2"] = None if spacing is None else entry["area_px"] * spacing[0] * spacing[1]
        entry["mask"] = rle
        detections.append(entry)
    record: dict[str, Any] = {
        "source": str(source),
        **source_identity(dicom),
        "image_shape": [int(v) for v in image_shape[:2]],
        "box_format": BOX_FORMAT,
        "mask_format": "COCO uncompressed RLE (column-major runs, first run background)",
        "case_malignancy_score": _optional_float(result.get("case_score")),
        "detections": detections,
    }
    record.update(extra or {})
    return record


def _rle_and_area(mask: np.ndarray, box: np.ndarray) -> tuple[dict[str, Any], int]:
    """``rle_encode(mask)`` and the mask's pixel count, both read from its tight ``box``."""
    area = np.count_nonzero(mask[int(box[0]):int(box[2]), int(box[1]):int(box[3])])
    return rle_encode(mask, box), int(area)


def write_detection_json(path: str | os.PathLike, source: str | os.PathLike,
                         image_shape: Sequence[int], result: Mapping[str, Any],
                         class_names: Sequence[str] = CLASS_NAMES,
                         extra: Mapping[str, Any] | None = None,
                         dicom: DicomImage | None = None) -> dict[str, Any]:
    """Write ``detection_record(...)`` as JSON to ``path`` (one line a detection, so long
    RLE lists stay readable); returns the record."""
    record = detection_record(source, image_shape, result, class_names, extra, dicom)
    fields = []
    for key, value in record.items():
        if key == "detections" and value:
            text = "[\n" + ",\n".join(f"  {json.dumps(d)}" for d in value) + "\n ]"
        else:
            text = json.dumps(value)
        fields.append(f" {json.dumps(key)}: {text}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{\n" + ",\n".join(fields) + "\n}\n", encoding="utf-8")
    return record


def source_identity(dicom: DicomImage | None) -> dict[str, Any]:
    """The source's Study, Series and SOP Instance UIDs and its pixel spacing ((row, column)
    mm, and the element it came from), each null where the file (or ``dicom``) has none."""
    header = None if dicom is None else dicom.header
    identity: dict[str, Any] = {
        key: _optional_text(None if header is None else header.get(keyword))
        for key, keyword in SOURCE_UIDS.items()}
    spacing = known_pixel_spacing(dicom)
    identity["pixel_spacing_mm"] = None if spacing is None else list(spacing)
    identity["pixel_spacing_source"] = None if spacing is None else dicom.pixel_spacing_source
    return identity


def known_pixel_spacing(dicom: DicomImage | None) -> tuple[float, float] | None:
    """(row, column) mm as the file states it (PixelSpacing or ImagerPixelSpacing); None when
    it states neither (``read_dicom``'s INbreast default is a guess, not a measurement)."""
    if dicom is None or dicom.pixel_spacing_source is None:
        return None
    return float(dicom.pixel_spacing[0]), float(dicom.pixel_spacing[1])


def _optional_text(value: Any) -> str | None:
    return None if value is None or str(value) == "" else str(value)


def _class_name(class_id: int, class_names: Sequence[str]) -> str:
    return class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


# ------------------------------------------------------------------------------- overlay
def overlay_captions(result: Mapping[str, Any], class_names: Sequence[str] = CLASS_NAMES
                     ) -> list[str]:
    """One caption a detection: the class and its score, then P(benign) and P(malignant)."""
    class_ids = np.asarray(result["class_ids"]).reshape(-1)
    scores = np.asarray(result["scores"]).reshape(-1)
    probs = result.get("class_probs")
    captions = []
    for i, class_id in enumerate(class_ids):
        text = f"{_class_name(int(class_id), class_names)} {float(scores[i]):.2f}"
        if probs is not None:
            parts = [f"{name[0].upper()} {float(probs[i][k]):.2f}"
                     for k, name in enumerate(class_names) if k > 0 and k < len(probs[i])]
            text += " (" + ", ".join(parts) + ")"
        captions.append(text)
    return captions


def write_overlay_png(path: str | os.PathLike, image: np.ndarray, result: Mapping[str, Any],
                      class_names: Sequence[str] = CLASS_NAMES, title: str = "",
                      max_side: int = OVERLAY_MAX_SIDE) -> None:
    """Draw the detections (boxes, masks, captions) on ``image`` and save it as a PNG.

    ``result``'s boxes and masks are in ``image``'s pixels. Images longer than ``max_side``
    are subsampled by a whole factor first (boxes and masks with them), so full-size DICOMs
    give PNGs of a reasonable size. The case malignancy score goes into the title.
    """
    from mrcnn.overlay import render_instances
    from mrcnn.png import write_png
    from mrcnn.visualize import random_colors

    image = np.asarray(image)
    step = max(1, int(np.ceil(max(image.shape[:2]) / max_side)))
    boxes = np.asarray(result["rois"], dtype=np.float64).reshape(-1, 4) / step
    masks = np.asarray(result["masks"], dtype=bool)[::step, ::step]
    case_score = result.get("case_score")
    heading = title
    if case_score is not None:
        heading = f"{title}  case malignancy score {float(case_score):.3f}".strip()
    windows = result.get(MASK_WINDOWS)
    if windows is not None:  # the subsampled pixels i * step that fall in each window
        windows = -(-np.asarray(windows, dtype=np.int64) // step)
    # Colours from a fixed seed: the same detections give the same PNG on every run.
    drawn = render_instances(image[::step, ::step], boxes, masks,
                             overlay_captions(result, class_names), title=heading,
                             colors=random_colors(len(boxes), seed=0), windows=windows)
    write_png(path, drawn, compress_level=OVERLAY_PNG_COMPRESSION)
