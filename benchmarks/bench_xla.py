"""XLA on this machine: the backbone's forward pass (the part of the graph XLA could compile:
NMS, ROIAlign and the ROI sampler have data-dependent shapes) with and without
``jit_compile``, in float32 and bfloat16. It decides whether ``MaskRCNN.compile`` turns XLA on.

    .venv/bin/python benchmarks/bench_xla.py --presets paper,fpn --runs 5
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common


def measure(preset: str, policy: str | None, jit: bool, size: int, runs: int) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from ftmtl.presets import make_config
    from mrcnn.backbone import build_backbone
    from mrcnn.precision import precision_scope

    config = make_config(preset, IMAGES_PER_GPU=1, IMAGE_MIN_DIM=size, IMAGE_MAX_DIM=size)
    with precision_scope(policy):
        image = keras.Input((size, size, 3))
        rpn_maps, _ = build_backbone(image, config)
        model = keras.Model(image, rpn_maps)
    forward = tf.function(lambda x: model(x, training=False), jit_compile=jit)
    batch = tf.random.uniform((1, size, size, 3), seed=0)
    start = time.perf_counter()
    [t.numpy() for t in forward(batch)]
    first_s = time.perf_counter() - start
    times = common.time_calls(lambda: [t.numpy() for t in forward(batch)], runs, 1)
    return {"preset": preset, "precision": policy or "float32", "xla": jit,
            "first_call_s": first_s, **common.summary(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", type=common.name_list, default=["paper", "fpn"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    common.configure_tensorflow(args.threads)
    rows = []
    for preset in args.presets:
        for policy in (None, "mixed_bfloat16"):
            for jit in (False, True):
                r = measure(preset, policy, jit, args.size, args.runs)
                common.log(f"{preset} {r['precision']} xla={jit}: {r['median_s']:.3f} s")
                rows.append([preset, r["precision"], "on" if jit else "off", r["median_s"],
                             r["min_s"], r["first_call_s"]])
    print(f"## Backbone forward, batch 1, {args.size} px, median of {args.runs} runs")
    print(common.table(["preset", "precision", "XLA", "median s", "min s", "first call s"],
                       rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
