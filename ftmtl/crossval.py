"""k-fold cross-validation of FT-MTL-Net against its Mask R-CNN twin (docs/method.md §5).

``run_crossval`` splits the images once into patient-grouped folds stratified by label (saved to
``folds.json``; both models see exactly the same folds), trains each model on each fold with the
same schedule (``ftmtl.schedule.schedule_for``) and budget, evaluates it on the fold's test
images and writes

    out_dir/folds.json                       the folds, as file names
    out_dir/fold_<k>/<model>/result.json     EvaluationResult.to_dict() plus run facts
    out_dir/fold_<k>/<model>/predictions.json  every test case without masks
    out_dir/fold_<k>/<model>/history.json    training losses per stage
    out_dir/fold_<k>/<model>/examples.npz    a few test cases for the example figure
    out_dir/fold_<k>/<model>/logs/           the last checkpoint, TensorBoard logs

then ``aggregate`` writes ``results.json``, ``results.md`` and ``plots/*.png``; from each fold's
predictions.json it also draws bootstrap intervals and the calibration of the case score
(``ftmtl.evaluation_report``: per fold in the results, every fold's cases pooled in the figure).

Resuming: ``result.json`` is written last, so a fold/model that has one is finished and skipped
on a rerun; one that stopped during training continues from its last checkpoint
(``load_weights(find_last())``; the schedule skips the finished stages; ``weights`` are not
loaded again).

Validation during training: the losses are also computed on the training images (without
augmentation). Nothing is selected with them (no early stopping; the last checkpoint is always
evaluated), so a held-out part would only take data from training; they show the fit.

Class-balanced sampling (``ftmtl.inbreast.folds.balanced_sampler``): images without a mass get
MASS_FREE_SHARE of the draws; the others are drawn by SAMPLER_WEIGHTS (the paper's benign 150,
malignant 75, or "balanced": inverse to each label's count in the fold).
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ftmtl import plots, report
from ftmtl.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED
from ftmtl.calibration import ReliabilityBins
from ftmtl.datasets.loader import DatasetSpec, as_spec, load_dataset
from ftmtl.evaluation import CasePrediction, EvaluationResult, evaluate_predictions, predict_dataset
from ftmtl.evaluation_report import (
    CaseOutcomes,
    bootstrap_intervals,
    calibration_entries,
    case_calibration,
)
from ftmtl.inbreast.dataset import INbreastDataset
from ftmtl.inbreast.folds import balanced_sampler, patient_folds
from ftmtl.metrics import FROC_POINTS, paired_t_test
from ftmtl.model import image_size_overrides, intensity_window, prepared_image_size
from ftmtl.presets import MODELS, build_model, make_config
from ftmtl.schedule import run_schedule, schedule_for
from ftmtl.starting_weights import NONE, load_starting_weights, uses_pretrained_recipe
from mrcnn.augmentation import default_augmentation
from mrcnn.checkpoint import atomic_write
from mrcnn.model import enable_determinism, progress_verbosity
from mrcnn.visualize import save_figure

if TYPE_CHECKING:
    import tensorflow as tf

logger = logging.getLogger(__name__)

FOLDS_FILE = "folds.json"
RESULT_FILE = "result.json"
PREDICTIONS_FILE = "predictions.json"
HISTORY_FILE = "history.json"
EXAMPLES_FILE = "examples.npz"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
PLOTS_DIR = "plots"
N_EXAMPLES = 4
# Checkpoints kept per fold and model unless config_overrides sets KEEP_CHECKPOINTS.
CROSSVAL_KEEP_CHECKPOINTS = 1


@dataclass
class CrossvalResult:
    """What ``run_crossval`` produced: the folds (file names), each model's per-fold
    evaluation (None for a fold without a result) and the aggregate summary."""

    out_dir: Path
    folds: list[dict[str, Any]]
    results: dict[str, list[EvaluationResult | None]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- utilities


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=1, allow_nan=False)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


def _run_dir(out_dir: Path, fold: int, model: str) -> Path:
    return out_dir / f"fold_{fold}" / model


def _subset(dataset: INbreastDataset, file_names: Iterable[str]) -> INbreastDataset:
    """A prepared dataset of some of ``dataset``'s images (no file is read again)."""
    wanted = set(file_names)
    subset = type(dataset)()
    subset.image_size = dataset.image_size
    subset.intensity_window = dataset.intensity_window
    for info in dataset.class_info[1:]:
        subset.add_class(info["source"], info["id"], info["name"])
    for info in dataset.image_info:
        if info["file_name"] in wanted:
            extra = {k: v for k, v in info.items() if k not in ("id", "source", "path")}
            subset.add_image(info["source"], info["id"], info["path"], **extra)
    subset.prepare()
    return subset


