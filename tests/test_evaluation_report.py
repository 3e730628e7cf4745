"""ftmtl.evaluation_report: the per-case CSV against hand-built cases, the intervals and the
calibration in metrics.json against direct calls, and the files (PNGs that open)."""

from __future__ import annotations

import csv
import json

import matplotlib.image
import numpy as np
import pytest
from report_cases import make_case, random_cases

from ftmtl.bootstrap import auc_resamples, percentile_interval, resample_counts
from ftmtl.calibration import expected_calibration_error
from ftmtl.evaluation import CasePrediction, UndefinedMetricWarning, evaluate_predictions
from ftmtl.evaluation_report import (
    CASE_COLUMNS,
    CaseOutcomes,
    bootstrap_intervals,
    case_row,
    write_case_csv,
    write_evaluation_report,
)


def hand_cases() -> list[CasePrediction]:
    return [
        # A mass of 20 x 20 found by a box two rows short (IoU 360/400 = 0.9, Dice
        # 2 * 360 / (360 + 400)), plus a false positive.
        make_case(0, "malignant", [(10, 10, 30, 30)], [(12, 10, 30, 30), (40, 40, 50, 50)],
                  [0.9, 0.6], 0.8),
        # Two masses: the first found (IoU 80/100 = 0.8, Dice 160/180), the second only
        # touched (IoU 70/300 < 0.4): one of two detected.
        make_case(1, "benign", [(5, 5, 15, 15), (30, 30, 50, 45)],
                  [(5, 5, 15, 13), (30, 30, 40, 37)], [0.7, 0.8], 0.3),
        make_case(2, "normal", [], [(20, 20, 30, 30)], [0.5], 0.1),  # no mass
        make_case(3, "malignant", [(40, 40, 60, 60)], [], [], 0.4),  # no detection
    ]


def test_case_rows_of_hand_built_cases(tmp_path):
    path = write_case_csv(hand_cases(), tmp_path / "cases.csv")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(CASE_COLUMNS)
    assert [r["case"] for r in rows] == ["case0.dcm", "case1.dcm", "case2.dcm", "case3.dcm"]
    assert [r["label"] for r in rows] == ["malignant", "benign", "normal", "malignant"]
    assert [float(r["case_score"]) for r in rows] == [0.8, 0.3, 0.1, 0.4]
    assert [int(r["n_masses"]) for r in rows] == [1, 2, 0, 1]
    assert [int(r["n_detected_masses"]) for r in rows] == [1, 1, 0, 0]
    assert float(rows[0]["best_iou"]) == pytest.approx(0.9)
    assert float(rows[1]["best_iou"]) == pytest.approx(0.8)
    assert rows[2]["best_iou"] == ""  # no mass: no IoU
    assert float(rows[3]["best_iou"]) == 0.0  # a mass and no detection
    assert float(rows[0]["dice"]) == pytest.approx(720 / 760)
    assert float(rows[1]["dice"]) == pytest.approx(160 / 180)
    assert rows[2]["dice"] == rows[3]["dice"] == ""
    assert rows[0]["image_id"] == "0" and rows[1]["patient_id"] == "p1"


def test_the_rows_dice_agree_with_the_evaluation():
    cases = hand_cases()
    result = evaluate_predictions(cases)
    rows = [case_row(case) for case in cases]
    assert sum(r["n_detected_masses"] for r in rows) == len(result.dices)
    assert sum(r["n_masses"] - r["n_detected_masses"] for r in rows) == result.n_missed
    np.testing.assert_allclose(sorted(r["dice"] for r in rows if r["dice"] is not None),
                               sorted(result.dices))  # one detected mass per case here


def test_write_evaluation_report_writes_every_file(tmp_path):
    cases = random_cases(0)
    result = evaluate_predictions(cases)
    report = write_evaluation_report(cases, result, tmp_path / "eval", resamples=300, seed=4)
    out = tmp_path / "eval"
    assert set(report.files) == {"metrics", "cases", "roc", "froc", "calibration"}
    for name in ("roc.png", "froc.png", "calibration.png"):
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 200
    with (out / "cases.csv").open(newline="", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == len(cases)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == report.metrics
    assert metrics["auc"] == pytest.approx(result.auc)  # the evaluation's numbers stay
    assert metrics["bootstrap"]["resamples"] == 300 and metrics["bootstrap"]["seed"] == 4
    # The AUC interval: percentiles of the AUC of the labelled cases among those drawn.
    labelled = np.array([c.label != "normal" for c in cases])
    counts = resample_counts(len(cases), 300, seed=4)
    labels = np.array([c.label == "malignant" for c in cases])[labelled]
    scores = np.array([c.case_score for c in cases])[labelled]
    expected = percentile_interval(auc_resamples(labels, scores, counts[:, labelled]))
    assert metrics["auc_ci95"] == pytest.approx(list(expected))
    assert metrics["auc_ci95"][0] < metrics["auc"] < metrics["auc_ci95"][1]
    assert set(metrics["tpr_at_fpi_ci95"]) == set(metrics["tpr_at_fpi"])
    for point, (low, high) in metrics["tpr_at_fpi_ci95"].items():
        assert low <= metrics["tpr_at_fpi"][point] <= high
    assert metrics["ece"] == pytest.approx(expected_calibration_error(labels, scores))
    assert metrics["calibration"]["n_bins"] == 10
    assert sum(metrics["calibration"]["counts"]) == labelled.sum()
    printed = "\n".join(report.summary_lines())
    assert "300 resamples" in printed and str(out / "calibration.png") in printed


def test_intervals_are_seeded_and_known_when_the_scores_separate():
    cases = random_cases(1)
    for case in cases:  # malignant above every benign case
        case.case_score = 0.9 if case.label == "malignant" else 0.1
    outcomes = CaseOutcomes.from_predictions(cases)
    first = bootstrap_intervals(outcomes, resamples=200, seed=0)
    assert first["auc_ci95"] == [1.0, 1.0]
    assert first == bootstrap_intervals(outcomes, resamples=200, seed=0)
    other = bootstrap_intervals(outcomes, resamples=200, seed=1)
    assert other["tpr_at_fpi_ci95"] != first["tpr_at_fpi_ci95"]


def test_summaries_give_the_same_outcomes_and_missing_fields_are_named():
    cases = random_cases(2, n=30)
    from_summaries = CaseOutcomes.from_summaries([c.summary() for c in cases])
    direct = CaseOutcomes.from_predictions(cases)
    assert bootstrap_intervals(from_summaries, 100) == bootstrap_intervals(direct, 100)
    broken = [c.summary() for c in cases]
    del broken[3]["case_score"]
    with pytest.raises(ValueError, match=r"fold_0/predictions.json: case 3 \(case3.dcm\) "
                                         r"lacks \['case_score'\]"):
        CaseOutcomes.from_summaries(broken, "fold_0/predictions.json")


def test_undefined_curves_leave_their_figures_out(tmp_path):
    cases = [c for c in random_cases(3) if c.label == "benign"]  # one class: no ROC
    with pytest.warns(UndefinedMetricWarning):
        result = evaluate_predictions(cases)
    report = write_evaluation_report(cases, result, tmp_path, resamples=50)
    assert "roc" not in report.files and not (tmp_path / "roc.png").exists()
    assert report.metrics["auc_ci95"] == [None, None]
    assert report.metrics["bootstrap"]["defined"]["auc"] == 0
    assert (tmp_path / "froc.png").is_file() and (tmp_path / "calibration.png").is_file()
    assert "auc n/a" in "\n".join(report.summary_lines())
