"""FT-MTL-Net on INbreast from the command line: synth, train, evaluate, detect, export,
crossval, demo.

Installed as the console script ``inbreast``; ``python samples/inbreast/inbreast.py`` runs the
same from a checkout. Run ``inbreast <command> --help`` for the options. The first thing to try::

    inbreast demo --out demo

generates a small synthetic INbreast, cross-validates FT-MTL-Net against its Mask R-CNN twin at
CPU size and writes ``demo/results.md`` with the plots. See ``samples/inbreast/README.md``.

TensorFlow takes seconds to import, so each command imports what it needs when it runs;
``--help`` and ``synth`` never load it.
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ftmtl.demo_recipe import DEMO_DATA, DEMO_QUICK_DATA, DEMO_QUICK_RUN, DEMO_RUN
from ftmtl.starting_weights import (  # no TensorFlow at import
    COCO,
    IMAGENET,
    LAST,
    NONE,
    check_weights,
    load_starting_weights,
    uses_pretrained_recipe,
)
from mrcnn import project_version

logger = logging.getLogger("inbreast")

# ftmtl.presets.PRESETS and MODELS, spelled out so that --help need not import TensorFlow
# (tests/test_cli.py checks they agree).
PRESET_NAMES = ("paper", "fpn", "paper_cpu", "fpn_cpu")
MODEL_NAMES = ("ftmtl", "maskrcnn")
# ftmtl.datasets.loader.DATASET_FORMATS, spelled out for the same reason.
DATASET_FORMAT_NAMES = ("inbreast", "coco", "csv")
DEFAULT_LOGS = "logs"
# The numbers `evaluate` prints (metrics.json has them all, with the curves).
EVALUATE_TABLE = ("n_cases", "n_labelled", "n_detected", "n_masses", "auc", "auc_detected",
                  "tpr_at_fpi", "dice_mean", "box_map50")
# Exit codes: 0 success, 1 some inputs failed (detect), 2 bad arguments or unusable input.
EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2


# ---------------------------------------------------------------------------- logging
class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (tests swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the handler never keeps a stream of its own
        pass


def configure_logging(verbose: bool, quiet: bool) -> None:
    """One handler on the root logger (added once per process), level from the flags."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
    # TensorFlow's C++ log threshold (read when it loads): its info lines only with -v.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")


def keras_verbosity(args: argparse.Namespace) -> int:
    """Keras' progress output: a bar on a terminal, a line an epoch otherwise, none if quiet."""
    from mrcnn.model import progress_verbosity

    return progress_verbosity(not args.quiet)


# --------------------------------------------------------------------------- argument types
def image_shape_arg(text: str) -> tuple[int, int]:
    """``HxW`` (rows x columns), e.g. 416x320."""
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROWSxCOLS such as 416x320, got {text!r}"
                                         ) from None
    return rows, cols


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def override_arg(text: str) -> tuple[str, Any]:
    """``NAME=VALUE``: an upper-case config attribute and a Python literal (or a string)."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip().isupper():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with an upper-case config "
                                         f"attribute, got {text!r}")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()
    return name.strip(), value


def model_list_arg(text: str) -> tuple[str, ...]:
    models = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in models if m not in MODEL_NAMES]
    if not models or unknown:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {MODEL_NAMES}, "
                                         f"got {text!r}")
    return models


def name_list_arg(text: str) -> tuple[str, ...]:
    """'Mass, Spiculated Region' -> ('Mass', 'Spiculated Region')."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def fold_list_arg(text: str) -> tuple[int, ...]:
    """'0,2' -> (0, 2); the range is checked against --folds by run_crossval."""
    try:
        folds = tuple(int(f) for f in text.split(",") if f.strip())
    except ValueError:
        folds = ()
    if not folds or min(folds) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated fold numbers from 0, "
                                         f"got {text!r}")
    return folds


# ------------------------------------------------------------------------------ the parser
def _add_model_options(p: argparse.ArgumentParser, from_checkpoint: bool = False) -> None:
    """--model, the config options and --logs. ``from_checkpoint`` (evaluate, detect): no
    defaults, the checkpoint's stored config gives them and options must agree with it."""
    p.add_argument("--model", choices=MODEL_NAMES, default=None if from_checkpoint else "ftmtl",
                   help="ftmtl: FT-MTL-Net; maskrcnn: the same network without the transfer "
                        "branch " + ("(default: the checkpoint's; for --weights last, ftmtl)"
                                     if from_checkpoint else "(default: %(default)s)"))
    _add_config_options(p, from_checkpoint)
    p.add_argument("--logs", default=DEFAULT_LOGS, metavar="DIR",
                   help="folder of training runs and checkpoints; '--weights last' looks here "
                        "(default: %(default)s)")


