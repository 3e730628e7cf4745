"""Shared helpers of the benchmarks: timing, peak memory, machine facts, worker processes, the
benchmark configs of our presets and the FLOP count by layer.

Importable without TensorFlow (the torchvision worker runs it in a venv without TF): every TF
import is inside a function.

Workers are separate processes so that each measurement has its own peak RSS and its own
thread settings; a worker prints one line ``BENCH_JSON <json>`` that ``run_worker`` parses out of
whatever else (TF logging) the process writes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
JSON_MARKER = "BENCH_JSON "


# --------------------------------------------------------------------------------- timing
def time_calls(fn: Callable[[], Any], runs: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``runs`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def summary(times: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the raw times (seconds)."""
    times = list(times)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "runs": len(times), "times_s": [round(t, 4) for t in times]}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15-minute load averages (what ``uptime`` prints)."""
    return os.getloadavg()


def cpu_busy_seconds() -> float | None:
    """CPU-seconds spent busy by the whole machine since boot (/proc/stat), None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def busy_cores(window_s: float = 5.0) -> float | None:
    """How many cores were busy (everyone's processes) over the next ``window_s`` seconds."""
    before = cpu_busy_seconds()
    time.sleep(window_s)
    after = cpu_busy_seconds()
    return None if before is None or after is None else round((after - before) / window_s, 2)


def wait_for_quiet(max_busy_cores: float, max_wait_s: float) -> float | None:
    """Wait until at most ``max_busy_cores`` cores are busy over a 5 s window (or until
    ``max_wait_s`` passed); returns the busy cores seen last. On a shared machine a timing
    taken while others compute is meaningless, so callers record this figure too."""
    deadline = time.monotonic() + max_wait_s
    busy = busy_cores()
    while busy is not None and busy > max_busy_cores and time.monotonic() < deadline:
        busy = busy_cores(10.0)
    return busy


# ------------------------------------------------------------------------------ threads
def configure_tensorflow(threads: int | None) -> None:
    """Thread counts, set before TF runs anything. (Mixed precision is a model setting,
    Config.MIXED_PRECISION, not a global policy.)"""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from mrcnn.quiet_start import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))


def tensorflow_devices() -> list[str]:
    import tensorflow as tf

    return [d.name for d in tf.config.list_logical_devices()]


# -------------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, memory, Python and (when importable here) library versions."""
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": memory_total_gib(),
        "python": platform.python_version(),
    }
    for name in ("numpy", "tensorflow", "keras", "torch", "torchvision"):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = getattr(module, "__version__", "?")
    return info


