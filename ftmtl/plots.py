"""Figures of a cross-validation (or of one evaluation): ROC and FROC with their spread over
folds, the IoU sweep, the calibration of the case score, example detections and training losses.

Every function builds a ``matplotlib.figure.Figure`` directly (no pyplot state, so it works
headless and in notebooks alike) and returns it; ``mrcnn.visualize.save_figure`` writes it.
Bands are mean +- one sample std over folds (``ftmtl.metrics.mean_roc`` / ``mean_froc``).

Example detections are drawn in the model's frame (the prepared, breast-cropped image) from
``Example`` records that ``save_examples`` / ``load_examples`` keep on disk as compressed npz
(plain arrays, no pickle), so that ``aggregate`` can draw them after the models are gone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ftmtl.calibration import ReliabilityBins
from ftmtl.metrics import FROC_POINTS, FrocCurve, mean_froc, mean_roc
from mrcnn.box_ops import compute_overlaps
from mrcnn.visualize import display_instances

MODEL_NAMES = {"ftmtl": "FT-MTL-Net", "maskrcnn": "Mask R-CNN"}
CLASS_COLORS = {1: (0.2, 0.5, 1.0), 2: (1.0, 0.25, 0.2)}  # benign blue, malignant red
GT_COLOR = (0.2, 1.0, 0.3)
FROC_READ_FPI = 3.67

RocCurve = tuple[np.ndarray, np.ndarray, np.ndarray]


def model_name(model: str) -> str:
    """Display name of a model key ("ftmtl" -> "FT-MTL-Net")."""
    return MODEL_NAMES.get(model, model)


def _band(ax, x: np.ndarray, mean: np.ndarray, std: np.ndarray, label: str) -> None:
    (line,) = ax.plot(x, mean, label=label)
    ax.fill_between(x, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1),
                    color=line.get_color(), alpha=0.2)


def _finite(values: Sequence[float] | None) -> list[float]:
    return [float(v) for v in values or [] if v is not None and math.isfinite(v)]


def _folds_text(n: int) -> str:
    return f"{n} fold{'' if n == 1 else 's'}"


def _mean_std_text(values: Sequence[float] | None) -> str:
    finite = _finite(values)
    if not finite:
        return "n/a"
    if len(finite) == 1:
        return f"{finite[0]:.2f}"  # one fold: no spread to show
    return f"{np.mean(finite):.2f} +- {np.std(finite, ddof=1):.2f}"


# ------------------------------------------------------------------------------ curves


def plot_roc(curves: Mapping[str, Sequence[RocCurve]],
             aucs: Mapping[str, Sequence[float]] | None = None,
             title: str = "ROC of the case malignancy score") -> Figure:
    """Mean ROC +- std over folds, one band per model; ``curves[model]`` lists the folds'
    (fpr, tpr, thresholds)."""
    fig = Figure(figsize=(6, 6), layout="constrained")
    ax = fig.add_subplot()
    for model, folds in curves.items():
        folds = list(folds)
        if not folds:
            continue
        grid, mean, std = mean_roc(folds)
        auc = _mean_std_text((aucs or {}).get(model))
        _band(ax, grid, mean, std, f"{model_name(model)} (AUC {auc}, {_folds_text(len(folds))})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="gray", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate",
           ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, alpha=0.3)
    return fig


def plot_froc(curves: Mapping[str, Sequence[FrocCurve]], max_fpi: float = 5.0,
              title: str = "FROC (TP: box IoU > 0.2)") -> Figure:
    """Mean FROC +- std over folds: TPR against false positives per image."""
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    grid = np.linspace(0.0, max_fpi, 201)
    for model, folds in curves.items():
        folds = list(folds)
        if not folds:
            continue
        _, mean, std = mean_froc(folds, grid)
        _band(ax, grid, mean, std, f"{model_name(model)} ({_folds_text(len(folds))})")
        _, at_points, _ = mean_froc(folds, FROC_POINTS)
        ax.plot(FROC_POINTS, at_points, "o", color=ax.lines[-1].get_color(), markersize=4)
    ax.axvline(FROC_READ_FPI, linestyle=":", color="gray")
    ax.set(xlim=(0, max_fpi), ylim=(0, 1.02), xlabel="false positives per image",
           ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, alpha=0.3)
    return fig


def plot_iou_sweep(sweeps: Mapping[str, Sequence[Mapping[float, float]]],
                   fpi: float = FROC_READ_FPI) -> Figure:
    """TPR at a fixed FPI against the IoU threshold, mean +- std over folds."""
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    for model, folds in sweeps.items():
        folds = [dict(f) for f in folds if f]
        if not folds:
            continue
        thresholds = sorted(float(t) for t in folds[0])
        values = np.array([[f.get(t, np.nan) for t in thresholds] for f in folds], dtype=float)
        mean = np.nanmean(values, axis=0)
        std = (np.nanstd(values, axis=0, ddof=1) if values.shape[0] > 1
               else np.zeros_like(mean))
        ax.errorbar(thresholds, mean, yerr=np.nan_to_num(std), marker="o", capsize=3,
                    label=f"{model_name(model)} ({_folds_text(len(folds))})")
    ax.set(xlim=(0.05, 0.95), ylim=(0, 1.02), xlabel="IoU threshold",
           ylabel=f"true positive rate at {fpi:g} FPI", title="Detection against IoU threshold")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(True, alpha=0.3)
    return fig


def plot_calibration(bins: Mapping[str, ReliabilityBins],
                     title: str = "Calibration of the case malignancy score") -> Figure:
    """Reliability diagram: per score bin, the fraction of malignant cases against the mean
    score (the diagonal is perfect calibration), one line per model with its ECE; below, how
    many cases each bin holds."""
    fig = Figure(figsize=(6, 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], linestyle=":", color="gray", label="perfect calibration")
    shown = {model: b for model, b in bins.items() if b.n_cases}
    width = 0.8 / max(len(shown), 1)
    for index, (model, b) in enumerate(shown.items()):
        filled = b.counts > 0
        (line,) = top.plot(b.mean_score[filled], b.fraction_positive[filled], marker="o",
                           label=f"{model_name(model)} (ECE {b.ece():.3f}, "
                                 f"{b.n_cases} cases)")
        bin_width = np.diff(b.edges)
        bottom.bar(b.edges[:-1] + bin_width * (0.1 + width * (index + 0.5)), b.counts,
                   width=bin_width * width, color=line.get_color())
    n_bins = next(iter(shown.values())).counts.size if shown else 0
    top.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="fraction malignant",
            title=f"{title}\nECE: {n_bins} equal-width bins, weighted by bin count")
    top.legend(loc="upper left", fontsize=8)
    top.grid(True, alpha=0.3)
    bottom.set(xlabel="case malignancy score", ylabel="cases")
    bottom.grid(True, alpha=0.3)
    return fig


def plot_histories(histories: Mapping[str, Sequence[Mapping[str, Mapping[str, Sequence[float]]]]],
                   keys: Sequence[str] = ("loss", "val_loss")) -> Figure:
    """Training curves: one panel per model, one line per fold and key, the stages one after
    the other (dotted lines at the stage boundaries of the first fold, named at the top).

    ``histories[model][fold]`` maps stage name -> Keras ``History.history`` dict.
    """
    models = [m for m, folds in histories.items() if any(folds)]
    if not models:
        raise ValueError("plot_histories: no history given")
    fig = Figure(figsize=(6 * len(models), 4.5), layout="constrained")
    for index, model in enumerate(models, start=1):
        ax = fig.add_subplot(1, len(models), index)
        for fold, stages in enumerate(histories[model]):
            if not stages:
                continue
            for key in keys:
                values = [v for stage in stages.values() for v in stage.get(key, [])]
                if values:
                    ax.plot(np.arange(1, len(values) + 1), values, marker=".",
                            linestyle="--" if key.startswith("val_") else "-",
                            label=f"fold {fold} {key}")
        first = next(stages for stages in histories[model] if stages)
        end = 0
        for name, stage in first.items():
            start, end = end, end + len(next(iter(stage.values()), []))
            ax.axvline(end + 0.5, linestyle=":", color="gray")
            ax.text((start + end + 1) / 2, 1.0, name, transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=8)
        ax.set(xlabel="epoch", ylabel="loss")
        ax.set_title(model_name(model), pad=14)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return fig


# ------------------------------------------------------------------------------ examples


@dataclass
class Example:
    """One test image in the model's frame with its ground truth and detections."""

    image: np.ndarray  # [h, w] gray (any range)
    gt_masks: np.ndarray  # bool [h, w, G]
    rois: np.ndarray  # [N, 4] pixel boxes in this frame
    masks: np.ndarray  # bool [h, w, N]
    class_ids: np.ndarray  # [N]
    scores: np.ndarray  # [N]
    class_probs: np.ndarray  # [N, K]
    file_name: str = ""
    label: str = ""
    case_score: float = float("nan")


