"""Accuracy judge: FT-MTL-Net against its twin (the same network without the transfer branch).

    .venv/bin/python benchmarks/bench_accuracy.py                 # full run, about 65 min
    .venv/bin/python benchmarks/bench_accuracy.py --quick --out /tmp/acc   # CI smoke run

For each seed ``s`` (``--seeds``, default 0 1 2) it generates three synthetic INbreast sets, at
the generator's own difficulty (never lowered):

- training set, generator seed ``1000 + s`` (``--train-patients``);
- validation set, seed ``2000 + s`` (``--val-patients``): only for the learning curve (TPR at
  1 FPI after every epoch, and the validation losses); nothing is selected on it;
- test set, seed ``3000 + s`` (``--test-patients``): evaluated once, after training, with the
  last checkpoint. No choice (epochs, checkpoint, threshold) ever looks at it.

Seeds are 0..999, so the three sets of a seed never share a generator seed with each other or
with any other seed's sets. Sets are generated under ``OUT/data/<role>_seed<g>_p<n>_<HxW>_d<d>``
and reused when their manifest says they were made with the same parameters.

Both networks get the same recipe: the preset's config (plus ``BENCH_OVERRIDES`` and ``--set``),
``mrcnn.model.enable_determinism(s)`` right before the training model is built (so every layer
the two share starts from the same weights, the run records how many did, and the same command
gives the same figures; ``--nondeterministic`` leaves the ops free), the same schedule
(``schedule_for``: the paper's three stages with pretrained ``--weights``, else the joint
from-scratch stage), the paper's augmentation, the class-balanced sampler of the CLI
(``ftmtl.inbreast.folds.balanced_sampler``) and the same data order (``seed=s``).

Output: one table per model (TPR at 0.5 / 1 / 2 / 3.67 FPI, Dice on detected masses, case AUC,
box AP@0.5, masses found at IoU >= 0.5, training time), then FT-MTL minus twin per metric with
the paired t-test's p-value over the seeds (n/a with one seed), whatever the outcome. Written
to ``OUT/results.json`` and ``OUT/results.md`` (after every run, so an interrupted run keeps
what it finished) and the learning curves to ``OUT/plots/*.png``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import shlex
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common
import feature_probe
import numpy as np

from ftmtl.cli import (  # no TensorFlow at import
    MODEL_NAMES,
    PRESET_NAMES,
    add_budget_options,
    add_reproducibility_option,
    image_shape_arg,
    model_list_arg,
    override_arg,
    positive_int,
)
from ftmtl.datasets.reporting import summary_line
from ftmtl.demo_recipe import DEMO_DATA, DEMO_RUN

# ------------------------------------------------------------------ defaults (to be tuned)
DEFAULT_PRESET = "fpn_cpu"
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_EPOCHS = None  # None: the recipe's (ftmtl.schedule.recipe_epochs)
DEFAULT_STEPS = None  # None: the preset's STEPS_PER_EPOCH
DEFAULT_LR = None  # None: the preset's LEARNING_RATE
# The demo's sizes: it trains on one of its folds and tests on the other.
DEFAULT_TRAIN_PATIENTS = int(DEMO_DATA["n_patients"]) // int(DEMO_RUN["folds"])
DEFAULT_TEST_PATIENTS = DEFAULT_TRAIN_PATIENTS
DEFAULT_VAL_PATIENTS = 3
DEFAULT_IMAGE_SHAPE = tuple(DEMO_DATA["image_shape"])  # the synthetic DICOMs (rows, cols)
DEFAULT_IMAGE_SIZE = None  # None: the preset's (ftmtl.model.prepared_image_size)
DEFAULT_WEIGHTS = "none"
DEFAULT_OUT = common.REPO_ROOT / "benchmarks" / "output" / "accuracy"
# Applied to both networks before --set. Detections are kept from confidence 0.05 so that the
# FROC reaches 3.67 FPI (at the presets' 0.5 it stops short and every TPR is the last one);
# only the last checkpoint is ever read, so one is kept per run.
BENCH_OVERRIDES: dict[str, Any] = {"DETECTION_MIN_CONFIDENCE": 0.05, "KEEP_CHECKPOINTS": 1}
# --quick: every step on tiny data; a smoke test of the script, it learns nothing.
QUICK = {"seeds": [0], "train_patients": 2, "test_patients": 2, "val_patients": 1,
         "image_shape": (256, 192), "image_size": 64, "epochs": 1, "steps": 2}
# --quick also trains on 64-px crops when the preset crops (its own crops may be larger).
QUICK_OVERRIDES: dict[str, Any] = {"IMAGE_MIN_DIM": 64}

# Generator seed of each set: offset + the run's seed (seeds are 0..MAX_SEED).
DATA_SEED_OFFSETS = {"train": 1000, "val": 2000, "test": 3000}
MAX_SEED = 999
REPORTED_FPI = (0.5, 1.0, 2.0, 3.67)
VAL_CURVE_FPI = 1.0
FOUND_IOU = 0.5
# Mass kinds of the generator's malignant shape family (ftmtl.inbreast.phantom).
MALIGNANT_LOOKING = ("irregular", "spiculated")

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
PLOTS_DIR = "plots"
RUNS_DIR = "runs"
DATA_DIR = "data"
LOSS_KEYS = ("loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
             "mrcnn_mask_loss")


def tpr_key(fpi: float) -> str:
    """The metric key of the TPR at one FPI point, as ftmtl.report spells it."""
    return f"tpr_at_{float(fpi):g}"


# (key, table header): every per-run metric that gets a mean and a paired test.
METRICS: tuple[tuple[str, str], ...] = (
    *((tpr_key(p), f"TPR@{p:g}FPI") for p in REPORTED_FPI),
    ("dice", "Dice (detected)"),
    ("auc", "case AUC"),
    ("mass_auc", "mass AUC (found)"),
    ("top_auc", "case AUC (top box)"),
    ("veto_fp", "veto FP/img"),
    ("box_ap50", "box AP@0.5"),
    ("found_iou50", f"found IoU>={FOUND_IOU:g}"),
    ("train_s", "train s"),
)
METRIC_KEYS = tuple(key for key, _ in METRICS)
MODEL_LABELS = {"ftmtl": "FT-MTL-Net", "maskrcnn": "twin (Mask R-CNN)"}


# ------------------------------------------------------------------------------ arguments
def positive_float_arg(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def seed_arg(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seeds must be in 0..{MAX_SEED} (the data sets use "
                                         f"generator seeds 1000+s, 2000+s, 3000+s), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train FT-MTL-Net and its twin with the same recipe on synthetic INbreast, "
                    "evaluate both on a separate test set, over several seeds.")
    p.add_argument("--preset", choices=PRESET_NAMES, default=DEFAULT_PRESET,
                   help="network and training settings (default: %(default)s)")
    p.add_argument("--models", type=model_list_arg, default=MODEL_NAMES, metavar="LIST",
                   help="comma-separated models (default: ftmtl,maskrcnn)")
    p.add_argument("--seeds", type=seed_arg, nargs="+", default=None, metavar="S",
                   help=f"run seeds 0..{MAX_SEED}: weights, data order, sampling and the data "
                        f"sets' generator seeds (default: {' '.join(map(str, DEFAULT_SEEDS))})")
    p.add_argument("--train-patients", type=positive_int, metavar="N",
                   help=f"patients of each training set, 4 images each "
                        f"(default: {DEFAULT_TRAIN_PATIENTS}, the demo's)")
    p.add_argument("--test-patients", type=positive_int, metavar="N",
                   help=f"patients of each test set (default: {DEFAULT_TEST_PATIENTS})")
    p.add_argument("--val-patients", type=positive_int, metavar="N",
                   help=f"patients of each validation set (learning curve only; default: "
                        f"{DEFAULT_VAL_PATIENTS})")
    p.add_argument("--no-val-curve", action="store_true",
                   help="no validation set: no per-epoch TPR@1FPI and no validation losses "
                        "(saves the per-epoch inference)")
    p.add_argument("--image-shape", type=image_shape_arg, metavar="HxW",
                   help="rows x columns of the synthetic DICOMs (default: "
                        f"{DEFAULT_IMAGE_SHAPE[0]}x{DEFAULT_IMAGE_SHAPE[1]}, the demo's)")
    p.add_argument("--image-size", type=positive_int, metavar="S",
                   help="image size in pixels: the model input side in square mode, the "
                        "prepared images' long side in crop mode (default: the preset's)")
    p.add_argument("--difficulty", type=float, metavar="D",
                   help="generator difficulty 0..1 (default: the generator's own)")
    add_budget_options(p)
    p.add_argument("--intensity-scales", type=positive_float_arg, nargs="+", default=[],
                   metavar="G",
                   help="also evaluate each model on its test set rendered at these detector "
                        "gains (the same anatomy, every stored value times G; e.g. 0.5 2): "
                        "the intensity window's robustness")
    p.add_argument("--set", dest="overrides", type=override_arg, action="append", default=[],
                   metavar="NAME=VALUE",
                   help="config override for both models, after BENCH_OVERRIDES "
                        f"({BENCH_OVERRIDES}); repeatable")
    p.add_argument("--inference-set", dest="inference_overrides", type=override_arg,
                   action="append", default=[], metavar="NAME=VALUE",
                   help="also evaluate each trained model with this inference-only override "
                        "(e.g. PREFILTER_MAX_ROIS=25), on the same checkpoint and test set: "
                        "both settings side by side with their paired difference; repeatable "
                        "(all apply together)")
    p.add_argument("--probe", action="store_true",
                   help="also fit a linear probe on the classifier's input features of the "
                        "training masses and score the test masses (feature_probe.py): how "
                        "much of the grade the features hold, against the classifier's own")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, metavar="W",
                   help="none (from scratch), imagenet, imagenet:PATH or an .h5 PATH; anything "
                        "but none picks the paper's pretrained schedule (default: %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help="output folder (default: benchmarks/output/accuracy)")
    p.add_argument("--quick", action="store_true",
                   help=f"CI smoke run: {QUICK}; options given explicitly still win")
    p.add_argument("--budget-s", type=float, default=0.0,
                   help="start no new seed after this many seconds (the finished ones are "
                        "reported); 0: no limit")
    p.add_argument("--resume", action="store_true",
                   help="keep the finished runs under --out (made with the same training "
                        "options) and evaluate their last checkpoints again with the current "
                        "code; train only the runs that are missing")
    p.add_argument("--threads", type=int, default=None,
                   help="TensorFlow intra- and inter-op threads (default: TensorFlow's)")
    add_reproducibility_option(p)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="Keras' line per epoch and the library's INFO logging")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options, with every default not given filled in (from QUICK with --quick)."""
    args = build_parser().parse_args(argv)
    defaults = {"seeds": list(DEFAULT_SEEDS), "train_patients": DEFAULT_TRAIN_PATIENTS,
                "test_patients": DEFAULT_TEST_PATIENTS, "val_patients": DEFAULT_VAL_PATIENTS,
                "image_shape": DEFAULT_IMAGE_SHAPE, "image_size": DEFAULT_IMAGE_SIZE,
                "epochs": DEFAULT_EPOCHS, "steps": DEFAULT_STEPS, "lr": DEFAULT_LR,
                "difficulty": None}
    if args.quick:
        defaults.update(QUICK)
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.difficulty is None:
        args.difficulty = generator_default_difficulty()
    if not 0.0 <= args.difficulty <= 1.0:
        raise SystemExit(f"--difficulty must be in [0, 1], got {args.difficulty}")
    args.seeds = list(dict.fromkeys(args.seeds))  # each seed once, in the order given
    args.models = list(args.models)
    return args


