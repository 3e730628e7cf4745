"""What an evaluation writes beside its numbers: one row per case, bootstrap confidence
intervals, the calibration of the case score and the figures (``inbreast evaluate``)::

    out_dir/metrics.json     EvaluationResult.to_dict() plus the intervals and the calibration
    out_dir/cases.csv        one row per image
    out_dir/roc.png, froc.png, calibration.png

The intervals (``ftmtl.bootstrap``) resample the images with replacement: the AUCs read the
benign and malignant images among those drawn, as ``evaluate_predictions`` does, the TPRs every
image drawn. The calibration (``ftmtl.calibration``) reads the benign and malignant cases,
malignant the positive class. ``CaseOutcomes`` is what both need of a case, from
``CasePrediction``s or from their JSON summaries (a cross-validation's predictions.json).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ftmtl import plots
from ftmtl.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    LEVEL,
    auc_resamples,
    detection_events,
    percentile_interval,
    resample_counts,
    tpr_at_fpi_resamples,
)
from ftmtl.calibration import DEFAULT_BINS, ReliabilityBins, reliability_bins
from ftmtl.evaluation import FROC_IOU, LABELLED, CasePrediction, EvaluationResult, case_dice
from ftmtl.metrics import FROC_POINTS
from mrcnn.box_ops import compute_overlaps
from mrcnn.visualize import save_figure

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
CASES_FILE = "cases.csv"
ROC_FILE = "roc.png"
FROC_FILE = "froc.png"
CALIBRATION_FILE = "calibration.png"
CASE_COLUMNS = ("case", "image_id", "patient_id", "label", "case_score", "n_masses",
                "n_detected_masses", "best_iou", "dice")
CALIBRATION_CASES = "benign and malignant cases, malignant positive"


# ------------------------------------------------------------------------------ per case


def case_row(case: CasePrediction) -> dict[str, Any]:
    """One case's CSV row. A mass is detected when a detection's box IoU with it is >= 0.4
    (as for Dice); ``best_iou`` is the highest box IoU of any detection with any mass (None
    without a mass); ``dice`` the mean Dice of the detected masses (None when none is)."""
    dices, _ = case_dice(case)
    n_masses = int(case.gt_boxes.shape[0])
    best_iou = (float(compute_overlaps(case.rois, case.gt_boxes).max(initial=0.0))
                if n_masses else None)
    return {"case": case.file_name, "image_id": int(case.image_id),
            "patient_id": case.patient_id, "label": case.label,
            "case_score": float(case.case_score), "n_masses": n_masses,
            "n_detected_masses": len(dices), "best_iou": best_iou,
            "dice": float(np.mean(dices)) if dices else None}


def write_case_csv(cases: Iterable[CasePrediction], path: str | Path) -> Path:
    """``case_row`` of every case as CSV (an undefined value is an empty cell)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CASE_COLUMNS)
        writer.writeheader()
        for case in cases:
            writer.writerow({k: "" if v is None else v for k, v in case_row(case).items()})
    return path


# --------------------------------------------------------------------- intervals, calibration