_ARRAYS = ("image", "gt_masks", "rois", "masks", "class_ids", "scores", "class_probs")


def save_examples(path: str | Path, examples: Sequence[Example]) -> None:
    """Write examples to one compressed npz (arrays plus a JSON string of the texts)."""
    arrays = {f"e{i}_{name}": np.asarray(getattr(example, name))
              for i, example in enumerate(examples) for name in _ARRAYS}
    meta = [{"file_name": e.file_name, "label": e.label, "case_score": float(e.case_score)}
            for e in examples]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)


def load_examples(path: str | Path) -> list[Example]:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        return [Example(**{name: data[f"e{i}_{name}"] for name in _ARRAYS}, **texts)
                for i, texts in enumerate(meta)]


def _probs_caption(example: Example, n: int) -> str:
    probs = example.class_probs[n] if example.class_probs.size else []
    if len(probs) > 2:
        return f"B {probs[1]:.2f} / M {probs[2]:.2f}"
    return f"{int(example.class_ids[n])} {float(example.scores[n]):.2f}"


def _repeated_boxes(rois: np.ndarray, iou: float = 0.1) -> list[int]:
    """The boxes that overlap an earlier (better) box by more than ``iou``, whose captions
    would print over its caption (per-class NMS keeps a benign and a malignant box on the
    same mass)."""
    if len(rois) < 2:
        return []
    overlaps = compute_overlaps(rois, rois)
    return [j for j in range(1, len(rois)) if (overlaps[:j, j] > iou).any()]


