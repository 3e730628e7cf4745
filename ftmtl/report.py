"""results.md: the paper's three tables from a cross-validation summary (``crossval.aggregate``).

Each of our cells is mean +- sample std over the folds that define the metric; under each table a
paired t-test compares the models fold by fold. The paper's figures (on real INbreast) are shown
in their own rows, clearly labelled, for reference only. A last table gives each fold's bootstrap
intervals and ECE, when the folds kept their predictions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ftmtl.calibration import DEFAULT_BINS
from ftmtl.metrics import FROC_POINTS
from ftmtl.plots import FROC_READ_FPI, model_name

# The paper's results on real INbreast (mean, std over its 5 folds). Its AUC is on the cases
# whose mass was detected; its TPR is read at 3.67 false positives per image.
PAPER_FIGURES: dict[str, dict[str, tuple[float, float]]] = {
    "ftmtl": {"auc_detected": (0.92, 0.01), "tpr_at_3.67": (0.91, 0.05), "dice": (0.76, 0.03)},
    "maskrcnn": {"auc_detected": (0.89, 0.02), "tpr_at_3.67": (0.85, 0.07),
                 "dice": (0.79, 0.02)},
}

NOT_REPORTED = "-"
NOT_AVAILABLE = "n/a"


def tpr_key(fpi: float) -> str:
    """The summary key of the TPR at one FPI point, e.g. "tpr_at_3.67"."""
    return f"tpr_at_{float(fpi):g}"


CLASSIFICATION = (("auc", "AUC, all cases"),
                  ("auc_detected", "AUC, detected cases (IoU >= 0.4)"))
DETECTION = tuple((tpr_key(p), f"TPR @ {p:g} FPI") for p in FROC_POINTS)
SEGMENTATION = (("dice", "Dice, detected masses (IoU >= 0.4)"),)
GENERAL = (("box_map50", "box mAP@0.5"), ("box_ap50_benign", "box AP@0.5 benign"),
           ("box_ap50_malignant", "box AP@0.5 malignant"))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _cell(stats: Mapping[str, Any] | None, digits: int = 2) -> str:
    """"mean +- std (n)" of one metric's summary, the bare value when one fold defines it
    (one value has no spread: "+- 0.00" would claim one), n/a when none does."""
    if not stats or not _finite(stats.get("mean")):
        return NOT_AVAILABLE
    n = stats.get("n")
    text = f"{stats['mean']:.{digits}f}"
    if n != 1:
        text += f" +- {stats['std']:.{digits}f}"
    return text if n == stats.get("n_folds") else f"{text} ({n} fold{'' if n == 1 else 's'})"


def _p_cell(test: Mapping[str, Any] | None) -> str:
    if not test or not _finite(test.get("p")):
        return NOT_AVAILABLE
    return f"{test['p']:.3f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(results: Mapping[str, Any], columns: Sequence[tuple[str, str]],
           extra: Sequence[tuple[str, Any]] = (), paper: bool = True) -> list[str]:
    """Our rows (one per model), the p-value rows, then the paper's rows."""
    header = ["Model", *(label for _, label in columns), *(label for label, _ in extra)]
    lines = [_row(header), _row(["---"] * len(header))]
    metrics = results.get("metrics", {})
    for model in results.get("models", []):
        cells = [_cell(metrics.get(model, {}).get(key)) for key, _ in columns]
        cells += [fn(model) for _, fn in extra]
        lines.append(_row([f"{model_name(model)} (ours)", *cells]))
    comparisons = results.get("comparisons", {})
    if not comparisons:
        lines.append(_row(["paired t-test p", *([NOT_AVAILABLE] * (len(header) - 1))]))
    for pair, tests in comparisons.items():
        cells = [_p_cell(tests.get(key)) for key, _ in columns] + [""] * len(extra)
        lines.append(_row([f"paired t-test p, {pair}", *cells]))
    if paper:
        for model, figures in PAPER_FIGURES.items():
            cells = [f"{figures[key][0]:.2f} +- {figures[key][1]:.2f}" if key in figures
                     else NOT_REPORTED for key, _ in columns]
            cells += [NOT_REPORTED] * len(extra)
            lines.append(_row([f"*{model_name(model)} (paper, real INbreast)*", *cells]))
    return lines


def _detected_masses(results: Mapping[str, Any]):
    def cell(model: str) -> str:
        counts = results.get("counts", {}).get(model, {})
        total = counts.get("n_masses", 0)
        return f"{total - counts.get('n_missed', 0)} / {total}" if total else NOT_AVAILABLE
    return cell


def _with_interval(point: Any, interval: Sequence[float | None] | None) -> str:
    """"0.85 [0.70, 0.95]": the fold's value and its bootstrap interval."""
    text = f"{point:.2f}" if _finite(point) else NOT_AVAILABLE
    if interval and all(_finite(v) for v in interval):
        text += f" [{interval[0]:.2f}, {interval[1]:.2f}]"
    return text


