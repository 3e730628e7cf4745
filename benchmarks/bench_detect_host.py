"""Host overhead of ``inbreast detect`` on a full-size mammogram, phase by phase.

    .venv/bin/python benchmarks/bench_detect_host.py [--preset fpn_cpu] [--repeats 3] \\
        [--shapes 4084x3328,3328x2560] [--threads 2] [--json /tmp/bench_detect_host.json]

``inbreast detect`` spends a file's time in the network and around it, on the host: reading a
16-bit DICOM of INbreast's size, preparing it, pasting every detection's mask back at the
DICOM's full size, and writing a PNG and a JSON. This script times each of those steps alone,
in the order ``cmd_detect`` runs them, to show how much of a file's time is not the network:

- read: ``read_dicom``;
- preprocess: ``detect_io.prepare_pixels`` (breast crop, resize, intensity window);
- mold: ``mold_inputs`` and the anchors (what ``MaskRCNN.forward`` does before the graph);
- network: ``run_graph`` alone (the Keras graph; the malignant veto's case score is computed
  inside it);
- unmold + paste: ``image_result`` (boxes back to the prepared image, the 28x28 masks pasted
  at its size, class probabilities and case score copied);
- to original: ``detect_io.detections_to_original`` (boxes and full-size masks in DICOM pixels);
- PNG, JSON: ``write_overlay_png``, ``write_detection_json``.

FT-MTL-Net has random weights (seeded) and DETECTION_MIN_CONFIDENCE 0, so every image returns
DETECTION_MAX_INSTANCES detections (10 for fpn_cpu, 20 for paper): the worst case for pasting
and writing masks. The DICOMs are synthetic INbreast images (14-bit), written once under
``--workdir`` and reused. One untimed run (which traces the graph) precedes ``--repeats`` timed
ones; the table gives each phase's median and its share of the sum of the medians.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import common

PHASES = ("read", "preprocess", "mold", "network", "unmold + paste", "to original", "PNG",
          "JSON")
NETWORK = "network"
INBREAST_SHAPES = ((4084, 3328), (3328, 2560))


def shape_list(text: str) -> list[tuple[int, int]]:
    """``"4084x3328,3328x2560"`` -> [(4084, 3328), (3328, 2560)] (rows x columns; argparse)."""
    shapes = []
    for item in text.split(","):
        rows, _, cols = item.partition("x")
        if not rows.isdigit() or not cols.isdigit():
            raise argparse.ArgumentTypeError(f"a shape is ROWSxCOLS, got {item!r}")
        shapes.append((int(rows), int(cols)))
    return shapes


def synthetic_dicom(workdir: Path, shape: tuple[int, int], seed: int) -> Path:
    """A synthetic INbreast DICOM of ``shape``: written under ``workdir`` the first time (one
    patient, four views; a full-size one takes half a minute), then reused."""
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    folder = workdir / f"inbreast_{shape[0]}x{shape[1]}_seed{seed}"
    found = sorted((folder / "AllDICOMs").glob("*.dcm"))
    if not found:
        common.log(f"writing a synthetic {shape[0]}x{shape[1]} DICOM under {folder}")
        generate_synthetic_inbreast(folder, n_patients=1, seed=seed, image_shape=shape,
                                    overwrite=True)
        found = sorted((folder / "AllDICOMs").glob("*.dcm"))
    return found[0]


def build(preset: str, seed: int, model_dir: str):
    """FT-MTL-Net in inference mode with seeded random weights, every detection kept."""
    import keras

    from ftmtl.presets import build_model, make_config

    keras.utils.set_random_seed(seed)
    config = make_config(preset, "ftmtl", IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.0)
    return build_model("inference", config, model_dir), config


def run_once(model, config, path: Path, out_dir: Path) -> tuple[dict[str, float], dict]:
    """One file through ``inbreast detect``'s steps: (seconds by phase, facts of the run)."""
    import numpy as np

    from ftmtl import detect_io
    from ftmtl.inbreast.dicom_io import read_dicom
    from ftmtl.model import intensity_window, prepared_image_size
    from mrcnn.anchors import get_anchors
    from mrcnn.data import mold_inputs

    seconds: dict[str, float] = {}

    def timed(phase: str, fn, *args, **kwargs):
        start = time.perf_counter()
        value = fn(*args, **kwargs)
        seconds[phase] = time.perf_counter() - start
        return value

    def mold(image):
        molded, metas, windows = mold_inputs([image], config)
        anchors = get_anchors(config, tuple(molded.shape[1:3]))
        batch = {"input_image": molded, "input_image_meta": metas,
                 "input_anchors": anchors[np.newaxis].copy()}
        return batch, molded.shape[1:3], windows[0]

    dicom = timed("read", read_dicom, path)
    image, transform = timed("preprocess", detect_io.prepare_pixels, dicom,
                             prepared_image_size(config), intensity_window(config))
    batch, molded_shape, window = timed("mold", mold, image)
    outputs = timed(NETWORK, model.run_graph, batch)
    result = timed("unmold + paste", model.image_result, outputs, 0, image.shape, molded_shape,
                   window)
    result = timed("to original", detect_io.detections_to_original, result, transform)
    timed("PNG", detect_io.write_overlay_png, out_dir / "detect.png", dicom.pixels, result,
          title=path.name)
    timed("JSON", detect_io.write_detection_json, out_dir / "detect.json", path, dicom.shape,
          result, extra={"model": config.NAME}, dicom=dicom)
    facts = {"dicom_shape": list(dicom.shape), "crop": list(transform.crop),
             "prepared_shape": list(image.shape[:2]), "molded_shape": list(molded_shape),
             "detections": int(len(result["class_ids"])),
             "full_size_masks_mib": round(result["masks"].nbytes / 2**20, 1)}
    return seconds, facts


