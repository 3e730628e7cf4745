"""Model benchmark: inference latency and training-step time, with peak RSS.

For each preset (``paper``, ``fpn``) it measures FT-MTL-Net and its Mask R-CNN twin
(``model="maskrcnn"``), and, when torch is available (``--torch-python`` or torch importable
here), torchvision's ``maskrcnn_resnet50_fpn`` on the same input, with the same thread count and
the same number of kept detections, side by side in one run.

Every measurement runs in its own worker process (its own peak RSS, threads set before the
framework starts). Inference: batch 1, a fixed random image, ``detect`` (end to end: molding,
graph, unmolding the masks to the image) and the graph alone (``run_graph``), median of
``--runs`` after ``--warmup`` untimed calls (the first call, which traces, is reported apart).
Training: ``keras_model.train_on_batch`` on a batch from ``mrcnn.data.DataGenerator`` (synthetic
INbreast DICOMs, no augmentation), all layers trainable, SGD with momentum 0.9 at ``--lr``;
torchvision gets the same images and ground truth and the same optimizer.

    .venv/bin/python benchmarks/bench_model.py --torch-python /tmp/torchvenv/bin/python \
        --max-busy 0.6 --json /tmp/bench_model.json
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

PRESETS = ("paper", "fpn")
MODELS = ("ftmtl", "maskrcnn")
INPUTS_NAME = "inputs.npz"
SEED = 0


# ============================================================================= our workers
def synthetic_dataset(data_dir: str | os.PathLike, size: int):
    """The synthetic INbreast images that have masses, prepared at ``size`` px."""
    from ftmtl.inbreast.dataset import INbreastDataset

    dataset = INbreastDataset()
    dataset.load_inbreast(data_dir, include_normals=False, image_size=size)
    dataset.prepare()
    return dataset


def worker_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """Write the shared inputs: synthetic DICOMs, a random image, and the first training batch
    as full-size images, boxes and masks (what torchvision's training takes)."""
    import numpy as np

    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast
    from mrcnn.box_ops import extract_bboxes
    from mrcnn.data import load_image_gt

    data_dir = Path(args.workdir) / "inbreast"
    generate_synthetic_inbreast(data_dir, n_patients=2, seed=SEED,
                                image_shape=tuple(args.dicom_shape), overwrite=True)
    dataset = synthetic_dataset(data_dir, args.size)
    config = common.our_config("fpn", "ftmtl", args.size, 1, args.detections)
    config.USE_MINI_MASK = False
    payload: dict[str, Any] = {
        "random_image": np.random.default_rng(SEED).integers(
            0, 256, (args.size, args.size, 3), dtype=np.uint8),
    }
    # DataGenerator(shuffle=False) takes the dataset's images in order: 0, 1, ...
    for i in range(max(args.train_batches)):
        image, _, class_ids, boxes, masks = load_image_gt(dataset, config, i)
        assert np.array_equal(boxes, extract_bboxes(masks))
        payload[f"image_{i}"] = image.astype(np.float32)
        payload[f"boxes_{i}"] = boxes.astype(np.float32)
        payload[f"class_ids_{i}"] = class_ids.astype(np.int64)
        payload[f"masks_{i}"] = masks.astype(np.uint8)
    np.savez_compressed(Path(args.workdir) / INPUTS_NAME, **payload)
    return {"images": len(dataset.image_ids), "data_dir": str(data_dir)}


def worker_our_inference(args: argparse.Namespace) -> dict[str, Any]:
    common.configure_tensorflow(args.threads)
    import numpy as np

    from ftmtl.presets import build_model
    from mrcnn.anchors import get_anchors
    from mrcnn.data import mold_inputs

    image = np.load(Path(args.workdir) / INPUTS_NAME)["random_image"]
    overrides = common.parse_overrides(args.set + (args.inference_set if args.variant else []))
    config = common.our_config(args.preset, args.model, args.size, 1, args.detections,
                               overrides, args.precision)
    with tempfile.TemporaryDirectory() as model_dir:
        start = time.perf_counter()
        net = build_model("inference", config, model_dir)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        results = net.detect([image])
        first_s = time.perf_counter() - start
        detect = common.time_calls(lambda: net.detect([image]), args.runs, args.warmup)
        molded, metas, _ = mold_inputs([image], config)
        anchors = get_anchors(config, tuple(molded.shape[1:3]))
        batch = {"input_image": molded, "input_image_meta": metas,
                 "input_anchors": anchors[np.newaxis].copy()}
        graph = common.time_calls(lambda: net.run_graph(batch), args.runs, args.warmup)
        params = int(sum(np.prod(w.shape) for w in net.keras_model.weights))
        peak_rss = common.peak_rss_mb()  # before the FLOP count's eager call, which needs more
        gflops = common.count_macs(net.keras_model, batch)["gflops"]
    return {"framework": "ours", "preset": args.preset, "model": args.model,
            "variant": variant_label(args) if args.variant else "",
            "phase": "inference", "batch": 1, "build_s": build_s, "first_call_s": first_s,
            "detect": common.summary(detect), "graph": common.summary(graph),
            "detections": int(len(results[0]["class_ids"])), "parameters": params,
            "gflops": gflops,
            "peak_rss_mb": peak_rss, "devices": common.tensorflow_devices(),
            "precision": args.precision, **_versions()}


def worker_our_training(args: argparse.Namespace) -> dict[str, Any]:
    common.configure_tensorflow(args.threads)
    import numpy as np

    from ftmtl.presets import build_model
    from mrcnn.data import DataGenerator

    config = common.our_config(args.preset, args.model, args.size, args.batch, args.detections,
                        common.parse_overrides(args.set), args.precision)
    dataset = synthetic_dataset(Path(args.workdir) / "inbreast", args.size)
    batch = DataGenerator(dataset, config, shuffle=False, steps=1, workers=1)[0]
    with tempfile.TemporaryDirectory() as model_dir:
        start = time.perf_counter()
        net = build_model("training", config, model_dir)
        net.set_trainable(".*")
        net.compile(args.lr, config.LEARNING_MOMENTUM)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        net.keras_model.train_on_batch(batch)
        first_s = time.perf_counter() - start
        losses = []

        def step() -> None:
            losses.append(float(np.asarray(net.keras_model.train_on_batch(batch))
                                .reshape(-1)[0]))

        times = common.time_calls(step, args.runs, args.warmup)
        trainable = int(sum(np.prod(w.shape) for w in net.keras_model.trainable_weights))
    return {"framework": "ours", "preset": args.preset, "model": args.model,
            "phase": "training", "batch": args.batch, "build_s": build_s,
            "first_call_s": first_s, "step": common.summary(times),
            "loss_last": losses[-1], "losses_finite": bool(np.all(np.isfinite(losses))),
            "mask_rois_per_step": config.TRAIN_ROIS_PER_IMAGE * config.BATCH_SIZE,
            "trainable_parameters": trainable, "peak_rss_mb": common.peak_rss_mb(),
            "devices": common.tensorflow_devices(), "precision": args.precision,
            **_versions()}


def _versions() -> dict[str, str]:
    import keras
    import numpy as np
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}