def _add_config_options(p: argparse.ArgumentParser, from_checkpoint: bool = False) -> None:
    """--preset, --image-size and --set: the config of every command that builds a model."""
    p.add_argument("--preset", choices=PRESET_NAMES, default=None if from_checkpoint else "paper",
                   help="network and training settings: paper (ResNet-50 C4, 512 px), fpn "
                        "(Matterport's FPN layout), paper_cpu / fpn_cpu (tiny backbone, "
                        "GroupNorm, trained from scratch on 128-px crops of 384-px images) "
                        + ("(default: the checkpoint's; paper for a checkpoint that does not "
                           "record its config; --weights last looks at runs of any preset "
                           "unless given)" if from_checkpoint else "(default: %(default)s)"))
    p.add_argument("--image-size", type=positive_int, metavar="S",
                   help="square presets (paper, fpn): the model input side (breast crop "
                        "resized to S, padded to SxS; a multiple of the largest stride); crop "
                        "presets (*_cpu): the prepared images' long side (the crops stay "
                        "IMAGE_MIN_DIM) " + ("(default: the checkpoint's)" if from_checkpoint
                                             else "(default: the preset's)"))
    p.add_argument("--set", dest="overrides", type=override_arg, action="append", default=[],
                   metavar="NAME=VALUE",
                   help="override a config attribute, e.g. --set DETECTION_MIN_CONFIDENCE=0.3 "
                        "(repeatable; values are Python literals)"
                        + ("; the network's architecture attributes must agree with the "
                           "checkpoint's, thresholds may differ" if from_checkpoint else ""))


def _add_checkpoint_option(p: argparse.ArgumentParser) -> None:
    """--weights of the commands that run a trained model (evaluate, detect)."""
    p.add_argument("--weights", required=True, metavar="W",
                   help="a checkpoint PATH, or last (the newest checkpoint of --model and "
                        "--preset in --logs); the checkpoint's stored config rebuilds the "
                        "network, so --preset, --image-size and --set are not needed")


def _add_fold_options(p: argparse.ArgumentParser, action: str) -> None:
    p.add_argument("--folds", type=positive_int, metavar="K",
                   help=f"split the patients into K folds (grouped by patient, stratified by "
                        f"label) and {action}")
    p.add_argument("--fold", type=int, metavar="I",
                   help="which fold (0..K-1) is held out; needs --folds")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the fold split and of sampling (default: %(default)s)")


def add_dataset_options(p: argparse.ArgumentParser) -> None:
    """--dataset-format and its options: datasets that are not INbreast (README, "Your own
    mammograms"); ``dataset_spec`` reads them."""
    p.add_argument("--dataset-format", choices=DATASET_FORMAT_NAMES, default="inbreast",
                   help="inbreast (INbreast.csv, AllDICOMs, AllXML), coco (a COCO instance "
                        "JSON: polygons, RLE or boxes) or csv (a CSV of boxes or mask files); "
                        "image paths are under --dataset (default: %(default)s)")
    p.add_argument("--annotations", metavar="FILE",
                   help="coco, csv: the JSON or CSV file (default: DIR/annotations.json or "
                        "DIR/annotations.csv)")
    p.add_argument("--label-map", metavar="NAME=LABEL,...",
                   help="coco, csv: category names or label values -> benign, malignant or "
                        "ignore, e.g. 'mass_benign=benign,mass_malignant=malignant' (default: "
                        "names containing benign or malignant)")
    p.add_argument("--columns", metavar="ROLE=COLUMN,...",
                   help="csv: your column names for the roles image, label, patient, mask, "
                        "xmin, ymin, xmax, ymax, e.g. 'image=path,label=pathology' (default: "
                        "each role's own name)")
    p.add_argument("--bits-stored", type=positive_int, metavar="B",
                   help="coco, csv: bits the values of 16-bit PNG/TIFF images use, e.g. 14 "
                        "(default: 16; DICOMs say it themselves)")
    p.add_argument("--mass-rois", type=name_list_arg, metavar="NAMES",
                   help="inbreast: the ROI Names read as masses, e.g. 'Mass,Spiculated Region' "
                        "(default: Mass)")


def dataset_spec(args: argparse.Namespace):
    """--dataset and the dataset options as a ``ftmtl.datasets.loader.DatasetSpec``."""
    from ftmtl.datasets.loader import DatasetSpec

    return DatasetSpec(root=args.dataset, format=args.dataset_format,
                       annotations=args.annotations, label_map=args.label_map,
                       columns=args.columns, bits_stored=args.bits_stored,
                       mass_names=args.mass_rois)


def add_reproducibility_option(p: argparse.ArgumentParser) -> None:
    """--nondeterministic: what train, crossval and demo give up for speed when asked."""
    p.add_argument("--nondeterministic", action="store_true",
                   help="seed (initial weights, data order, augmentation) but leave "
                        "TensorFlow's ops free to add up in any order: the same command twice "
                        "may then give slightly different weights and figures (by default it "
                        "gives identical ones on the same machine)")