def measure(model, config, path: Path, repeats: int) -> dict[str, Any]:
    """A warm-up run, then ``repeats`` timed ones: each phase's summary and the run's facts."""
    with tempfile.TemporaryDirectory() as out:
        run_once(model, config, path, Path(out))
        meter = common.OthersMeter().start()
        runs = [run_once(model, config, path, Path(out)) for _ in range(repeats)]
        others = meter.stop()
    phases = {phase: common.summary([seconds[phase] for seconds, _ in runs]) for phase in PHASES}
    return {"dicom": path.name, **runs[-1][1], "phases": phases, "others_busy_cores": others}


def report(result: dict[str, Any]) -> str:
    """The phase table and the host share of one measurement."""
    medians = {phase: result["phases"][phase]["median_s"] for phase in PHASES}
    total = sum(medians.values())
    rows = [(phase, medians[phase], f"{100 * medians[phase] / total:.1f} %",
             result["phases"][phase]["min_s"], result["phases"][phase]["max_s"])
            for phase in PHASES]
    rows.append(("total", total, "100 %", None, None))
    host = 100 * (total - medians[NETWORK]) / total
    rows_cols = f"{result['dicom_shape'][0]}x{result['dicom_shape'][1]}"
    return "\n".join([
        f"DICOM {rows_cols} ({result['dicom']}), breast crop {result['crop']}, prepared "
        f"{result['prepared_shape']}, network input {result['molded_shape']}, "
        f"{result['detections']} detections (full-size masks {result['full_size_masks_mib']} "
        f"MiB), other processes kept {result['others_busy_cores']} cores busy",
        "",
        common.table(("phase", "median s", "share", "min s", "max s"), rows),
        "",
        f"host (everything but the network): {host:.1f} % of the total",
    ])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fpn_cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--shapes", type=shape_list, default=[INBREAST_SHAPES[0]],
                        help="DICOM sizes, ROWSxCOLS[,ROWSxCOLS] (INbreast's: 4084x3328, "
                             "3328x2560)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0, help="weights and synthetic DICOMs")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "ftmtl_bench_detect_host",
                        help="where the synthetic DICOMs are written once and reused")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.configure_tensorflow(args.threads)
    import matplotlib

    matplotlib.use("Agg")  # as cmd_detect
    paths = [synthetic_dicom(args.workdir, shape, args.seed) for shape in args.shapes]
    with tempfile.TemporaryDirectory() as model_dir:
        model, config = build(args.preset, args.seed, model_dir)
        results = []
        for path in paths:
            common.log(f"{args.preset}: {path.name}, 1 warm-up and {args.repeats} timed runs")
            results.append(measure(model, config, path, args.repeats))
    machine = common.machine_info()
    print(f"preset {args.preset}, {args.threads} threads; {machine['nproc']} cores "
          f"({machine['cpu_model']}), load average {common.load_average()[0]:.2f}; "
          f"median of {args.repeats} runs after a warm-up")
    for result in results:
        print()
        print(report(result))
    common.write_json(args.json, {"preset": args.preset, "threads": args.threads,
                                  "repeats": args.repeats, "machine": machine,
                                  "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
