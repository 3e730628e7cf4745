"""benchmarks/bench_accuracy.py: its statistics and data handling (fast) and a --quick run end to
end (slow). Nothing here looks at accuracy: a --quick run trains for two steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import bench_accuracy as bench  # benchmarks/ is on pytest's pythonpath (pyproject.toml)
import numpy as np
import pytest
from scipy import stats

from ftmtl.presets import make_config

# Models trained for two steps detect nothing: undefined Dice/AUC warnings are expected.
pytestmark = pytest.mark.filterwarnings("ignore::ftmtl.evaluation.UndefinedMetricWarning")


# --------------------------------------------------------------------------- fast checks
def test_defaults_and_quick_defaults():
    full = bench.parse_args([])
    assert full.seeds == list(bench.DEFAULT_SEEDS) and len(full.seeds) >= 3
    assert full.preset == "fpn_cpu" and full.models == ["ftmtl", "maskrcnn"]
    assert full.epochs == bench.DEFAULT_EPOCHS and full.weights == "none"
    assert full.train_patients == full.test_patients == 12  # the demo's size
    assert full.difficulty == 0.5  # the generator's own default, not lowered
    quick = bench.parse_args(["--quick", "--epochs", "3", "--set", "OPTIMIZER='adam'"])
    assert quick.epochs == 3 and quick.steps == bench.QUICK["steps"]
    assert quick.seeds == bench.QUICK["seeds"] and quick.image_size == 64
    assert bench.config_overrides(quick)["OPTIMIZER"] == "adam"
    # fpn_cpu crops: --image-size is the prepared images' size; --quick also crops 64 px.
    assert bench.config_overrides(quick)["PREPARED_IMAGE_SIZE"] == 64
    assert bench.config_overrides(quick)["IMAGE_MIN_DIM"] == 64


def test_seeds_must_keep_the_data_sets_apart():
    with pytest.raises(SystemExit):
        bench.parse_args(["--seeds", "1000"])
    generator_seeds = [offset + s for offset in bench.DATA_SEED_OFFSETS.values()
                       for s in (0, bench.MAX_SEED)]
    assert len(set(generator_seeds)) == len(generator_seeds)


def test_masses_found_counts_each_mass_at_iou_half():
    def case(rois, gt):
        return SimpleNamespace(rois=np.array(rois, float).reshape(-1, 4),
                               gt_boxes=np.array(gt, float).reshape(-1, 4))

    cases = [
        case([[0, 0, 10, 10], [50, 50, 60, 60]], [[0, 0, 10, 10], [50, 50, 60, 80]]),  # 1 + 0
        case([], [[0, 0, 10, 10]]),  # no detection: missed
        case([[0, 0, 10, 10]], []),  # no mass
        case([[0, 0, 10, 20]], [[0, 0, 10, 10]]),  # IoU exactly 0.5 counts
    ]
    assert bench.masses_found(cases) == (2, 4)


def test_found_mass_scores_read_the_best_detection_on_each_found_mass():
    def case(rois, scores, probs, gt, gt_ids):
        return SimpleNamespace(rois=np.array(rois, float).reshape(-1, 4),
                               scores=np.array(scores, float),
                               class_probs=np.array(probs, float).reshape(-1, 3),
                               gt_boxes=np.array(gt, float).reshape(-1, 4),
                               gt_class_ids=np.array(gt_ids, int))

    cases = [
        # Two detections on the malignant mass: the higher-scoring one (0.9) is read,
        # p_m / (p_b + p_m) = 0.6 / 0.8; the far detection hits nothing.
        case([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]], [0.7, 0.9, 0.99],
             [[0.3, 0.1, 0.6], [0.2, 0.2, 0.6], [0.0, 0.0, 1.0]], [[0, 0, 10, 10]], [2]),
        # A benign mass found (IoU 0.5), a second one missed.
        case([[0, 0, 10, 20]], [0.5], [[0.5, 0.4, 0.1]], [[0, 0, 10, 10], [70, 70, 80, 80]],
             [1, 1]),
        case([], [], [], [[0, 0, 10, 10]], [2]),  # no detection
    ]
    labels, scores = bench.found_mass_scores(cases)
    assert labels == [1, 0]
    np.testing.assert_allclose(scores, [0.75, 0.2])
    assert bench.mass_auc(cases) == 1.0
    assert bench.mass_auc(cases[:1]) is None  # one label only


def _labelled_case(label, rois, scores, probs, gt=()):
    return SimpleNamespace(label=label, rois=np.array(rois, float).reshape(-1, 4),
                           scores=np.array(scores, float),
                           class_probs=np.array(probs, float).reshape(-1, 3),
                           gt_boxes=np.array(gt, float).reshape(-1, 4),
                           gt_class_ids=np.full(len(gt), 1, int))


def test_top_box_auc_reads_the_most_confident_detection_alone():
    from sklearn.metrics import roc_auc_score

    cases = [
        # malignant: top box (0.9) 0.6 / (0.2 + 0.6) = 0.75; a weaker box would say 0.0
        _labelled_case("malignant", [[0, 0, 9, 9], [20, 20, 29, 29]], [0.9, 0.6],
                       [[0.2, 0.2, 0.6], [0.4, 0.6, 0.0]]),
        # benign: a confident box called benign, 0.1 / (0.8 + 0.1); a weak "malignant" one
        # would decide the paper's veto, not this score
        _labelled_case("benign", [[0, 0, 9, 9], [40, 40, 49, 49]], [0.9, 0.55],
                       [[0.1, 0.8, 0.1], [0.45, 0.0, 0.55]]),
        _labelled_case("benign", [], [], []),  # no detection: 0.5
        _labelled_case("normal", [[0, 0, 9, 9]], [0.99], [[0.0, 0.0, 1.0]]),  # not a case
    ]
    expected = roc_auc_score([1, 0, 0], [0.75, 0.1 / 0.9, 0.5])
    assert bench.top_box_auc(cases) == pytest.approx(expected)
    assert bench.top_box_auc(cases[1:]) is None  # benign cases only


def test_veto_false_positives_count_the_read_boxes_that_hit_no_mass():
    cases = [
        # one box on the mass (IoU 1), one far away above the threshold, one below it
        _labelled_case("benign", [[0, 0, 10, 10], [50, 50, 60, 60], [70, 70, 80, 80]],
                       [0.9, 0.8, 0.3], [[0.1, 0.8, 0.1]] * 3, gt=[[0, 0, 10, 10]]),
        # no mass: every box read counts (two of three at 0.5 and above)
        _labelled_case("normal", [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]],
                       [0.5, 0.7, 0.49], [[0.1, 0.1, 0.8]] * 3),
    ]
    assert bench.veto_false_positives(cases, 0.5) == pytest.approx((1 + 2) / 2)
    assert bench.veto_false_positives(cases, 0.85) == pytest.approx(0 / 2)
    assert bench.veto_false_positives([], 0.5) is None


def test_label_ceiling_is_the_shape_family_auc_of_the_manifest(tmp_path):
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast
    from ftmtl.metrics import roc_auc

    manifest = generate_synthetic_inbreast(tmp_path, n_patients=6, seed=5,
                                           image_shape=(128, 96), faults=False)
    labelled = [image for image in manifest.images
                if image.label != "normal" and image.masses]
    labels = [image.label == "malignant" for image in labelled]
    looks = [any(m.kind in ("irregular", "spiculated") for m in image.masses)
             for image in labelled]
    assert bench.label_ceiling_auc(tmp_path) == pytest.approx(roc_auc(labels, looks))


class OutlineSet:
    """A dataset of one mass an image: discs (benign, id 1) and spiky stars (malignant, 2)."""

    def __init__(self, radii, malignant):
        self.masks = [self.star(r) if m else self.disc(r)
                      for r, m in zip(radii, malignant, strict=True)]
        self.ids = [2 if m else 1 for m in malignant]
        self.image_ids = list(range(len(self.masks)))

    @staticmethod
    def disc(radius):
        yy, xx = np.mgrid[:64, :64] - 32
        return (yy ** 2 + xx ** 2) <= radius ** 2

    @staticmethod
    def star(radius):
        yy, xx = np.mgrid[:64, :64] - 32
        angle = np.arctan2(yy, xx)
        return np.hypot(yy, xx) <= radius * (0.6 + 0.4 * np.abs(np.cos(4 * angle)) ** 3)

    def load_mask(self, image_id):
        return self.masks[image_id][..., None], np.array([self.ids[image_id]], np.int32)


def test_outline_features_tell_a_disc_from_a_star():
    disc, star = OutlineSet.disc(12), OutlineSet.star(14)
    area, solidity, circularity, _, _ = bench.outline_features(disc)
    assert area == pytest.approx(np.log(disc.sum())) and solidity > 0.9
    assert circularity == pytest.approx(1.0, abs=0.15)
    assert bench.outline_features(star)[1] < 0.8 and bench.outline_features(star)[2] > 1.5
    assert bench.outline_features(np.zeros((8, 8), bool)) is None


def test_outline_baseline_separates_shapes_it_was_fitted_on_and_needs_both_labels():
    rng = np.random.default_rng(0)
    train = OutlineSet(rng.uniform(8, 20, 20), [i % 2 == 1 for i in range(20)])
    test = OutlineSet(rng.uniform(8, 20, 10), [i % 2 == 0 for i in range(10)])
    assert bench.outline_baseline_auc(train, test) == pytest.approx(1.0)
    assert bench.outline_baseline_auc(train, OutlineSet([10, 12], [False, False])) is None


def test_paired_comparison_is_scipys_paired_t_test():
    a = {0: {"auc": 0.9, "dice": 0.5}, 1: {"auc": 0.8, "dice": None}, 2: {"auc": 0.85}}
    b = {0: {"auc": 0.7, "dice": 0.4}, 1: {"auc": 0.75, "dice": 0.3}, 2: {"auc": 0.8}}
    out = bench.paired_comparison(a, b, keys=("auc", "dice"))
    expected = stats.ttest_rel([0.9, 0.8, 0.85], [0.7, 0.75, 0.8])
    assert out["auc"]["n"] == 3 and out["auc"]["p"] == pytest.approx(expected.pvalue)
    assert out["auc"]["mean_diff"] == pytest.approx(0.1)
    assert out["dice"]["n"] == 1 and out["dice"]["p"] is None  # one pair: n/a
    table = bench.paired_table({k: out.get(k, out["dice"]) for k in bench.METRIC_KEYS},
                               "ftmtl", "maskrcnn")
    assert "n/a" in table and f"{expected.pvalue:.3f}" in table


def test_synthetic_sets_are_reused_only_with_the_same_parameters(tmp_path):
    folder = tmp_path / "set"
    first = bench.ensure_synthetic(folder, 1, 1000, (64, 64), 0.5)
    again = bench.ensure_synthetic(folder, 1, 1000, (64, 64), 0.5)
    other = bench.ensure_synthetic(folder, 1, 1001, (64, 64), 0.5)
    assert not first["reused"] and again["reused"] and not other["reused"]
    assert json.loads((folder / "manifest.json").read_text())["seed"] == 1001


def test_resume_refuses_runs_trained_with_other_options(tmp_path):
    args = vars(bench.parse_args(["--quick", "--out", str(tmp_path)]))
    bench.check_resumable(tmp_path, args)  # nothing there yet: nothing to refuse
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"args": {**args, "epochs": 5}}, default=str))
    with pytest.raises(SystemExit, match="epochs: 5 -> 1"):
        bench.check_resumable(tmp_path, args)
    # Options that change no run (threads, seeds, the validation curve) do not matter.
    same = {**args, "threads": 1, "seeds": [3], "no_val_curve": True}
    results.write_text(json.dumps({"args": same}, default=str))
    bench.check_resumable(tmp_path, args)


def test_a_run_is_finished_only_with_its_checkpoint(tmp_path):
    checkpoint = tmp_path / "last.h5"
    record = {"status": "ok", "checkpoint": str(checkpoint)}
    (tmp_path / "result.json").write_text(json.dumps(record))
    assert bench.finished_run(tmp_path) is None
    checkpoint.write_bytes(b"")
    assert bench.finished_run(tmp_path) == record
    (tmp_path / "result.json").write_text(json.dumps({**record, "status": "error"}))
    assert bench.finished_run(tmp_path) is None
    # Trained but not evaluated (the evaluation failed): --resume evaluates it, no retraining.
    trained = {**record, "status": "trained"}
    (tmp_path / "result.json").write_text(json.dumps(trained))
    assert bench.finished_run(tmp_path) == trained


# ------------------------------------------------------------------------ end to end (slow)
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("accuracy")
    # Op determinism is process-wide: left off in this process (test_reproducible_cli.py).
    code = bench.main(["--quick", "--out", str(out), "--nondeterministic"])
    return out, code


@pytest.mark.slow
def test_quick_run_writes_every_metric_of_both_models(quick_run):
    out, code = quick_run
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and set(results["runs"]) == {"ftmtl", "maskrcnn"}
    for model, runs in results["runs"].items():
        assert [run["seed"] for run in runs] == bench.QUICK["seeds"]
        for run in runs:
            assert run["status"] == "ok", run
            assert set(bench.METRIC_KEYS) <= set(run["metrics"]), model
            assert run["metrics"]["n_masses"] > 0
            assert 0 <= run["metrics"]["n_found_iou50"] <= run["metrics"]["n_masses"]
            history = run["history"]
            assert [h["epoch"] for h in history] == list(range(1, bench.QUICK["epochs"] + 1))
            for key in bench.LOSS_KEYS:
                assert history[-1][key] is not None, key
            assert f"val_{bench.tpr_key(bench.VAL_CURVE_FPI)}" in history[-1]
        summary = results["summary"]["models"][model]
        assert set(bench.METRIC_KEYS) <= set(summary)
    paired = results["summary"]["paired"]["metrics"]
    assert set(bench.METRIC_KEYS) <= set(paired)
    # Same seed, same initialisation of every layer the two networks share.
    init = results["shared_initial_weights"][str(bench.QUICK["seeds"][0])]
    assert init["shared"] > 0 and init["identical"] == init["shared"], init


@pytest.mark.slow
def test_quick_run_keeps_the_test_set_apart(quick_run):
    out, _ = quick_run
    results = json.loads((out / "results.json").read_text())
    for seed, sets in results["data"].items():
        seeds = {role: facts["seed"] for role, facts in sets.items()}
        assert seeds == {role: offset + int(seed)
                         for role, offset in bench.DATA_SEED_OFFSETS.items()}
        patients = {}
        for role, facts in sets.items():
            manifest = json.loads((Path(facts["dir"]) / "manifest.json").read_text())
            patients[role] = {image["patient_hash"] for image in manifest["images"]}
        assert not patients["test"] & (patients["train"] | patients["val"])


@pytest.mark.slow
def test_quick_run_writes_the_report_and_the_learning_curves(quick_run):
    out, _ = quick_run
    text = (out / "results.md").read_text()
    assert "## Paired: FT-MTL-Net - twin" in text and "p (paired t)" in text
    for _, header in bench.METRICS:
        assert header in text
    for seed in bench.QUICK["seeds"]:
        for model in ("ftmtl", "maskrcnn"):
            png = out / "plots" / f"curves_seed{seed}_{model}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert (out / "plots" / "val_tpr.png").stat().st_size > 0


@pytest.mark.slow
def test_resume_evaluates_the_finished_runs_again_without_training(quick_run, tmp_path):
    out, _ = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    checkpoints = sorted(p.name for p in copy.rglob("*.h5"))
    # Another evaluation-only option (a test set at another gain) keeps the runs resumable.
    assert bench.main(["--quick", "--out", str(copy), "--resume", "--nondeterministic",
                       "--intensity-scales", "2"]) == 0
    assert sorted(p.name for p in copy.rglob("*.h5")) == checkpoints  # nothing trained
    before = json.loads((out / "results.json").read_text())
    after = json.loads((copy / "results.json").read_text())
    for model, runs in after["runs"].items():
        for run, old in zip(runs, before["runs"][model], strict=True):
            assert run["resumed"] and run["checkpoint"] == old["checkpoint"]
            assert run["history"] == old["history"]
            assert run["metrics"] == pytest.approx(old["metrics"], nan_ok=True)
            scaled = run["metrics_by_intensity_scale"]["2"]
            assert set(bench.ROBUSTNESS_KEYS) <= set(scaled) and scaled["n_masses"] > 0
    assert "## Intensity robustness" in (copy / "results.md").read_text()
    assert after["data"]["0"]["test_g2"]["intensity_scale"] == 2.0
    assert "Resumed (trained by an earlier invocation" in (copy / "results.md").read_text()


@pytest.mark.slow
def test_inference_set_evaluates_the_same_checkpoints_a_second_way(quick_run, tmp_path):
    out, _ = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    # A prefilter that keeps every refined box must reproduce the run's own figures.
    keep_all = make_config(bench.DEFAULT_PRESET).POST_NMS_ROIS_INFERENCE
    assert bench.main(["--quick", "--out", str(copy), "--resume", "--nondeterministic",
                       "--inference-set", f"PREFILTER_MAX_ROIS={keep_all}",
                       "--inference-set", "PREFILTER_NMS_THRESHOLD=1.0"]) == 0
    after = json.loads((copy / "results.json").read_text())
    for runs in after["runs"].values():
        for run in runs:
            variant = run["variant"]
            assert variant["overrides"] == {"PREFILTER_MAX_ROIS": keep_all,
                                            "PREFILTER_NMS_THRESHOLD": 1.0}
            for key in bench.METRIC_KEYS:
                if key != "train_s":
                    assert variant["metrics"][key] == pytest.approx(run["metrics"][key],
                                                                    nan_ok=True), key
    paired = after["summary"]["variant"]["ftmtl"]
    assert paired["dice"]["mean_diff"] in (0.0, None)
    text = (copy / "results.md").read_text()
    assert "inference with `PREFILTER_MAX_ROIS=" in text and "as trained" in text


@pytest.mark.slow
def test_probe_reports_the_classifiers_own_and_a_linear_read_outs_auc(quick_run, tmp_path):
    out, _ = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert bench.main(["--quick", "--out", str(copy), "--resume", "--nondeterministic",
                       "--probe"]) == 0
    after = json.loads((copy / "results.json").read_text())
    for runs in after["runs"].values():
        for run in runs:
            probe = run["probe"]
            assert probe["n_train"] >= 0 and probe["n_test"] >= 0
            for key in ("own_train_auc", "own_test_auc", "probe_train_auc", "probe_test_auc"):
                assert probe[key] is None or 0.0 <= probe[key] <= 1.0, key
    assert "## Linear probe of the classifier's input" in (copy / "results.md").read_text()


def test_linear_probe_scores_test_masses_with_a_read_out_fitted_on_training_masses(
        monkeypatch):
    import feature_probe

    rng = np.random.default_rng(0)

    def fake_masses(net, feature_model, dataset):
        labels = np.tile([0, 1], 20)
        # Feature 0 carries the label (shifted by the set: a probe that refits on the test set
        # would not notice the shift); the classifier's own score is the label flipped.
        features = rng.normal(size=(40, 6))
        features[:, 0] += 3.0 * labels + dataset
        return features, labels, 1.0 - labels

    monkeypatch.setattr(feature_probe, "classifier_input_model", lambda net: None)
    monkeypatch.setattr(feature_probe, "mass_features", fake_masses)
    result = feature_probe.linear_probe(None, 0, 1)
    assert result["n_train"] == result["n_test"] == 40 and result["features"] == 6
    assert result["own_train_auc"] == result["own_test_auc"] == 0.0
    assert result["probe_train_auc"] > 0.95 and result["probe_test_auc"] > 0.95
