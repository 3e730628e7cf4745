"""Evaluation of a trained model over a dataset (docs/method.md §5), at the DICOMs' resolution.

``predict_dataset`` runs ``model.detect`` on the prepared (breast-cropped, resized) images and
records one ``CasePrediction`` per image: boxes mapped back to the DICOM's pixels with the
dataset's ``Transform``, the ground truth at full resolution, and the malignant-veto score.
``evaluate_predictions`` turns a list of them into the paper's numbers (``EvaluationResult``).

Choices (the paper does not state them):

- A case's ``label`` is its masses' label (benign/malignant), or "normal" when it has no mass
  (``ftmtl.inbreast.folds.fold_stratum``). The AUCs use the benign and malignant cases only: an
  image without a mass has no lesion to classify (and cannot be "detected"). Every image counts
  in the FROC (images without masses add false positives).
- Ground-truth masks are the ROI polygons rasterised at the DICOM's size (as the dataset does
  before cropping), so Dice compares with the annotation itself rather than with a resized copy.
  A dataset with ``load_original_mask`` (the COCO and CSV readers of ``ftmtl.datasets``) draws
  them itself; others fall back to ``load_mask`` pasted back with ``mask_to_original``.
- Predicted masks are kept as ``detect`` returned them (the model's frame, cropped to their
  extent) and pasted back to full resolution with ``Transform.mask_to_original`` only when a
  metric needs them: Dice reads at most one detection per mass, and pasting every detection of
  every image (a 3328 x 4084 resize each) would dominate the run time.
- A metric that is undefined on the given cases (an AUC with one class only, the FROC without any
  mass) is NaN with a warning, never an error: a small fold must not stop a cross-validation.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ftmtl.inbreast.folds import fold_stratum
from ftmtl.inbreast.masks import polygon_to_mask
from ftmtl.inbreast.preprocess import Transform
from ftmtl.metrics import (
    FROC_POINTS,
    IOU_SWEEP,
    FrocCurve,
    case_detected,
    coco_style_ap,
    detected_dice,
    froc,
    roc_auc,
    roc_curve,
    tpr_vs_iou,
)
from ftmtl.model import ftmtl_setting
from ftmtl.veto import BENIGN_CLASS_ID, MALIGNANT_CLASS_ID, case_malignancy_score
from mrcnn.box_ops import compute_overlaps, valid_boxes
from mrcnn.progress import Progress

logger = logging.getLogger(__name__)

DETECTED_IOU = 0.4  # "detected" for Dice and the AUC on detected cases (docs/method.md §5)
FROC_IOU = 0.2  # a detection is a true positive when IoU > 0.2
SWEEP_FPI = 3.67  # the FPI at which TPR is read against the IoU threshold
CLASS_NAMES = {BENIGN_CLASS_ID: "benign", MALIGNANT_CLASS_ID: "malignant"}
LABELLED = ("benign", "malignant")


class UndefinedMetricWarning(UserWarning):
    """A metric could not be computed on the given cases and is NaN."""


# ------------------------------------------------------------------------------ mask storage


@dataclass
class MaskStack:
    """Bool masks [H, W, N] kept as tight crops.

    A full-resolution mammogram mask is 13 MB; the mass in it is a few hundred kB, so a
    cross-validation can hold every case's masks in memory.
    """

    shape: tuple[int, int]
    offsets: np.ndarray  # [N, 2] int (row, col) of each crop's top-left pixel
    crops: list[np.ndarray]  # bool crops; an empty mask has a 0 x 0 crop

    @classmethod
    def from_dense(cls, masks: np.ndarray) -> MaskStack:
        """From bool masks [H, W, N] (or one mask [H, W])."""
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim == 2:
            masks = masks[..., None]
        if masks.ndim != 3:
            raise ValueError(f"MaskStack: masks must be [H, W, N], got shape {masks.shape}")
        offsets, crops = [], []
        for n in range(masks.shape[-1]):
            rows = np.flatnonzero(masks[..., n].any(axis=1))
            cols = np.flatnonzero(masks[..., n].any(axis=0))
            if rows.size == 0:
                offsets.append((0, 0))
                crops.append(np.zeros((0, 0), dtype=bool))
                continue
            y1, y2, x1, x2 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            offsets.append((y1, x1))
            crops.append(masks[y1:y2, x1:x2, n].copy())
        return cls((int(masks.shape[0]), int(masks.shape[1])),
                   np.asarray(offsets, dtype=np.int64).reshape(-1, 2), crops)

    @classmethod
    def empty(cls, shape: Sequence[int]) -> MaskStack:
        return cls((int(shape[0]), int(shape[1])), np.zeros((0, 2), dtype=np.int64), [])

    def __len__(self) -> int:
        return len(self.crops)

    def extents(self) -> np.ndarray:
        """Pixel boxes [N, 4] (y1, x1, y2, x2) of the masks; all zeros for an empty mask."""
        boxes = np.zeros((len(self), 4), dtype=np.int64)
        for n, (offset, crop) in enumerate(zip(self.offsets, self.crops, strict=True)):
            if crop.size:
                boxes[n] = (offset[0], offset[1], offset[0] + crop.shape[0],
                            offset[1] + crop.shape[1])
        return boxes

    def dense(self, indices: Iterable[int] | None = None,
              window: Sequence[int] | None = None) -> np.ndarray:
        """Bool [h, w, n] of the chosen masks (default all) inside ``window`` (y1, x1, y2, x2;
        default the whole image)."""
        chosen = range(len(self)) if indices is None else [int(i) for i in indices]
        wy1, wx1, wy2, wx2 = (0, 0, *self.shape) if window is None else window
        out = np.zeros((wy2 - wy1, wx2 - wx1, len(chosen)), dtype=bool)
        for k, n in enumerate(chosen):
            crop = self.crops[n]
            if not crop.size:
                continue
            y, x = (int(v) for v in self.offsets[n])
            # Intersection of the crop with the window, in image coordinates.
            y1, x1 = max(y, wy1), max(x, wx1)
            y2, x2 = min(y + crop.shape[0], wy2), min(x + crop.shape[1], wx2)
            if y2 > y1 and x2 > x1:
                out[y1 - wy1:y2 - wy1, x1 - wx1:x2 - wx1, k] = crop[y1 - y:y2 - y, x1 - x:x2 - x]
        return out

    def subset(self, indices: Iterable[int]) -> MaskStack:
        chosen = [int(i) for i in indices]
        return MaskStack(self.shape, self.offsets[chosen].reshape(-1, 2),
                         [self.crops[i] for i in chosen])


# ---------------------------------------------------------------------------- per case


@dataclass
class CasePrediction:
    """One image's ground truth and detections, in the original DICOM's pixels.

    ``rois`` [N, 4] float pixel boxes (y1, x1, y2, x2), ``class_ids`` [N], ``scores`` [N]
    (1 - p_background), ``class_probs`` [N, K], ``case_score`` the malignant veto. ``masks``
    holds the predicted masks in the frame ``transform`` maps from (the model's input image); with
    ``transform`` None they are already in original pixels. ``original_masks`` pastes them back.
    """

    image_id: int
    file_name: str
    patient_id: str
    label: str
    original_shape: tuple[int, int]
    gt_boxes: np.ndarray
    gt_class_ids: np.ndarray
    gt_masks: MaskStack
    rois: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray
    class_probs: np.ndarray
    case_score: float
    masks: MaskStack
    transform: Transform | None = None
    birads: str = ""

    def __post_init__(self) -> None:
        self.original_shape = (int(self.original_shape[0]), int(self.original_shape[1]))
        self.gt_boxes = np.asarray(self.gt_boxes, dtype=np.float64).reshape(-1, 4)
        self.gt_class_ids = np.asarray(self.gt_class_ids, dtype=np.int64).reshape(-1)
        self.rois = np.asarray(self.rois, dtype=np.float64).reshape(-1, 4)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        n = self.rois.shape[0]
        probs = np.asarray(self.class_probs, dtype=np.float64)
        width = probs.shape[-1] if probs.ndim == 2 else (probs.size // n if n else 0)
        self.class_probs = probs.reshape(n, width)
        where = f"CasePrediction {self.file_name!r}"
        if not (self.class_ids.size == self.scores.size == len(self.masks) == n):
            raise ValueError(f"{where}: rois {n}, class_ids {self.class_ids.size}, scores "
                             f"{self.scores.size} and masks {len(self.masks)} must agree")
        if not (self.gt_class_ids.size == len(self.gt_masks) == self.gt_boxes.shape[0]):
            raise ValueError(f"{where}: gt_boxes {self.gt_boxes.shape[0]}, gt_class_ids "
                             f"{self.gt_class_ids.size} and gt_masks {len(self.gt_masks)} "
                             "must agree")
        if self.gt_masks.shape != self.original_shape:
            raise ValueError(f"{where}: gt_masks are {self.gt_masks.shape}, the original image "
                             f"is {self.original_shape}")

    def original_masks(self, indices: Iterable[int] | None = None) -> MaskStack:
        """The chosen predicted masks (default all) in original pixels."""
        chosen = list(range(len(self.masks))) if indices is None else [int(i) for i in indices]
        if self.transform is None:
            return self.masks.subset(chosen)
        pasted = [MaskStack.from_dense(self.transform.mask_to_original(self.masks.dense([n])))
                  for n in chosen]
        return MaskStack(self.original_shape,
                         np.concatenate([p.offsets for p in pasted]).reshape(-1, 2)
                         if pasted else np.zeros((0, 2), dtype=np.int64),
                         [p.crops[0] for p in pasted])

    @property
    def detected(self) -> bool:
        """Whether a mass of this case is hit with box IoU >= 0.4."""
        return case_detected(self.rois, self.gt_boxes, DETECTED_IOU)

    def summary(self) -> dict[str, Any]:
        """The case without masks, JSON-ready."""
        return {
            "image_id": int(self.image_id), "file_name": self.file_name,
            "patient_id": self.patient_id, "label": self.label, "birads": self.birads,
            "original_shape": list(self.original_shape), "case_score": float(self.case_score),
            "detected": self.detected,
            "gt_boxes": self.gt_boxes.tolist(), "gt_class_ids": self.gt_class_ids.tolist(),
            "rois": self.rois.tolist(), "class_ids": self.class_ids.tolist(),
            "scores": self.scores.tolist(), "class_probs": self.class_probs.tolist(),
        }


# ------------------------------------------------------------------------------ prediction


def predict_dataset(model, dataset, image_ids: Iterable[int] | None = None,
                    batch_size: int | None = None, progress: bool = True
                    ) -> list[CasePrediction]:
    """Detect on every image of ``image_ids`` (default all) and map the results to original pixels.

    ``model`` is an inference-mode FTMTLNet (or a plain MaskRCNN: its detection scores then stand
    in for the class probabilities and the veto has no proposal fallback). ``dataset`` must offer
    ``load_image``, ``load_mask`` and ``load_transform`` (``INbreastDataset`` does). Images go to
    ``detect`` ``batch_size`` at a time (default the config's BATCH_SIZE).
    """
    ids = [int(i) for i in (dataset.image_ids if image_ids is None else image_ids)]
    step = int(batch_size or getattr(model.config, "BATCH_SIZE", 1))
    if step < 1:
        raise ValueError(f"predict_dataset: batch_size must be >= 1, got {batch_size}")
    start = time.monotonic()
    cases: list[CasePrediction] = []
    with Progress(len(ids), "detecting", show=progress) as bar:
        for first in range(0, len(ids), step):
            chunk = ids[first:first + step]
            # Everything an image needs is read together: the dataset caches few prepared
            # images.
            loaded = [(dataset.load_image(i), dataset.load_transform(i),
                       _original_gt(dataset, i)) for i in chunk]
            results = model.detect([image for image, _, _ in loaded])
            for image_id, (image, transform, gt), result in zip(chunk, loaded, results,
                                                                strict=True):
                cases.append(_case_prediction(dataset, image_id, image.shape[:2], transform, gt,
                                              result, model.config))
            bar.update(len(chunk))
    logger.info("predicted %d images in %.1f s", len(ids), time.monotonic() - start)
    return cases


def _original_gt(dataset, image_id: int) -> tuple[MaskStack, np.ndarray]:
    """Ground-truth masks at the DICOM's size and their class ids (a dataset's own
    ``load_original_mask`` when it has one: the readers of ftmtl.datasets)."""
    info = dataset.image_info[image_id]
    if hasattr(dataset, "load_original_mask"):
        masks, class_ids = dataset.load_original_mask(image_id)
        return _without_empty(MaskStack.from_dense(masks), class_ids, info, image_id)
    transform = dataset.load_transform(image_id)
    prepared_masks, class_ids = dataset.load_mask(image_id)
    masses = info.get("masses")
    if masses is not None and info.get("mass_index") is None and len(masses) == len(class_ids):
        shape = tuple(transform.original_shape)
        masks = np.zeros(shape + (len(masses),), dtype=bool)
        for n, roi in enumerate(masses):
            mask = polygon_to_mask(roi.points_px, shape, file=str(info.get("xml")),
                                   roi_index=roi.index)
            if mask is not None:
                masks[..., n] = mask
    else:
        masks = transform.mask_to_original(prepared_masks)
    return _without_empty(MaskStack.from_dense(masks), class_ids, info, image_id)


def _without_empty(stack: MaskStack, class_ids, info: dict, image_id: int
                   ) -> tuple[MaskStack, np.ndarray]:
    """The masks with pixels, and their class ids; each empty one is named in a warning."""
    empty = [n for n, crop in enumerate(stack.crops) if not crop.size]
    if empty:
        logger.warning("%s: ground-truth mass(es) %s are empty at full resolution; left out",
                       info.get("file_name", image_id), empty)
        keep = [n for n in range(len(stack)) if n not in empty]
        stack, class_ids = stack.subset(keep), np.asarray(class_ids)[keep]
    return stack, np.asarray(class_ids, dtype=np.int64)


def _case_prediction(dataset, image_id: int, model_shape, transform: Transform,
                     gt: tuple[MaskStack, np.ndarray], result: dict, config) -> CasePrediction:
    info = dataset.image_info[image_id]
    gt_masks, gt_class_ids = gt
    masks = np.asarray(result["masks"], dtype=bool).reshape(*model_shape, -1)
    class_ids = np.asarray(result["class_ids"], dtype=np.int64).reshape(-1)
    scores = np.asarray(result["scores"], dtype=np.float64).reshape(-1)
    class_probs, case_score = _class_probs_and_score(result, class_ids, scores, config)
    return CasePrediction(
        image_id=image_id,
        file_name=str(info.get("file_name", info.get("id"))),
        patient_id=str(info.get("patient_id", "")),
        label=fold_stratum(info) if "mass_label" in info else str(info.get("label", "")),
        original_shape=tuple(transform.original_shape),
        gt_boxes=gt_masks.extents().astype(np.float64),
        gt_class_ids=gt_class_ids,
        gt_masks=gt_masks,
        rois=transform.to_original(np.asarray(result["rois"]).reshape(-1, 4)),
        class_ids=class_ids,
        scores=scores,
        class_probs=class_probs,
        case_score=case_score,
        masks=MaskStack.from_dense(masks),
        transform=transform,
        birads=str(info.get("birads", "")),
    )


def _class_probs_and_score(result: dict, class_ids: np.ndarray, scores: np.ndarray, config
                           ) -> tuple[np.ndarray, float]:
    """FTMTLNet's class_probs and case_score; for a plain MaskRCNN (no such outputs) the score of
    each detection stands for the probability of its class, and the veto runs on those."""
    if "class_probs" in result and "case_score" in result:
        return np.asarray(result["class_probs"], dtype=np.float64), float(result["case_score"])
    num_classes = int(getattr(config, "NUM_CLASSES", max(3, int(class_ids.max(initial=0)) + 1)))
    probs = np.zeros((class_ids.size, num_classes))
    probs[np.arange(class_ids.size), class_ids] = scores
    return probs, case_malignancy_score(
        class_ids, probs, np.zeros(0), scores=scores,
        min_confidence=float(ftmtl_setting(config, "VETO_MIN_CONFIDENCE")))


# ------------------------------------------------------------------------------ evaluation


def _nan_to_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _none_to_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _float_keys(mapping: dict) -> dict[float, float]:
    return {float(k): _none_to_nan(v) for k, v in mapping.items()}


def _curve_to_dict(curve: dict[str, np.ndarray] | None) -> dict[str, list] | None:
    """Curve arrays as lists; a non-finite threshold (the +inf start) is written as None."""
    if curve is None:
        return None
    return {key: [_nan_to_none(float(v)) for v in np.asarray(values).reshape(-1)]
            for key, values in curve.items()}


def _curve_from_dict(curve: dict[str, list] | None) -> dict[str, np.ndarray] | None:
    if curve is None:
        return None
    return {key: np.array([np.inf if v is None else v for v in values], dtype=np.float64)
            for key, values in curve.items()}


@dataclass
class EvaluationResult:
    """The numbers of docs/method.md §5 for one set of cases (one fold of one model).

    NaN marks a metric that is undefined on these cases (see the warnings). ``to_dict`` gives a
    JSON-ready dict (NaN and infinities as None); ``from_dict`` reads it back.
    """

    n_cases: int = 0
    n_labelled: int = 0  # benign + malignant cases (the AUC's cases)
    n_malignant: int = 0
    n_detected: int = 0  # labelled cases whose mass is detected (IoU >= 0.4)
    n_masses: int = 0
    auc: float = float("nan")
    auc_detected: float = float("nan")
    roc: dict[str, np.ndarray] | None = None  # fpr, tpr, thresholds (all labelled cases)
    roc_detected: dict[str, np.ndarray] | None = None
    froc: dict[str, np.ndarray] | None = None  # fpi, tpr, thresholds (IoU > 0.2)
    tpr_at_fpi: dict[float, float] = field(default_factory=dict)
    tpr_vs_iou: dict[float, float] = field(default_factory=dict)  # at FPI 3.67
    dice_mean: float = float("nan")
    dices: list[float] = field(default_factory=list)  # one per detected mass
    n_missed: int = 0  # masses without a detection of IoU >= 0.4
    box_ap50: dict[str, float] = field(default_factory=dict)  # per class name
    box_map50: float = float("nan")

    def froc_curve(self) -> FrocCurve | None:
        """The FROC as a ``FrocCurve`` (for ``tpr_at`` and ``mean_froc``)."""
        if self.froc is None:
            return None
        return FrocCurve(fpi=np.asarray(self.froc["fpi"]), tpr=np.asarray(self.froc["tpr"]),
                         thresholds=np.asarray(self.froc["thresholds"]),
                         n_images=self.n_cases, n_masses=self.n_masses)

    def roc_curve(self, detected: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(fpr, tpr, thresholds) as ``ftmtl.metrics.roc_curve`` returns them, or None."""
        curve = self.roc_detected if detected else self.roc
        if curve is None:
            return None
        return curve["fpr"], curve["tpr"], curve["thresholds"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_cases": self.n_cases, "n_labelled": self.n_labelled,
            "n_malignant": self.n_malignant, "n_detected": self.n_detected,
            "n_masses": self.n_masses,
            "auc": _nan_to_none(self.auc), "auc_detected": _nan_to_none(self.auc_detected),
            "roc": _curve_to_dict(self.roc), "roc_detected": _curve_to_dict(self.roc_detected),
            "froc": _curve_to_dict(self.froc),
            "tpr_at_fpi": {str(k): _nan_to_none(v) for k, v in self.tpr_at_fpi.items()},
            "tpr_vs_iou": {str(k): _nan_to_none(v) for k, v in self.tpr_vs_iou.items()},
            "dice_mean": _nan_to_none(self.dice_mean),
            "dices": [float(d) for d in self.dices], "n_missed": self.n_missed,
            "box_ap50": {k: _nan_to_none(v) for k, v in self.box_ap50.items()},
            "box_map50": _nan_to_none(self.box_map50),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationResult:
        return cls(
            n_cases=int(data["n_cases"]), n_labelled=int(data["n_labelled"]),
            n_malignant=int(data["n_malignant"]), n_detected=int(data["n_detected"]),
            n_masses=int(data["n_masses"]),
            auc=_none_to_nan(data["auc"]), auc_detected=_none_to_nan(data["auc_detected"]),
            roc=_curve_from_dict(data["roc"]), roc_detected=_curve_from_dict(data["roc_detected"]),
            froc=_curve_from_dict(data["froc"]),
            tpr_at_fpi=_float_keys(data["tpr_at_fpi"]), tpr_vs_iou=_float_keys(data["tpr_vs_iou"]),
            dice_mean=_none_to_nan(data["dice_mean"]), dices=[float(d) for d in data["dices"]],
            n_missed=int(data["n_missed"]),
            box_ap50={k: _none_to_nan(v) for k, v in data["box_ap50"].items()},
            box_map50=_none_to_nan(data["box_map50"]),
        )


def _undefined(message: str) -> float:
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)
    return float("nan")


def _auc_and_curve(cases: list[CasePrediction], which: str
                   ) -> tuple[float, dict[str, np.ndarray] | None]:
    """AUC and ROC of the case scores (1 = malignant); NaN and None when not both classes."""
    labels = np.array([case.label == "malignant" for case in cases], dtype=int)
    if np.unique(labels).size < 2:
        held = (f"the cases are all {cases[0].label}" if cases else "there is no case")
        return _undefined(f"AUC on {which}: {held}; the AUC needs benign and malignant "
                          "cases, so it is NaN"), None
    scores = np.array([case.case_score for case in cases], dtype=np.float64)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    return roc_auc(labels, scores), {"fpr": fpr, "tpr": tpr, "thresholds": thresholds}


def _detection_inputs(cases: list[CasePrediction]):
    return [(case.rois, case.scores) for case in cases], [case.gt_boxes for case in cases]


def case_dice(case: CasePrediction) -> tuple[list[float], int]:
    """(Dice of each detected mass, masses missed) of one case: ``detected_dice`` at full
    resolution, computed inside the window that holds every mask involved (Dice and box IoU do
    not change when the frame is shifted)."""
    if case.gt_boxes.shape[0] == 0:
        return [], 0
    overlaps = compute_overlaps(case.rois, case.gt_boxes)
    # Only detections with IoU >= 0.4 to some mass can be chosen; the others need no mask.
    candidates = np.flatnonzero((overlaps >= DETECTED_IOU).any(axis=1))
    if candidates.size == 0:
        return [], case.gt_boxes.shape[0]
    predicted = case.original_masks(candidates)
    extents = np.concatenate([case.gt_masks.extents(), predicted.extents()])
    extents = extents[valid_boxes(extents)]
    if extents.size == 0:
        window = (0, 0, 1, 1)
    else:
        window = (int(extents[:, 0].min()), int(extents[:, 1].min()),
                  int(extents[:, 2].max()), int(extents[:, 3].max()))
    shift = np.array([window[0], window[1], window[0], window[1]], dtype=np.float64)
    result = detected_dice(predicted.dense(window=window), case.rois[candidates] - shift,
                           case.scores[candidates], case.gt_masks.dense(window=window),
                           case.gt_boxes - shift, iou_threshold=DETECTED_IOU)
    return result.dices, result.n_missed


def _box_ap(cases: list[CasePrediction]) -> tuple[dict[str, float], float]:
    class_ids = sorted({int(c) for case in cases for c in case.gt_class_ids})
    if not class_ids:
        return {}, _undefined("box AP: the cases hold no mass; AP is NaN")
    records = [{"gt_boxes": case.gt_boxes, "gt_class_ids": case.gt_class_ids,
                "pred_boxes": case.rois, "pred_class_ids": case.class_ids,
                "pred_scores": case.scores} for case in cases]
    ap = coco_style_ap(records, iou_thresholds=(0.5,), class_ids=class_ids)
    per_class = {CLASS_NAMES.get(c, str(c)): float(v) for c, v in ap["per_class"].items()}
    return per_class, float(ap["mAP"])


def evaluate_predictions(preds: Sequence[CasePrediction],
                         fpi_points: Iterable[float] = FROC_POINTS,
                         iou_thresholds: Iterable[float] = IOU_SWEEP) -> EvaluationResult:
    """Classification, detection and segmentation numbers of docs/method.md §5 for these cases."""
    cases = list(preds)
    if not cases:
        raise ValueError("evaluate_predictions: no cases given")
    fpi_points = [float(p) for p in fpi_points]
    result = EvaluationResult(n_cases=len(cases))
    labelled = [case for case in cases if case.label in LABELLED]
    detected = [case for case in labelled if case.detected]
    result.n_labelled, result.n_detected = len(labelled), len(detected)
    result.n_malignant = sum(case.label == "malignant" for case in labelled)
    result.n_masses = int(sum(case.gt_boxes.shape[0] for case in cases))
    result.auc, result.roc = _auc_and_curve(labelled, "all cases")
    result.auc_detected, result.roc_detected = _auc_and_curve(detected, "detected cases")

    if result.n_masses == 0:
        _undefined("FROC: the cases hold no mass; TPR is NaN")
        result.tpr_at_fpi = {p: float("nan") for p in fpi_points}
        result.tpr_vs_iou = {float(t): float("nan") for t in iou_thresholds}
    else:
        predictions, truths = _detection_inputs(cases)
        curve = froc(predictions, truths, iou_threshold=FROC_IOU)
        result.froc = {"fpi": curve.fpi, "tpr": curve.tpr, "thresholds": curve.thresholds}
        result.tpr_at_fpi = curve.tpr_at(fpi_points)
        result.tpr_vs_iou = tpr_vs_iou(predictions, truths, fpi=SWEEP_FPI,
                                       iou_thresholds=iou_thresholds)

    for case in cases:
        dices, missed = case_dice(case)
        result.dices.extend(dices)
        result.n_missed += missed
    if result.dices:
        result.dice_mean = float(np.mean(result.dices))
    elif result.n_masses:
        result.dice_mean = _undefined("Dice: no mass was detected (IoU >= 0.4); Dice is NaN")
    result.box_ap50, result.box_map50 = _box_ap(cases)
    return result
