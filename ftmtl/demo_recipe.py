"""The recipe of ``inbreast demo``: its synthetic data and its cross-validation run, and those of
``demo --quick``. Kept apart from the CLI so that the benchmarks that copy the demo's sizes
(benchmarks/bench_accuracy.py) read the same numbers without the command line.

Why these numbers: the demo is a CPU-sized synthetic INbreast and the first fold of a 2-fold
cross-validation (both models trained on 12 patients and tested on 12 others) in about 15
minutes on two cores. One fold with a long schedule instead of every fold with a short one:
the recipe needs 1,200-2,400 steps before the masses show (600 steps found a third of them),
and 2 models x 2 folds of that do not fit in 15 minutes; ``demo --all-folds`` trains the other
fold too (a rerun into the same ``--out`` adds it). It trains with fpn_cpu's own recipe
(GroupNorm, Adam, one joint stage with warm-up and cosine decay, 128-px crops of images
prepared at 384 px, augmentation, class-balanced sampling; docs/training.md) for
``DEMO_EPOCHS`` of its 50 steps. Detections are kept from confidence 0.05, so the FROC has a
curve to read.

``--quick`` is a smoke test of a minute or two: every step (synthetic data, both models, two
folds, training, evaluation, tables and plots) with one or two steps an epoch, on the C4 layout
(paper_cpu), whose graphs build in about half the time of the pyramid's: building them is most
of a tiny run.

The data settings are keyword arguments of ``ftmtl.inbreast.synthetic.generate_synthetic_inbreast``;
the run settings, of ``ftmtl.crossval.run_crossval`` (``image_size`` and ``config_overrides``
go through ``ftmtl.presets.sized_config`` first).
"""

from __future__ import annotations

from typing import Any

DEMO_DATA: dict[str, Any] = {"n_patients": 24, "image_shape": (416, 320), "difficulty": 0.5}
DEMO_QUICK_DATA: dict[str, Any] = {"n_patients": 4, "image_shape": (256, 192),
                                   "difficulty": 0.5}

_COMMON: dict[str, Any] = {"preset": "fpn_cpu", "augmentation": True,
                           "config_overrides": {"DETECTION_MIN_CONFIDENCE": 0.05}}
DEMO_EPOCHS = 25
DEMO_RUN: dict[str, Any] = {**_COMMON, "folds": 2, "only_folds": (0,),
                            "schedule_epochs": DEMO_EPOCHS, "steps_per_epoch": None,
                            "image_size": None}
DEMO_QUICK_RUN: dict[str, Any] = {**_COMMON, "preset": "paper_cpu", "folds": 2,
                                  "schedule_epochs": 1, "steps_per_epoch": 2, "image_size": 64,
                                  "config_overrides": {"DETECTION_MIN_CONFIDENCE": 0.05,
                                                       "IMAGE_MIN_DIM": 64}}
