"""Scaling benchmark: inference latency against image size and proposal count, with FLOPs.

For each preset it builds the inference network at 256, 512 and 1024 px (the preset's own
POST_NMS_ROIS_INFERENCE) and at 512 px with 100, 300 and 1000 proposals, and measures the
graph alone (``run_graph``) and ``detect`` (median of ``--runs`` after warm-up).

FLOPs: counted from the layers as they run. The network is run once eagerly with the
``call`` of every Conv2D, Conv2DTranspose and Dense layer wrapped to add its multiply-adds from
the real input and output shapes; so shared layers (the RPN on every pyramid level, the box
head applied twice in FT-MTL-Net's inference) and data-dependent ROI counts are counted as they
happen. FLOPs = 2 x MACs. Not counted: ROIAlign, NMS, batch norm, activations, element-wise ops
(a few percent at most). ``--profiler`` adds tf.compat.v1.profiler's count on the traced graph
as a cross-check. The achieved GFLOP/s (FLOPs / graph latency) is compared with a peak measured
on the same machine with the same threads: a large float32 ``tf.matmul`` (and bfloat16's).

    .venv/bin/python benchmarks/bench_scaling.py --profiler --json /tmp/bench_scaling.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

SIZES = (256, 512, 1024)
PROPOSALS = (100, 300, 1000)
SEED = 0


# ------------------------------------------------------------------------------ FLOPs
def profiler_flops(model, batch: dict) -> float | None:
    """tf.compat.v1.profiler's float-op count of the traced inference graph (GFLOPs), or None
    when the profiler is unavailable; ops of unknown shape are skipped by the profiler."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    try:
        specs = {k: tf.TensorSpec(v.shape, tf.as_dtype(v.dtype)) for k, v in batch.items()}
        concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(specs)
        frozen = convert_variables_to_constants_v2(concrete)
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        info = tf.compat.v1.profiler.profile(graph=frozen.graph, cmd="op", options=options)
        return info.total_float_ops / 1e9
    except Exception as error:  # noqa: BLE001 - a cross-check only; report why it failed
        common.log(f"profiler FLOP count failed: {error!r}")
        return None


# ---------------------------------------------------------------------------- workers
def worker_matmul(args: argparse.Namespace) -> dict[str, Any]:
    """Matmul GFLOP/s with the benchmark's threads: the machine's practical peak, in float32
    and (what ``MIXED_PRECISION="mixed_bfloat16"`` computes in) bfloat16."""
    common.configure_tensorflow(args.threads)
    import tensorflow as tf

    n = args.matmul_n
    flops = 2.0 * n ** 3
    matmul = tf.function(lambda x, y: tf.matmul(x, y))

    def peak(dtype) -> dict[str, Any]:
        a = tf.cast(tf.random.normal((n, n), seed=1), dtype)
        b = tf.cast(tf.random.normal((n, n), seed=2), dtype)
        stats = common.summary(
            common.time_calls(lambda: matmul(a, b).numpy(), max(args.runs, 5), 2))
        return {**stats, "gflops_best": flops / stats["min_s"] / 1e9,
                "gflops_median": flops / stats["median_s"] / 1e9}

    meter = common.OthersMeter().start()
    stats = peak(tf.float32)
    bfloat16 = peak(tf.bfloat16)
    others = meter.stop()
    return {"n": n, **stats, "bfloat16": bfloat16, "others_busy_cores": others,
            "peak_rss_mb": common.peak_rss_mb()}


def grid(preset_default: int, sizes: list[int], proposals: list[int]) -> list[tuple[int, int]]:
    points = [(size, preset_default) for size in sizes]
    points += [(512, p) for p in proposals if (512, p) not in points]
    return points


def worker_preset(args: argparse.Namespace) -> dict[str, Any]:
    common.configure_tensorflow(args.threads)
    import keras

    default = common.our_config(args.preset, args.model, 512, 1, args.detections)
    points = []
    for size, proposals in grid(default.POST_NMS_ROIS_INFERENCE, args.sizes, args.proposals):
        common.log(f"{args.preset}/{args.model}: {size} px, {proposals} proposals")
        points.append(measure_point(args, size, proposals))
        keras.backend.clear_session()
    return {"preset": args.preset, "model": args.model, "points": points,
            "peak_rss_mb": common.peak_rss_mb()}


def measure_point(args: argparse.Namespace, size: int, proposals: int) -> dict[str, Any]:
    """FLOPs and latencies of one (size, proposals) network."""
    import numpy as np

    from ftmtl.presets import build_model
    from mrcnn.anchors import get_anchors
    from mrcnn.data import mold_inputs

    config = common.our_config(args.preset, args.model, size, 1, args.detections)
    config.POST_NMS_ROIS_INFERENCE = proposals
    image = np.random.default_rng(SEED).integers(0, 256, (size, size, 3), dtype=np.uint8)
    point: dict[str, Any] = {"size": size, "proposals": proposals}
    with tempfile.TemporaryDirectory() as model_dir:
        net = build_model("inference", config, model_dir)
        molded, metas, _ = mold_inputs([image], config)
        anchors = get_anchors(config, tuple(molded.shape[1:3]))
        batch = {"input_image": molded, "input_image_meta": metas,
                 "input_anchors": anchors[np.newaxis].copy()}
        if not args.no_flops:
            point["flops"] = common.count_macs(net.keras_model, batch)
        if args.profiler:
            point["profiler_gflops"] = profiler_flops(net.keras_model, batch)
        start = time.perf_counter()
        net.run_graph(batch)
        point["first_call_s"] = time.perf_counter() - start
        meter = common.OthersMeter().start()
        point["graph"] = common.summary(
            common.time_calls(lambda: net.run_graph(batch), args.runs, args.warmup))
        point["detect"] = common.summary(
            common.time_calls(lambda: net.detect([image]), args.runs, args.warmup))
        point["others_busy_cores"] = meter.stop()
    point["load"] = common.load_average()[0]
    return point