def draw_example(ax, example: Example, max_detections: int = 3) -> None:
    """The image, the ground-truth outline (green), and the best detections' boxes and masks
    (blue benign, red malignant) captioned with p(benign) / p(malignant)."""
    order = np.argsort(-np.asarray(example.scores, dtype=float), kind="stable")[:max_detections]
    rois = np.asarray(example.rois, dtype=float).reshape(-1, 4)[order]
    class_ids = np.asarray(example.class_ids).reshape(-1)[order]
    masks = np.asarray(example.masks, dtype=bool)
    masks = masks[..., order] if masks.ndim == 3 else np.zeros((*example.image.shape[:2], 0))
    colors = [CLASS_COLORS.get(int(c), (1.0, 1.0, 0.2)) for c in class_ids]
    captions = [_probs_caption(example, int(n)) for n in order]
    for j in _repeated_boxes(rois):
        captions[j] = ""  # its caption would print over the better detection's
    title = f"{example.file_name} ({example.label}), case score {example.case_score:.2f}"
    display_instances(example.image, rois, masks, class_ids, ["BG", "benign", "malignant"],
                      title=title, ax=ax, colors=colors, captions=captions)
    gt = np.asarray(example.gt_masks, dtype=bool)
    height, width = gt.shape[:2]
    for g in range(gt.shape[-1] if gt.ndim == 3 else 0):
        if gt[..., g].any():
            ax.contour(np.arange(width) + 0.5, np.arange(height) + 0.5,
                       gt[..., g].astype(float), levels=[0.5], colors=[GT_COLOR],
                       linewidths=1.5)
    ax.title.set_fontsize(8)


def plot_examples(examples: Mapping[str, Sequence[Example]], max_detections: int = 3) -> Figure:
    """A grid of example detections: one row per test case, one column per model."""
    models = [m for m, cases in examples.items() if cases]
    if not models:
        raise ValueError("plot_examples: no examples given")
    rows = max(len(examples[m]) for m in models)
    fig = Figure(figsize=(4.5 * len(models), 5 * rows), layout="constrained")
    for col, model in enumerate(models):
        for row, example in enumerate(examples[model]):
            ax = fig.add_subplot(rows, len(models), row * len(models) + col + 1)
            draw_example(ax, example, max_detections)
            if row == 0:
                ax.set_title(f"{model_name(model)}\n{ax.get_title()}", fontsize=9)
    fig.suptitle("Example detections (green: ground truth; blue/red: benign/malignant "
                 "detections with p(benign) / p(malignant))", fontsize=10)
    return fig