# ---------------------------------------------------------------------------------- folds


def make_folds(dataset: INbreastDataset, k: int, seed: int) -> list[dict[str, Any]]:
    """k folds of file names: {"fold", "train", "test", "test_patients"}."""
    infos = dataset.image_info
    folds = []
    for index, (train, test) in enumerate(patient_folds(dataset, k, seed)):
        folds.append({
            "fold": index,
            "train": sorted(infos[i]["file_name"] for i in train),
            "test": sorted(infos[i]["file_name"] for i in test),
            "test_patients": sorted({infos[i]["patient_id"] for i in test}),
        })
    return folds


def folds_for(dataset: INbreastDataset, out_dir: Path, k: int, seed: int,
              dataset_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The folds of ``out_dir/folds.json`` when it exists (checked against k, seed and the
    dataset), else new folds saved there."""
    path = out_dir / FOLDS_FILE
    names = sorted(info["file_name"] for info in dataset.image_info)
    if path.exists():
        saved = _read_json(path)
        if saved.get("k") != k or saved.get("seed") != seed:
            raise ValueError(f"{path}: made with k={saved.get('k')}, seed={saved.get('seed')}, "
                             f"but this run asks for k={k}, seed={seed}; use another out_dir "
                             "or delete the old results")
        saved_names = sorted(n for fold in saved["folds"] for n in fold["test"])
        if saved_names != names:
            raise ValueError(f"{path}: its folds hold {len(saved_names)} images that differ "
                             f"from the {len(names)} images of {dataset_dir}; use another "
                             "out_dir")
        logger.info("folds read from %s", path)
        return saved["folds"]
    folds = make_folds(dataset, k, seed)
    _write_json(path, {"k": k, "seed": seed, "dataset_dir": str(dataset_dir),
                       "n_images": len(names), "folds": folds})
    logger.info("%d folds written to %s", k, path)
    return folds


# ------------------------------------------------------------------------------ training


def _augmentation(augmentation: Any):
    if augmentation is True:
        return default_augmentation()
    if augmentation is False or augmentation is None:
        return None
    return augmentation


def _resume(model, model_dir: Path) -> bool:
    """Continue from the last checkpoint under model_dir, if any."""
    try:
        checkpoint = model.find_last()
    except FileNotFoundError:
        return False
    model.load_weights(checkpoint)
    logger.info("%s: resuming from %s (epoch %d)", model_dir, checkpoint, model.epoch)
    return True


def _stages_run(stages, start_epoch: int) -> list:
    """The stages ``run_schedule`` trains when the model starts at ``start_epoch``."""
    ran, end = [], 0
    for stage in stages:
        end += int(stage.epochs)
        if start_epoch < end:
            ran.append(stage)
    return ran


def _save_history(run_dir: Path, stages, start_epoch: int, histories) -> None:
    path = run_dir / HISTORY_FILE
    saved = _read_json(path) if path.exists() else {}
    for stage, history in zip(_stages_run(stages, start_epoch), histories, strict=True):
        record = getattr(history, "history", history) or {}
        values = {key: [float(v) for v in vals] for key, vals in record.items()}
        if stage.name in saved:  # resumed inside this stage: append the new epochs
            for key, vals in values.items():
                saved[stage.name].setdefault(key, []).extend(vals)
        else:
            saved[stage.name] = values
    _write_json(path, saved)


def _train(config, train_ds: INbreastDataset, run_dir: Path, *, fold: int, seed: int,
           schedule_epochs: int, learning_rate: float, weights, weights_exclude,
           augmentation, balanced_sampling: bool, progress: bool, deterministic: bool,
           strategy: tf.distribute.Strategy | None = None) -> str:
    """Train one model on one fold (under ``strategy``, default TensorFlow's); returns the
    last checkpoint's path."""
    model_dir = run_dir / "logs"
    enable_determinism(seed + fold, ops=deterministic)
    model = build_model("training", config, model_dir, strategy=strategy)
    if not _resume(model, model_dir):
        load_starting_weights(model, weights, weights_exclude, continue_run=False)
    sampler = (balanced_sampler(train_ds, seed + fold, config.MASS_FREE_SHARE,
                                config.SAMPLER_WEIGHTS)
               if balanced_sampling else None)
    stages = schedule_for(config, uses_pretrained_recipe(weights or NONE, config),
                          schedule_epochs, learning_rate)
    start_epoch = model.epoch
    histories = run_schedule(model, train_ds, train_ds, stages,
                             augmentation=_augmentation(augmentation), sampler=sampler,
                             verbose=progress_verbosity(progress), seed=seed + fold)
    _save_history(run_dir, stages, start_epoch, histories)
    checkpoint = model.checkpoint_path.format(epoch=model.epoch)
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{run_dir}: training ended at epoch {model.epoch} but "
                                f"{checkpoint} is missing")
    return checkpoint


def _check_replicas(config, strategy: tf.distribute.Strategy | None) -> None:
    """The config's GPU_COUNT must be the strategy's replica count: the global batch
    (IMAGES_PER_GPU x GPU_COUNT) is split over the replicas."""
    if strategy is not None and strategy.num_replicas_in_sync != config.GPU_COUNT:
        raise ValueError(f"run_crossval: the strategy has {strategy.num_replicas_in_sync} "
                         f"replica(s) but GPU_COUNT is {config.GPU_COUNT}; set GPU_COUNT to "
                         "the replica count in config_overrides")


def _free_models() -> None:
    import keras

    keras.backend.clear_session()
    gc.collect()


# ---------------------------------------------------------------------------- evaluation


def _examples(dataset: INbreastDataset, cases: Sequence[CasePrediction]) -> list[plots.Example]:
    """A few test cases (malignant, benign, then the rest, by file name) in the model's frame."""
    order = {"malignant": 0, "benign": 1}
    chosen = sorted(cases, key=lambda c: (order.get(c.label, 2), c.file_name))[:N_EXAMPLES]
    examples = []
    for case in chosen:
        image = dataset.load_image(case.image_id)[..., 0]
        gt_masks, _ = dataset.load_mask(case.image_id)
        if case.transform is not None:
            rois, masks = case.transform.to_model(case.rois), case.masks.dense()
        else:
            rois, masks = case.rois, case.masks.dense()
        examples.append(plots.Example(
            image=np.clip(np.round(image), 0, 255).astype(np.uint8), gt_masks=gt_masks,
            rois=rois, masks=masks, class_ids=case.class_ids, scores=case.scores,
            class_probs=case.class_probs, file_name=case.file_name, label=case.label,
            case_score=case.case_score))
    return examples


def one_device_config(config):
    """``config`` for a model on one device: one replica's batch (IMAGES_PER_GPU), not the
    global batch of a training over GPU_COUNT replicas (the config itself is not changed)."""
    if config.GPU_COUNT == 1:
        return config
    single = copy.copy(config)
    single.GPU_COUNT = 1
    single.BATCH_SIZE = single.IMAGES_PER_GPU
    return single


def _evaluate(config, checkpoint: str, test_ds: INbreastDataset, run_dir: Path,
              progress: bool) -> EvaluationResult:
    # Training may run on N GPUs; evaluation builds its model on one.
    model = build_model("inference", one_device_config(config), run_dir / "logs")
    model.load_weights(checkpoint)
    cases = predict_dataset(model, test_ds, test_ds.image_ids, progress=progress)
    result = evaluate_predictions(cases)
    _write_json(run_dir / PREDICTIONS_FILE, [case.summary() for case in cases])
    plots.save_examples(run_dir / EXAMPLES_FILE, _examples(test_ds, cases))
    return result


# ----------------------------------------------------------------------------------- run


def run_crossval(
    dataset_dir: str | os.PathLike | DatasetSpec,
    out_dir: str | os.PathLike,
    folds: int = 5,
    models: Sequence[str] = ("ftmtl", "maskrcnn"),
    preset: str = "paper",
    seed: int = 0,
    schedule_epochs: int = 10,
    learning_rate: float | None = None,
    steps_per_epoch: int | None = None,
    image_size: int | None = None,
    weights: str | os.PathLike | None = None,
    augmentation: Any = True,
    balanced_sampling: bool = True,
    config_overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    weights_exclude: Sequence[str] | None = None,
    only_folds: Sequence[int] | None = None,
    deterministic: bool = True,
    strategy: tf.distribute.Strategy | None = None,
) -> CrossvalResult:
    """Cross-validate ``models`` on ``dataset_dir`` (an INbreast folder, or a
    ``ftmtl.datasets.loader.DatasetSpec`` of any format); see the module doc.

    Every model gets the same folds, stages, epochs per stage (``schedule_epochs``), learning
    rate (default the config's LEARNING_RATE), steps per epoch (default the config's) and
    initial ``weights`` (``ftmtl.starting_weights``: None or "none", "imagenet[:PATH]",
    "coco" or an .h5 path; ``weights_exclude``: layers of the file left as initialised); the
    schedule is ``schedule_for``'s: the paper's three stages of ``schedule_epochs`` each from
    pretrained ``weights``, one joint stage of ``schedule_epochs`` from scratch.
    ``image_size``: the image size as the CLI's --image-size
    reads it (``ftmtl.model.image_size_overrides``; default the config's). ``augmentation``:
    True (``default_augmentation()``), False, or an augmenter. ``config_overrides``: config
    attributes for every model (upper-case names). ``only_folds``: train and evaluate these
    folds now (default all); the others can run later into the same ``out_dir``, or on another
    machine, and the tables summarise the folds that have results. Each model of fold ``k``
    starts from ``enable_determinism(seed + k)``: the models of a fold start from the same
    weights wherever their layers agree, and the same call gives the same figures on the same
    machine; ``deterministic=False`` still seeds but leaves TensorFlow's ops free (op
    determinism, once on, holds for the rest of the process). ``strategy``: the
    ``tf.distribute`` strategy the models are trained under (``mrcnn.devices.strategy_for_gpus``;
    default TensorFlow's); with N replicas the configs need GPU_COUNT = N in
    ``config_overrides``. Evaluation runs on the default strategy.
    """
    models = list(models)
    unknown = [m for m in models if m not in MODELS]
    if not models or unknown or len(set(models)) != len(models):
        raise ValueError(f"run_crossval: models must be distinct names from {MODELS}, "
                         f"got {models}")
    if int(schedule_epochs) < 1:
        raise ValueError(f"run_crossval: schedule_epochs must be >= 1, got {schedule_epochs}")
    if only_folds is not None:
        only_folds = sorted({int(f) for f in only_folds})
        if not only_folds or not all(0 <= f < int(folds) for f in only_folds):
            raise ValueError(f"run_crossval: only_folds must be fold numbers in 0..{folds - 1}, "
                             f"got {only_folds}")
    # Only the last checkpoint of a fold is ever used (evaluation, resuming); every epoch's of
    # 2 models x k folds x 30 epochs would fill a disk. KEEP_CHECKPOINTS overrides it.
    overrides = {"KEEP_CHECKPOINTS": CROSSVAL_KEEP_CHECKPOINTS, **(config_overrides or {})}
    if steps_per_epoch is not None:
        overrides["STEPS_PER_EPOCH"] = int(steps_per_epoch)
    if image_size:
        # The models' configs say the size the images are prepared at (their config.json too).
        overrides.update(image_size_overrides(make_config(preset, models[0], **overrides),
                                              int(image_size)))
    configs = {m: make_config(preset, m, **overrides) for m in models}
    first = configs[models[0]]
    _check_replicas(first, strategy)
    learning_rate = float(learning_rate if learning_rate is not None else first.LEARNING_RATE)
    image_size = prepared_image_size(first)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(dataset_dir, image_size, progress=progress,
                           window=intensity_window(first))
    fold_list = folds_for(dataset, out, int(folds), int(seed), as_spec(dataset_dir).root)

    for fold in fold_list:
        k = int(fold["fold"])
        if only_folds is not None and k not in only_folds:
            continue
        train_ds, test_ds = _subset(dataset, fold["train"]), _subset(dataset, fold["test"])
        for model in models:
            run_dir = _run_dir(out, k, model)
            if (run_dir / RESULT_FILE).exists():
                logger.info("fold %d, %s: %s exists; skipped", k, model, run_dir / RESULT_FILE)
                continue
            run_dir.mkdir(parents=True, exist_ok=True)
            logger.info("fold %d, %s: training on %d images, testing on %d", k, model,
                        len(train_ds.image_ids), len(test_ds.image_ids))
            start = time.monotonic()
            checkpoint = _train(configs[model], train_ds, run_dir, fold=k, seed=int(seed),
                                schedule_epochs=int(schedule_epochs),
                                learning_rate=learning_rate, weights=weights,
                                weights_exclude=weights_exclude, augmentation=augmentation,
                                balanced_sampling=balanced_sampling, progress=progress,
                                deterministic=deterministic, strategy=strategy)
            _free_models()
            result = _evaluate(configs[model], checkpoint, test_ds, run_dir, progress)
            _free_models()
            _write_json(run_dir / RESULT_FILE, {
                "fold": k, "model": model, "preset": preset, "config_name": configs[model].NAME,
                "n_train": len(train_ds.image_ids), "n_test": len(test_ds.image_ids),
                "schedule_epochs": int(schedule_epochs), "learning_rate": learning_rate,
                "steps_per_epoch": int(configs[model].STEPS_PER_EPOCH),
                "image_size": image_size, "checkpoint": str(checkpoint),
                "seconds": round(time.monotonic() - start, 1),
                "evaluation": result.to_dict(),
            })
            logger.info("fold %d, %s: AUC %.3f, TPR@3.67 %.3f, Dice %.3f", k, model,
                        result.auc, result.tpr_at_fpi.get(3.67, float("nan")), result.dice_mean)

    summary = aggregate(out)
    return CrossvalResult(out_dir=out, folds=fold_list,
                          results=load_fold_results(out, models, len(fold_list)),
                          summary=summary)


# ----------------------------------------------------------------------------- aggregate


def load_fold_results(out_dir: str | os.PathLike, models: Sequence[str], k: int
                      ) -> dict[str, list[EvaluationResult | None]]:
    """Each model's EvaluationResult per fold (None where the fold has no result yet)."""
    out = Path(out_dir)
    results: dict[str, list[EvaluationResult | None]] = {}
    for model in models:
        results[model] = []
        for fold in range(k):
            path = _run_dir(out, fold, model) / RESULT_FILE
            results[model].append(EvaluationResult.from_dict(_read_json(path)["evaluation"])
                                  if path.exists() else None)
    return results


def fold_metrics(result: EvaluationResult) -> dict[str, float]:
    """The scalar metrics of one fold, by summary key (NaN when undefined)."""
    metrics = {"auc": result.auc, "auc_detected": result.auc_detected}
    for point in FROC_POINTS:
        metrics[report.tpr_key(point)] = result.tpr_at_fpi.get(float(point), float("nan"))
    metrics["dice"] = result.dice_mean
    metrics["box_map50"] = result.box_map50
    for name, value in result.box_ap50.items():
        metrics[f"box_ap50_{name}"] = value
    return metrics


def _none_if_nan(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _summarise(values: list[float]) -> dict[str, Any]:
    finite = [v for v in values if math.isfinite(v)]
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return {"values": [_none_if_nan(v) for v in values],
            "mean": float(np.mean(finite)) if finite else None,
            "std": std if finite else None, "n": len(finite), "n_folds": len(values)}


def _compare(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]]
             ) -> dict[str, dict[str, Any] | None]:
    """Paired t-test per metric over the folds where both models define it."""
    tests: dict[str, dict[str, Any] | None] = {}
    keys = sorted({key for metrics in (*a.values(), *b.values()) for key in metrics})
    for key in keys:
        pairs = [(a[f][key], b[f][key]) for f in sorted(set(a) & set(b))
                 if math.isfinite(a[f].get(key, math.nan))
                 and math.isfinite(b[f].get(key, math.nan))]
        if len(pairs) < 2:
            tests[key] = None
            continue
        with warnings.catch_warnings():  # identical pairs: scipy warns and returns NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            t, p = paired_t_test([x for x, _ in pairs], [y for _, y in pairs])
        tests[key] = {"t": _none_if_nan(t), "p": _none_if_nan(p), "n": len(pairs)}
    return tests