# ------------------------------------------------------------------------ orchestration
def command(args: argparse.Namespace, worker: str, **extra: Any) -> list[str]:
    out = [sys.executable, str(Path(__file__).resolve()), "--worker", worker,
           "--runs", str(args.runs), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--detections", str(args.detections),
           "--matmul-n", str(args.matmul_n),
           "--sizes", ",".join(map(str, args.sizes)),
           "--proposals", ",".join(map(str, args.proposals))]
    if args.no_flops:
        out.append("--no-flops")
    if args.profiler:
        out.append("--profiler")
    for key, value in extra.items():
        out += [f"--{key}", str(value)]
    return out


def report(matmul: dict[str, Any], presets: list[dict[str, Any]]) -> str:
    peak = matmul.get("gflops_best")
    lines = [f"Matmul peak ({matmul.get('n')}x{matmul.get('n')} float32): "
             f"{peak:.1f} GFLOP/s best, {matmul.get('gflops_median', 0):.1f} median "
             f"(others busy: {matmul.get('others_busy_cores')} cores)"
             if peak else f"Matmul peak: failed ({matmul.get('error')})", ""]
    if "bfloat16" in matmul:
        lines[-1:-1] = [f"Matmul peak in bfloat16: {matmul['bfloat16']['gflops_best']:.1f} "
                        f"GFLOP/s best, {matmul['bfloat16']['gflops_median']:.1f} median"]
    for entry in presets:
        if "error" in entry:
            lines += [f"{entry.get('label')}: FAILED {entry['error']}", ""]
            continue
        rows = []
        for p in entry["points"]:
            flops = p.get("flops", {}).get("gflops")
            graph_s = p["graph"]["median_s"]
            achieved = flops / graph_s if flops else None
            rows.append([p["size"], p["proposals"], graph_s, p["detect"]["median_s"],
                         p["first_call_s"], flops, p.get("profiler_gflops"),
                         achieved, f"{100 * achieved / peak:.0f} %" if achieved and peak
                         else "-", p.get("others_busy_cores"), round(p["load"], 2)])
        lines += [f"## {entry['preset']} / {entry['model']}",
                  common.table(["size", "proposals", "graph s", "detect s", "first call s",
                                "GFLOPs", "profiler GFLOPs", "GFLOP/s", "of peak", "others during",
                                "load"],
                               rows), ""]
        groups = sorted({g for p in entry["points"] for g in p.get("flops", {})
                         .get("gmacs_by_group", {})})
        if groups:
            rows = [[p["size"], p["proposals"],
                     *[p["flops"]["gmacs_by_group"].get(g) for g in groups]]
                    for p in entry["points"]]
            lines += [f"GMACs by part ({entry['preset']} / {entry['model']})",
                      common.table(["size", "proposals", *groups], rows), ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", type=common.name_list,
                        default=["paper", "fpn"])
    parser.add_argument("--model", default="ftmtl", choices=("ftmtl", "maskrcnn"))
    parser.add_argument("--sizes", type=common.int_list, default=list(SIZES))
    parser.add_argument("--proposals", type=common.int_list, default=list(PROPOSALS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--matmul-n", type=int, default=2048)
    parser.add_argument("--no-flops", action="store_true")
    parser.add_argument("--profiler", action="store_true",
                        help="cross-check FLOPs with tf.compat.v1.profiler")
    parser.add_argument("--max-busy", type=float, default=None,
                        help="wait before each worker until at most this many cores are busy")
    parser.add_argument("--wait-quiet-s", type=float, default=300.0)
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    parser.add_argument("--json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker == "matmul":
        common.emit(worker_matmul(args))
        return 0
    if args.worker == "preset":
        common.emit(worker_preset(args))
        return 0
    if args.max_busy is not None:
        common.wait_for_quiet(args.max_busy, args.wait_quiet_s)
    common.log("matmul peak")
    matmul = common.run_worker(command(args, "matmul"), args.timeout_s, "matmul")
    presets = []
    for preset in args.presets:
        busy = common.wait_for_quiet(args.max_busy, args.wait_quiet_s) \
            if args.max_busy is not None else None
        common.log(f"start {preset} ({busy} cores busy before)")
        result = common.run_worker(command(args, "preset", preset=preset, model=args.model),
                                   args.timeout_s, preset)
        result["label"] = preset
        if "error" in result:
            common.log(f"FAILED {preset}: {result['error']}\n{result.get('output_tail', '')}")
        presets.append(result)
    text = report(matmul, presets)
    print(text)
    common.write_json(args.json, {"machine": common.machine_info(), "args": vars(args),
                                  "matmul": matmul, "presets": presets, "report": text})
    return 0 if all("error" not in p for p in presets) and "error" not in matmul else 1


if __name__ == "__main__":
    sys.exit(main())
