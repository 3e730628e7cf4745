"""Memory of inference on a full-size mammogram: peak RSS, and RSS growth over repeated calls.

    .venv/bin/python benchmarks/bench_memory.py [--repeats 100] [--rows 4084 --cols 3328]

Writes one synthetic INbreast DICOM of the full INbreast size (4084 rows x 3328 columns, the
larger of the two real sizes), then, in a fresh worker process so the peak is this path's alone:
builds FT-MTL-Net with the paper preset (ResNet-50 C4, 512 px) in inference mode, reads the
DICOM, prepares it as ``inbreast detect`` does (breast crop, 14-bit normalisation, long side 512),
runs ``detect`` and pastes the masks back to the DICOM's full size. Then it repeats detect and
pasting ``--repeats`` times and reports the RSS after call 20 and after the last one, and how
often the inference graph was traced.

The model has random weights and DETECTION_MIN_CONFIDENCE 0, so every call returns up to
DETECTION_MAX_INSTANCES detections (20): near the worst case for the full-size masks. The DICOM
is written by a separate process too, and the peak is the worker's VmHWM (ru_maxrss would
carry the parent's peak across fork and exec). Figures are printed (and written as JSON with
--json), never asserted.

``--training PRESET`` measures training instead: a fresh worker process generates nothing,
reads a synthetic INbreast set (4 patients at 832 x 640, written by a separate process), builds
the preset's training model (FT-MTL-Net from scratch, the preset's batch) and trains it through
``MaskRCNN.train`` with the class-balanced sampler, augmentation and the preset's data workers,
as ``inbreast train`` does, for ``--epochs`` epochs of ``--steps`` steps; it reports RSS and
peak after building and after each epoch. ``fpn_cpu`` trains on its 128 px crops of 384 px
images; ``paper`` and ``fpn`` at ``--image-size`` (default 512).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER = "BENCH_MEMORY_JSON "


def rss_mib() -> float:
    """Resident set size now (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (VmHWM, Linux /proc), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/self/status")


def write_dicom(out_dir: Path, rows: int, cols: int, seed: int) -> Path:
    """One synthetic patient at full size; the first DICOM with a mass."""
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    manifest = generate_synthetic_inbreast(out_dir, n_patients=1, seed=seed,
                                           image_shape=(rows, cols))
    with_mass = [image for image in manifest.images if image.masses] or manifest.images
    return out_dir / "AllDICOMs" / with_mass[0].dicom_name


def worker(dicom_path: str, repeats: int, warm: int) -> dict:
    """Everything measured in this (fresh) process."""
    stages = {"start": (rss_mib(), peak_rss_mib())}
    import keras
    import numpy as np

    from ftmtl.inbreast.dicom_io import read_dicom
    from ftmtl.inbreast.preprocess import prepare_image
    from ftmtl.presets import build_model, make_config

    stages["imports"] = (rss_mib(), peak_rss_mib())
    keras.utils.set_random_seed(0)  # the same random weights, so the same detections, each run
    config = make_config("paper", IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.0)
    with tempfile.TemporaryDirectory() as model_dir:
        model = build_model("inference", config, model_dir)
    stages["model built"] = (rss_mib(), peak_rss_mib())

    def infer() -> tuple[dict, tuple[int, int]]:
        dicom = read_dicom(dicom_path)
        gray, _, transform = prepare_image(dicom.pixels, None, dicom.bits_stored,
                                           config.IMAGE_MAX_DIM)
        image = np.repeat(gray[..., None] * np.float32(255.0), 3, axis=-1)
        result = model.detect([image])[0]
        full = transform.mask_to_original(result["masks"])
        return result, full.shape

    start = time.perf_counter()
    result, full_shape = infer()
    first_call_s = time.perf_counter() - start
    stages["first call (read, prepare, detect, paste)"] = (rss_mib(), peak_rss_mib())
    rss_after = []
    start = time.perf_counter()
    for _ in range(repeats):
        infer()
        rss_after.append(rss_mib())
    repeat_s = time.perf_counter() - start
    stages[f"after {repeats} more calls"] = (rss_mib(), peak_rss_mib())
    last_warm = min(warm, repeats) - 1
    return {
        "dicom": Path(dicom_path).name,
        "dicom_shape": list(full_shape[:2]),
        "detections": int(len(result["class_ids"])),
        "full_size_masks_mib": round(float(np.prod(full_shape) / 2**20), 1),
        "stages_mib": {name: {"rss": round(r, 1), "peak": round(p, 1)}
                       for name, (r, p) in stages.items()},
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "repeats": repeats,
        "warm": warm,
        "rss_after_warm_mib": round(rss_after[last_warm], 1) if repeats else None,
        "rss_after_last_call_mib": round(rss_after[-1], 1) if repeats else None,
        "growth_warm_to_last_mib": (round(rss_after[-1] - rss_after[last_warm], 2)
                                    if repeats else None),
        "traces": int(model._predict.experimental_get_tracing_count()),
        "first_call_s": round(first_call_s, 1),
        "repeat_mean_s": round(repeat_s / repeats, 2) if repeats else None,
        "cpu_count": os.cpu_count(),
    }


def training_worker(data_dir: str, preset: str, image_size: int, epochs: int,
                    steps: int) -> dict:
    """Peak RSS of training ``preset`` on the set in ``data_dir``, in this (fresh) process."""
    stages = {"start": (rss_mib(), peak_rss_mib())}
    import keras

    from ftmtl.cli import load_dataset
    from ftmtl.inbreast.folds import balanced_sampler
    from ftmtl.presets import build_model, make_config
    from ftmtl.schedule import run_schedule, scratch_schedule
    from mrcnn.augmentation import default_augmentation

    stages["imports"] = (rss_mib(), peak_rss_mib())
    keras.utils.set_random_seed(0)
    config = make_config(preset, STEPS_PER_EPOCH=steps)
    if config.IMAGE_RESIZE_MODE != "crop":
        config = make_config(preset, STEPS_PER_EPOCH=steps, IMAGE_MIN_DIM=image_size,
                             IMAGE_MAX_DIM=image_size)
    dataset = load_dataset(data_dir, config)
    stages["dataset read"] = (rss_mib(), peak_rss_mib())
    sampler = balanced_sampler(dataset, 0, config.MASS_FREE_SHARE, config.SAMPLER_WEIGHTS)
    after_epoch = []

    def record(epoch: int, logs=None) -> None:
        after_epoch.append((rss_mib(), peak_rss_mib()))

    with tempfile.TemporaryDirectory() as model_dir:
        model = build_model("training", config, model_dir)
        stages["model built"] = (rss_mib(), peak_rss_mib())
        start = time.perf_counter()
        run_schedule(model, dataset, None, scratch_schedule(config, epochs),
                     augmentation=default_augmentation(), sampler=sampler, seed=0, verbose=0,
                     custom_callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=record)])
        train_s = time.perf_counter() - start
    for epoch, values in enumerate(after_epoch, start=1):
        stages[f"after epoch {epoch} ({epoch * steps} steps)"] = values
    return {
        "mode": "training", "preset": preset, "batch": int(config.BATCH_SIZE),
        "input": [int(v) for v in config.IMAGE_SHAPE[:2]], "data_workers": int(config.DATA_WORKERS),
        "images": int(dataset.num_images),
        "stages_mib": {name: {"rss": round(r, 1), "peak": round(p, 1)}
                       for name, (r, p) in stages.items()},
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "train_s": round(train_s, 1), "cpu_count": os.cpu_count(),
    }