def generator_default_difficulty() -> float:
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    return float(inspect.signature(generate_synthetic_inbreast).parameters["difficulty"].default)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """BENCH_OVERRIDES, --steps, --quick's crops, --set, then --image-size as the preset's
    resize mode reads it (ftmtl.presets.sized_config; the same for both models)."""
    from ftmtl.model import image_size_overrides
    from ftmtl.presets import make_config

    overrides = dict(BENCH_OVERRIDES)
    if args.steps is not None:
        overrides["STEPS_PER_EPOCH"] = int(args.steps)
    config = make_config(args.preset, args.models[0], **overrides)
    if args.quick and config.IMAGE_RESIZE_MODE == "crop":
        overrides.update(QUICK_OVERRIDES)
    overrides.update(dict(args.overrides))
    config = make_config(args.preset, args.models[0], **overrides)
    return {**image_size_overrides(config, args.image_size), **overrides}


# ----------------------------------------------------------------------------------- data
def data_dir(out: Path, role: str, gen_seed: int, n_patients: int,
             image_shape: Sequence[int], difficulty: float, intensity_scale: float = 1.0
             ) -> Path:
    rows, cols = (int(v) for v in image_shape)
    gain = "" if intensity_scale == 1.0 else f"_g{intensity_scale:g}"
    return out / DATA_DIR / (f"{role}_seed{gen_seed}_p{n_patients}_{rows}x{cols}"
                             f"_d{difficulty:g}{gain}")


def ensure_synthetic(folder: Path, n_patients: int, gen_seed: int, image_shape: Sequence[int],
                     difficulty: float, intensity_scale: float = 1.0) -> dict[str, Any]:
    """The synthetic INbreast in ``folder``: reused when its manifest (written last by the
    generator, so it marks a complete set) has these parameters, else generated afresh."""
    from ftmtl.inbreast.synthetic import MANIFEST_NAME, generate_synthetic_inbreast

    shape = [int(v) for v in image_shape]
    manifest = folder / MANIFEST_NAME
    if manifest.is_file():
        try:
            saved = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            saved = {}
        if (saved.get("seed") == gen_seed and saved.get("image_shape") == shape
                and math.isclose(float(saved.get("difficulty", -1)), difficulty)
                and math.isclose(float(saved.get("intensity_scale", -1)), intensity_scale)
                and saved.get("counts", {}).get("patients") == n_patients):
            return {"dir": str(folder), "seed": gen_seed, "n_patients": n_patients,
                    "image_shape": shape, "difficulty": difficulty,
                    "intensity_scale": intensity_scale, "counts": saved["counts"],
                    "reused": True}
    made = generate_synthetic_inbreast(folder, n_patients=n_patients, seed=gen_seed,
                                       image_shape=tuple(shape), difficulty=difficulty,
                                       overwrite=True, intensity_scale=intensity_scale)
    return {"dir": str(folder), "seed": gen_seed, "n_patients": n_patients,
            "image_shape": shape, "difficulty": float(made.difficulty),
            "intensity_scale": intensity_scale, "counts": made.counts(), "reused": False}


