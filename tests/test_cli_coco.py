"""``inbreast evaluate --coco``: the run's ground truth and detections as COCO files, in the
DICOMs' pixels, which pycocotools reads and scores as the run's own metrics.json does."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ftmtl.cli import main

pytestmark = pytest.mark.slow  # trains a model (one step), about 30 s of CPU

# paper_cpu crops: images prepared at 64 px, crops of 64 (as tests/test_cli.py).
TINY = ["--preset", "paper_cpu", "--image-size", "64", "--set", "IMAGE_MIN_DIM=64"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Two synthetic patients, fold 0 of 2 trained one step, then evaluated on fold 0 with
    every detection kept (an untrained model scores low). Returns (dataset, out, stdout)."""
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    dataset = tmp_path_factory.mktemp("inbreast")
    generate_synthetic_inbreast(dataset, n_patients=2, seed=1, image_shape=(128, 96))
    logs, out = tmp_path_factory.mktemp("logs"), tmp_path_factory.mktemp("eval")
    folds = ["--folds", "2", "--fold", "0"]
    assert main(["-q", "train", "--dataset", str(dataset), *TINY, "--steps", "1", "--epochs",
                 "1", "--logs", str(logs), *folds, "--weights", "none",
                 "--nondeterministic"]) == 0
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["-q", "evaluate", "--dataset", str(dataset), "--weights", "last",
                     "--logs", str(logs), *folds, *TINY, "--set",
                     "DETECTION_MIN_CONFIDENCE=0.0", "--bootstrap", "10", "--coco",
                     "--out", str(out)])
    assert code == 0
    return dataset, out, printed.getvalue()


def test_evaluate_coco_writes_both_files_in_dicom_pixels(evaluated):
    dataset, out, printed = evaluated
    assert "COCO ground truth and detections written to" in printed
    truth = json.loads((out / "coco_gt.json").read_text())
    results = json.loads((out / "coco_results.json").read_text())
    # The held-out fold is one patient's four views, at the DICOMs' 128 x 96.
    assert len(truth["images"]) == 4
    assert {(i["height"], i["width"]) for i in truth["images"]} == {(128, 96)}
    # INbreast's file ids, the first field of the DICOMs' names.
    assert {i["file_name"] for i in truth["images"]} <= {
        p.name.split("_")[0] for p in (dataset / "AllDICOMs").glob("*.dcm")}
    assert [c["name"] for c in truth["categories"]] == ["benign", "malignant"]
    assert truth["annotations"] and results
    for entry in truth["annotations"] + results:
        assert entry["segmentation"]["size"] == [128, 96]
        x, y, w, h = entry["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 96 + 1e-6 and y + h <= 128 + 1e-6


def test_pycocotools_scores_the_files_as_metrics_json(evaluated):
    _, out, _ = evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(out / "coco_gt.json"))
        evaluation = COCOeval(truth, truth.loadRes(str(out / "coco_results.json")), "bbox")
        evaluation.params.maxDets = [1, 10, 1000]  # every detection, as our AP counts them
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # A one-step model finds nothing (AP 0 both ways); tests/test_coco.py checks the agreement
    # on detections that do hit.
    assert evaluation.stats[1] == pytest.approx(metrics["box_map50"], abs=1e-9)
    # Every detection is in the file: none hits a mass, so each is a false positive of the FROC.
    n_results = len(evaluation.cocoDt.getAnnIds())
    assert n_results / metrics["n_cases"] == pytest.approx(metrics["froc"]["fpi"][-1])
