"""ftmtl.crossval.aggregate with the folds' predictions.json: per-fold bootstrap intervals and
ECE in results.json and results.md, the calibration of every fold's cases in a figure."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pytest
from report_cases import random_cases

from ftmtl.calibration import expected_calibration_error
from ftmtl.crossval import PREDICTIONS_FILE, RESULT_FILE, aggregate
from ftmtl.evaluation import evaluate_predictions
from ftmtl.evaluation_report import CaseOutcomes, bootstrap_intervals

SEED = 3
RESAMPLES = 200


def write_folds(out, with_predictions=(True, True, False)):
    """Three folds of two models; only the folds marked keep their predictions.json."""
    (out / "folds.json").write_text(json.dumps({"k": 3, "seed": SEED, "dataset_dir": "data",
                                                "folds": []}))
    cases = {}
    for fold, keep in enumerate(with_predictions):
        for offset, model in enumerate(("ftmtl", "maskrcnn")):
            run_dir = out / f"fold_{fold}" / model
            run_dir.mkdir(parents=True)
            fold_cases = random_cases(10 * fold + offset, n=30)
            result = evaluate_predictions(fold_cases)
            (run_dir / RESULT_FILE).write_text(json.dumps({"evaluation": result.to_dict()}))
            if keep:
                (run_dir / PREDICTIONS_FILE).write_text(
                    json.dumps([case.summary() for case in fold_cases]))
                cases[model, fold] = fold_cases
    return cases


def labelled(cases):
    chosen = [c for c in cases if c.label != "normal"]
    return [c.label == "malignant" for c in chosen], [c.case_score for c in chosen]


def test_aggregate_adds_the_folds_intervals_and_calibration(tmp_path):
    cases = write_folds(tmp_path)
    summary = aggregate(tmp_path, bootstrap_resamples=RESAMPLES)
    for model in ("ftmtl", "maskrcnn"):
        rows = summary["intervals"][model]
        assert [row["fold"] for row in rows] == [0, 1]  # fold 2 has no predictions.json
        for row in rows:
            fold_cases = cases[model, row["fold"]]
            expected = bootstrap_intervals(CaseOutcomes.from_predictions(fold_cases),
                                           RESAMPLES, SEED)
            assert row["auc_ci95"] == pytest.approx(expected["auc_ci95"])
            assert row["tpr_at_fpi_ci95"] == expected["tpr_at_fpi_ci95"]
            assert row["bootstrap"]["resamples"] == RESAMPLES and row["bootstrap"]["seed"] == SEED
            assert row["ece"] == pytest.approx(expected_calibration_error(*labelled(fold_cases)))
        # The ECE is summarised over the folds that have it, as the other metrics are.
        ece = summary["metrics"][model]["ece"]
        assert ece["n"] == 2 and ece["values"][2] is None
        assert ece["mean"] == pytest.approx(np.mean([row["ece"] for row in rows]))
        # The calibration figure pools both folds' labelled cases.
        pooled = labelled(cases[model, 0] + cases[model, 1])
        calibration = summary["calibration"][model]
        assert sum(calibration["calibration"]["counts"]) == len(pooled[0])
        assert calibration["ece"] == pytest.approx(expected_calibration_error(*pooled))
    assert "ece" in summary["comparisons"]["FT-MTL-Net vs Mask R-CNN"]
    assert summary["plots"]["calibration"] == "plots/calibration.png"
    assert matplotlib.image.imread(tmp_path / "plots" / "calibration.png").ndim == 3
    assert json.loads((tmp_path / "results.json").read_text())["intervals"] == json.loads(
        json.dumps(summary["intervals"]))

    text = (tmp_path / "results.md").read_text()
    assert "## Bootstrap intervals and calibration, per fold" in text
    first = summary["intervals"]["ftmtl"][0]
    auc = summary["metrics"]["ftmtl"]["auc"]["values"][0]
    low, high = first["auc_ci95"]
    assert f"| FT-MTL-Net | 0 | {auc:.2f} [{low:.2f}, {high:.2f}] |" in text
    assert f"{RESAMPLES} resamples" in text and f"seed {SEED}" in text


def test_folds_without_predictions_have_no_intervals(tmp_path):
    write_folds(tmp_path, with_predictions=(False, False, False))
    summary = aggregate(tmp_path, bootstrap_resamples=RESAMPLES)
    assert summary["intervals"] == {"ftmtl": [], "maskrcnn": []}
    assert summary["calibration"] == {} and "calibration" not in summary["plots"]
    assert "Bootstrap intervals" not in (tmp_path / "results.md").read_text()