def load_set(folder: str | os.PathLike, image_size: int, window: str):
    """An INbreastDataset of ``folder`` (its cache keeps the prepared images of a set this
    size), read through the intensity ``window``."""
    from ftmtl.inbreast.dataset import INbreastDataset

    dataset = INbreastDataset()
    dataset.load_inbreast(folder, image_size=image_size, window=window)
    dataset.prepare()
    if not len(dataset.image_ids):
        raise ValueError(f"{folder}: no usable images")
    return dataset


# -------------------------------------------------------------------------------- metrics
def masses_found(cases: Sequence[Any], iou: float = FOUND_IOU) -> tuple[int, int]:
    """(masses hit by some kept detection with box IoU >= iou, all masses). EvaluationResult
    counts misses at 0.4 only (n_missed); the box AP's threshold is 0.5."""
    from ftmtl.metrics import case_detected

    found = total = 0
    for case in cases:
        for g in range(case.gt_boxes.shape[0]):
            total += 1
            found += case_detected(case.rois, case.gt_boxes[g:g + 1], iou)
    return found, total


def found_mass_scores(cases: Sequence[Any], iou: float = FOUND_IOU
                      ) -> tuple[list[int], list[float]]:
    """For every benign or malignant mass hit at box IoU >= ``iou``: its label (1 malignant)
    and p(malignant | mass) = p_m / (p_b + p_m) of the highest-scoring detection on it. The
    classifier alone, without the veto and without the misses."""
    import numpy as np

    from ftmtl.veto import BENIGN_CLASS_ID, MALIGNANT_CLASS_ID
    from mrcnn.box_ops import compute_overlaps

    labels: list[int] = []
    scores: list[float] = []
    for case in cases:
        if case.gt_boxes.shape[0] == 0 or case.rois.shape[0] == 0:
            continue
        overlaps = compute_overlaps(case.rois, case.gt_boxes)
        for g, class_id in enumerate(case.gt_class_ids):
            hits = np.flatnonzero(overlaps[:, g] >= iou)
            if class_id not in (BENIGN_CLASS_ID, MALIGNANT_CLASS_ID) or hits.size == 0:
                continue
            probs = case.class_probs[hits[np.argmax(case.scores[hits])]]
            both = probs[BENIGN_CLASS_ID] + probs[MALIGNANT_CLASS_ID]
            labels.append(int(class_id == MALIGNANT_CLASS_ID))
            scores.append(float(probs[MALIGNANT_CLASS_ID] / both) if both > 0 else 0.5)
    return labels, scores


def mass_auc(cases: Sequence[Any]) -> float | None:
    """AUC of p(malignant | mass) over the found masses (None without both labels)."""
    from ftmtl.metrics import roc_auc

    labels, scores = found_mass_scores(cases)
    return roc_auc(labels, scores) if len(set(labels)) == 2 else None


def top_box_auc(cases: Sequence[Any]) -> float | None:
    """Case AUC when a case is scored p(malignant) / (p(benign) + p(malignant)) of its most
    confident detection alone (0.5 without one), benign against malignant cases. Not the
    paper's veto, which takes the highest p(malignant) of every box called malignant: set
    beside it, the two tell a classifier that grades the masses it finds from confident false
    positives that decide the veto."""
    from ftmtl.metrics import roc_auc
    from ftmtl.veto import BENIGN_CLASS_ID, MALIGNANT_CLASS_ID

    labels, scores = [], []
    for case in cases:
        if case.label not in ("benign", "malignant"):
            continue
        score = 0.5
        if case.scores.size:
            probs = case.class_probs[int(np.argmax(case.scores))]
            both = probs[BENIGN_CLASS_ID] + probs[MALIGNANT_CLASS_ID]
            score = float(probs[MALIGNANT_CLASS_ID] / both) if both > 0 else 0.5
        labels.append(int(case.label == "malignant"))
        scores.append(score)
    return roc_auc(labels, scores) if len(set(labels)) == 2 else None


def veto_false_positives(cases: Sequence[Any], min_confidence: float,
                         iou: float = FOUND_IOU) -> float | None:
    """Detections per image that the veto reads (score >= ``min_confidence``) and that hit no
    mass at box IoU >= ``iou``: each, called malignant, can decide its case."""
    from mrcnn.box_ops import compute_overlaps

    if not cases:
        return None
    false = 0
    for case in cases:
        read = case.scores >= min_confidence
        if case.gt_boxes.shape[0] and read.any():
            hit = (compute_overlaps(case.rois, case.gt_boxes) >= iou).any(axis=1)
            read &= ~hit
        false += int(read.sum())
    return false / len(cases)


def label_ceiling_auc(folder: str | os.PathLike) -> float | None:
    """Case AUC of the generator's own shape family (irregular or spiculated: malignant-looking)
    on a synthetic set: what a reader who sees each mass's true outline reaches. At difficulty
    d a share 0.3 * d of the masses takes the other family's look, so no model can be expected
    far above it. None without both labels."""
    from ftmtl.inbreast.synthetic import read_manifest
    from ftmtl.metrics import roc_auc

    labels, scores = [], []
    for image in read_manifest(folder).images:
        if image.label in ("benign", "malignant") and image.masses:
            labels.append(int(image.label == "malignant"))
            scores.append(float(any(m.kind in MALIGNANT_LOOKING for m in image.masses)))
    return roc_auc(labels, scores) if len(set(labels)) == 2 else None


def outline_features(mask: np.ndarray) -> list[float] | None:
    """Five numbers a reader would use on one mass outline: log area, solidity, circularity
    (perimeter^2 / 4 pi area), eccentricity, extent. None for a mask of under 4 pixels."""
    from skimage.measure import label, regionprops

    if mask.sum() < 4:
        return None
    region = max(regionprops(label(mask)), key=lambda r: r.area)
    return [math.log(region.area), region.solidity,
            region.perimeter ** 2 / (4 * math.pi * region.area), region.eccentricity,
            region.extent]


def _outline_set(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    from ftmtl.veto import MALIGNANT_CLASS_ID

    rows, labels = [], []
    for image_id in dataset.image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        for k in range(masks.shape[-1]):
            row = outline_features(masks[..., k])
            if row is not None:
                rows.append(row)
                labels.append(int(class_ids[k] == MALIGNANT_CLASS_ID))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5), np.asarray(labels)