def _histories(out: Path, models: Sequence[str], k: int) -> dict[str, list[dict]]:
    found = {}
    for model in models:
        paths = [_run_dir(out, fold, model) / HISTORY_FILE for fold in range(k)]
        found[model] = [_read_json(p) if p.exists() else {} for p in paths]
    return found


def _write_plots(out: Path, models: Sequence[str], k: int,
                 per_fold: dict[str, dict[int, EvaluationResult]],
                 metrics: dict[str, dict[int, dict[str, float]]],
                 calibration: dict[str, ReliabilityBins]) -> dict[str, str]:
    """The figures as PNGs under out/plots; returns name -> path relative to out."""
    written: dict[str, str] = {}

    def save(name: str, figure) -> None:
        path = out / PLOTS_DIR / f"{name}.png"
        save_figure(figure, path)
        written[name] = str(path.relative_to(out))

    rocs = {m: [r.roc_curve() for r in per_fold[m].values() if r.roc is not None]
            for m in models}
    aucs = {m: [v["auc"] for v in metrics[m].values()] for m in models}
    if any(rocs.values()):
        save("roc", plots.plot_roc(rocs, aucs))
    frocs = {m: [r.froc_curve() for r in per_fold[m].values() if r.froc is not None]
             for m in models}
    if any(frocs.values()):
        save("froc", plots.plot_froc(frocs))
        save("iou_sweep", plots.plot_iou_sweep(
            {m: [r.tpr_vs_iou for r in per_fold[m].values() if r.froc is not None]
             for m in models}))
    if calibration:
        save("calibration", plots.plot_calibration(calibration))
    for fold in reversed(range(k)):
        paths = {m: _run_dir(out, fold, m) / EXAMPLES_FILE for m in models}
        if all(p.exists() for p in paths.values()):
            save("examples", plots.plot_examples(
                {m: plots.load_examples(p) for m, p in paths.items()}))
            break
    histories = _histories(out, models, k)
    if any(any(folds) for folds in histories.values()):
        save("training_losses", plots.plot_histories(histories))
    return written


