"""Memory: repeated ``detect`` calls neither grow the process nor retrace the graph.

RSS is read from /proc (Linux). The first calls warm caches (TF's allocator, the traced graph),
so growth is measured from call 20 on, in two windows of 40 calls: a leak grows the process in
each window, while the allocator's one-off steps (a new heap page range, mrcnn/malloc.py keeps
the peak heap) land in one of them. No timing asserts; the full-size figures are
in benchmarks/bench_memory.py and docs/robustness.md."""

from __future__ import annotations

import os

import numpy as np
import pytest
from tiny_config import TinyShapesConfig

from ftmtl.presets import build_model, make_config
from mrcnn.model import MaskRCNN
from samples.shapes.shapes import ShapesDataset

CALLS = 100
WARM = 20
WINDOW = 40
# A leak of one molded 64x64x3 float32 input per call would add 40 x 48 KiB = 1.9 MiB a window.
MAX_WINDOW_GROWTH_MIB = 1.5


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def images() -> list[np.ndarray]:
    """Same model input shape (square resizing), different content and original sizes."""
    ds = ShapesDataset()
    ds.load_shapes(4, 64, 64, seed=12)
    ds.prepare()
    found = [ds.load_image(i) for i in ds.image_ids]
    return [found[0], found[1][:48], found[2][:, :40], found[3]]


class MemoryConfig(TinyShapesConfig):
    NAME = "memory"
    IMAGES_PER_GPU = 1
    DETECTION_MIN_CONFIDENCE = 0.0  # keep detections (and their mask pasting) in every call


def maskrcnn(tmp_path) -> MaskRCNN:
    return MaskRCNN("inference", MemoryConfig(), tmp_path)


def ftmtl(tmp_path) -> MaskRCNN:
    config = make_config("paper_cpu", IMAGE_RESIZE_MODE="square", IMAGE_MIN_DIM=64,
                         IMAGE_MAX_DIM=64, MEAN_PIXEL=128.0,
                         RPN_ANCHOR_SCALES=(8, 16, 32, 64), MASK_HEAD_CHANNELS=16,
                         IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.0)
    return build_model("inference", config, tmp_path)


@pytest.mark.parametrize("build", [maskrcnn, ftmtl], ids=["maskrcnn", "ftmtl"])
def test_repeated_detect_is_flat_and_traces_once(build, tmp_path):
    model = build(tmp_path)
    inputs = images()
    rss = []
    found = 0
    for call in range(CALLS):
        result = model.detect([inputs[call % len(inputs)]])[0]
        found += len(result["class_ids"])
        rss.append(rss_mib())
    assert found > 0  # the calls did produce detections, so the whole path ran
    assert model._predict.experimental_get_tracing_count() == 1
    windows = [rss[start + WINDOW - 1] - rss[start - 1] for start in range(WARM, CALLS, WINDOW)]
    assert min(windows) < MAX_WINDOW_GROWTH_MIB, (windows, rss[WARM - 1::10])