def outline_baseline_auc(train_ds: Any, test_ds: Any) -> float | None:
    """Mass AUC of a logistic regression on ``outline_features`` of the true outlines (at the
    resolution the model sees), fitted on the training masses, scored on the test masses: what
    the same few training masses teach a simple reader of outlines. None without both labels
    in either set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ftmtl.metrics import roc_auc

    (x_train, y_train), (x_test, y_test) = _outline_set(train_ds), _outline_set(test_ds)
    if len(set(y_train.tolist())) < 2 or len(set(y_test.tolist())) < 2:
        return None
    reader = make_pipeline(StandardScaler(), LogisticRegression()).fit(x_train, y_train)
    return roc_auc(y_test, reader.decision_function(x_test))


def _finite_or_none(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def run_metrics(result: Any, cases: Sequence[Any], veto_min_confidence: float
                ) -> dict[str, Any]:
    """The reported numbers of one run (None where undefined on these cases);
    ``veto_min_confidence``: the model's VETO_MIN_CONFIDENCE (the boxes the veto reads)."""
    metrics: dict[str, Any] = {tpr_key(p): _finite_or_none(result.tpr_at_fpi.get(float(p)))
                               for p in REPORTED_FPI}
    found, total = masses_found(cases)
    metrics.update(dice=_finite_or_none(result.dice_mean), auc=_finite_or_none(result.auc),
                   box_ap50=_finite_or_none(result.box_map50),
                   found_iou50=found / total if total else None, mass_auc=mass_auc(cases),
                   top_auc=top_box_auc(cases),
                   veto_fp=veto_false_positives(cases, veto_min_confidence),
                   n_found_iou50=found, n_masses=total, n_missed_iou40=int(result.n_missed),
                   n_cases=int(result.n_cases), n_labelled=int(result.n_labelled),
                   n_detected_cases=int(result.n_detected))
    return metrics


def summarise(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and sample std (ddof 1; None with one value) of the defined values."""
    finite = [float(v) for v in values if _finite_or_none(v) is not None]
    n = len(finite)
    mean = sum(finite) / n if n else None
    std = (math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else None)
    return {"values": [_finite_or_none(v) for v in values], "mean": mean, "std": std, "n": n}


def paired_comparison(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]],
                      keys: Sequence[str] = METRIC_KEYS) -> dict[str, dict[str, Any]]:
    """Per metric: a - b over the seeds where both define it; mean and std of the
    differences and the paired t-test (t, two-sided p; None below 2 pairs or when scipy
    cannot tell, e.g. identical differences)."""
    from ftmtl.metrics import paired_t_test

    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        seeds = [s for s in sorted(set(a) & set(b))
                 if _finite_or_none(a[s].get(key)) is not None
                 and _finite_or_none(b[s].get(key)) is not None]
        xs = [float(a[s][key]) for s in seeds]
        ys = [float(b[s][key]) for s in seeds]
        diffs = summarise([x - y for x, y in zip(xs, ys, strict=True)])
        t = p = None
        if len(seeds) >= 2:
            with warnings.catch_warnings():  # constant differences: scipy warns, gives NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                t, p = (_finite_or_none(v) for v in paired_t_test(xs, ys))
        out[key] = {"seeds": seeds, "mean_a": summarise(xs)["mean"],
                    "mean_b": summarise(ys)["mean"], "mean_diff": diffs["mean"],
                    "std_diff": diffs["std"], "t": t, "p": p, "n": len(seeds)}
    return out


# -------------------------------------------------------------------- per-epoch recording
def make_epoch_recorder(stages: Sequence[Any], inference_model, val_ds, log_prefix: str):
    """A Keras callback that records every epoch's logs (the losses, the validation losses)
    and, with an inference model, loads the epoch's checkpoint into it and records TPR at
    VAL_CURVE_FPI on ``val_ds``. One inference model serves every epoch: building one is
    seconds, a small validation set is a fraction of that."""
    import keras

    from ftmtl.evaluation import UndefinedMetricWarning, evaluate_predictions, predict_dataset

    ends, stage_names, total = [], [], 0
    for stage in stages:
        total += int(stage.epochs)
        ends.append(total)
        stage_names.append(stage.name)

    class EpochRecorder(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.owner = None  # the training MaskRCNN (for its checkpoint path)
            self.records: list[dict[str, Any]] = []
            self.eval_s = 0.0

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            number = epoch + 1
            stage = next((n for n, end in zip(stage_names, ends, strict=True) if number <= end),
                         stage_names[-1] if stage_names else "")
            record: dict[str, Any] = {"epoch": number, "stage": stage}
            record.update({k: _finite_or_none(v) for k, v in (logs or {}).items()})
            if inference_model is not None and val_ds is not None and self.owner is not None:
                start = time.monotonic()
                path = Path(self.owner.checkpoint_path.format(epoch=number))
                tpr = None
                if path.is_file():  # none is written for an epoch with a non-finite loss
                    load_checkpoint(inference_model, path)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UndefinedMetricWarning)
                        cases = predict_dataset(inference_model, val_ds, progress=False)
                        result = evaluate_predictions(cases, fpi_points=(VAL_CURVE_FPI,))
                    tpr = _finite_or_none(result.tpr_at_fpi.get(VAL_CURVE_FPI))
                record[f"val_{tpr_key(VAL_CURVE_FPI)}"] = tpr
                record["val_eval_s"] = round(time.monotonic() - start, 2)
                self.eval_s += time.monotonic() - start
            self.records.append(record)
            val = record.get(f"val_{tpr_key(VAL_CURVE_FPI)}")
            common.log(f"{log_prefix} epoch {number}/{total} ({stage}): loss "
                       f"{_fmt(record.get('loss'))}, val_loss {_fmt(record.get('val_loss'))}, "
                       f"val TPR@{VAL_CURVE_FPI:g}FPI {_fmt(val)}")

    return EpochRecorder()


def load_checkpoint(inference_model, path: str | os.PathLike) -> None:
    """Load a training checkpoint into an inference model by layer name, refusing one that
    lacks any of the model's layers (a wrong checkpoint would otherwise go unnoticed). The
    model's traced inference function stays valid (values are assigned in place)."""
    report = inference_model.load_weights(path)
    if report.missing_in_file:
        raise ValueError(f"{path}: the checkpoint lacks layers of the inference model: "
                         f"{report.missing_in_file[:10]}")


def weight_fingerprint(model) -> dict[str, tuple[float, float]]:
    """(sum, sum of squares) of every weight, by variable path: enough to tell whether two
    models start from the same values in the layers they share."""
    import numpy as np

    out = {}
    for variable in model.keras_model.weights:
        values = np.asarray(variable.numpy(), dtype=np.float64)
        out[variable.path] = (float(values.sum()), float(np.square(values).sum()))
    return out


def compare_fingerprints(a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]]
                         ) -> dict[str, Any]:
    shared = sorted(set(a) & set(b))
    identical = [k for k in shared if a[k] == b[k]]
    return {"shared": len(shared), "identical": len(identical),
            "differing": [k for k in shared if a[k] != b[k]][:20]}


# ------------------------------------------------------------------------------ resuming
# Options that change neither the trained weights nor the test set: a run finished under
# other values of these is still the run this command would train.
RESUME_FREE_ARGS = frozenset({"out", "resume", "seeds", "models", "budget_s", "threads",
                              "verbose", "no_val_curve", "val_patients", "nondeterministic",
                              "intensity_scales", "inference_overrides", "probe"})


