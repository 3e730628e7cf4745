"""glibc malloc tuning (mrcnn/malloc.py) on and off, side by side: fpn_cpu training steps.

    .venv/bin/python benchmarks/bench_malloc.py                 # 3 rounds, about 12 minutes
    .venv/bin/python benchmarks/bench_malloc.py --rounds 1 --epochs 2 --steps 10

Each round runs ``inbreast.py train --preset fpn_cpu`` twice on the same small synthetic set,
once with ``MRCNN_MALLOC_TUNING=0`` and once with the tuning, in alternating order, and reads
the step time Keras prints for every epoch after the first (the first holds the graph build).
It prints the median step time, the CPU seconds spent in the kernel and the ratio tuned/default
of each round: the machine is shared, so only ratios of neighbouring runs mean much.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

STEP_TIME = re.compile(r"(\d+(?:\.\d+)?)(ms|s)/step")
TRAIN_SCRIPT = common.REPO_ROOT / "samples" / "inbreast" / "inbreast.py"


def step_times(output: str) -> list[float]:
    """Seconds a step of each epoch's summary line (``30/30 - 18s - 606ms/step``), in order."""
    times = []
    for line in output.splitlines():
        if " - " not in line:
            continue
        match = STEP_TIME.search(line)
        if match:
            value = float(match.group(1))
            times.append(value / 1000.0 if match.group(2) == "ms" else value)
    return times


def children_cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def train_once(dataset: Path, logs: Path, tuned: bool, epochs: int, steps: int) -> dict:
    command = [sys.executable, str(TRAIN_SCRIPT), "train", "--dataset", str(dataset),
               "--preset", "fpn_cpu", "--epochs", str(epochs), "--steps", str(steps),
               "--logs", str(logs)]
    env = {"MRCNN_MALLOC_TUNING": "1" if tuned else "0"}
    user0, sys0 = children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=str(common.REPO_ROOT),
                          env={**os.environ, **env})
    wall = time.perf_counter() - start
    user1, sys1 = children_cpu()
    if proc.returncode != 0:
        raise RuntimeError(f"train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    times = step_times(proc.stdout + proc.stderr)[1:]
    if not times:
        raise RuntimeError("no step times in the training output:\n" + proc.stdout[-2000:])
    return {"step_s": statistics.median(times), "wall_s": wall, "user_s": user1 - user0,
            "sys_s": sys1 - sys0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="the first is not timed")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--patients", type=int, default=4)
    args = parser.parse_args(argv)

    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_malloc_") as tmp:
        dataset = Path(tmp) / "data"
        generate_synthetic_inbreast(dataset, n_patients=args.patients, seed=7)
        for round_ in range(args.rounds):
            order = (False, True) if round_ % 2 == 0 else (True, False)
            result = {}
            for tuned in order:
                common.log(f"round {round_ + 1}, tuning {'on' if tuned else 'off'}")
                result[tuned] = train_once(dataset, Path(tmp) / "logs", tuned, args.epochs,
                                           args.steps)
            off, on = result[False], result[True]
            rows.append([round_ + 1, off["step_s"], on["step_s"], on["step_s"] / off["step_s"],
                         off["sys_s"], on["sys_s"], off["wall_s"], on["wall_s"]])
    print(f"## fpn_cpu training step, malloc tuning off / on ({args.epochs} epochs x "
          f"{args.steps} steps, first epoch not timed)")
    print(common.table(["round", "step s off", "step s on", "on/off", "kernel CPU s off",
                        "kernel CPU s on", "wall s off", "wall s on"], rows))
    print(f"median on/off ratio: {statistics.median(r[3] for r in rows):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
