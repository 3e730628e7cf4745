"""What reproducibility costs: a training step with and without TensorFlow's op determinism.

The command line trains reproducibly by default (``mrcnn.model.enable_determinism``: seeds and
``tf.config.experimental.enable_op_determinism``); ``--nondeterministic`` keeps the seeds and
leaves the ops free. This script times ``train_on_batch`` of one preset (default ``fpn_cpu``,
FT-MTL-Net, the batch its recipe trains with) both ways, each in its own worker process (op
determinism cannot be switched off inside a process), alternating the two for ``--rounds``
rounds so that both see the same machine, and prints the median step of each and their ratio.

    .venv/bin/python benchmarks/bench_determinism.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import common

MODES = ("free", "deterministic")
SEED = 0


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``args.steps`` training steps on one batch of synthetic INbreast crops."""
    common.configure_tensorflow(args.threads)
    from ftmtl.inbreast.dataset import INbreastDataset
    from ftmtl.model import prepared_image_size
    from ftmtl.presets import build_model, make_config
    from mrcnn.data import DataGenerator
    from mrcnn.model import enable_determinism

    enable_determinism(SEED, ops=args.mode == "deterministic")
    config = make_config(args.preset, "ftmtl")
    dataset = INbreastDataset()
    dataset.load_inbreast(args.data, image_size=prepared_image_size(config))
    dataset.prepare()
    batch = DataGenerator(dataset, config, shuffle=True, steps=1, workers=1, seed=SEED)[0]
    with tempfile.TemporaryDirectory() as model_dir:
        net = build_model("training", config, model_dir)
        net.set_trainable(".*")
        net.compile(0.0, config.LEARNING_MOMENTUM)  # lr 0: every timed step does the same work
        net.keras_model.train_on_batch(batch)  # traces
        times = common.time_calls(lambda: net.keras_model.train_on_batch(batch), args.steps,
                                  args.warmup)
    return {"mode": args.mode, "preset": args.preset, "batch": config.BATCH_SIZE,
            "step": common.summary(times)}


def report(results: list[dict[str, Any]]) -> str:
    rows, medians = [], {}
    for mode in MODES:
        runs = [r for r in results if r.get("mode") == mode]
        steps = [t for r in runs for t in r["step"]["times_s"]]
        if not steps:
            continue
        medians[mode] = statistics.median(steps)
        rows.append([mode, runs[0]["preset"], runs[0]["batch"], len(runs), len(steps),
                     medians[mode], min(steps), max(steps),
                     max(r.get("others_busy_cores") or 0.0 for r in runs)])
    lines = [common.table(["ops", "preset", "batch", "workers", "steps", "median step s",
                           "min s", "max s", "others during (max)"], rows)]
    if len(medians) == 2:
        lines.append(f"deterministic / free: {medians['deterministic'] / medians['free']:.3f}")
    failed = [r["error"] for r in results if "error" in r]
    return "\n".join(lines + [f"failed: {e}" for e in failed])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fpn_cpu")
    parser.add_argument("--rounds", type=int, default=3,
                        help="worker pairs (free, deterministic), run alternately")
    parser.add_argument("--steps", type=int, default=20, help="timed steps a worker")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after tracing")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per worker")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def worker_command(args: argparse.Namespace, mode: str, data: Path) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--mode", mode,
               "--data", str(data), "--preset", args.preset, "--steps", str(args.steps),
               "--warmup", str(args.warmup)]
    return command + (["--threads", str(args.threads)] if args.threads else [])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        common.emit(worker(args))
        return 0
    results = []
    with common.synthetic_inbreast("bench_determinism_", (416, 320), seed=SEED) as data:
        for round_ in range(args.rounds):
            for mode in MODES:
                label = f"round {round_ + 1} {mode}"
                common.log(f"start {label}")
                results.append(common.run_worker(worker_command(args, mode, data),
                                                 args.timeout_s, label))
    common.write_json(args.json, {"machine": common.machine_info(), "args": vars(args),
                                  "results": results})
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