def _fold_value(results: Mapping[str, Any], model: str, key: str, fold: int) -> Any:
    """One fold's value of a summarised metric (None where the fold has none)."""
    done = list(results.get("folds_done", {}).get(model, []))
    values = (results.get("metrics", {}).get(model, {}).get(key) or {}).get("values", [])
    index = done.index(fold) if fold in done else len(values)
    return values[index] if index < len(values) else None


def _intervals_section(results: Mapping[str, Any]) -> list[str]:
    """Per fold and model: the AUCs and the TPR at 3.67 FPI with their bootstrap intervals,
    and the ECE; then the ECE over folds."""
    intervals = results.get("intervals") or {}
    rows = [(model, row) for model in results.get("models", [])
            for row in intervals.get(model, [])]
    if not rows:
        return []
    read = str(float(FROC_READ_FPI))
    header = ["Model", "Fold", "AUC, all cases", "AUC, detected cases",
              f"TPR @ {FROC_READ_FPI:g} FPI", "ECE"]
    lines = [_row(header), _row(["---"] * len(header))]
    for model, row in rows:
        fold = row["fold"]
        lines.append(_row([
            model_name(model), str(fold),
            _with_interval(_fold_value(results, model, "auc", fold), row.get("auc_ci95")),
            _with_interval(_fold_value(results, model, "auc_detected", fold),
                           row.get("auc_detected_ci95")),
            _with_interval(_fold_value(results, model, tpr_key(FROC_READ_FPI), fold),
                           (row.get("tpr_at_fpi_ci95") or {}).get(read)),
            f"{row['ece']:.3f}" if _finite(row.get("ece")) else NOT_AVAILABLE]))
    boot = rows[0][1].get("bootstrap", {})
    metrics = results.get("metrics", {})
    ece = "; ".join(f"{model_name(m)} {_cell(metrics.get(m, {}).get('ece'), 3)}"
                    for m in results.get("models", []) if intervals.get(m))
    return [
        "", "## Bootstrap intervals and calibration, per fold", "", *lines, "",
        f"In brackets: the {boot.get('level', 0.95):.0%} percentile bootstrap interval over the "
        f"fold's test images ({boot.get('resamples', '?')} resamples drawn with replacement, "
        f"seed {boot.get('seed', '?')}; the models of a fold draw the same images). ECE: the "
        "expected calibration error of the case malignancy score on the benign and malignant "
        f"cases, {DEFAULT_BINS} equal-width bins weighted by bin count; over folds {ece}. The "
        "calibration figure pools every fold's cases.",
    ]


def results_markdown(results: Mapping[str, Any]) -> str:
    """The report as Markdown text (what ``write_results_md`` writes)."""
    models = results.get("models", [])
    n_folds = results.get("k")
    done = results.get("folds_done", {})
    lines = [
        "# Cross-validation results",
        "",
        f"Dataset: `{results.get('dataset_dir', '?')}`. {n_folds}-fold cross-validation, "
        f"folds grouped by patient and stratified by label (seed {results.get('seed', '?')}).",
        "Folds evaluated: " + ("; ".join(f"{model_name(m)} {len(done.get(m, []))}"
                                         for m in models) or "none") + ".",
        "",
        "Our cells: mean +- sample std over folds (a count in brackets when some folds leave "
        "the metric undefined). p: two-sided paired t-test between the models, fold by fold "
        "(n/a with fewer than two folds). *Paper* rows are the published figures on real "
        "INbreast, for reference; they are not comparable with runs on other data.",
        "",
        "## Table 1. Classification: AUC of the case malignancy score",
        "",
        *_table(results, CLASSIFICATION),
        "",
        "Cases: images with a benign or malignant mass (images without a mass have no lesion "
        "to classify). Detected: a detection with box IoU >= 0.4 to a mass.",
        "",
        "## Table 2. Detection: TPR at false positives per image (TP: box IoU > 0.2)",
        "",
        *_table(results, DETECTION),
        "",
        "## Table 3. Segmentation: Dice at full resolution on detected masses",
        "",
        *_table(results, SEGMENTATION, extra=[("masses detected / all", _detected_masses(
            results))]),
        "",
        "## Mask R-CNN box AP (COCO-style, IoU 0.5)",
        "",
        *_table(results, GENERAL, paper=False),
        *_intervals_section(results),
    ]
    plots = results.get("plots", {})
    if plots:
        lines += ["", "## Figures", ""]
        lines += [f"![{name}]({path})" for name, path in plots.items()]
    return "\n".join(lines) + "\n"


def write_results_md(results: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``results_markdown(results)`` to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(results_markdown(results), encoding="utf-8")
    return path
