"""Input-pipeline benchmark: training batches per second from synthetic INbreast DICOMs.

A batch is what ``MaskRCNN.train`` feeds the model: ``mrcnn.data.DataGenerator`` reads each
DICOM, crops the breast, rasterises the masses, resizes to ``--size`` px, applies
``mrcnn.augmentation.default_augmentation`` (2 to 5 of rotate, flip, zoom, crop, contrast,
blur), builds mini masks and RPN targets. The batches are drawn the way ``fit`` draws them, in
order, with 1, 2 and 4 workers: one worker builds them in the calling thread, more share a
thread pool that keeps up to ``max_queue_size`` batches ahead (``--processes`` adds the
process-pool variant, ``use_multiprocessing=True``). Keras' own enqueuer is not public API, so
``ordered_batches`` is a small pool of our own (``concurrent.futures``) driven only by the
generator's public ``keras.utils.PyDataset`` interface (``__len__``, ``__getitem__``,
``workers``, ``use_multiprocessing``, ``max_queue_size``).

Beside the throughput it prints where one image's time goes (cProfile of single-threaded
batches), and compares the pipeline's images/s with the images/s one training step consumes
(the step time from ``--model-json`` written by bench_model.py, or measured here). Optionally
(``--fit-steps``) it runs ``fit`` on the pipeline, so that pipeline and training share the
cores, and compares its step time with ``train_on_batch`` on a ready batch.

    .venv/bin/python benchmarks/bench_pipeline.py --model-json /tmp/bench_model.json
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import common

if TYPE_CHECKING:
    import keras

SEED = 0
# Stages of one training image, by function name (cumulative time per image in the profile).
STAGES = ("build_batch", "load_image_gt", "read_dicom", "_rasterise", "prepare_image",
          "resize_image", "resize_mask", "apply_augmentation", "minimize_mask",
          "extract_bboxes", "build_rpn_targets", "mold_image")


def prepare_data(args: argparse.Namespace) -> Path:
    """The synthetic INbreast folder: ``--data-dir`` when it holds one, else generated."""
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    root = Path(args.data_dir)
    if (root / "INbreast.csv").is_file():
        common.log(f"reusing synthetic INbreast in {root}")
        return root
    common.log(f"writing synthetic INbreast ({args.patients} patients, DICOMs "
               f"{args.dicom_shape[0]}x{args.dicom_shape[1]}) to {root}")
    start = time.perf_counter()
    generate_synthetic_inbreast(root, n_patients=args.patients, seed=SEED,
                                image_shape=tuple(args.dicom_shape), overwrite=True)
    common.log(f"generated in {time.perf_counter() - start:.1f} s")
    return root


def make_dataset(root: Path, size: int):
    from ftmtl.inbreast.dataset import INbreastDataset

    dataset = INbreastDataset()
    dataset.load_inbreast(root, image_size=size)
    dataset.prepare()
    return dataset


def pipeline_config(preset: str, size: int, batch: int):
    from ftmtl.presets import make_config

    return make_config(preset, "ftmtl", IMAGES_PER_GPU=batch, IMAGE_MIN_DIM=size,
                       IMAGE_MAX_DIM=size)


def generator(dataset, config, steps: int, workers: int, processes: bool, seed: int,
              augment: bool = True):
    from mrcnn.augmentation import default_augmentation
    from mrcnn.data import DataGenerator

    return DataGenerator(dataset, config, shuffle=True,
                         augmentation=default_augmentation() if augment else None,
                         steps=steps, seed=seed, workers=workers,
                         use_multiprocessing=processes)


# The generator a process worker builds batches from (set once by its pool's initializer).
_worker_generator: Any = None


def _keep_generator(gen: keras.utils.PyDataset) -> None:
    """Process-pool initializer: the worker keeps its copy of the generator."""
    global _worker_generator
    _worker_generator = gen


def _worker_batch(index: int) -> Any:
    return _worker_generator[index]


def ordered_batches(gen: keras.utils.PyDataset) -> Iterator[Any]:
    """Every batch of the ``keras.utils.PyDataset`` ``gen``, in order, built as fit builds
    them: in this thread with one thread worker, else by ``gen.workers`` threads (processes
    with ``gen.use_multiprocessing``) kept up to ``gen.max_queue_size`` batches ahead. The pool
    starts at the first batch, so its start-up counts, as it does in fit."""
    if gen.workers <= 1 and not gen.use_multiprocessing:
        for index in range(len(gen)):
            yield gen[index]
        return
    if gen.use_multiprocessing:
        pool = ProcessPoolExecutor(gen.workers, initializer=_keep_generator, initargs=(gen,))
        build = _worker_batch
    else:
        pool = ThreadPoolExecutor(gen.workers)
        build = gen.__getitem__
    with pool:
        ahead: deque[Future] = deque()
        for index in range(len(gen)):
            ahead.append(pool.submit(build, index))
            if len(ahead) > gen.max_queue_size:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def throughput(dataset, config, steps: int, workers: int, processes: bool) -> dict[str, Any]:
    """Images/s of the generator's batches as fit draws them (``ordered_batches``), from the
    iteration's start to its last batch (the workers fill a queue ahead, so gaps between
    batches alone would overstate a pool that prefetched most of a short run)."""
    gen = generator(dataset, config, steps, workers, processes, seed=SEED + workers)
    stamps = []
    start = time.perf_counter()
    for _ in ordered_batches(gen):
        stamps.append(time.perf_counter())
    per_batch = (stamps[-1] - start) / len(stamps)
    return {"workers": workers, "processes": processes, "batches": len(stamps),
            "first_batch_s": stamps[0] - start, "s_per_batch": per_batch,
            "images_per_s": config.BATCH_SIZE / per_batch,
            "median_gap_s": statistics.median(b - a for a, b in zip(stamps, stamps[1:],
                                                                     strict=False))}


def stage_profile(dataset, config, batches: int) -> dict[str, Any]:
    """Seconds per image spent in each stage, single-threaded (cProfile, cumulative)."""
    gen = generator(dataset, config, batches, 1, False, seed=SEED + 100)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for i in range(batches):
        gen[i]
    profiler.disable()
    wall = time.perf_counter() - start
    images = batches * config.BATCH_SIZE
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    per_stage: dict[str, float] = {}
    for (_, _, name), (_, _, _, cumulative, _) in stats.items():
        if name in STAGES:
            per_stage[name] = per_stage.get(name, 0.0) + cumulative / images
    top = sorted(((cum / images, f"{Path(file).name}:{line}({name})")
                  for (file, line, name), (_, _, tt, cum, _) in stats.items()),
                 reverse=True)
    own = sorted(((tt / images, f"{Path(file).name}:{line}({name})")
                  for (file, line, name), (_, _, tt, cum, _) in stats.items()),
                 reverse=True)
    return {"images": images, "wall_s_per_image": wall / images,
            "stages_s_per_image": {k: per_stage.get(k) for k in STAGES},
            "top_cumulative": [(round(t, 4), n) for t, n in top[:25]],
            "top_self": [(round(t, 4), n) for t, n in own[:15]]}


def step_time_from_json(path: str, preset: str, batch: int) -> float | None:
    """bench_model.py's median training step of FT-MTL-Net for the preset and batch."""
    results = json.loads(Path(path).read_text())["results"]
    for r in results:
        if (r.get("framework") == "ours" and r.get("preset") == preset
                and r.get("model") == "ftmtl" and r.get("phase") == "training"
                and r.get("batch") == batch and "step" in r):
            return float(r["step"]["median_s"])
    return None


