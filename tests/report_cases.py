"""Hand-built CasePredictions in original pixels for the evaluation-report tests."""

from __future__ import annotations

import numpy as np

from ftmtl.evaluation import CasePrediction, MaskStack

SHAPE = (64, 64)


def boxes_mask(boxes) -> np.ndarray:
    """Bool [H, W, N]: each box (y1, x1, y2, x2) filled."""
    masks = np.zeros((*SHAPE, len(boxes)), dtype=bool)
    for n, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, n] = True
    return masks


def make_case(index: int, label: str, masses, detections, scores, case_score: float
              ) -> CasePrediction:
    """A case in original pixels (no transform) whose masks fill their boxes."""
    n = len(detections)
    gt_class = 2 if label == "malignant" else 1
    return CasePrediction(
        image_id=index, file_name=f"case{index}.dcm", patient_id=f"p{index}", label=label,
        original_shape=SHAPE, gt_boxes=np.array(masses, dtype=float).reshape(-1, 4),
        gt_class_ids=np.full(len(masses), gt_class),
        gt_masks=MaskStack.from_dense(boxes_mask(masses)),
        rois=np.array(detections, dtype=float).reshape(-1, 4), class_ids=np.full(n, gt_class),
        scores=np.array(scores, dtype=float), class_probs=np.full((n, 3), 1 / 3),
        case_score=case_score, masks=MaskStack.from_dense(boxes_mask(detections)))


def random_cases(seed: int, n: int = 60) -> list[CasePrediction]:
    """Labelled and normal cases; malignant ones score higher on average."""
    rng = np.random.default_rng(seed)
    cases = []
    for index in range(n):
        label = ("benign", "malignant", "normal")[index % 3]
        masses = [] if label == "normal" else [(10, 10, 30, 30)]
        shift = int(rng.integers(0, 12))
        detections = [(10 + shift, 10, 30 + shift, 30)] if rng.uniform() < 0.8 else []
        score = float(np.clip(rng.normal(0.65 if label == "malignant" else 0.35, 0.2), 0, 1))
        cases.append(make_case(index, label, masses, detections,
                               list(rng.uniform(0.5, 1, len(detections))), score))
    return cases