@dataclass(frozen=True)
class CaseOutcomes:
    """Per case: its label, case score, whether its mass is detected (IoU >= 0.4), its
    detections (boxes, scores) and its masses' boxes."""

    labels: np.ndarray  # [n] str
    case_scores: np.ndarray  # [n]
    detected: np.ndarray  # [n] bool
    detections: list[tuple[np.ndarray, np.ndarray]]
    truths: list[np.ndarray]

    @classmethod
    def from_predictions(cls, cases: Sequence[CasePrediction]) -> CaseOutcomes:
        return cls(labels=np.array([c.label for c in cases], dtype=str),
                   case_scores=np.array([c.case_score for c in cases], dtype=np.float64),
                   detected=np.array([c.detected for c in cases], dtype=bool),
                   detections=[(c.rois, c.scores) for c in cases],
                   truths=[c.gt_boxes for c in cases])

    @classmethod
    def from_summaries(cls, summaries: Sequence[Mapping[str, Any]], source: str = "summaries"
                       ) -> CaseOutcomes:
        """From ``CasePrediction.summary()`` records; ``source`` names them in errors."""
        fields = ("label", "case_score", "detected", "rois", "scores", "gt_boxes")
        for index, summary in enumerate(summaries):
            missing = [name for name in fields if name not in summary]
            if missing:
                raise ValueError(f"{source}: case {index} "
                                 f"({summary.get('file_name', '?')}) lacks {missing}")
        return cls(labels=np.array([s["label"] for s in summaries], dtype=str),
                   case_scores=np.array([s["case_score"] for s in summaries], dtype=np.float64),
                   detected=np.array([s["detected"] for s in summaries], dtype=bool),
                   detections=[(np.asarray(s["rois"], dtype=np.float64).reshape(-1, 4),
                                np.asarray(s["scores"], dtype=np.float64)) for s in summaries],
                   truths=[np.asarray(s["gt_boxes"], dtype=np.float64).reshape(-1, 4)
                           for s in summaries])

    @classmethod
    def concatenate(cls, parts: Sequence[CaseOutcomes]) -> CaseOutcomes:
        return cls(labels=np.concatenate([p.labels for p in parts]),
                   case_scores=np.concatenate([p.case_scores for p in parts]),
                   detected=np.concatenate([p.detected for p in parts]),
                   detections=[d for p in parts for d in p.detections],
                   truths=[t for p in parts for t in p.truths])

    @property
    def labelled(self) -> np.ndarray:
        return np.isin(self.labels, LABELLED)

    @property
    def malignant(self) -> np.ndarray:
        return self.labels == "malignant"


