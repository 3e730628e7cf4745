"""Batch scaling: images/s of inference (``detect``) and of a training step at batch 1, 2 and 4.

Each (preset, phase, batch) is measured in its own worker process (its threads set before
TensorFlow starts, its own peak RSS): FT-MTL-Net at ``--size`` px (square), synthetic INbreast
images, at most 100 detections with the confidence filter off (every call pastes the same
number of masks), training at learning rate 0 (every step does the same work). A batch that
is not faster per image than batch 1 on a CPU is a sign that the cores were already busy.

    .venv/bin/python benchmarks/bench_batch.py --presets fpn,paper --batches 1,2,4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import common

PHASES = ("inference", "training")
SEED = 0
DETECTIONS = 100


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``args.runs`` calls of one phase at one batch size."""
    common.configure_tensorflow(args.threads)
    from ftmtl.inbreast.dataset import INbreastDataset
    from ftmtl.presets import build_model
    from mrcnn.data import DataGenerator
    from mrcnn.model import enable_determinism

    enable_determinism(SEED, ops=False)
    config = common.our_config(args.preset, "ftmtl", args.size, args.batch, DETECTIONS,
                               common.parse_overrides(args.set))
    dataset = INbreastDataset()
    dataset.load_inbreast(args.data, image_size=args.size)
    dataset.prepare()
    with tempfile.TemporaryDirectory() as model_dir:
        if args.phase == "inference":
            net = build_model("inference", config, model_dir)
            images = [dataset.load_image(i % dataset.num_images) for i in range(args.batch)]
            call = lambda: net.detect(images)  # noqa: E731
        else:
            batch = DataGenerator(dataset, config, shuffle=True, steps=1, workers=1,
                                  seed=SEED)[0]
            net = build_model("training", config, model_dir)
            net.set_trainable(".*")
            net.compile(0.0, config.LEARNING_MOMENTUM)
            call = lambda: net.keras_model.train_on_batch(batch)  # noqa: E731
        times = common.time_calls(call, args.runs, args.warmup)
    return {"preset": args.preset + "".join(f" {item}" for item in args.set),
            "phase": args.phase, "batch": args.batch, "size": args.size,
            "step": common.summary(times), "peak_rss_mb": round(common.peak_rss_mb(), 1)}


def report(results: list[dict[str, Any]]) -> str:
    rows = []
    single: dict[tuple[str, str], float] = {}
    for r in results:
        if "error" in r:
            rows.append(["-", "-", "-", "-", "-", "-", "-", r["error"]])
            continue
        median = r["step"]["median_s"]
        rate = r["batch"] / median
        key = (r["preset"], r["phase"])
        if r["batch"] == 1:
            single[key] = rate
        gain = f"{rate / single[key]:.2f}x" if key in single else "-"
        rows.append([r["preset"], r["phase"], r["batch"], f"{median:.3f}", f"{rate:.2f}", gain,
                     f"{r['peak_rss_mb']:.0f}", f"{r.get('others_busy_cores', '-')}"])
    return common.table(["preset", "phase", "batch", "median s a call", "images/s",
                         "vs batch 1", "peak RSS MB", "others during"], rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", type=common.name_list, default=["fpn", "paper"])
    parser.add_argument("--phases", type=common.name_list, default=list(PHASES))
    parser.add_argument("--batches", type=common.int_list, default=[1, 2, 4])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="config override of every measurement, e.g. --set BACKBONE=tiny")
    parser.add_argument("--runs", type=int, default=5, help="timed calls a measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls after tracing")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per measurement")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.phases) - set(PHASES))
    if unknown:
        parser.error(f"--phases: unknown {', '.join(unknown)} (choose from {', '.join(PHASES)})")
    return args


def worker_command(args: argparse.Namespace, preset: str, phase: str, batch: int,
                   data: Path) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--preset", preset,
               "--phase", phase, "--batch", str(batch), "--data", str(data), "--size",
               str(args.size), "--runs", str(args.runs), "--warmup", str(args.warmup)]
    command += [f"--set={item}" for item in args.set]
    return command + (["--threads", str(args.threads)] if args.threads else [])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        common.emit(worker(args))
        return 0
    results = []
    with common.synthetic_inbreast("bench_batch_", (832, 640), seed=SEED) as data:
        for preset in args.presets:
            for phase in args.phases:
                for batch in args.batches:
                    label = f"{preset} {phase} batch {batch}"
                    common.log(f"start {label}")
                    results.append(common.run_worker(
                        worker_command(args, preset, phase, batch, data), args.timeout_s,
                        label))
    common.write_json(args.json, {"machine": common.machine_info(), "args": vars(args),
                                  "results": results})
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
