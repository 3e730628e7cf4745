"""benchmarks/bench_model.py without running a network: the plan of workers and the report
for --inference-set (our inference timed a second way, side by side)."""

from __future__ import annotations

import bench_model  # benchmarks/ is on pytest's pythonpath (pyproject.toml)


def parse(*extra: str):
    args = bench_model.parse_args(["--presets", "fpn", "--models", "ftmtl", "--skip-train",
                                   "--no-torch", *extra])
    args.workdir = "/tmp/unused"
    return args


def test_inference_set_adds_one_variant_worker_per_network():
    plain = bench_model.plan(parse(), None)
    both = bench_model.plan(parse("--inference-set", "PREFILTER_MAX_ROIS=50"), None)
    assert [label for label, _ in plain] == ["fpn/ftmtl inference b1"]
    assert [label for label, _ in both] == ["fpn/ftmtl inference b1",
                                            "fpn/ftmtl inference b1 [PREFILTER_MAX_ROIS=50]"]
    variant = both[1][1]
    assert variant[variant.index("--variant") + 1] == "1"
    assert variant[variant.index("--inference-set") + 1] == "PREFILTER_MAX_ROIS=50"
    assert "--variant" not in both[0][1]  # the first worker times the preset as it is


def fake(model: str, detect_s: float, variant: str = "", framework: str = "ours") -> dict:
    timing = {"median_s": detect_s, "min_s": detect_s, "max_s": detect_s}
    return {"framework": framework, "preset": "fpn" if framework == "ours" else model,
            "model": model, "variant": variant, "phase": "inference", "batch": 1,
            "detect": timing, "graph": timing, "first_call_s": 1.0, "detections": 10,
            "gflops": None, "peak_rss_mb": 1000, "busy_before": 0.0, "load_before": 0.0}


def test_report_gives_both_orders_their_own_torchvision_ratio():
    args = parse("--inference-set", "PREFILTER_MAX_ROIS=50")
    results = [fake("ftmtl", 1.3), fake("ftmtl", 1.0, "PREFILTER_MAX_ROIS=50"),
               fake("maskrcnn_resnet50_fpn", 2.0, framework="torchvision")]
    text = bench_model.report(results, args)
    ratios = text.split("## Ours / torchvision")[1]
    assert "| fpn | ftmtl |  | inference b1 | maskrcnn_resnet50_fpn | 1.300 | 2.000 | 0.65x |" \
        in ratios
    assert ("| fpn | ftmtl | PREFILTER_MAX_ROIS=50 | inference b1 | maskrcnn_resnet50_fpn | "
            "1.000 | 2.000 | 0.50x |") in ratios