def args_record(args: dict[str, Any]) -> dict[str, Any]:
    """The options as results.json records them (tuples as lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in args.items()}


def training_args(args: dict[str, Any]) -> dict[str, Any]:
    """The options that decide what a run trains and on what it is tested, JSON-shaped."""
    return {k: v for k, v in args_record(args).items() if k not in RESUME_FREE_ARGS}


def inference_config(args: argparse.Namespace, model_name: str, variant: bool = False):
    """The model's config for evaluation: the run's, one image at a time (with
    --inference-set's overrides when ``variant``)."""
    from ftmtl.presets import make_config

    extra = dict(args.inference_overrides) if variant else {}
    return make_config(args.preset, model_name, **{**config_overrides(args), **extra,
                                                   "IMAGES_PER_GPU": 1, "GPU_COUNT": 1})


def check_resumable(out: Path, args: dict[str, Any]) -> None:
    """Refuse --resume when the runs under ``out`` were trained with other options: their
    figures would be reported under this command's settings."""
    path = out / RESULTS_JSON
    if not path.is_file():
        return
    previous = json.loads(path.read_text(encoding="utf-8")).get("args", {})
    now = json.loads(json.dumps(training_args(args), default=str))
    before = training_args(previous)
    differing = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if differing:
        changes = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in differing)
        raise SystemExit(f"--resume: the runs in {path} were trained with other options "
                         f"({changes}); use another --out, or drop --resume to train again")


def finished_run(run_dir: Path) -> dict[str, Any] | None:
    """The run's record when its training finished (evaluated or not) and its last checkpoint
    is still there."""
    path = run_dir / "result.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if (record.get("status") not in ("ok", "trained")
            or not Path(record.get("checkpoint", "")).is_file()):
        return None
    return record


def write_run_record(run_dir: Path, record: dict[str, Any]) -> None:
    (run_dir / "result.json").write_text(json.dumps(_clean(record), indent=1),
                                         encoding="utf-8")


def evaluate_run(record: dict[str, Any], args: argparse.Namespace, sets: dict[str, Any],
                 run_dir: Path) -> dict[str, Any]:
    """Evaluate a trained run's last checkpoint on the test set with the current inference
    and evaluation code; its training facts (time, history, stages) stay as recorded."""
    import keras

    from ftmtl.presets import build_model

    keras.backend.clear_session()
    inference = build_model("inference", inference_config(args, record["model"]),
                            run_dir / "logs")
    result, cases, eval_s = evaluate_checkpoint(inference, record["checkpoint"],
                                                sets["test_ds"])
    from ftmtl.model import ftmtl_setting

    def metrics_of(model, result, cases):
        return run_metrics(result, cases, ftmtl_setting(model.config, "VETO_MIN_CONFIDENCE"))

    metrics = {**metrics_of(inference, result, cases), "train_s": record["metrics"]["train_s"]}
    by_scale = {}
    for scale, dataset in sets.get("scaled_test", {}).items():
        scaled, scaled_cases, _ = evaluate_checkpoint(inference, record["checkpoint"], dataset)
        by_scale[f"{scale:g}"] = metrics_of(inference, scaled, scaled_cases)
    record = {**record, "status": "ok", "metrics": metrics, "eval_s": round(eval_s, 1),
              "evaluation": result.to_dict(), "metrics_by_intensity_scale": by_scale}
    if args.probe:
        record["probe"] = feature_probe.linear_probe(inference, sets["train_ds"],
                                                     sets["test_ds"])
    del inference
    keras.backend.clear_session()
    if args.inference_overrides:
        variant = build_model("inference", inference_config(args, record["model"], True),
                              run_dir / "logs")
        result, cases, variant_s = evaluate_checkpoint(variant, record["checkpoint"],
                                                       sets["test_ds"])
        record["variant"] = {"overrides": dict(args.inference_overrides),
                             "metrics": metrics_of(variant, result, cases),
                             "eval_s": round(variant_s, 1)}
        del variant
        keras.backend.clear_session()
    write_run_record(run_dir, record)
    return record


def evaluate_checkpoint(inference, checkpoint: str | os.PathLike, dataset: Any):
    """(evaluation result, predicted cases, seconds) of one checkpoint on a test set."""
    from ftmtl.evaluation import evaluate_predictions, predict_dataset

    start = time.monotonic()
    load_checkpoint(inference, checkpoint)
    cases = predict_dataset(inference, dataset, progress=False)
    return evaluate_predictions(cases), cases, time.monotonic() - start