def add_budget_options(p: argparse.ArgumentParser) -> None:
    """--epochs, --steps and --lr: the training budget, as train, crossval and the benchmarks
    take it."""
    p.add_argument("--epochs", type=positive_int, metavar="E",
                   help="from pretrained weights: epochs per stage of the paper's schedule "
                        "(rpn, heads, all; default 10, the paper's); from scratch (--weights "
                        "none): epochs of the one joint stage (default: the preset's "
                        "SCRATCH_EPOCHS)")
    p.add_argument("--steps", type=positive_int, metavar="N",
                   help="steps per epoch (default: the preset's STEPS_PER_EPOCH)")
    p.add_argument("--lr", type=positive_float, metavar="LR",
                   help="learning rate of every stage (default: the preset's LEARNING_RATE: "
                        "0.005 as in the paper, 0.001 (Adam) for the *_cpu presets)")


def _add_device_options(p: argparse.ArgumentParser) -> None:
    """--gpus of the commands that train (``mrcnn.devices``)."""
    p.add_argument("--gpus", type=non_negative_int, metavar="N",
                   help="train on 0 GPUs (the CPU only), 1 (the first GPU only) or N > 1 (the "
                        "first N with tf.distribute.MirroredStrategy, one replica each: "
                        "GPU_COUNT becomes N and the global batch IMAGES_PER_GPU x N) "
                        "(default: TensorFlow's own placement)")


def _add_training_options(p: argparse.ArgumentParser) -> None:
    """What train and crossval share: the budget, reproducibility, devices, augmentation,
    sampling."""
    add_budget_options(p)
    add_reproducibility_option(p)
    _add_device_options(p)
    p.add_argument("--no-augment", action="store_true",
                   help="train without the paper's online augmentation")
    p.add_argument("--no-balance", action="store_true",
                   help="draw training images uniformly instead of the class-balanced "
                        "sampling (MASS_FREE_SHARE of the draws for images without a mass, the "
                        "rest by SAMPLER_WEIGHTS: the paper's benign x150 / malignant x75, or "
                        "balanced)")


def _add_log_options(p: argparse.ArgumentParser, default: Any) -> None:
    """-v and -q; a subcommand takes them too (its default leaves the main parser's alone)."""
    p.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="log debugging detail and TensorFlow's own start-up lines")
    p.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="log warnings and errors only, no progress bars")