def training_steps(dataset, config, runs: int, fit_steps: int, workers: int
                   ) -> dict[str, Any]:
    """train_on_batch on a ready batch; optionally fit() on the augmenting pipeline."""
    import keras
    import numpy as np

    from ftmtl.presets import build_model

    batch = generator(dataset, config, 1, 1, False, seed=SEED, augment=False)[0]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as model_dir:
        net = build_model("training", config, model_dir)
        net.set_trainable(".*")
        net.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
        net.keras_model.train_on_batch(batch)  # trace
        times = common.time_calls(lambda: net.keras_model.train_on_batch(batch), runs, 1)
        out["train_on_batch"] = common.summary(times)
        if fit_steps:
            stamps: list[float] = []

            class Timer(keras.callbacks.Callback):
                def on_train_batch_end(self, batch_index, logs=None):
                    stamps.append(time.perf_counter())

            gen = generator(dataset, config, fit_steps, workers, False, seed=SEED + 7)
            start = time.perf_counter()
            net.keras_model.fit(gen, epochs=1, verbose=0, callbacks=[Timer()])
            steps = np.diff(np.asarray(stamps))[1:]  # drop the first (tf.data start-up)
            out["fit"] = {**common.summary(list(steps)), "workers": workers,
                          "total_s": time.perf_counter() - start}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    common.configure_tensorflow(args.threads)
    root = prepare_data(args)
    dataset = make_dataset(root, args.size)
    results: dict[str, Any] = {"machine": common.machine_info(), "args": vars(args),
                               "dataset_images": len(dataset.image_ids), "presets": {}}
    for preset in args.presets:
        config = pipeline_config(preset, args.size, args.batch)
        entry: dict[str, Any] = {}
        common.log(f"{preset}: stage profile ({args.profile_batches} batches)")
        meter = common.OthersMeter().start()
        entry["profile"] = stage_profile(dataset, config, args.profile_batches)
        entry["profile"]["others_busy_cores"] = meter.stop()
        entry["throughput"] = []
        for processes in ([False, True] if args.processes else [False]):
            for workers in args.workers:
                busy = common.wait_for_quiet(args.max_busy, args.wait_quiet_s) \
                    if args.max_busy is not None else common.busy_cores()
                common.log(f"{preset}: {workers} {'process' if processes else 'thread'} "
                           f"worker(s), {busy} cores busy before")
                meter = common.OthersMeter().start()
                point = throughput(dataset, config, args.steps, workers, processes)
                point["others_busy_cores"] = meter.stop()
                point["busy_before"] = busy
                point["load"] = common.load_average()[0]
                entry["throughput"].append(point)
        step_s = step_time_from_json(args.model_json, preset, args.batch) \
            if args.model_json else None
        if step_s is not None:
            entry["step_s"] = step_s
            entry["step_source"] = args.model_json
        elif args.step_runs or args.fit_steps:
            common.log(f"{preset}: training step (build, trace, {args.step_runs} runs)")
            entry["training"] = training_steps(dataset, config, max(1, args.step_runs),
                                               args.fit_steps, args.fit_workers)
            entry["step_s"] = entry["training"]["train_on_batch"]["median_s"]
            entry["step_source"] = "measured here (train_on_batch)"
        results["presets"][preset] = entry
    return results


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = []
    for preset, entry in results["presets"].items():
        profile = entry["profile"]
        lines += [f"## {preset}: where one image's time goes (1 thread, {profile['images']} "
                  f"images, s/image)",
                  common.table(["stage", "s per image"],
                               [[k, v] for k, v in profile["stages_s_per_image"].items()
                                if v is not None])]
        step_s = entry.get("step_s")
        consumed = args.batch / step_s if step_s else None
        rows = []
        for p in entry["throughput"]:
            ratio = p["images_per_s"] / consumed if consumed else None
            rows.append([p["workers"], "processes" if p["processes"] else "threads",
                         p["images_per_s"], p["s_per_batch"], p["first_batch_s"],
                         f"{ratio:.2f}x" if ratio else "-", p["busy_before"],
                         p["others_busy_cores"], round(p["load"], 2)])
        lines += ["", f"## {preset}: pipeline throughput (batch {args.batch}, {args.size} px, "
                  f"{args.steps} batches, with augmentation)",
                  common.table(["workers", "kind", "images/s", "s/batch", "first batch s",
                                "vs training", "busy before", "others during", "load"],
                               rows)]
        if step_s:
            lines.append(f"\nTraining step (FT-MTL {preset}, batch {args.batch}): "
                         f"{step_s:.3f} s = {consumed:.3f} images/s "
                         f"({entry['step_source']}).")
        fit = entry.get("training", {}).get("fit")
        if fit:
            lines.append(f"fit() on the pipeline ({fit['workers']} workers): median step "
                         f"{fit['median_s']:.3f} s vs train_on_batch "
                         f"{entry['training']['train_on_batch']['median_s']:.3f} s.")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", type=common.name_list,
                        default=["paper", "fpn"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--workers", type=common.int_list, default=[1, 2, 4])
    parser.add_argument("--processes", action="store_true",
                        help="also measure use_multiprocessing=True")
    parser.add_argument("--steps", type=int, default=12, help="batches per throughput point")
    parser.add_argument("--profile-batches", type=int, default=4)
    parser.add_argument("--patients", type=int, default=4,
                        help="synthetic patients (4 images each)")
    parser.add_argument("--dicom-shape", type=common.int_list, default=[3328, 2560],
                        help="rows,cols of the synthetic DICOMs (INbreast: 3328x2560)")
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(),
                                                           "ftmtl_bench_inbreast"))
    parser.add_argument("--model-json", help="bench_model.py --json output (step times)")
    parser.add_argument("--step-runs", type=int, default=3,
                        help="measure the training step here when no --model-json (0: skip)")
    parser.add_argument("--fit-steps", type=int, default=0,
                        help="also time fit() on the pipeline for this many steps")
    parser.add_argument("--fit-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="TF threads of the training step")
    parser.add_argument("--max-busy", type=float, default=None,
                        help="wait before each point until at most this many cores are busy")
    parser.add_argument("--wait-quiet-s", type=float, default=300.0)
    parser.add_argument("--json", help="write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    text = report(results, args)
    print(text)
    results["report"] = text
    common.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