# ------------------------------------------------------------------------------ one run
def train_and_evaluate(model_name: str, seed: int, args: argparse.Namespace,
                       sets: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train one model with one seed, evaluate its last checkpoint on the test set."""
    import keras

    from ftmtl.inbreast.folds import balanced_sampler
    from ftmtl.presets import build_model, make_config
    from ftmtl.schedule import run_schedule, schedule_for
    from ftmtl.starting_weights import load_starting_weights, uses_pretrained_recipe
    from mrcnn.augmentation import default_augmentation
    from mrcnn.model import enable_determinism

    config = make_config(args.preset, model_name, **config_overrides(args))
    infer_config = inference_config(args, model_name)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a previous run's checkpoints would confuse nothing, but fill
    logs = run_dir / "logs"
    logs.mkdir(parents=True)
    keras.backend.clear_session()

    # The inference model is built first, so that the training model's build (and everything
    # after it) follows the seed alone, with or without the validation curve.
    inference = build_model("inference", infer_config, logs)
    enable_determinism(seed, ops=not args.nondeterministic)
    model = build_model("training", config, logs)
    load_starting_weights(model, args.weights, continue_run=False)
    fingerprint = weight_fingerprint(model)

    train_ds = sets["train_ds"]
    val_ds = sets.get("val_ds")
    stages = schedule_for(config, uses_pretrained_recipe(args.weights, config), int(args.epochs),
                          args.lr)
    recorder = make_epoch_recorder(stages, inference if val_ds is not None else None, val_ds,
                                   f"seed {seed} {model_name}")
    recorder.owner = model
    sampler = balanced_sampler(train_ds, seed, config.MASS_FREE_SHARE, config.SAMPLER_WEIGHTS)
    common.log(f"seed {seed} {model_name}: training on {summary_line(train_ds.summary())}, "
               f"{sum(int(s.epochs) for s in stages)} epochs x {config.STEPS_PER_EPOCH} steps, "
               f"stages {[s.name for s in stages]}")
    start = time.monotonic()
    run_schedule(model, train_ds, val_ds, stages, augmentation=default_augmentation(),
                 sampler=sampler, seed=seed, verbose=2 if args.verbose else 0,
                 custom_callbacks=[recorder])
    wall_s = time.monotonic() - start
    checkpoint = Path(model.checkpoint_path.format(epoch=model.epoch))
    if not checkpoint.is_file():
        raise FileNotFoundError(f"training ended at epoch {model.epoch} but {checkpoint} is "
                                "missing")

    # Recorded before the evaluation: a run whose evaluation fails keeps its training, and
    # --resume evaluates it again instead of training it anew.
    trained = {
        "model": model_name, "seed": seed, "status": "trained", "config_name": config.NAME,
        "metrics": {"train_s": round(wall_s - recorder.eval_s, 1)},
        "train_wall_s": round(wall_s, 1), "val_curve_s": round(recorder.eval_s, 1),
        "epochs_trained": int(model.epoch), "checkpoint": str(checkpoint),
        "history": recorder.records,
        "stages": [{"name": s.name, "epochs": int(s.epochs), "learning_rate": s.learning_rate,
                    "layers": s.layers} for s in stages],
    }
    write_run_record(run_dir, trained)
    del model, inference
    record = evaluate_run(trained, args, sets, run_dir)
    record["_fingerprint"] = fingerprint
    return record


# ---------------------------------------------------------------------------------- plots
def plot_curves(record: dict[str, Any], path: Path) -> None:
    """Every loss per epoch (training solid, validation dashed) and the validation TPR at
    VAL_CURVE_FPI per epoch, stage boundaries dotted."""
    from matplotlib.figure import Figure

    history = record.get("history") or []
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    losses, tpr = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colors = {key: f"C{i}" for i, key in enumerate(LOSS_KEYS)}
    for key in LOSS_KEYS:
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [h.get(prefix + key) for h in history]
            if any(v is not None for v in values):
                losses.plot(epochs, [math.nan if v is None else v for v in values], style,
                            marker=".", color=colors[key], label=prefix + key)
    losses.set(xlabel="epoch", ylabel="loss", title="losses (dashed: validation set)")
    losses.legend(fontsize=7)
    val_key = f"val_{tpr_key(VAL_CURVE_FPI)}"
    values = [h.get(val_key) for h in history]
    if any(v is not None for v in values):
        tpr.plot(epochs, [math.nan if v is None else v for v in values], "-o")
    else:
        tpr.text(0.5, 0.5, "no validation curve", ha="center", va="center",
                 transform=tpr.transAxes)
    tpr.set(xlabel="epoch", ylabel=f"TPR at {VAL_CURVE_FPI:g} FPI", ylim=(-0.02, 1.02),
            title="validation set, each epoch's checkpoint")
    end = 0
    for stage in record.get("stages", [])[:-1]:
        end += stage["epochs"]
        for ax in (losses, tpr):
            ax.axvline(end + 0.5, linestyle=":", color="gray")
    for ax in (losses, tpr):
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{MODEL_LABELS.get(record['model'], record['model'])}, seed {record['seed']}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def plot_val_overview(records: Sequence[dict[str, Any]], path: Path) -> bool:
    """Validation TPR per epoch of every finished run in one panel; False when none has it."""
    from matplotlib.figure import Figure

    val_key = f"val_{tpr_key(VAL_CURVE_FPI)}"
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    drawn = False
    for record in records:
        history = record.get("history") or []
        values = [h.get(val_key) for h in history]
        if not any(v is not None for v in values):
            continue
        ax.plot([h["epoch"] for h in history], [math.nan if v is None else v for v in values],
                "-" if record["model"] == "ftmtl" else "--", marker=".",
                label=f"{MODEL_LABELS.get(record['model'], record['model'])} seed "
                      f"{record['seed']}")
        drawn = True
    if not drawn:
        return False
    ax.set(xlabel="epoch", ylabel=f"validation TPR at {VAL_CURVE_FPI:g} FPI",
           ylim=(-0.02, 1.02))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return True


# --------------------------------------------------------------------------------- tables
def _fmt(value: Any, digits: int = 3) -> str:
    value = _finite_or_none(value)
    return "n/a" if value is None else f"{value:.{digits}f}"


def _mean_std(stats: dict[str, Any], digits: int = 3) -> str:
    if stats.get("mean") is None:
        return "n/a"
    text = _fmt(stats["mean"], digits)
    return text if stats.get("std") is None else f"{text} ± {_fmt(stats['std'], digits)}"


def _cell(key: str, metrics: dict[str, Any]) -> str:
    if key == "found_iou50":
        return f"{metrics.get('n_found_iou50', 0)}/{metrics.get('n_masses', 0)}"
    if key == "train_s":
        return _fmt(metrics.get(key), 0)
    return _fmt(metrics.get(key))


def model_table(model: str, runs: Sequence[dict[str, Any]], summary: dict[str, Any]) -> str:
    """Rows: the seeds, then mean ± std (found: the fraction's mean, and the total count)."""
    rows = []
    for run in runs:
        if run.get("status") != "ok":
            rows.append([run["seed"], *([run.get("status", "error")] * len(METRICS))])
            continue
        rows.append([run["seed"], *(_cell(key, run["metrics"]) for key, _ in METRICS)])
    ok = [run for run in runs if run.get("status") == "ok"]
    if ok:
        mean_row = ["mean ± std"]
        for key, _ in METRICS:
            text = _mean_std(summary[key], 0 if key == "train_s" else 3)
            if key == "found_iou50":
                found = sum(r["metrics"]["n_found_iou50"] for r in ok)
                total = sum(r["metrics"]["n_masses"] for r in ok)
                text = f"{text} ({found}/{total})"
            mean_row.append(text)
        rows.append(mean_row)
    return common.table(["seed", *(header for _, header in METRICS)], rows)


ROBUSTNESS_KEYS = (tpr_key(1.0), "dice", "auc", "box_ap50")


def robustness_table(records: dict[str, list[dict[str, Any]]], scales: Sequence[float]) -> str:
    """Per model and gain: the mean over seeds of TPR@1, Dice, case AUC and box AP, and each
    one's mean change from gain 1 (the same seeds' own test set)."""
    headers = dict(METRICS)
    rows = []
    for model, runs in records.items():
        ok = [run for run in runs if run.get("status") == "ok"]
        for scale in (1.0, *scales):
            cells = [MODEL_LABELS.get(model, model), f"{scale:g}"]
            for key in ROBUSTNESS_KEYS:
                values, changes = [], []
                for run in ok:
                    base = _finite_or_none(run["metrics"].get(key))
                    scaled = run["metrics"] if scale == 1.0 else run.get(
                        "metrics_by_intensity_scale", {}).get(f"{scale:g}", {})
                    value = _finite_or_none(scaled.get(key))
                    if value is not None:
                        values.append(value)
                        if base is not None:
                            changes.append(value - base)
                text = _fmt(np.mean(values)) if values else "n/a"
                if scale != 1.0 and changes:
                    text += f" ({np.mean(changes):+.3f})"
                cells.append(text)
            rows.append(cells)
    return common.table(["model", "gain", *(headers[key] for key in ROBUSTNESS_KEYS)], rows)


def paired_table(paired: dict[str, dict[str, Any]], a: str, b: str,
                 keys: Sequence[str] = METRIC_KEYS) -> str:
    """One row per metric: both means, the mean difference a - b ± its std, t, p, n."""
    rows = []
    for key, header in METRICS:
        if key not in keys:
            continue
        test = paired[key]
        digits = 0 if key == "train_s" else 3
        diff = _fmt(test["mean_diff"], digits)
        if test["std_diff"] is not None:
            diff += f" ± {_fmt(test['std_diff'], digits)}"
        rows.append([header, _fmt(test["mean_a"], digits), _fmt(test["mean_b"], digits), diff,
                     _fmt(test["t"], 2), _fmt(test["p"]), test["n"]])
    labels = {**MODEL_LABELS, "variant": "with --inference-set", "default": "as trained"}
    return common.table(["metric", labels.get(a, a), labels.get(b, b),
                         f"difference ({a} - {b})", "t", "p (paired t)", "n seeds"], rows)


def probe_table(probed: dict[str, list[dict[str, Any]]]) -> str:
    """One row per probed run: its masses and the four mass AUCs."""
    rows = []
    for model, runs in probed.items():
        for run in runs:
            probe = run["probe"]
            rows.append([MODEL_LABELS.get(model, model), run["seed"],
                         f"{probe['n_train']} / {probe['n_test']}", probe["features"],
                         _fmt(probe["own_train_auc"]), _fmt(probe["own_test_auc"]),
                         _fmt(probe["probe_train_auc"]), _fmt(probe["probe_test_auc"])])
    return common.table(["model", "seed", "masses train / test", "features", "own, train",
                         "own, test", "probe, train", "probe, test"], rows)


def variant_table(paired: dict[str, dict[str, Any]]) -> str:
    """paired_table's columns for one model: with --inference-set against without."""
    return paired_table(paired, "variant", "default", keys=tuple(paired))


def build_summary(records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per model and metric: mean ± std over the seeds that finished; paired tests."""
    summary: dict[str, Any] = {"models": {}, "paired": None}
    per_seed: dict[str, dict[int, dict[str, Any]]] = {}
    for model, runs in records.items():
        ok = [run for run in runs if run.get("status") == "ok"]
        per_seed[model] = {run["seed"]: run["metrics"] for run in ok}
        summary["models"][model] = {key: summarise([run["metrics"].get(key) for run in ok])
                                    for key in METRIC_KEYS}
    if "ftmtl" in records and "maskrcnn" in records:
        summary["paired"] = {"a": "ftmtl", "b": "maskrcnn",
                             "metrics": paired_comparison(per_seed["ftmtl"],
                                                          per_seed["maskrcnn"])}
    variants = {}
    for model, runs in records.items():
        with_variant = [run for run in runs if run.get("status") == "ok" and "variant" in run]
        if with_variant:
            variants[model] = paired_comparison(
                {run["seed"]: run["variant"]["metrics"] for run in with_variant},
                {run["seed"]: run["metrics"] for run in with_variant},
                [key for key in METRIC_KEYS if key != "train_s"])
    summary["variant"] = variants or None
    return summary


def report_text(payload: dict[str, Any]) -> str:
    """The Markdown of results.md (also printed)."""
    args = payload["args"]
    lines = ["# Accuracy: FT-MTL-Net against its twin", "",
             f"`{payload['command']}`", "",
             f"preset `{args['preset']}`, seeds {args['seeds']}, weights `{args['weights']}`, "
             f"{args['train_patients']} training / {args['test_patients']} test / "
             f"{'no' if args['no_val_curve'] else args['val_patients']} validation patients "
             f"(4 images each), synthetic DICOMs {args['image_shape'][0]}x"
             f"{args['image_shape'][1]}, difficulty {args['difficulty']:g}; config overrides "
             f"`{payload['config_overrides']}`; schedule {payload.get('schedule')}", "",
             "TPRs: FROC, a detection counts when its box IoU with a mass is > 0.2; Dice: "
             "masses detected with IoU >= 0.4; case AUC: benign vs malignant cases (the "
             "veto); case AUC (top box): each case scored p(malignant) / (p(benign) + "
             "p(malignant)) of its most confident detection alone; veto FP/img: detections "
             "the veto reads (score >= VETO_MIN_CONFIDENCE) that hit no mass at box IoU >= "
             f"{FOUND_IOU:g}; found: masses hit by a kept detection with box IoU >= "
             f"{FOUND_IOU:g}; train s: training wall time without the validation curve's "
             "inference.", ""]
    for model, runs in payload["runs"].items():
        lines += [f"## {MODEL_LABELS.get(model, model)} (`{model}`)", "",
                  model_table(model, runs, payload["summary"]["models"][model]), ""]
    paired = payload["summary"].get("paired")
    if paired:
        a, b = paired["a"], paired["b"]
        lines += [f"## Paired: {MODEL_LABELS[a]} - {MODEL_LABELS[b]}", "",
                  paired_table(paired["metrics"], a, b), "",
                  "p: two-sided paired t-test over the seeds (n/a below 2 seeds, or when the "
                  "differences are all equal).", ""]
    else:
        lines += ["(no paired comparison: it needs both models)", ""]
    if payload["summary"].get("variant"):
        overrides = ", ".join(f"{k}={v!r}" for k, v in args["inference_overrides"])
        for model, paired in payload["summary"]["variant"].items():
            lines += [f"## {MODEL_LABELS.get(model, model)}: inference with `{overrides}` "
                      "against the run's own", "",
                      "The same checkpoints and test sets, evaluated both ways.", "",
                      variant_table(paired), ""]
    probed = {model: [r for r in runs if r.get("status") == "ok" and "probe" in r]
              for model, runs in payload["runs"].items()}
    if any(probed.values()):
        lines += ["## Linear probe of the classifier's input", "",
                  "Mass AUC on the masses a refined box matches at IoU >= "
                  f"{feature_probe.MATCH_IOU:g}: the classifier's own p(malignant | mass), and "
                  "a logistic regression (standardised, C = "
                  f"{feature_probe.PROBE_C:g}) fitted on the training masses' classifier "
                  "input.", "", probe_table(probed), ""]
    if args.get("intensity_scales"):
        lines += ["## Intensity robustness", "",
                  "Each model on its test set rendered at other detector gains (every stored "
                  "value times G, the same anatomy), against the gain it trained on (1); "
                  f"intensity window `{payload.get('intensity_window')}`.", "",
                  robustness_table(payload["runs"], args["intensity_scales"]), ""]
    ceilings = {seed: facts.get("test", {}).get("label_ceiling_auc")
                for seed, facts in sorted(payload.get("data", {}).items())}
    if ceilings:
        lines += ["Label ceiling, the case AUC of the generator's own shape family (oval or "
                  "lobulated: benign-looking; irregular or spiculated: malignant-looking) on "
                  "each test set: " + ", ".join(f"seed {s}: {_fmt(v)}"
                                                for s, v in ceilings.items())
                  + ". Mass AUC (found): p(malignant) of the best detection on each mass "
                  f"found at IoU >= {FOUND_IOU:g}, the classifier without the veto.", ""]
    outlines = {seed: facts.get("test", {}).get("outline_baseline_auc")
                for seed, facts in sorted(payload.get("data", {}).items())}
    if any(v is not None for v in outlines.values()):
        lines += ["Outline baseline, the mass AUC of a logistic regression on five numbers of "
                  "each true outline (log area, solidity, circularity, eccentricity, extent) "
                  "fitted on the same training masses: " + ", ".join(
                      f"seed {s}: {_fmt(v)}" for s, v in outlines.items())
                  + ". Compare with the networks' mass AUC (found).", ""]
    init = payload.get("shared_initial_weights") or {}
    if init:
        lines += ["Initial weights of the layers both models share, identical per seed: "
                  + ", ".join(f"seed {s}: {v['identical']}/{v['shared']}"
                              for s, v in sorted(init.items())), ""]
    if payload.get("plots"):
        lines += ["Plots: " + ", ".join(f"`{p}`" for p in payload["plots"]), ""]
    resumed = [f"seed {r['seed']} {r['model']}" for runs in payload["runs"].values()
               for r in runs if r.get("resumed")]
    if resumed:
        lines += ["Resumed (trained by an earlier invocation, evaluated again by this one; "
                  "the total time below leaves their training out): " + ", ".join(resumed), ""]
    lines += [f"Total time {payload.get('total_s', 0):.0f} s"
              f"{'' if payload.get('complete') else ' (incomplete run)'}.", ""]
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities as None, tuples as lists, Paths as strings."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_outputs(out: Path, payload: dict[str, Any]) -> str:
    text = report_text(payload)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_JSON).write_text(json.dumps(_clean(payload), indent=1, allow_nan=False),
                                    encoding="utf-8")
    (out / RESULTS_MD).write_text(text, encoding="utf-8")
    return text


# ----------------------------------------------------------------------------------- main
def prepare_seed_data(args: argparse.Namespace, seed: int, image_size: int, window: str
                      ) -> dict[str, Any]:
    """Generate (or reuse) the seed's sets (and its test set at each --intensity-scales gain)
    and load them through the intensity ``window``."""
    out = Path(args.out)
    roles = {"train": args.train_patients, "test": args.test_patients}
    if not args.no_val_curve:
        roles["val"] = args.val_patients
    facts, sets = {}, {}
    for role, n_patients in roles.items():
        gen_seed = DATA_SEED_OFFSETS[role] + seed
        folder = data_dir(out, role, gen_seed, n_patients, args.image_shape, args.difficulty)
        facts[role] = ensure_synthetic(folder, n_patients, gen_seed, args.image_shape,
                                       args.difficulty)
        sets[f"{role}_ds"] = load_set(folder, image_size, window)
        if role == "test":
            facts[role]["label_ceiling_auc"] = label_ceiling_auc(folder)
            facts[role]["outline_baseline_auc"] = outline_baseline_auc(sets["train_ds"],
                                                                       sets["test_ds"])
        common.log(f"seed {seed}: {role} set {folder.name} "
                   f"({'reused' if facts[role]['reused'] else 'generated'}): "
                   f"{sets[f'{role}_ds'].summary()}")
    sets["scaled_test"] = {}
    for scale in args.intensity_scales:
        gen_seed = DATA_SEED_OFFSETS["test"] + seed
        folder = data_dir(out, "test", gen_seed, args.test_patients, args.image_shape,
                          args.difficulty, scale)
        facts[f"test_g{scale:g}"] = ensure_synthetic(folder, args.test_patients, gen_seed,
                                                     args.image_shape, args.difficulty, scale)
        sets["scaled_test"][scale] = load_set(folder, image_size, window)
    return {"facts": facts, "sets": sets}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    started = time.monotonic()
    common.configure_tensorflow(args.threads)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import matplotlib

    matplotlib.use("Agg")
    from ftmtl.model import intensity_window, prepared_image_size
    from ftmtl.presets import make_config
    from ftmtl.schedule import recipe_epochs, schedule_for

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = config_overrides(args)
    first = make_config(args.preset, args.models[0], **overrides)  # validates the overrides
    if args.inference_overrides:
        inference_config(args, args.models[0], variant=True)  # and these, before any training
    pretrained = args.weights != "none"
    if args.epochs is None:
        args.epochs = recipe_epochs(first, pretrained)
    stages = schedule_for(first, pretrained, int(args.epochs), args.lr)
    if args.resume:
        check_resumable(out, vars(args))
    command = "python benchmarks/bench_accuracy.py " + shlex.join(argv)
    payload: dict[str, Any] = {
        "benchmark": "accuracy", "command": command.strip(),
        "args": args_record(vars(args)),
        "machine": common.machine_info(), "config_overrides": overrides,
        "steps_per_epoch": int(first.STEPS_PER_EPOCH), "image_size": prepared_image_size(first),
        "intensity_window": intensity_window(first),
        "schedule": [f"{s.name}: {s.epochs} epochs, lr {s.learning_rate:g}" for s in stages],
        "data_seed_offsets": DATA_SEED_OFFSETS, "data": {},
        "runs": {m: [] for m in args.models}, "summary": {}, "shared_initial_weights": {},
        "plots": [], "complete": False,
    }
    failures = 0
    for seed in args.seeds:
        if args.budget_s and time.monotonic() - started > args.budget_s:
            common.log(f"seed {seed}: skipped, the {args.budget_s:.0f} s budget is spent")
            for model in args.models:
                payload["runs"][model].append({"model": model, "seed": seed,
                                               "status": "skipped (budget)"})
            continue
        data = prepare_seed_data(args, seed, prepared_image_size(first),
                                 intensity_window(first))
        payload["data"][str(seed)] = data["facts"]
        fingerprints = {}
        for model in args.models:
            run_dir = out / RUNS_DIR / f"seed_{seed}" / model
            finished = finished_run(run_dir) if args.resume else None
            try:
                if finished is not None:
                    common.log(f"seed {seed} {model}: resumed, its checkpoint "
                               f"{finished['checkpoint']} evaluated again")
                    record = {**evaluate_run(finished, args, data["sets"], run_dir),
                              "resumed": True}
                else:
                    record = train_and_evaluate(model, seed, args, data["sets"], run_dir)
            except Exception as error:  # one failed run must not hide the others' figures
                failures += 1
                common.log(f"seed {seed} {model}: FAILED\n{traceback.format_exc()}")
                record = {"model": model, "seed": seed, "status": "error",
                          "error": f"{type(error).__name__}: {error}"}
            else:
                if "_fingerprint" in record:  # a resumed run's initial weights are gone
                    fingerprints[model] = record.pop("_fingerprint")
                plot = out / PLOTS_DIR / f"curves_seed{seed}_{model}.png"
                plot_curves(record, plot)
                record["plot"] = str(plot.relative_to(out))
                payload["plots"].append(record["plot"])
                common.log(f"seed {seed} {model}: " + ", ".join(
                    f"{k} {_cell(k, record['metrics'])}" for k in METRIC_KEYS))
            payload["runs"][model].append(record)
            payload["summary"] = build_summary(payload["runs"])
            payload["total_s"] = round(time.monotonic() - started, 1)
            write_outputs(out, payload)
        if len(fingerprints) == 2:
            payload["shared_initial_weights"][str(seed)] = compare_fingerprints(
                *fingerprints.values())
    all_runs = [r for runs in payload["runs"].values() for r in runs]
    overview = out / PLOTS_DIR / "val_tpr.png"
    if plot_val_overview([r for r in all_runs if r.get("status") == "ok"], overview):
        payload["plots"].append(str(overview.relative_to(out)))
    payload["summary"] = build_summary(payload["runs"])
    payload["total_s"] = round(time.monotonic() - started, 1)
    payload["complete"] = True
    text = write_outputs(out, payload)
    print(text)
    print(f"results: {out / RESULTS_JSON}, {out / RESULTS_MD}; plots under {out / PLOTS_DIR}")
    print(f"command: {payload['command']}")
    print(f"total time: {payload['total_s']:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