def _discover(out: Path) -> tuple[int, list[str], dict[str, Any]]:
    path = out / FOLDS_FILE
    if not path.exists():
        raise FileNotFoundError(f"aggregate: {path} is missing; run run_crossval first")
    saved = _read_json(path)
    k = int(saved["k"])
    found = {d.name for fold in range(k) for d in (out / f"fold_{fold}").glob("*")
             if (d / RESULT_FILE).exists()}
    models = [m for m in MODELS if m in found] + sorted(found - set(MODELS))
    return k, models, saved


def _fold_outcomes(out: Path, models: Sequence[str],
                   per_fold: dict[str, dict[int, EvaluationResult]]
                   ) -> dict[str, dict[int, CaseOutcomes]]:
    """The cases of each finished fold that has a predictions.json."""
    found: dict[str, dict[int, CaseOutcomes]] = {}
    for model in models:
        found[model] = {}
        for fold in sorted(per_fold[model]):
            path = _run_dir(out, fold, model) / PREDICTIONS_FILE
            if path.exists():
                found[model][fold] = CaseOutcomes.from_summaries(_read_json(path), str(path))
    return found


def _case_statistics(outcomes: dict[int, CaseOutcomes], resamples: int, seed: int
                     ) -> tuple[list[dict[str, Any]], ReliabilityBins | None]:
    """Per fold, the bootstrap intervals and the ECE; the calibration of all folds' cases."""
    rows = []
    for fold, cases in outcomes.items():
        bins = case_calibration(cases)
        rows.append({"fold": fold, **bootstrap_intervals(cases, resamples, seed),
                     "ece": bins.ece() if bins is not None else None})
    if not outcomes:
        return rows, None
    return rows, case_calibration(CaseOutcomes.concatenate(list(outcomes.values())))