class _Commands:
    """The subcommand parsers, each with -v and -q, so that they work after the command too."""

    def __init__(self, subparsers) -> None:
        self.subparsers = subparsers

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        p = self.subparsers.add_parser(name, **kwargs)
        _add_log_options(p, default=argparse.SUPPRESS)
        return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inbreast",
        description="FT-MTL-Net (and its Mask R-CNN twin) on INbreast mammograms.",
        epilog="Start with 'inbreast demo'. 'inbreast COMMAND --help' lists a command's options.")
    _add_log_options(parser, default=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {project_version()}")
    commands = _Commands(parser.add_subparsers(dest="command", required=True,
                                               metavar="COMMAND"))

    p = commands.add_parser("synth", help="write a synthetic INbreast (CSV, DICOMs, XMLs)",
                            description="Write a synthetic INbreast with the real layout and "
                                        "quirks (INbreast itself needs a signed agreement).")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--patients", type=positive_int, default=8, metavar="N",
                   help="patients; each has CC and MLO views of both breasts "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: %(default)s)")
    p.add_argument("--size", type=image_shape_arg, default=(416, 320), metavar="HxW",
                   help="image rows x columns (default: 416x320; real INbreast: 3328x2560)")
    p.add_argument("--difficulty", type=probability, default=0.5, metavar="D",
                   help="0 (easy) .. 1 (hard): lower mass contrast, more benign/malignant "
                        "shape overlap (default: %(default)s)")
    p.add_argument("--normal-fraction", type=probability, default=0.25, metavar="F",
                   help="fraction of breasts without masses (default: %(default)s)")
    p.add_argument("--intensity-scale", type=positive_float, default=1.0, metavar="G",
                   help="multiply every stored value by G, as another detector gain would "
                        "(tissue about 1,000-2,500 at 1; at most 5) (default: %(default)s)")
    p.add_argument("--no-faults", action="store_true",
                   help="leave out the known faults of the real files")
    p.add_argument("--overwrite", action="store_true",
                   help="replace DICOMs and XMLs already in --out")
    p.set_defaults(handler=cmd_synth)

    p = commands.add_parser("train", help="train one model (a checkpoint an epoch)",
                            description="Train FT-MTL-Net or Mask R-CNN, a checkpoint each "
                                        "epoch (the newest KEEP_CHECKPOINTS kept, 5 by "
                                        "default): from pretrained weights the paper's stages "
                                        "rpn, heads, all (Table 1); from scratch (--weights "
                                        "none) one joint stage with warm-up and cosine decay.")
    p.add_argument("--dataset", required=True, metavar="DIR",
                   help="dataset folder: INbreast (INbreast.csv, AllDICOMs, AllXML), or see "
                        "--dataset-format")
    add_dataset_options(p)
    _add_model_options(p)
    p.add_argument("--weights", default=None, metavar="W",
                   help="starting weights: imagenet (ResNet backbone; Keras downloads it), "
                        "imagenet:PATH (a local copy of Keras' ResNet ImageNet .h5), coco "
                        "(Matterport's mask_rcnn_coco.h5 without the class-specific heads), "
                        "last (resume the last run of this config), a .h5 PATH, or none "
                        "(default: imagenet for ResNet presets, none for the *_cpu presets)")
    _add_training_options(p)
    _add_fold_options(p, "train on all folds but --fold (which gives the validation loss)")
    p.set_defaults(handler=cmd_train, loads_tensorflow=True)

    p = commands.add_parser("evaluate", help="AUC, FROC and Dice of a trained model",
                            description="Detect on the dataset (or a held-out fold) and "
                                        "compute the paper's metrics; writes metrics.json "
                                        "(with bootstrap intervals and the calibration), "
                                        "cases.csv and roc/froc/calibration.png.")
    p.add_argument("--dataset", required=True, metavar="DIR",
                   help="dataset folder (INbreast, or see --dataset-format)")
    add_dataset_options(p)
    _add_checkpoint_option(p)
    _add_model_options(p, from_checkpoint=True)
    _add_fold_options(p, "evaluate on fold --fold only")
    p.add_argument("--bootstrap", type=positive_int, default=1000, metavar="N",
                   help="bootstrap resamples of the images for the 95%% intervals, seeded "
                        "with --seed (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="DIR", help="where the files go")
    p.add_argument("--coco", action="store_true",
                   help="also write coco_gt.json and coco_results.json: the ground truth and "
                        "the detections in COCO's format, in the DICOMs' pixels, for "
                        "pycocotools (pastes every detection's mask back at full resolution, "
                        "which takes a while on full-size mammograms)")
    p.set_defaults(handler=cmd_evaluate, loads_tensorflow=True)

    p = commands.add_parser("detect", help="find and classify masses in DICOM files",
                            description="Per DICOM, write <stem>.png (the detections drawn on "
                                        "the mammogram) and <stem>.json (the source's UIDs "
                                        "and pixel spacing; boxes, RLE masks and areas in the "
                                        "DICOM's pixels, scores, case score); with --dicom-seg "
                                        "and --sr also <stem>_seg.dcm (a DICOM Segmentation, "
                                        "one segment a mass) and <stem>_sr.dcm (a DICOM SR "
                                        "measurement report, TID 1500) for PACS and viewers.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="DICOM files, or folders searched recursively for *.dcm")
    _add_checkpoint_option(p)
    _add_model_options(p, from_checkpoint=True)
    p.add_argument("--min-confidence", type=probability, metavar="P",
                   help="keep detections scoring at least P (default: the checkpoint's "
                        "DETECTION_MIN_CONFIDENCE; the presets' is 0.5)")
    p.add_argument("--dicom-seg", action="store_true",
                   help="also write <stem>_seg.dcm: a binary DICOM Segmentation of the source "
                        "image, one segment a detected mass (none when nothing is detected)")
    p.add_argument("--sr", action="store_true",
                   help="also write <stem>_sr.dcm: a DICOM Comprehensive 3D SR (TID 1500) with "
                        "each mass's class, score, area and segment (or box), and the case "
                        "malignancy score")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(handler=cmd_detect, loads_tensorflow=True)

    p = commands.add_parser("export", help="write a trained model as a TensorFlow SavedModel "
                                           "for serving",
                            description="Write DIR/saved_model, whose graph resizes, pads, "
                                        "detects and maps boxes and masks back to the input "
                                        "image itself (a server needs TensorFlow only; "
                                        "signatures serving_default: float32 prepared images "
                                        "in [0, 255], serving_uint16: 14-bit stored values), "
                                        "DIR/model.keras and DIR/config.json. README.md, "
                                        "'Serving'.")
    _add_checkpoint_option(p)
    _add_model_options(p, from_checkpoint=True)
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (must not hold a saved_model already)")
    p.set_defaults(handler=cmd_export, loads_tensorflow=True)

    p = commands.add_parser("crossval", help="k-fold cross-validation of FT-MTL vs Mask R-CNN",
                            description="Train and evaluate each model on each fold, then "
                                        "write the tables (mean +- std, paired t-test) and "
                                        "plots.")
    p.add_argument("--dataset", required=True, metavar="DIR",
                   help="dataset folder (INbreast, or see --dataset-format)")
    add_dataset_options(p)
    p.add_argument("--folds", type=positive_int, default=5, metavar="K",
                   help="folds (default: %(default)s)")
    p.add_argument("--only-folds", type=fold_list_arg, metavar="LIST",
                   help="comma-separated folds to run now, from 0 (default: all); the others "
                        "can run later, or elsewhere, into the same --out, and the tables "
                        "summarise the folds that have results")
    p.add_argument("--models", type=model_list_arg, default=MODEL_NAMES, metavar="LIST",
                   help="comma-separated models to compare (default: ftmtl,maskrcnn)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    _add_config_options(p)
    p.add_argument("--seed", type=int, default=0, help="fold and sampling seed "
                                                       "(default: %(default)s)")
    p.add_argument("--weights", metavar="W",
                   help="starting weights of every fold: imagenet, imagenet:PATH, coco, a .h5 "
                        "PATH or none (default: imagenet for ResNet presets, none for *_cpu); "
                        "an unfinished run resumes from its last checkpoint")
    _add_training_options(p)
    p.set_defaults(handler=cmd_crossval, loads_tensorflow=True)

    p = commands.add_parser("demo", help="synthetic data + a small FT-MTL vs Mask R-CNN "
                                         "comparison on the CPU",
                            description="Generate a synthetic INbreast of 24 patients into "
                                        "OUT/data, train and test both models at CPU size on "
                                        "the first fold of a 2-fold cross-validation (about "
                                        "15 minutes on two cores) and write OUT/results.md "
                                        "with plots.")
    p.add_argument("--out", default="demo", metavar="DIR",
                   help="output folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny budget (a minute or two): checks that everything runs, "
                        "learns nothing")
    p.add_argument("--all-folds", action="store_true",
                   help="train and test both folds, not only the first (twice the time; a "
                        "rerun into the same --out adds the second fold)")
    p.add_argument("--seed", type=int, default=0, help="data and fold seed "
                                                       "(default: %(default)s)")
    add_reproducibility_option(p)
    _add_device_options(p)
    p.set_defaults(handler=cmd_demo, loads_tensorflow=True)
    return parser


# ------------------------------------------------------------------------------ commands
def cmd_synth(args: argparse.Namespace) -> int:
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    manifest = generate_synthetic_inbreast(
        args.out, n_patients=args.patients, seed=args.seed, image_shape=args.size,
        difficulty=args.difficulty, normal_fraction=args.normal_fraction,
        faults=not args.no_faults, overwrite=args.overwrite, progress=not args.quiet,
        intensity_scale=args.intensity_scale)
    print(f"synthetic INbreast written to {args.out}")
    for name, count in manifest.counts().items():
        print(f"  {name:18} {count}")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from ftmtl.inbreast.folds import balanced_sampler
    from ftmtl.presets import build_model
    from ftmtl.schedule import recipe_epochs, run_schedule, schedule_for
    from mrcnn.augmentation import default_augmentation
    from mrcnn.model import enable_determinism

    _check_folds(args)
    check_weights(args.weights)
    strategy, gpu_count = training_devices(args)
    config = make_run_config(args, "training", steps=args.steps, **gpu_count)
    train_set, val_set = training_datasets(dataset_spec(args), config, args.folds, args.fold,
                                           args.seed, progress=not args.quiet)
    enable_determinism(args.seed, ops=not args.nondeterministic)
    model = build_model("training", config, model_dir(args), strategy=strategy)
    weights = resolve_weights(args.weights, config)
    load_starting_weights(model, weights)
    pretrained = uses_pretrained_recipe(weights, config)
    stages = schedule_for(config, pretrained=pretrained,
                          epochs=args.epochs or recipe_epochs(config, pretrained),
                          learning_rate=args.lr)
    run_schedule(model, train_set, val_set, stages,
                 augmentation=None if args.no_augment else default_augmentation(),
                 sampler=None if args.no_balance else balanced_sampler(
                     train_set, args.seed, config.MASS_FREE_SHARE, config.SAMPLER_WEIGHTS),
                 verbose=keras_verbosity(args), seed=args.seed)
    print(f"trained to epoch {model.epoch}; checkpoints in {model.log_dir}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ftmtl.evaluation import evaluate_predictions, predict_dataset
    from ftmtl.evaluation_report import write_evaluation_report

    _check_folds(args)
    check_weights(args.weights, words=(LAST,))
    config = make_run_config(args, "inference")
    dataset = load_dataset(dataset_spec(args), config, progress=not args.quiet)
    image_ids = evaluation_ids(dataset, args.folds, args.fold, args.seed)
    model, _ = inference_model(args, config)
    predictions = predict_dataset(model, dataset, image_ids, progress=not args.quiet)
    report = write_evaluation_report(
        predictions, evaluate_predictions(predictions), args.out, resamples=args.bootstrap,
        seed=args.seed, model="ftmtl" if config.TRANSFER_BRANCH else "maskrcnn")
    print(format_metrics_table(report.metrics, EVALUATE_TABLE))
    print("\n".join(report.summary_lines()))
    print(f"metrics of {len(image_ids)} images written to {report.files['metrics']}")
    if args.coco:
        from ftmtl.coco import write_coco

        gt_path, results_path = write_coco(predictions, args.out)
        print(f"COCO ground truth and detections written to {gt_path} and {results_path}")
    return EXIT_OK


def cmd_detect(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from ftmtl import detect_io
    from ftmtl.inbreast.records import InbreastFormatError
    from ftmtl.model import intensity_window, prepared_image_size

    check_weights(args.weights, words=(LAST,))
    paths, failed = collect_dicoms(args.inputs)
    total = len(paths) + failed
    if not paths:
        logger.error("no DICOM files found in %s", " ".join(args.inputs))
        return EXIT_ERROR
    extra = {} if args.min_confidence is None else {
        "DETECTION_MIN_CONFIDENCE": args.min_confidence}
    config = make_run_config(args, "inference", **extra)
    model, weights = inference_model(args, config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stems: set[str] = set()
    for path in paths:
        try:
            image, transform, dicom = detect_io.prepare_dicom(
                path, prepared_image_size(config), intensity_window(config))
        except (InbreastFormatError, OSError) as err:
            logger.error("%s: not a readable DICOM, skipped (%s)", path, err)
            failed += 1
            continue
        result = detect_io.detections_to_original(model.detect([image])[0], transform)
        stem = unique_stem(path, stems)
        detect_io.write_detection_json(
            out / f"{stem}.json", path, dicom.shape, result,
            extra={"model": config.NAME, "weights": str(weights),
                   "model_input_size": prepared_image_size(config)}, dicom=dicom)
        detect_io.write_overlay_png(out / f"{stem}.png", dicom.pixels, result,
                                    title=Path(path).name)
        written = [f"{out / stem}.json/.png"]
        if args.dicom_seg or args.sr:
            try:
                written += write_dicom_results(args, out / stem, dicom, result, config, weights)
            except ValueError as err:
                logger.error("%s: no DICOM SEG/SR written (%s)", path, err)
                failed += 1
        print(f"{path}: {len(result['class_ids'])} detection(s), case malignancy score "
              f"{result.get('case_score', float('nan')):.3f} -> {', '.join(written)}")
    if failed:
        logger.error("%d of %d input(s) failed", failed, total)
        return EXIT_PARTIAL
    return EXIT_OK


def write_dicom_results(args: argparse.Namespace, stem: Path, dicom, result, config,
                        weights) -> list[str]:
    """detect --dicom-seg/--sr: the SEG and SR of one image (ftmtl.dicom_results); the file
    names written."""
    from ftmtl import detect_io, dicom_results
    from ftmtl.model import ftmtl_setting

    if not args.verbose:  # highdicom logs each module it copies at INFO
        logging.getLogger("highdicom").setLevel(logging.WARNING)
    name = "FT-MTL-Net" if ftmtl_setting(config, "TRANSFER_BRANCH") else "Mask R-CNN"
    algorithm = dicom_results.Algorithm(
        name, project_version(), {"config": config.NAME, "weights": Path(weights).name})
    paths = dicom_results.write_dicom_results(
        stem, dicom.header, result, algorithm, detect_io.CLASS_NAMES,
        segmentation=args.dicom_seg, report=args.sr,
        pixel_spacing=detect_io.known_pixel_spacing(dicom))
    return [str(p) for p in paths]


def cmd_export(args: argparse.Namespace) -> int:
    from ftmtl.export import FLOAT_SIGNATURE, UINT16_SIGNATURE, export_model
    from ftmtl.model import prepared_image_size

    check_weights(args.weights, words=(LAST,))
    config = make_run_config(args, "inference")
    model, weights = inference_model(args, config)
    exported = export_model(model, args.out)
    print(f"{weights} exported to {exported.saved_model} (signatures {FLOAT_SIGNATURE}, "
          f"{UINT16_SIGNATURE}; input: prepared images, long side "
          f"{prepared_image_size(config)} px) and {exported.keras_file}")
    return EXIT_OK


def cmd_crossval(args: argparse.Namespace) -> int:
    from ftmtl.crossval import run_crossval
    from ftmtl.presets import sized_config
    from ftmtl.schedule import recipe_epochs

    check_weights(args.weights, words=(NONE, IMAGENET, COCO))
    strategy, gpu_count = training_devices(args)
    overrides = {**dict(args.overrides), **gpu_count}
    config, overrides = sized_config(args.preset, args.models[0], args.image_size, overrides)
    weights = resolve_weights(args.weights, config)
    result = run_crossval(
        dataset_spec(args), args.out, folds=args.folds, models=args.models, preset=args.preset,
        seed=args.seed,
        schedule_epochs=args.epochs or recipe_epochs(config,
                                                     uses_pretrained_recipe(weights, config)),
        learning_rate=args.lr,
        steps_per_epoch=args.steps, image_size=args.image_size, weights=weights,
        augmentation=not args.no_augment,
        balanced_sampling=not args.no_balance, config_overrides=overrides or None,
        progress=not args.quiet, only_folds=args.only_folds,
        deterministic=not args.nondeterministic, strategy=strategy)
    report_results(result.out_dir)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from ftmtl.crossval import run_crossval
    from ftmtl.inbreast.synthetic import MANIFEST_NAME, generate_synthetic_inbreast
    from ftmtl.presets import sized_config

    strategy, gpu_count = training_devices(args)
    out = Path(args.out)
    data = out / "data"
    data_settings = DEMO_QUICK_DATA if args.quick else DEMO_DATA
    if (data / MANIFEST_NAME).is_file():
        logger.info("reusing the synthetic INbreast in %s", data)
    else:
        manifest = generate_synthetic_inbreast(data, seed=args.seed, progress=not args.quiet,
                                               **data_settings)
        logger.info("synthetic INbreast in %s: %s", data, manifest.counts())
    run = dict(DEMO_QUICK_RUN if args.quick else DEMO_RUN)
    if args.all_folds:
        run.pop("only_folds", None)
    size = run.pop("image_size")
    _, overrides = sized_config(run["preset"], MODEL_NAMES[0], size,
                                {**run.pop("config_overrides"), **gpu_count})
    logger.info("cross-validating %s: %s, %s", " and ".join(MODEL_NAMES), run, overrides)
    result = run_crossval(data, out, models=MODEL_NAMES, seed=args.seed, weights=None,
                          image_size=size, config_overrides=overrides,
                          progress=not args.quiet, deterministic=not args.nondeterministic,
                          strategy=strategy, **run)
    report_results(result.out_dir)
    return EXIT_OK


# ------------------------------------------------------------------------------- helpers
def _check_folds(args: argparse.Namespace) -> None:
    if (args.folds is None) != (args.fold is None):
        raise ValueError("--folds and --fold go together")
    if args.folds is not None and not 0 <= args.fold < args.folds:
        raise ValueError(f"--fold must be in 0..{args.folds - 1}, got {args.fold}")
    if args.folds == 1:
        raise ValueError("--folds must be at least 2")


def training_devices(args: argparse.Namespace) -> tuple[Any, dict[str, int]]:
    """--gpus: (the tf.distribute strategy the models train under, or None for TensorFlow's
    default; the GPU_COUNT override it implies, checked against --set). Runs before anything
    else of TensorFlow, which fixes its visible devices at its first op."""
    from mrcnn.devices import gpu_count_overrides, strategy_for_gpus

    gpu_count = gpu_count_overrides(args.gpus, dict(getattr(args, "overrides", ())))
    return strategy_for_gpus(args.gpus), gpu_count


def make_run_config(args: argparse.Namespace, mode: str, steps: int | None = None,
                    **extra: Any):
    """The preset's config with --image-size, --steps and --set applied. Inference (evaluate,
    detect): the config stored in the --weights checkpoint, one image at a time, the options
    checked against it (``ftmtl.from_checkpoint``)."""
    from ftmtl.presets import sized_config

    overrides: dict[str, Any] = {}
    if steps is not None:
        overrides["STEPS_PER_EPOCH"] = steps
    overrides.update(dict(args.overrides))
    overrides.update(extra)
    if mode == "inference":
        from ftmtl.from_checkpoint import config_from_checkpoint

        return config_from_checkpoint(checkpoint_path(args), mode, preset=args.preset,
                                      model=args.model, image_size=args.image_size, **overrides)
    return sized_config(args.preset, args.model, args.image_size, overrides)[0]


def checkpoint_path(args: argparse.Namespace) -> Path:
    """The file --weights names: a path, or last (the newest checkpoint of --model, and of
    --preset or any preset, in --logs or its fold's folder)."""
    from ftmtl.from_checkpoint import resolve_checkpoint

    return resolve_checkpoint(args.weights, model_dir(args), model=args.model,
                              preset=args.preset, name=dict(args.overrides).get("NAME"))


def model_dir(args: argparse.Namespace) -> Path:
    """--logs, or its per-fold sub-folder, so that 'last' never picks another fold's run."""
    logs = Path(args.logs)
    if getattr(args, "folds", None) is not None:
        return logs / f"fold{args.fold}of{args.folds}"
    return logs


def load_dataset(dataset, config, subset: Sequence[str] | None = None,
                 progress: bool = False):
    """The dataset of a DatasetSpec (``dataset_spec``) or an INbreast folder, its images
    prepared as ``config`` reads them (size and intensity window); ``progress`` shows the
    reading on stderr."""
    from ftmtl.datasets.loader import load_dataset as load
    from ftmtl.model import intensity_window, prepared_image_size

    return load(dataset, prepared_image_size(config), subset, progress=progress,
                window=intensity_window(config))


def fold_split(dataset, folds: int, fold: int, seed: int):
    """(train ids, held-out ids) of fold ``fold`` of ``folds`` (grouped by patient)."""
    from ftmtl.inbreast.folds import patient_folds

    return patient_folds(dataset, folds, seed)[fold]


def training_datasets(root, config, folds: int | None, fold: int | None, seed: int,
                      progress: bool = False):
    """(train, validation or None) of a DatasetSpec or an INbreast folder: all images, or all
    but the held-out fold (which then gives the validation loss; nothing is selected on it);
    ``progress`` shows each reading on stderr."""
    from ftmtl.datasets.reporting import summary_line

    full = load_dataset(root, config, progress=progress)
    if folds is None:
        logger.info("training on %s", summary_line(full.summary()))
        return full, None
    train_ids, held_out = fold_split(full, folds, fold, seed)
    names = [full.image_info[i]["file_name"] for i in train_ids]
    held_names = [full.image_info[i]["file_name"] for i in held_out]
    train = load_dataset(root, config, names, progress=progress)
    val = load_dataset(root, config, held_names, progress=progress)
    logger.info("fold %d of %d: training on %s; validating on %s", fold, folds,
                summary_line(train.summary()), summary_line(val.summary()))
    return train, val


def evaluation_ids(dataset, folds: int | None, fold: int | None, seed: int):
    import numpy as np

    if folds is None:
        return np.asarray(dataset.image_ids)
    return np.asarray(fold_split(dataset, folds, fold, seed)[1])


def resolve_weights(weights: str | None, config) -> str:
    """--weights, or its default: imagenet for ResNet backbones, none for the tiny one."""
    from ftmtl.starting_weights import default_weights

    if weights is not None:
        return weights
    default = default_weights(config)
    logger.info("--weights not given: starting from %s", default)
    return default


def inference_model(args: argparse.Namespace, config):
    """(an inference model with --weights loaded, the weight file's path); --weights is a
    path or last."""
    from ftmtl.presets import build_model

    model = build_model("inference", config, model_dir(args))
    path = checkpoint_path(args)
    logger.info("weights from %s", path)
    model.load_weights(path)
    return model, path


def collect_dicoms(inputs: Sequence[str]) -> tuple[list[Path], int]:
    """The DICOM files named or found (recursively, *.dcm) in the inputs, and how many inputs
    do not exist (each logged as an error)."""
    paths: list[Path] = []
    missing = 0
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file()
                           and p.suffix.lower() == ".dcm")
            if not found:
                logger.warning("%s: no *.dcm files in this folder", path)
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            logger.error("%s: no such file or folder", path)
            missing += 1
    return paths, missing


def unique_stem(path: Path, taken: set[str]) -> str:
    """The file's stem, with _2, _3... when another input already used it."""
    stem, n = Path(path).stem, 1
    candidate = stem
    while candidate in taken:
        n += 1
        candidate = f"{stem}_{n}"
    if candidate != stem:
        logger.warning("%s: another input is also named %s; writing %s.*", path, stem,
                       candidate)
    taken.add(candidate)
    return candidate


def flatten_numbers(data: Any, prefix: str = "") -> list[tuple[str, float | None]]:
    """(dotted name, value) of every number (or None: undefined) in nested dicts; lists
    (curves) and strings are left out."""
    rows: list[tuple[str, float | None]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            rows += flatten_numbers(value, f"{prefix}.{key}" if prefix else str(key))
    elif data is None:
        rows.append((prefix, None))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        rows.append((prefix, float(data)))
    elif hasattr(data, "item") and getattr(data, "ndim", 1) == 0:
        rows.append((prefix, float(data.item())))
    return rows


def format_metrics_table(metrics: dict[str, Any], keys: Sequence[str] | None = None) -> str:
    """The numbers of ``metrics`` (only the top-level ``keys``, in that order, if given) as an
    aligned two-column table; undefined values read n/a."""
    chosen = metrics if keys is None else {k: metrics[k] for k in keys if k in metrics}
    rows = flatten_numbers(chosen)
    if not rows:
        return "(no scalar metrics)"
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {'n/a' if value is None else format(value, '.4g')}"
                     for name, value in rows)


def report_results(out: str | os.PathLike) -> None:
    """Print results.md (the tables) and where the files are."""
    from ftmtl.crossval import PLOTS_DIR, RESULTS_MD

    out = Path(out)
    results = out / RESULTS_MD
    print(results.read_text(encoding="utf-8"))
    print(f"results: {results}")
    plots = sorted((out / PLOTS_DIR).glob("*.png"))
    if plots:
        print(f"plots: {', '.join(str(p) for p in plots)}")


# ---------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, configure logging once, run the command; returns the exit code."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    if getattr(args, "loads_tensorflow", False):  # its start-up notices dropped unless -v
        from mrcnn.quiet_start import import_tensorflow

        import_tensorflow(show_startup_lines=args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as err:
        logger.debug("details", exc_info=True)
        logger.error("%s", err)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