def run_self(*args: str) -> dict:
    """Run this file with ``args`` in a fresh process; its JSON line."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{out.stderr[-4000:]}")
    line = next(line for line in out.stdout.splitlines() if line.startswith(MARKER))
    return json.loads(line[len(MARKER):])


def training_report(figures: dict) -> str:
    rows = [f"training {figures['preset']}: FT-MTL-Net from scratch, batch {figures['batch']} "
            f"of {figures['input'][0]}x{figures['input'][1]} inputs, "
            f"{figures['data_workers']} data worker(s), {figures['images']} images",
            f"{'stage':<45} {'RSS MiB':>9} {'peak MiB':>9}"]
    for name, values in figures["stages_mib"].items():
        rows.append(f"{name:<45} {values['rss']:>9.1f} {values['peak']:>9.1f}")
    rows.append(f"peak RSS: {figures['peak_rss_mib']:.1f} MiB; training took "
                f"{figures['train_s']} s ({figures['cpu_count']} CPUs)")
    return "\n".join(rows)


def report(figures: dict) -> str:
    rows = [f"DICOM {figures['dicom']} {figures['dicom_shape'][0]}x"
            f"{figures['dicom_shape'][1]}, FT-MTL-Net paper preset at 512 px, "
            f"{figures['detections']} detections a call "
            f"(their full-size masks: {figures['full_size_masks_mib']:.1f} MiB in all)",
            f"{'stage':<45} {'RSS MiB':>9} {'peak MiB':>9}"]
    for name, values in figures["stages_mib"].items():
        rows.append(f"{name:<45} {values['rss']:>9.1f} {values['peak']:>9.1f}")
    rows += [f"peak RSS: {figures['peak_rss_mib']:.1f} MiB",
             f"repeated calls: RSS after call {figures['warm'] + 1}: "
             f"{figures['rss_after_warm_mib']} MiB; after call {figures['repeats'] + 1}: "
             f"{figures['rss_after_last_call_mib']} MiB; growth "
             f"{figures['growth_warm_to_last_mib']} MiB",
             f"graph traced {figures['traces']} time(s); first call {figures['first_call_s']} s, "
             f"then {figures['repeat_mean_s']} s a call ({figures['cpu_count']} CPUs)"]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--rows", type=int, default=4084)
    parser.add_argument("--cols", type=int, default=3328)
    parser.add_argument("--warm", type=int, default=20,
                        help="repeated calls before the growth is measured")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--training", metavar="PRESET",
                        help="measure training of this preset (fpn_cpu, paper, fpn) instead")
    parser.add_argument("--image-size", type=int, default=512,
                        help="--training with a square preset: its input side")
    parser.add_argument("--epochs", type=int, default=3, help="--training: epochs")
    parser.add_argument("--steps", type=int, default=20, help="--training: steps an epoch")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--training-worker", help=argparse.SUPPRESS)
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    parser.add_argument("--generate-set", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.training_worker:
        figures = training_worker(args.training_worker, args.training, args.image_size,
                                  args.epochs, args.steps)
        print(MARKER + json.dumps(figures), flush=True)
        return
    if args.generate_set:
        from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

        generate_synthetic_inbreast(Path(args.generate_set), n_patients=4, seed=args.seed,
                                    image_shape=(832, 640))
        print(MARKER + json.dumps({"dir": args.generate_set}), flush=True)
        return
    if args.training:
        with tempfile.TemporaryDirectory() as tmp:
            data = run_self("--generate-set", str(Path(tmp) / "inbreast"), "--seed",
                            str(args.seed))["dir"]
            figures = run_self("--training-worker", data, "--training", args.training,
                               "--image-size", str(args.image_size), "--epochs",
                               str(args.epochs), "--steps", str(args.steps))
        print(training_report(figures))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return
    if args.worker:
        print(MARKER + json.dumps(worker(args.worker, args.repeats, args.warm)), flush=True)
        return
    if args.generate:
        dicom = write_dicom(Path(args.generate), args.rows, args.cols, args.seed)
        print(MARKER + json.dumps({"dicom": str(dicom)}), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        dicom = run_self("--generate", str(Path(tmp) / "inbreast"), "--rows", str(args.rows),
                         "--cols", str(args.cols), "--seed", str(args.seed))["dicom"]
        figures = run_self("--worker", dicom, "--repeats", str(args.repeats), "--warm",
                           str(args.warm))
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