def _pair(interval: tuple[float, float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in interval]


def bootstrap_intervals(outcomes: CaseOutcomes, resamples: int = DEFAULT_RESAMPLES,
                        seed: int = DEFAULT_SEED, fpi_points: Iterable[float] = FROC_POINTS
                        ) -> dict[str, Any]:
    """95% percentile intervals of the AUCs (all labelled cases, detected ones) and of the
    TPR at each FPI point, JSON-ready (None where undefined), with how they were drawn."""
    start = time.monotonic()
    points = [float(p) for p in fpi_points]
    counts = resample_counts(len(outcomes.labels), resamples, seed)

    def aucs(chosen: np.ndarray) -> np.ndarray:
        if not chosen.any():
            return np.full(counts.shape[0], np.nan)
        return auc_resamples(outcomes.malignant[chosen], outcomes.case_scores[chosen],
                             counts[:, chosen])

    auc, auc_detected = aucs(outcomes.labelled), aucs(outcomes.labelled & outcomes.detected)
    events = detection_events(outcomes.detections, outcomes.truths, FROC_IOU)
    tprs = tpr_at_fpi_resamples(events, counts, points)
    logger.info("%d bootstrap resamples of %d cases in %.2f s", counts.shape[0],
                counts.shape[1], time.monotonic() - start)
    return {
        "auc_ci95": _pair(percentile_interval(auc)),
        "auc_detected_ci95": _pair(percentile_interval(auc_detected)),
        "tpr_at_fpi_ci95": {str(p): _pair(percentile_interval(tprs[:, j]))
                            for j, p in enumerate(points)},
        "bootstrap": {
            "resamples": int(resamples), "seed": int(seed), "level": LEVEL,
            "interval": "percentile", "unit": "image, drawn with replacement",
            # Resamples where the metric is defined (both classes drawn; some mass drawn).
            "defined": {"auc": int(np.isfinite(auc).sum()),
                        "auc_detected": int(np.isfinite(auc_detected).sum()),
                        "tpr_at_fpi": int(np.isfinite(tprs[:, 0]).sum()) if points else 0},
        },
    }


def case_calibration(outcomes: CaseOutcomes, n_bins: int = DEFAULT_BINS
                     ) -> ReliabilityBins | None:
    """Reliability bins of the labelled cases' scores (malignant positive); None without any
    labelled case."""
    chosen = outcomes.labelled
    if not chosen.any():
        return None
    return reliability_bins(outcomes.malignant[chosen], outcomes.case_scores[chosen], n_bins)


def calibration_entries(bins: ReliabilityBins | None) -> dict[str, Any]:
    """metrics.json's "ece" and "calibration" (None without labelled cases)."""
    if bins is None:
        return {"ece": None, "calibration": None}
    return {"ece": bins.ece(), "calibration": {**bins.to_dict(), "cases": CALIBRATION_CASES}}


# --------------------------------------------------------------------------------- report


@dataclass
class EvaluationReport:
    """What ``write_evaluation_report`` wrote: the metrics.json content and the files."""

    metrics: dict[str, Any]
    files: dict[str, Path]

    def summary_lines(self) -> list[str]:
        """The intervals and the files, as lines to print."""
        boot = self.metrics["bootstrap"]

        def interval(pair: list[float | None]) -> str:
            return "n/a" if None in pair else f"[{pair[0]:.3f}, {pair[1]:.3f}]"

        lines = [f"bootstrap {LEVEL:.0%} intervals ({boot['resamples']} resamples of the "
                 f"images, seed {boot['seed']}):",
                 f"  auc {interval(self.metrics['auc_ci95'])}, auc_detected "
                 f"{interval(self.metrics['auc_detected_ci95'])}"]
        lines += [f"  tpr_at_fpi {point} {interval(pair)}"
                  for point, pair in self.metrics["tpr_at_fpi_ci95"].items()]
        ece = self.metrics["ece"]
        bins = (self.metrics["calibration"] or {}).get("n_bins", DEFAULT_BINS)
        lines.append(f"ece ({bins} equal-width bins, weighted by count) "
                     + ("n/a" if ece is None else f"{ece:.4f}"))
        lines += [f"{name}: {path}" for name, path in self.files.items()]
        return lines


def _figures(result: EvaluationResult, bins: ReliabilityBins | None, auc_ci: list,
             model: str) -> dict[str, Any]:
    """File name -> figure of whatever is defined on these cases."""
    figures = {}
    if result.roc is not None:
        ci = "" if None in auc_ci else f", AUC {LEVEL:.0%} CI [{auc_ci[0]:.2f}, {auc_ci[1]:.2f}]"
        figures[ROC_FILE] = plots.plot_roc({model: [result.roc_curve()]}, {model: [result.auc]},
                                           title=f"ROC of the case malignancy score{ci}")
    if result.froc is not None:
        figures[FROC_FILE] = plots.plot_froc({model: [result.froc_curve()]})
    if bins is not None:
        figures[CALIBRATION_FILE] = plots.plot_calibration({model: bins})
    return figures


def write_evaluation_report(predictions: Sequence[CasePrediction], result: EvaluationResult,
                            out_dir: str | Path, model: str = "ftmtl",
                            resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                            n_bins: int = DEFAULT_BINS) -> EvaluationReport:
    """Write metrics.json (``result`` with the bootstrap intervals and the calibration),
    cases.csv and the ROC, FROC and calibration figures of ``predictions`` (the cases
    ``result`` was computed from) under ``out_dir``; ``model`` names the curves."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outcomes = CaseOutcomes.from_predictions(predictions)
    bins = case_calibration(outcomes, n_bins)
    metrics = {**result.to_dict(),
               **bootstrap_intervals(outcomes, resamples, seed, result.tpr_at_fpi),
               **calibration_entries(bins)}
    files = {"metrics": out / METRICS_FILE, "cases": write_case_csv(predictions, out / CASES_FILE)}
    files["metrics"].write_text(json.dumps(metrics, indent=1, allow_nan=False) + "\n",
                                encoding="utf-8")
    for name, figure in _figures(result, bins, metrics["auc_ci95"], model).items():
        save_figure(figure, out / name)
        files[Path(name).stem] = out / name
    return EvaluationReport(metrics=metrics, files=files)