def aggregate(out_dir: str | os.PathLike,
              bootstrap_resamples: int = DEFAULT_RESAMPLES) -> dict[str, Any]:
    """Summarise every finished fold under ``out_dir``: mean +- std per model and metric,
    paired t-tests between models, per-fold bootstrap intervals (``bootstrap_resamples``,
    seeded with the folds' seed: the models of a fold draw the same images) and ECE, the plots;
    writes results.json and results.md."""
    out = Path(out_dir)
    k, models, saved = _discover(out)
    results = load_fold_results(out, models, k)
    per_fold = {m: {f: r for f, r in enumerate(results[m]) if r is not None} for m in models}
    metrics = {m: {f: fold_metrics(r) for f, r in per_fold[m].items()} for m in models}
    seed = DEFAULT_SEED if saved.get("seed") is None else int(saved["seed"])
    intervals, calibration = {}, {}
    for m, outcomes in _fold_outcomes(out, models, per_fold).items():
        intervals[m], pooled = _case_statistics(outcomes, int(bootstrap_resamples), seed)
        if pooled is not None:
            calibration[m] = pooled
        for row in intervals[m]:
            metrics[m][row["fold"]]["ece"] = math.nan if row["ece"] is None else row["ece"]
    summary: dict[str, Any] = {
        "dataset_dir": saved.get("dataset_dir"), "k": k, "seed": saved.get("seed"),
        "models": models, "folds_done": {m: sorted(per_fold[m]) for m in models},
        "metrics": {}, "comparisons": {}, "counts": {}, "intervals": intervals,
        "calibration": {m: calibration_entries(bins) for m, bins in calibration.items()},
        "paper": {m: {key: list(v) for key, v in figures.items()}
                  for m, figures in report.PAPER_FIGURES.items()},
    }
    for m in models:
        keys = sorted({key for fold in metrics[m].values() for key in fold})
        summary["metrics"][m] = {key: _summarise([metrics[m][f].get(key, math.nan)
                                                  for f in sorted(metrics[m])])
                                 for key in keys}
        summary["counts"][m] = {
            name: int(sum(getattr(r, name) for r in per_fold[m].values()))
            for name in ("n_cases", "n_labelled", "n_detected", "n_masses", "n_missed")}
    for a, b in combinations(models, 2):
        summary["comparisons"][f"{plots.model_name(a)} vs {plots.model_name(b)}"] = _compare(
            metrics[a], metrics[b])
    summary["plots"] = _write_plots(out, models, k, per_fold, metrics, calibration)
    _write_json(out / RESULTS_JSON, summary)
    report.write_results_md(summary, out / RESULTS_MD)
    logger.info("results written to %s and %s", out / RESULTS_JSON, out / RESULTS_MD)
    return summary