# ========================================================================= torchvision worker
def torch_model(args: argparse.Namespace):
    """torchvision's maskrcnn_resnet50_fpn, untrained, at our size and detection count."""
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn
    from torchvision.ops import FrozenBatchNorm2d

    torch.manual_seed(SEED)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                  num_classes=args.torch_num_classes, min_size=args.size,
                                  max_size=args.size, box_detections_per_img=args.detections,
                                  box_score_thresh=0.0)
    if args.torch_frozen_bn:
        _freeze_batch_norm(model.backbone.body, FrozenBatchNorm2d)
    return model


def _freeze_batch_norm(module, frozen_class) -> None:
    """Replace BatchNorm2d by FrozenBatchNorm2d (as torchvision does with pretrained weights
    and as our backbone does with TRAIN_BN=False)."""
    import torch

    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = frozen_class(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            _freeze_batch_norm(child, frozen_class)


def torch_gflops(model, call) -> float:
    """FLOPs (2 x multiply-adds) of the Conv2d, ConvTranspose2d and Linear calls of one
    ``call()``, counted by forward hooks (the same rule as bench_scaling.py's count)."""
    import math

    import torch

    total = [0]

    def hook(module, inputs, output) -> None:
        x = inputs[0]
        if isinstance(module, torch.nn.ConvTranspose2d):
            kh, kw = module.kernel_size
            total[0] += x.numel() * kh * kw * module.out_channels // module.groups
        elif isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total[0] += output.numel() * kh * kw * module.in_channels // module.groups
        elif isinstance(module, torch.nn.Linear):
            total[0] += math.prod(x.shape[:-1]) * module.in_features * module.out_features

    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        call()
    finally:
        for handle in handles:
            handle.remove()
    return 2 * total[0] / 1e9


def proposals_around(boxes, count: int, size: int, generator):
    """``count`` proposals [count, 4] (x1, y1, x2, y2) like a trained RPN's: half jittered
    around the ground-truth ``boxes`` (centre shifts of 10 % and scale changes of 10 %, so most
    overlap a box with IoU >= 0.5), half random boxes of the image (background)."""
    import torch

    near = count // 2
    gt = boxes[torch.randint(len(boxes), (near,), generator=generator)]
    centre = (gt[:, :2] + gt[:, 2:]) / 2
    extent = gt[:, 2:] - gt[:, :2]
    centre = centre + 0.1 * extent * torch.randn(near, 2, generator=generator)
    extent = extent * torch.exp(0.1 * torch.randn(near, 2, generator=generator))
    jittered = torch.cat([centre - extent / 2, centre + extent / 2], dim=1)
    corner = torch.rand(count - near, 2, generator=generator) * size * 0.8
    sides = 16 + torch.rand(count - near, 2, generator=generator) * size * 0.3
    background = torch.cat([corner, corner + sides], dim=1)
    return torch.cat([jittered, background]).clamp(0, size)


def use_proposals_around_gt(model, targets: list[dict], size: int) -> None:
    """Make the RPN hand the box head ``proposals_around`` each image's ground truth in
    training (its own forward, losses included, still runs)."""
    import torch

    generator = torch.Generator().manual_seed(SEED)
    count = model.rpn.post_nms_top_n()
    rpn_forward = model.rpn.forward

    def forward(images, features, targets_=None):
        boxes, losses = rpn_forward(images, features, targets_)
        if model.training:
            boxes = [proposals_around(t["boxes"].cpu(), count, size, generator).to(b.device)
                     for t, b in zip(targets, boxes, strict=True)]
        return boxes, losses

    model.rpn.forward = forward


def count_mask_rois(model) -> list[int]:
    """A list that gets the number of ROIs the mask head sees at each call."""
    counts: list[int] = []
    model.roi_heads.mask_head.register_forward_hook(
        lambda module, inputs, output: counts.append(int(inputs[0].shape[0])))
    return counts


def worker_torch(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    import torchvision

    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    device = torch.device("cuda" if args.torch_cuda and torch.cuda.is_available() else "cpu")
    inputs = np.load(Path(args.workdir) / INPUTS_NAME)
    model = torch_model(args).to(device)
    base = {"framework": "torchvision", "preset": "maskrcnn_resnet50_fpn", "model": "torchvision",
            "phase": args.phase, "batch": args.batch, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__,
            "threads": torch.get_num_threads(), "device": str(device),
            "frozen_bn": bool(args.torch_frozen_bn), "num_classes": args.torch_num_classes,
            "precision": args.precision}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def autocast():
        """The compute type of --precision (float32: autocast off)."""
        dtype = getattr(torch, args.precision)
        return torch.autocast(device.type, dtype=dtype, enabled=args.precision != "float32")

    if args.phase == "inference":
        image = torch.from_numpy(inputs["random_image"]).permute(2, 0, 1).float().div(255.0)
        image = image.to(device)
        model.eval()
        outputs: list = []

        def infer() -> None:
            with torch.inference_mode(), autocast():
                outputs[:] = model([image])
            sync()

        start = time.perf_counter()
        infer()
        first_s = time.perf_counter() - start
        times = common.time_calls(infer, args.runs, args.warmup)
        return {**base, "first_call_s": first_s, "detect": common.summary(times),
                "detections": int(outputs[0]["boxes"].shape[0]),
                "gflops": torch_gflops(model, infer), "peak_rss_mb": common.peak_rss_mb()}

    images, targets = [], []
    for i in range(args.batch):
        image = torch.from_numpy(inputs[f"image_{i}"]).permute(2, 0, 1).div(255.0)
        boxes = torch.from_numpy(inputs[f"boxes_{i}"])[:, [1, 0, 3, 2]]  # y1x1y2x2 -> x1y1x2y2
        masks = torch.from_numpy(inputs[f"masks_{i}"]).permute(2, 0, 1)
        images.append(image.to(device))
        targets.append({"boxes": boxes.to(device),
                        "labels": torch.from_numpy(inputs[f"class_ids_{i}"]).to(device),
                        "masks": masks.to(device)})
    if args.torch_proposals == "around-gt":
        use_proposals_around_gt(model, targets, args.size)
        base["model"] = "torchvision (proposals around GT)"
    mask_rois = count_mask_rois(model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    losses = []

    def step() -> None:
        with autocast():
            loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sync()
        losses.append(float(loss.detach()))

    start = time.perf_counter()
    step()
    first_s = time.perf_counter() - start
    times = common.time_calls(step, args.runs, args.warmup)
    return {**base, "first_call_s": first_s, "step": common.summary(times),
            "loss_last": losses[-1], "losses_finite": bool(np.all(np.isfinite(losses))),
            "mask_rois_per_step": float(np.median(mask_rois)),
            "proposals": args.torch_proposals,
            "trainable_parameters": int(sum(p.numel() for p in params)),
            "peak_rss_mb": common.peak_rss_mb()}


# ============================================================================ orchestration
def find_torch_python(args: argparse.Namespace) -> str | None:
    """The Python that runs the torchvision side: --torch-python, else this one if it has
    torch and torchvision, else None."""
    if args.no_torch:
        return None
    if args.torch_python:
        return args.torch_python
    import importlib.util

    if importlib.util.find_spec("torch") and importlib.util.find_spec("torchvision"):
        return sys.executable
    return None


def worker_command(python: str, args: argparse.Namespace, worker: str, **extra: Any
                   ) -> list[str]:
    command = [python, str(Path(__file__).resolve()), "--worker", worker,
               "--workdir", args.workdir, "--size", str(args.size), "--runs", str(args.runs),
               "--warmup", str(args.warmup), "--detections", str(args.detections),
               "--lr", str(args.lr),
               "--torch-num-classes", str(args.torch_num_classes),
               "--train-batches", ",".join(str(b) for b in args.train_batches),
               "--dicom-shape", ",".join(str(v) for v in args.dicom_shape)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    command += ["--precision", args.precision]
    if args.torch_frozen_bn:
        command.append("--torch-frozen-bn")
    command += ["--torch-proposals", extra.pop("proposals", args.torch_proposals)]
    if args.torch_cuda:
        command.append("--torch-cuda")
    for item in args.set:
        command += ["--set", item]
    for item in args.inference_set:
        command += ["--inference-set", item]
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    return command


def run_measurement(command: list[str], label: str, args: argparse.Namespace,
                    budget_left_s: float | None = None) -> dict[str, Any]:
    busy = common.wait_for_quiet(args.max_busy, args.wait_quiet_s) \
        if args.max_busy is not None else common.busy_cores(1.0)
    load = common.load_average()[0]
    common.log(f"start {label} ({busy} cores busy before)")
    timeout = min(args.timeout_s, budget_left_s) if budget_left_s else args.timeout_s
    result = common.run_worker(command, timeout, label)
    result["label"] = label
    result["busy_before"] = busy
    result["load_before"] = round(load, 2)
    result["load_after"] = round(common.load_average()[0], 2)
    if "error" in result:
        common.log(f"FAILED {label}: {result['error']}\n{result.get('output_tail', '')}")
    else:
        common.log(f"done {label} in {result.get('worker_wall_s')} s")
    return result


def plan(args: argparse.Namespace, torch_python: str | None) -> list[tuple[str, list[str]]]:
    """Measurements in the order they run: each phase ours then torchvision, so that both
    sides of a comparison run close together in time."""
    ours = sys.executable
    jobs: list[tuple[str, list[str]]] = []
    phases = [("inference", 1)]
    if not args.skip_train:
        phases += [("training", b) for b in args.train_batches]
    for phase, batch in phases:
        for preset in args.presets:
            for model in args.models:
                worker = "our-inference" if phase == "inference" else "our-training"
                jobs.append((f"{preset}/{model} {phase} b{batch}",
                             worker_command(ours, args, worker, preset=preset, model=model,
                                            batch=batch)))
                if phase == "inference" and args.inference_set:
                    jobs.append((f"{preset}/{model} {phase} b{batch} [{variant_label(args)}]",
                                 worker_command(ours, args, worker, preset=preset,
                                                model=model, batch=batch, variant=1)))
        if torch_python:
            kinds = ["rpn"] if phase == "inference" or args.torch_proposals == "rpn" else (
                ["around-gt"] if args.torch_proposals == "around-gt" else ["rpn", "around-gt"])
            for kind in kinds:
                suffix = "" if kind == "rpn" else " (proposals around GT)"
                jobs.append((f"torchvision {phase} b{batch}{suffix}",
                             worker_command(torch_python, args, "torch", phase=phase,
                                            batch=batch, proposals=kind)))
    return jobs


def variant_label(args: argparse.Namespace) -> str:
    return ", ".join(args.inference_set)


def latency(result: dict[str, Any], key: str) -> float | None:
    return result.get(key, {}).get("median_s") if "error" not in result else None


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The tables: every measurement, then the FT-MTL overheads and the torchvision ratios."""
    ok = [r for r in results if "error" not in r and "phase" in r]
    lines = [f"## Inference (batch 1, {args.size} px, {args.precision}, median of "
             f"{args.runs} runs)"]
    rows = []
    for r in ok:
        if r["phase"] == "inference":
            gflops = r.get("gflops")
            rows.append([r["preset"], r["model"], r.get("variant", ""), latency(r, "detect"),
                         latency(r, "graph"),
                         r["detect"]["min_s"], r["detect"]["max_s"], r.get("first_call_s"),
                         r.get("detections"), gflops,
                         gflops / latency(r, "detect") if gflops else None,
                         r["peak_rss_mb"], r["busy_before"], r.get("others_busy_cores"),
                         r["load_before"]])
    lines.append(common.table(["preset", "model", "variant", "detect s", "graph s", "min s",
                               "max s",
                               "first call s", "dets", "GFLOPs", "GFLOP/s", "peak RSS MiB",
                               "busy before", "others during", "load"], rows))
    rows = []
    for r in ok:
        if r["phase"] == "training":
            rows.append([r["preset"], r["model"], r["batch"], latency(r, "step"),
                         r["step"]["min_s"], r["step"]["max_s"], r.get("first_call_s"),
                         r.get("mask_rois_per_step"),
                         r.get("losses_finite"), r["peak_rss_mb"], r["busy_before"],
                         r.get("others_busy_cores"), r["load_before"]])
    if rows:
        lines += ["", f"## Training step ({args.precision}, median of {args.runs} steps)",
                  common.table(["preset", "model", "batch", "step s", "min s", "max s",
                                "first step s", "mask ROIs/step", "finite loss",
                                "peak RSS MiB", "busy before",
                                "others during", "load"], rows)]
    rows = []
    for preset in args.presets:
        for phase, batch, key in [("inference", 1, "detect"), ("inference", 1, "graph"),
                                  *[("training", b, "step") for b in args.train_batches]]:
            pair = {r["model"]: latency(r, key) for r in ok
                    if r["preset"] == preset and r["phase"] == phase and r["batch"] == batch
                    and not r.get("variant")}
            if pair.get("ftmtl") and pair.get("maskrcnn"):
                overhead = 100.0 * (pair["ftmtl"] / pair["maskrcnn"] - 1.0)
                rows.append([preset, f"{phase} b{batch} ({key})", pair["ftmtl"],
                             pair["maskrcnn"], f"{overhead:+.1f} %"])
    if rows:
        lines += ["", "## FT-MTL overhead over its Mask R-CNN twin",
                  common.table(["preset", "measure", "ftmtl s", "maskrcnn s", "overhead"],
                               rows)]
    theirs = [r for r in ok if r["framework"] == "torchvision"]
    if theirs:
        lines += ["", "## Ours / torchvision maskrcnn_resnet50_fpn (same run, same threads)"]
        rows = []
        for other in theirs:
            key = "detect" if other["phase"] == "inference" else "step"
            for r in ok:
                if r["framework"] != "ours" or (r["phase"], r["batch"]) != (
                        other["phase"], other["batch"]):
                    continue
                mine, their = latency(r, key), latency(other, key)
                rows.append([r["preset"], r["model"], r.get("variant", ""),
                             f"{r['phase']} b{r['batch']}", other["model"], mine, their,
                             f"{mine / their:.2f}x"])
        lines.append(common.table(["preset", "model", "variant", "measure", "against",
                                   "ours s", "torchvision s", "ours/theirs"], rows))
    failed = [r for r in results if "error" in r]
    if failed:
        lines += ["", "## Failed"] + [f"- {r['label']}: {r['error']}" for r in failed]
    return "\n".join(lines)


# ==================================================================================== main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", type=common.name_list, default=list(PRESETS))
    parser.add_argument("--models", type=common.name_list, default=list(MODELS))
    parser.add_argument("--runs", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed calls after the first (tracing) call")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="intra- and inter-op threads, both frameworks")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--detections", type=int, default=100,
                        help="DETECTION_MAX_INSTANCES and box_detections_per_img")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a config attribute of our models (repeatable), e.g. "
                        "--set POST_NMS_ROIS_INFERENCE=300")
    parser.add_argument("--inference-set", action="append", default=[], metavar="NAME=VALUE",
                        help="also time our inference with these overrides (after --set), "
                        "side by side: e.g. --inference-set PREFILTER_MAX_ROIS=50 for the "
                        "prefilter beside the presets' strict order")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--lr", type=float, default=0.0,
                        help="SGD learning rate of the timed steps (both frameworks). 0 keeps "
                        "the weights, so every timed step does the same work (an untrained "
                        "network drifts or diverges within a few steps at the paper's 0.005, "
                        "which changes the proposals and the ROI counts); the optimizer's "
                        "arithmetic runs all the same")
    parser.add_argument("--train-batches", type=common.int_list, default=[1, 2])
    parser.add_argument("--precision", choices=common.PRECISIONS, default="float32",
                        help="compute type of both sides: ours through Config.MIXED_PRECISION "
                        "(mixed_bfloat16 / mixed_float16), torchvision through torch.autocast")
    parser.add_argument("--torch-python", help="Python with torch + torchvision (a venv "
                        "outside the repo); default: this Python if it has them")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--torch-num-classes", type=int, default=3,
                        help="torchvision classes incl. background (ours: 3)")
    parser.add_argument("--torch-proposals", choices=("rpn", "around-gt", "both"),
                        default="both",
                        help="torchvision training: its own RPN's proposals (untrained: few "
                        "overlap a mass, so its mask head, which runs on positives only, idles), "
                        "proposals drawn around the ground truth as a trained RPN gives (the "
                        "mask head gets its full share of positives), or both")
    parser.add_argument("--torch-frozen-bn", action="store_true",
                        help="FrozenBatchNorm2d in torchvision's backbone, like our "
                        "TRAIN_BN=False (torchvision's default without weights: trainable BN)")
    parser.add_argument("--torch-cuda", action="store_true", help="torchvision on CUDA")
    parser.add_argument("--dicom-shape", type=common.int_list, default=[1664, 1280],
                        help="rows,cols of the synthetic DICOMs")
    parser.add_argument("--max-busy", type=float, default=None,
                        help="wait before each measurement until at most this many cores are "
                        "busy (over 5 s), at most --wait-quiet-s")
    parser.add_argument("--wait-quiet-s", type=float, default=300.0)
    parser.add_argument("--timeout-s", type=float, default=1200.0, help="per worker")
    parser.add_argument("--budget-s", type=float, default=0.0,
                        help="stop starting measurements after this many seconds (the "
                        "tables of those done are still printed); 0: no limit")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one)")
    parser.add_argument("--json", help="write every result to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--variant", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


WORKERS = {"inputs": worker_inputs, "our-inference": worker_our_inference,
           "our-training": worker_our_training, "torch": worker_torch}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        common.emit(WORKERS[args.worker](args))
        return 0
    torch_python = find_torch_python(args)
    if torch_python is None and not args.no_torch:
        common.log("torch not found: torchvision comparison skipped (see benchmarks/README.md)")
    with tempfile.TemporaryDirectory(prefix="bench_model_") as scratch:
        args.workdir = args.workdir or scratch
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        inputs = common.run_worker(worker_command(sys.executable, args, "inputs"),
                                   args.timeout_s, "inputs")
        if "error" in inputs:
            common.log(f"could not prepare the inputs: {inputs}")
            return 1
        results = []
        started = time.monotonic()
        for label, command in plan(args, torch_python):
            left = args.budget_s - (time.monotonic() - started) if args.budget_s else None
            if left is not None and left < 20:
                results.append({"label": label, "error": f"{label}: skipped, the "
                                f"{args.budget_s:.0f} s budget is spent"})
                continue
            results.append(run_measurement(command, label, args, left))
            # Partial results survive an interrupted run.
            common.write_json(args.json, {"machine": common.machine_info(), "args": vars(args),
                                          "results": results, "complete": False})
    text = report(results, args)
    print(text)
    common.write_json(args.json, {"machine": common.machine_info(), "args": vars(args),
                                  "results": results, "report": text})
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