# -------------------------------------------------------------------------------- workers
def emit(result: dict[str, Any]) -> None:
    """Print a worker's result where ``run_worker`` finds it."""
    sys.stdout.write(JSON_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


def run_worker(command: Sequence[str], timeout_s: float, label: str,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a worker process; its ``BENCH_JSON`` result, or ``{"error": ...}`` (with the end of
    its output) when it failed, timed out or printed no result."""
    started = time.perf_counter()
    meter = OthersMeter().start()
    try:
        proc = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, **(env or {})}, cwd=str(REPO_ROOT))
    except subprocess.TimeoutExpired:
        return {"error": f"{label}: timed out after {timeout_s:.0f} s"}
    elapsed = time.perf_counter() - started
    others = meter.stop()
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(JSON_MARKER):
            result = json.loads(line[len(JSON_MARKER):])
            result.setdefault("worker_wall_s", round(elapsed, 1))
            result["others_busy_cores"] = others
            return result
    tail = (proc.stdout + proc.stderr)[-3000:]
    return {"error": f"{label}: exit status {proc.returncode}, no result", "output_tail": tail}


class OthersMeter:
    """Cores kept busy by other people's processes between ``start`` and ``stop``: the
    machine's busy CPU time minus this process's (and its children's), per wall second."""

    def start(self) -> OthersMeter:
        self.wall = time.perf_counter()
        self.machine = cpu_busy_seconds()
        self.own = _own_cpu_seconds()
        return self

    def stop(self) -> float | None:
        machine = cpu_busy_seconds()
        if machine is None or self.machine is None:
            return None
        wall = time.perf_counter() - self.wall
        others = (machine - self.machine - (_own_cpu_seconds() - self.own)) / wall
        return round(max(0.0, others), 2)


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime + _children_cpu_seconds()


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def synthetic_inbreast(prefix: str, image_shape: tuple[int, int], n_patients: int = 2,
                       seed: int = 0) -> Iterator[Path]:
    """A synthetic INbreast folder in a temporary directory, for the worker processes of a
    benchmark to read; removed on exit."""
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        data = Path(scratch) / "inbreast"
        generate_synthetic_inbreast(data, n_patients=n_patients, seed=seed,
                                    image_shape=image_shape)
        yield data


def log(message: str) -> None:
    """Progress on stderr (stdout carries the tables)."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')} load {load_average()[0]:.2f}] {message}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------------- tables
def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (pastes into benchmarks/README.md as it is)."""
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | os.PathLike | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")


# ---------------------------------------------------------------------------- arguments
def int_list(text: str) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4] (an argparse type)."""
    return [int(v) for v in text.split(",") if v]


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["NAME=VALUE", ...]`` (repeated ``--set``) -> {NAME: the literal VALUE, or the text}."""
    import ast

    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if not name or not value:
            raise SystemExit(f"--set needs NAME=VALUE, got {item!r}")
        try:
            out[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[name] = value
    return out


def name_list(text: str) -> list[str]:
    """``"paper,fpn"`` -> ["paper", "fpn"] (an argparse type)."""
    return [v for v in text.split(",") if v]


# ------------------------------------------------------------- our models, their FLOPs
PRECISIONS = ("float32", "bfloat16", "float16")
MIXED_POLICIES = {"float32": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
LAYER_GROUPS = (("mrcnn_mask", "mask head"), ("mrcnn_ftmtl", "classifier"),
                ("mrcnn_class", "box/class head"), ("mrcnn_bbox", "box/class head"),
                ("rpn_", "rpn"), ("fpn_", "fpn"))


def our_config(preset: str, model: str, size: int, batch: int, detections: int,
               overrides: dict[str, Any] | None = None, precision: str = "float32"):
    """The preset at ``size`` px, ``batch`` images a step, keeping at most ``detections``
    detections (confidence filter off, as torchvision's box_score_thresh=0 here), then
    ``overrides`` (config attributes, e.g. to try a cheaper setting)."""
    from ftmtl.presets import make_config

    values = {"IMAGES_PER_GPU": batch, "IMAGE_MIN_DIM": size, "IMAGE_MAX_DIM": size,
              "DETECTION_MAX_INSTANCES": detections, "DETECTION_MIN_CONFIDENCE": 0.0,
              "MIXED_PRECISION": MIXED_POLICIES[precision], **(overrides or {})}
    return make_config(preset, model, **values)


def layer_group(name: str) -> str:
    for prefix, group in LAYER_GROUPS:
        if name.startswith(prefix):
            return group
    return "backbone"


def layer_macs(layer, inputs, outputs) -> int:
    """Multiply-adds of one call of a Conv2D, Conv2DTranspose or Dense layer."""
    import keras
    import numpy as np

    in_shape = [int(v) for v in inputs.shape]
    out_shape = [int(v) for v in outputs.shape]
    if isinstance(layer, keras.layers.Conv2DTranspose):
        kh, kw = layer.kernel_size
        return int(np.prod(in_shape)) * kh * kw * layer.filters
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        return int(np.prod(out_shape)) * kh * kw * in_shape[-1] // layer.groups
    if isinstance(layer, keras.layers.Dense):
        return int(np.prod(in_shape)) * layer.units
    raise TypeError(type(layer))


def count_macs(model, batch: dict) -> dict[str, Any]:
    """Run ``model`` once eagerly and add up the MACs of its conv and dense calls."""
    import keras
    import tensorflow as tf

    calls: list[tuple[str, int]] = []
    originals = {}
    for cls in (keras.layers.Conv2DTranspose, keras.layers.Conv2D, keras.layers.Dense):
        originals[cls] = cls.__dict__.get("call")
        original = cls.__dict__.get("call", cls.call)

        def wrapped(self, inputs, *args, _original=original, **kwargs):
            outputs = _original(self, inputs, *args, **kwargs)
            calls.append((self.name, layer_macs(self, inputs, outputs)))
            return outputs

        cls.call = functools.wraps(original)(wrapped)
    try:
        model({k: tf.convert_to_tensor(v) for k, v in batch.items()}, training=False)
    finally:
        for cls, original in originals.items():
            if original is None:
                del cls.call
            else:
                cls.call = original
    groups: dict[str, int] = {}
    for name, macs in calls:
        groups[layer_group(name)] = groups.get(layer_group(name), 0) + macs
    total = sum(groups.values())
    return {"gmacs": total / 1e9, "gflops": 2 * total / 1e9, "layer_calls": len(calls),
            "gmacs_by_group": {k: v / 1e9 for k, v in sorted(groups.items())}}
