"""ftmtl.crossval: aggregation of fold results (fast, from hand-made results) and an end-to-end
cross-validation on a tiny synthetic INbreast (slow)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from scipy import stats

from ftmtl import crossval
from ftmtl.crossval import RESULT_FILE, aggregate, run_crossval
from ftmtl.evaluation import EvaluationResult
from ftmtl.metrics import FROC_POINTS

# Models trained for a few steps detect little: undefined Dice/AUC warnings are expected here.
pytestmark = pytest.mark.filterwarnings("ignore::ftmtl.evaluation.UndefinedMetricWarning")

# ------------------------------------------------------------------- aggregation (fast)

FOLD_VALUES = {  # model -> per fold (auc, auc_detected, tpr at each FROC point, dice)
    "ftmtl": [(0.90, 0.93, 0.88, 0.40), (0.85, 0.91, 0.80, 0.50), (0.95, float("nan"), 0.9, 0.6)],
    "maskrcnn": [(0.80, 0.88, 0.83, 0.45), (0.83, 0.90, 0.70, 0.52), (0.86, 0.92, 0.8, 0.55)],
}


def hand_result(auc, auc_detected, tpr, dice) -> EvaluationResult:
    froc = {"fpi": np.array([0.0, 1.0, 4.0]), "tpr": np.array([0.0, tpr / 2, tpr]),
            "thresholds": np.array([np.inf, 0.9, 0.5])}
    roc = {"fpr": np.array([0.0, 0.0, 1.0]), "tpr": np.array([0.0, auc, 1.0]),
           "thresholds": np.array([np.inf, 0.7, 0.1])}
    return EvaluationResult(
        n_cases=10, n_labelled=6, n_malignant=3, n_detected=4, n_masses=7, auc=auc,
        auc_detected=auc_detected, roc=roc, froc=froc,
        tpr_at_fpi={float(p): tpr for p in FROC_POINTS},
        tpr_vs_iou={0.1: tpr, 0.5: tpr / 2, 0.9: 0.0}, dice_mean=dice, dices=[dice],
        n_missed=2, box_ap50={"benign": 0.3, "malignant": 0.4}, box_map50=0.35)


def write_hand_results(out, models=("ftmtl", "maskrcnn")):
    k = len(FOLD_VALUES["ftmtl"])
    (out / "folds.json").write_text(json.dumps({"k": k, "seed": 3, "dataset_dir": "somewhere",
                                                "folds": []}))
    for model in models:
        for fold, values in enumerate(FOLD_VALUES[model]):
            run_dir = out / f"fold_{fold}" / model
            run_dir.mkdir(parents=True)
            evaluation = hand_result(*values).to_dict()
            (run_dir / RESULT_FILE).write_text(json.dumps({"evaluation": evaluation}))
            (run_dir / "history.json").write_text(json.dumps(
                {"rpn": {"loss": [3.0, 2.0]}, "heads": {"loss": [1.5], "val_loss": [1.6]}}))


def test_aggregate_means_stds_and_paired_tests(tmp_path):
    write_hand_results(tmp_path)
    summary = aggregate(tmp_path)
    for model, rows in FOLD_VALUES.items():
        auc = [row[0] for row in rows]
        metrics = summary["metrics"][model]
        assert metrics["auc"]["mean"] == pytest.approx(np.mean(auc))
        assert metrics["auc"]["std"] == pytest.approx(np.std(auc, ddof=1))
        assert metrics["dice"]["mean"] == pytest.approx(np.mean([row[3] for row in rows]))
        assert metrics["tpr_at_3.67"]["values"] == pytest.approx([row[2] for row in rows])
    # A fold without a detected-case AUC is left out of its mean, and of the paired test.
    detected = summary["metrics"]["ftmtl"]["auc_detected"]
    assert detected["n"] == 2 and detected["values"][2] is None
    assert detected["mean"] == pytest.approx(0.92)
    tests = summary["comparisons"]["FT-MTL-Net vs Mask R-CNN"]
    expected = stats.ttest_rel([r[0] for r in FOLD_VALUES["ftmtl"]],
                               [r[0] for r in FOLD_VALUES["maskrcnn"]])
    assert tests["auc"]["p"] == pytest.approx(expected.pvalue)
    assert tests["auc_detected"]["n"] == 2
    assert summary["counts"]["ftmtl"] == {"n_cases": 30, "n_labelled": 18, "n_detected": 12,
                                          "n_masses": 21, "n_missed": 6}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metrics"]["maskrcnn"]["auc"]["mean"] == pytest.approx(np.mean([0.8, 0.83,
                                                                                  0.86]))
    assert "Table 1" in (tmp_path / "results.md").read_text()
    for name in ("roc", "froc", "iou_sweep", "training_losses"):
        assert (tmp_path / "plots" / f"{name}.png").stat().st_size > 0
    assert "examples" not in summary["plots"]  # no examples.npz were written


def test_aggregate_with_one_model_and_no_folds_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="folds.json"):
        aggregate(tmp_path)
    write_hand_results(tmp_path, models=("ftmtl",))
    summary = aggregate(tmp_path)
    assert summary["models"] == ["ftmtl"] and summary["comparisons"] == {}
    assert "n/a" in (tmp_path / "results.md").read_text()


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="models"):
        run_crossval(tmp_path, tmp_path / "out", models=("ftmtl", "yolo"))
    with pytest.raises(ValueError, match="schedule_epochs"):
        run_crossval(tmp_path, tmp_path / "out", schedule_epochs=0)
    with pytest.raises(ValueError, match=r"only_folds must be fold numbers in 0\.\.1"):
        run_crossval(tmp_path, tmp_path / "out", folds=2, only_folds=[2])


# ----------------------------------------------------------------- end to end (slow)

MODELS = ("ftmtl", "maskrcnn")
# deterministic=False: op determinism is process-wide and would hold for every later test
# (tests/test_reproducible_cli.py runs the deterministic default in fresh processes).
RUN = {"folds": 2, "preset": "paper_cpu", "schedule_epochs": 1, "steps_per_epoch": 2,
       "image_size": 96, "config_overrides": {"VALIDATION_STEPS": 1, "IMAGE_MIN_DIM": 64},
       "progress": False, "deterministic": False}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    data = tmp_path_factory.mktemp("data")
    generate_synthetic_inbreast(data, n_patients=6, seed=0, image_shape=(192, 144))
    out = tmp_path_factory.mktemp("out")
    result = run_crossval(data, out, models=MODELS, **RUN)
    return data, out, result


@pytest.mark.slow
def test_every_output_exists(finished_run):
    _, out, result = finished_run
    assert (out / "folds.json").is_file()
    for fold in range(2):
        for model in MODELS:
            run_dir = out / f"fold_{fold}" / model
            for name in ("result.json", "predictions.json", "history.json", "examples.npz"):
                assert (run_dir / name).stat().st_size > 0, run_dir / name
            saved = json.loads((run_dir / "result.json").read_text())
            EvaluationResult.from_dict(saved["evaluation"])
            history = json.loads((run_dir / "history.json").read_text())
            # From scratch (weights None): the one joint stage, one epoch.
            assert list(history) == ["joint"]
            # crossval keeps the last checkpoint only.
            checkpoints = [p.name for p in (run_dir / "logs").rglob("mask_rcnn_*.h5")]
            assert len(checkpoints) == 1 and checkpoints[0].endswith("_0001.h5"), checkpoints
            assert saved["image_size"] == 96
            config = json.loads(next((run_dir / "logs").rglob("config.json")).read_text())
            assert config["PREPARED_IMAGE_SIZE"] == 96  # the config says what the data was
    summary = json.loads((out / "results.json").read_text())
    assert summary["models"] == list(MODELS) and summary["folds_done"]["ftmtl"] == [0, 1]
    text = (out / "results.md").read_text()
    for table in ("Table 1. Classification", "Table 2. Detection", "Table 3. Segmentation"):
        assert table in text
    for name in ("roc", "froc", "iou_sweep", "examples", "training_losses"):
        if name == "roc" and not summary["plots"].get("roc"):
            continue  # a fold whose test cases hold one class only has no ROC
        assert (out / "plots" / f"{name}.png").stat().st_size > 0
    assert all(len(result.results[m]) == 2 and None not in result.results[m] for m in MODELS)


@pytest.mark.slow
def test_folds_are_patient_grouped_and_shared_by_the_models(finished_run):
    data, out, result = finished_run
    folds = json.loads((out / "folds.json").read_text())["folds"]
    tests = [set(f["test"]) for f in folds]
    assert not tests[0] & tests[1]
    assert tests[0] | tests[1] == set(folds[0]["train"]) | set(folds[0]["test"])
    patients = [set(f["test_patients"]) for f in folds]
    assert not patients[0] & patients[1]
    # Check the patients independently, from the DICOM names (hash after the first "_").
    by_name = {p.name.split("_")[0]: p.name.split("_")[1] for p in (data / "AllDICOMs").iterdir()}
    assert not {by_name[n] for n in tests[0]} & {by_name[n] for n in tests[1]}
    for fold, names in enumerate(tests):
        for model in MODELS:
            predictions = json.loads((out / f"fold_{fold}" / model / "predictions.json")
                                     .read_text())
            assert {p["file_name"] for p in predictions} == names
        assert set(folds[fold]["train"]).isdisjoint(names)


@pytest.mark.slow
def test_rerun_skips_finished_folds(finished_run, monkeypatch, caplog):
    data, out, _ = finished_run
    calls = []
    monkeypatch.setattr(crossval, "run_schedule", lambda *a, **k: calls.append(a) or [])
    results = sorted(out.glob("fold_*/*/result.json"))
    before = {p: p.stat().st_mtime_ns for p in results}
    with caplog.at_level(logging.INFO, logger="ftmtl.crossval"):
        run_crossval(data, out, models=MODELS, **RUN)
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in results} == before
    assert caplog.text.count("exists; skipped") == 4


@pytest.mark.slow
def test_an_interrupted_fold_resumes_from_its_checkpoint(finished_run, monkeypatch):
    """Without result.json the fold is redone, but training continues from the last checkpoint
    (all stages done, so nothing trains) and the test cases are predicted again."""
    from mrcnn.model import MaskRCNN

    data, out, _ = finished_run
    target = out / "fold_1" / "maskrcnn" / "result.json"
    old = json.loads(target.read_text())
    target.unlink()
    trained = []
    monkeypatch.setattr(MaskRCNN, "train", lambda self, *a, **k: trained.append(k))
    run_crossval(data, out, models=MODELS, **RUN)
    assert trained == []
    new = json.loads(target.read_text())
    assert new["checkpoint"] == old["checkpoint"]
    for key in ("auc", "tpr_at_fpi", "n_missed", "box_map50"):
        expected = old["evaluation"][key]
        if expected is None:
            assert new["evaluation"][key] is None
        else:
            assert new["evaluation"][key] == pytest.approx(expected, abs=1e-5)
    runs = list((out / "fold_1" / "maskrcnn" / "logs").iterdir())
    assert len(runs) == 1  # the empty folder of the resumed model was removed


@pytest.mark.slow
def test_only_the_chosen_folds_run(finished_run, tmp_path, monkeypatch):
    """The other folds stay for later; the tables summarise the folds with results."""
    from ftmtl.evaluation import EvaluationResult

    data, out, _ = finished_run
    ran = []

    def fake_train(config, train_ds, run_dir, fold, **kwargs):
        ran.append((fold, config.NAME))
        return run_dir / "checkpoint.h5"

    def fake_evaluate(config, checkpoint, test_ds, run_dir, progress):
        model = run_dir.name
        done = json.loads((out / "fold_1" / model / "result.json").read_text())
        return EvaluationResult.from_dict(done["evaluation"])

    monkeypatch.setattr(crossval, "_train", fake_train)
    monkeypatch.setattr(crossval, "_evaluate", fake_evaluate)
    result = run_crossval(data, tmp_path, models=MODELS, only_folds=[1], **RUN)
    assert [fold for fold, _ in ran] == [1, 1]
    for model in MODELS:
        assert result.results[model][0] is None and result.results[model][1] is not None
    assert not (tmp_path / "fold_0").exists()
