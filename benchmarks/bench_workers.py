"""Training on several workers: the step time and images/s of MultiWorkerMirroredStrategy with
N local worker processes against one process alone.

Each worker is a process with its own TF_CONFIG on 127.0.0.1 (the README's recipe for several
machines, on one machine), trains one preset (default ``fpn_cpu``, FT-MTL-Net) on a fixed batch
of synthetic INbreast crops at learning rate 0 (every step does the same work) and times each
step after a warm-up. The batch a worker trains is the preset's (weak scaling: the global batch
is N times it), and the machine's cores are divided among the workers (``--threads`` each,
default cores / N). One worker runs without a strategy, as a single-machine user trains. The
report gives the gradient volume each step all-reduces, which with a network's bandwidth tells
what more workers on more machines would cost.

    .venv/bin/python benchmarks/bench_workers.py --workers 1,2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

SEED = 0


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``args.steps`` training steps as worker ``args.index`` of ``args.count``."""
    common.configure_tensorflow(args.threads)
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy() if args.count > 1 else None
    import keras

    from ftmtl.inbreast.dataset import INbreastDataset
    from ftmtl.model import prepared_image_size
    from ftmtl.presets import build_model, make_config
    from mrcnn.data import DataGenerator
    from mrcnn.model import enable_determinism

    enable_determinism(SEED, ops=False)
    config = make_config(args.preset, "ftmtl", GPU_COUNT=args.count)
    dataset = INbreastDataset()
    dataset.load_inbreast(args.data, image_size=prepared_image_size(config))
    dataset.prepare()
    batch = DataGenerator(dataset, config, shuffle=True, steps=1, workers=1, seed=SEED)[0]
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    data = tf.data.Dataset.from_tensors(batch).repeat().with_options(options)
    step_ends: list[float] = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: step_ends.append(time.perf_counter()))
    with tempfile.TemporaryDirectory() as model_dir:
        net = build_model("training", config, model_dir, strategy=strategy)
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            net.set_trainable(".*")
            net.compile(0.0, config.LEARNING_MOMENTUM)
        start = time.perf_counter()
        net.keras_model.fit(data, epochs=1, steps_per_epoch=args.warmup + args.steps + 1,
                            verbose=0, callbacks=[timer])
    ends = [start, *step_ends]
    times = [b - a for a, b in zip(ends, ends[1:], strict=False)][1 + args.warmup:]
    return {"workers": args.count, "index": args.index, "threads": args.threads,
            "images_per_worker": config.IMAGES_PER_GPU, "global_batch": config.BATCH_SIZE,
            "parameters": int(sum(int(tf.size(w)) for w in net.keras_model.trainable_weights)),
            "step": common.summary(times)}


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_cluster(args: argparse.Namespace, count: int, data: Path) -> list[dict[str, Any]]:
    """Start ``count`` workers at once (TF_CONFIG each) and collect their results."""
    threads = args.threads or max(1, (os.cpu_count() or 1) // count)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(count)]}
    processes = []
    for index in range(count):
        env = dict(os.environ)
        env.pop("TF_CONFIG", None)
        if count > 1:
            env["TF_CONFIG"] = json.dumps({"cluster": cluster,
                                           "task": {"type": "worker", "index": index}})
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--index",
                   str(index), "--count", str(count), "--data", str(data), "--preset",
                   args.preset, "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--threads", str(threads)]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, env=env,
                                          cwd=str(common.REPO_ROOT)))
    results = []
    for index, process in enumerate(processes):
        try:
            output, _ = process.communicate(timeout=args.timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        results.append(_result(output, f"{count} workers, worker {index}"))
    return results


def _result(output: str, label: str) -> dict[str, Any]:
    for line in reversed(output.splitlines()):
        if line.startswith(common.JSON_MARKER):
            return json.loads(line[len(common.JSON_MARKER):])
    return {"error": f"{label}: no result", "output_tail": output[-3000:]}


def report(runs: dict[int, list[dict[str, Any]]]) -> str:
    rows, single = [], None
    for count, results in sorted(runs.items()):
        failed = [r for r in results if "error" in r]
        if failed:
            rows.append([count, "-", "-", "-", "-", "-", failed[0]["error"]])
            continue
        # A synchronous step ends when the slowest worker's does.
        step = max(statistics.median(r["step"]["times_s"]) for r in results)
        images = results[0]["global_batch"] / step
        single = images if count == 1 else single
        speedup = "-" if single is None else f"{images / single:.2f}x"
        rows.append([count, results[0]["threads"], results[0]["global_batch"], f"{step:.3f}",
                     f"{images:.1f}", speedup, ""])
    text = common.table(["workers", "threads each", "global batch", "median step s",
                         "images/s", "vs 1 worker", "note"], rows)
    params = next((r["parameters"] for rs in runs.values() for r in rs if "parameters" in r),
                  None)
    if params:
        text += (f"\n\nGradients all-reduced a step: {params:,} float32 values "
                 f"({params * 4 / 2**20:.1f} MiB); a ring all-reduce over N workers sends "
                 f"2 (N-1)/N of that from each worker.")
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=common.int_list, default=[1, 2],
                        help="worker counts to measure, comma-separated (default 1,2)")
    parser.add_argument("--preset", default="fpn_cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps a worker")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads a worker (default: cores / workers)")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per cluster")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        common.emit(worker(args))
        return 0
    runs = {}
    with common.synthetic_inbreast("bench_workers_", (416, 320), seed=SEED) as data:
        for count in args.workers:
            common.log(f"start {count} worker(s)")
            runs[count] = run_cluster(args, count, data)
    common.write_json(args.json, {"machine": common.machine_info(), "args": vars(args),
                                  "runs": {str(k): v for k, v in runs.items()}})
    print(report(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
