"""Matterport's evaluation names (mrcnn.utils.compute_matches / compute_ap / compute_ap_range /
compute_recall / download_trained_weights, mrcnn.model.load_image_gt / mold_image,
mrcnn.visualize.plot_precision_recall / display_differences): Matterport's signatures, hand-worked
values, pycocotools' matching and IoU, and the download failing clearly without network."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import urllib.error
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from pycocotools import mask as coco_mask  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402
from tiny_config import TinyConfig  # noqa: E402

import mrcnn.weights  # noqa: E402
from ftmtl import metrics  # noqa: E402
from mrcnn import data, utils, visualize  # noqa: E402
from mrcnn import model as modellib  # noqa: E402
from mrcnn.dataset import Dataset  # noqa: E402

SHAPE = (80, 80)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def box_masks(boxes, shape=SHAPE) -> np.ndarray:
    masks = np.zeros((*shape, len(boxes)), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(np.asarray(boxes, dtype=int)):
        masks[y1:y2, x1:x2, i] = True
    return masks


def ap_case():
    """Four masses (three of class 1, one of class 2) and five predictions, hand-labelled."""
    gt_boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]])
    gt_class_ids = np.array([1, 1, 1, 2])
    pred_boxes = np.array([
        [0, 0, 10, 10],    # 0.9 class 1 -> TP (mass 0)
        [0, 0, 10, 10],    # 0.8 class 1, mass 0 again -> FP (Matterport's gt_match > 0 slip
        #                    would match it once more)
        [60, 60, 70, 70],  # 0.7 class 1 on the class-2 mass -> FP
        [20, 20, 30, 25],  # 0.6 class 1, mask IoU exactly 0.5 with mass 1 -> TP (>=)
        [60, 60, 70, 70],  # 0.5 class 2 -> TP (mass 3)
    ])
    pred_class_ids = np.array([1, 1, 1, 1, 2])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    return (gt_boxes, gt_class_ids, box_masks(gt_boxes), pred_boxes, pred_class_ids, scores,
            box_masks(pred_boxes))


# ------------------------------------------------------------------------------- signatures
def parameters(function) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()]


EMPTY = inspect.Parameter.empty
IMAGE_ARGS = ["gt_boxes", "gt_class_ids", "gt_masks", "pred_boxes", "pred_class_ids",
              "pred_scores", "pred_masks"]


def test_the_names_have_matterports_signatures():
    required = [(name, EMPTY) for name in IMAGE_ARGS]
    assert parameters(utils.compute_matches) == [*required, ("iou_threshold", 0.5),
                                                 ("score_threshold", 0.0)]
    assert parameters(utils.compute_ap) == [*required, ("iou_threshold", 0.5)]
    singular = [(name, EMPTY) for name in ("gt_box", "gt_class_id", "gt_mask", "pred_box",
                                           "pred_class_id", "pred_score", "pred_mask")]
    assert parameters(utils.compute_ap_range) == [*singular, ("iou_thresholds", None),
                                                  ("verbose", 1)]
    assert parameters(utils.compute_recall) == [("pred_boxes", EMPTY), ("gt_boxes", EMPTY),
                                                ("iou", EMPTY)]
    assert parameters(utils.download_trained_weights)[:2] == [("coco_model_path", EMPTY),
                                                              ("verbose", 1)]
    assert parameters(modellib.load_image_gt) == [
        ("dataset", EMPTY), ("config", EMPTY), ("image_id", EMPTY), ("augment", False),
        ("augmentation", None), ("use_mini_mask", False)]
    assert parameters(modellib.mold_image) == [("images", EMPTY), ("config", EMPTY)]
    assert parameters(visualize.plot_precision_recall)[:3] == [
        ("AP", EMPTY), ("precisions", EMPTY), ("recalls", EMPTY)]
    assert parameters(visualize.display_differences) == [
        ("image", EMPTY), ("gt_box", EMPTY), ("gt_class_id", EMPTY), ("gt_mask", EMPTY),
        ("pred_box", EMPTY), ("pred_class_id", EMPTY), ("pred_score", EMPTY),
        ("pred_mask", EMPTY), ("class_names", EMPTY), ("title", ""), ("ax", None),
        ("show_mask", True), ("show_box", True), ("iou_threshold", 0.5),
        ("score_threshold", 0.5)]
    assert utils.COCO_MODEL_URL.endswith("/mask_rcnn_coco.h5")


# ------------------------------------------------------------------------------ AP, matches
def test_compute_ap_hand_worked_on_masks():
    case = ap_case()
    order = np.array([3, 0, 4, 2, 1])  # input order must not matter
    shuffled = (*case[:3], case[3][order], case[4][order], case[5][order], case[6][..., order])
    ap, precisions, recalls, overlaps = utils.compute_ap(*shuffled)
    # precision 1, 1/2, 1/3, 2/4, 3/5 at recall 1/4, 1/4, 1/4, 2/4, 3/4; envelope 1, .6, .6, .6
    assert ap == pytest.approx(0.25 * 1 + 0.25 * 0.6 + 0.25 * 0.6)
    np.testing.assert_allclose(recalls, [0, 0.25, 0.25, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(precisions, [1, 1, 0.6, 0.6, 0.6, 0.6, 0])
    assert overlaps.shape == (5, 4) and overlaps[3, 1] == pytest.approx(0.5)  # score order


def test_compute_ap_compares_masks_not_boxes():
    """Same box, complementary masks: Matterport's AP (mask IoU) is 0, the box AP 1."""
    rows, cols = np.mgrid[:10, :10]
    gt_mask = np.zeros((*SHAPE, 1), bool)
    pred_mask = np.zeros((*SHAPE, 1), bool)
    gt_mask[:10, :10, 0] = cols <= rows
    pred_mask[:10, :10, 0] = cols > rows
    box = np.array([[0, 0, 10, 10]])
    ap, *_ = utils.compute_ap(box, [1], gt_mask, box, [1], [0.9], pred_mask)
    box_ap, *_ = metrics.compute_ap(box, [1], None, box, [1], [0.9], None)
    assert (ap, box_ap) == (0.0, 1.0)


def test_compute_matches_hand_worked():
    gt_match, pred_match, overlaps = utils.compute_matches(*ap_case())
    assert pred_match.tolist() == [0, -1, -1, 1, 3]
    assert gt_match.tolist() == [0, 3, -1, 4]
    assert overlaps.shape == (5, 4)
    # score_threshold is Matterport's name for a second IoU floor: at 0.6 the IoU-0.5 match goes.
    gt_match, pred_match, _ = utils.compute_matches(*ap_case(), score_threshold=0.6)
    assert pred_match.tolist() == [0, -1, -1, -1, 3] and gt_match.tolist() == [0, -1, -1, 4]


def test_compute_matches_agree_with_pycocotools():
    """One class, overlapping masses: a prediction whose best mass is taken falls back to the
    next one above the threshold, as COCOeval does; the mask IoUs are pycocotools'."""
    gt_boxes = np.array([[0, 0, 10, 20], [0, 10, 10, 30], [20, 0, 35, 15]])
    pred_boxes = np.array([
        [0, 4, 10, 24],    # 0.8: IoU 0.67 with mass 0 (taken by the 0.9 one), 0.54 with mass 1
        [0, 0, 10, 20],    # 0.9: mass 0 exactly
        [0, 10, 10, 30],   # 0.7: mass 1 exactly, but taken -> no match
        [20, 40, 30, 55],  # 0.6: nothing
        [22, 0, 35, 15],   # 0.5: mass 2, IoU 0.87
    ])
    scores = np.array([0.8, 0.9, 0.7, 0.6, 0.5])
    gt_masks, pred_masks = box_masks(gt_boxes, (40, 60)), box_masks(pred_boxes, (40, 60))
    ones_gt, ones_pred = np.ones(3, int), np.ones(5, int)
    gt_match, pred_match, overlaps = utils.compute_matches(
        gt_boxes, ones_gt, gt_masks, pred_boxes, ones_pred, scores, pred_masks)
    assert pred_match.tolist() == [0, 1, -1, -1, 2] and gt_match.tolist() == [0, 1, 4]

    def rles(masks):
        return [coco_mask.encode(np.asfortranarray(masks[..., i].astype(np.uint8)))
                for i in range(masks.shape[-1])]

    gt_rles, pred_rles = rles(gt_masks), rles(pred_masks)
    for rle in gt_rles + pred_rles:
        rle["counts"] = rle["counts"].decode("ascii")
    by_score = np.argsort(-scores, kind="stable")
    np.testing.assert_allclose(
        overlaps, coco_mask.iou([pred_rles[i] for i in by_score], gt_rles, [0, 0, 0]),
        atol=1e-12)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {
            "images": [{"id": 1, "height": 40, "width": 60}],
            "categories": [{"id": 1, "name": "mass"}],
            "annotations": [{"id": g + 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "segmentation": rle, "area": float(coco_mask.area(rle))}
                            for g, rle in enumerate(gt_rles)]}
        truth.createIndex()
        found = truth.loadRes([{"image_id": 1, "category_id": 1, "score": float(s),
                                "segmentation": rle} for s, rle in zip(scores, pred_rles,
                                                                       strict=True)])
        evaluation = COCOeval(truth, found, "segm")
        evaluation.params.iouThrs = np.array([0.5])
        evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluation.evaluate()
    image = evaluation.evalImgs[0]
    coco_matches = image["dtMatches"][0].astype(int) - 1  # annotation ids from 1; 0: none
    assert coco_matches.tolist() == pred_match.tolist()


def test_compute_ap_range_is_the_mean_over_thresholds(caplog):
    case = ap_case()
    with caplog.at_level(logging.INFO, logger="mrcnn.instance_eval"):
        ap = utils.compute_ap_range(*case, iou_thresholds=[0.5, 0.55])
    # At 0.55 the IoU-0.5 prediction is an FP: precision 1, 1/2, 1/3, 1/4, 2/5 -> .25 + .25*.4
    assert ap == pytest.approx((0.55 + 0.35) / 2)
    assert "AP @0.50-0.55: 0.450" in caplog.text
    default = utils.compute_ap_range(*case, verbose=0)
    expected = np.mean([utils.compute_ap(*case, iou_threshold=t)[0]
                        for t in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)])
    assert default == pytest.approx(expected) and 0.35 < default < 0.55
    with pytest.raises(ValueError, match="iou_thresholds is empty"):
        utils.compute_ap_range(*case, iou_thresholds=[])


def test_compute_recall_hand_worked():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    pred = np.array([[0, 0, 10, 10],    # mass 0, IoU 1
                     [0, 0, 10, 8],     # mass 0 again, IoU 0.8
                     [20, 20, 30, 24],  # mass 1, IoU 0.4
                     [60, 60, 70, 70]])  # nothing
    recall, positive = utils.compute_recall(pred, gt, 0.5)
    assert recall == pytest.approx(1 / 3) and positive.tolist() == [0, 1]
    recall, positive = utils.compute_recall(pred, gt, 0.4)
    assert recall == pytest.approx(2 / 3) and positive.tolist() == [0, 1, 2]
    assert utils.compute_recall(np.zeros((0, 4)), gt, 0.5)[0] == 0.0
    assert np.isnan(utils.compute_recall(pred, np.zeros((0, 4)), 0.5)[0])


# ------------------------------------------------------------------------- data functions
class OneRect(Dataset):
    """One 64x64 image with one class-1 rectangle left of centre (a flip moves it)."""

    def __init__(self):
        super().__init__()
        self.add_class("r", 1, "a")
        self.add_class("r", 2, "b")
        self.add_image("r", 0, None)
        self.prepare()

    def load_image(self, image_id):
        image = np.full((64, 64, 3), 20, np.uint8)
        image[10:30, 5:20] = 200
        return image

    def load_mask(self, image_id):
        mask = np.zeros((64, 64, 1), bool)
        mask[10:30, 5:20, 0] = True
        return mask, np.array([1], np.int32)


def test_load_image_gt_gives_full_masks_unless_asked_and_leaves_the_config():
    config = TinyConfig()
    assert config.USE_MINI_MASK
    image, meta, class_ids, bbox, mask = modellib.load_image_gt(OneRect(), config, 0)
    assert image.shape == (64, 64, 3) and mask.shape == (64, 64, 1)
    assert class_ids.tolist() == [1] and bbox.tolist() == [[10, 5, 30, 20]]
    assert mask[..., 0].sum() == 20 * 15
    ours = data.load_image_gt(OneRect(), config, 0)  # the pipeline's: mini masks
    _, _, _, _, mini = modellib.load_image_gt(OneRect(), config, 0, use_mini_mask=True)
    assert mini.shape == (28, 28, 1) and np.array_equal(mini, ours[4])
    np.testing.assert_array_equal(meta, ours[1])
    assert config.USE_MINI_MASK  # the caller's config is not changed


def test_load_image_gt_augment_flips_half_the_time(caplog):
    with caplog.at_level(logging.WARNING, logger="mrcnn.model"):
        lefts = {int(modellib.load_image_gt(OneRect(), TinyConfig(), 0, augment=True)[3][0, 1])
                 for _ in range(40)}
    assert lefts == {5, 64 - 20}  # as loaded, and mirrored (P(one side only) = 2 ** -39)
    assert "'augment' is deprecated" in caplog.text


def test_mold_image_subtracts_the_mean_pixel():
    config = TinyConfig()
    images = np.full((2, 4, 4, 3), 200, np.uint8)
    molded = modellib.mold_image(images, config)
    assert modellib.mold_image is data.mold_image and molded.dtype == np.float32
    np.testing.assert_allclose(molded[0, 0, 0], 200 - np.array([123.7, 116.8, 103.9]),
                               rtol=1e-6)


# ------------------------------------------------------------------------------ download
def test_download_fails_clearly_without_network(tmp_path, monkeypatch):
    target = tmp_path / "weights" / "mask_rcnn_coco.h5"
    with pytest.raises(mrcnn.weights.WeightsDownloadError) as failure:
        utils.download_trained_weights(str(target), verbose=0,
                                       url=(tmp_path / "nowhere.h5").as_uri())
    assert str(target) in str(failure.value) and "nowhere.h5" in str(failure.value)
    assert "copy it to" in str(failure.value)
    assert list(target.parent.iterdir()) == []  # no partial file left

    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(mrcnn.weights, "urlopen", offline)
    target.write_bytes(b"a good copy")
    with pytest.raises(mrcnn.weights.WeightsDownloadError,
                       match=r"could not download https://github\.com/matterport/.*"
                             r"Temporary failure in name resolution"):
        utils.download_trained_weights(target)
    assert target.read_bytes() == b"a good copy"  # an existing file survives a failed try
    assert sorted(p.name for p in target.parent.iterdir()) == ["mask_rcnn_coco.h5"]


def test_download_writes_the_file_and_the_cache_helper_uses_it(tmp_path, monkeypatch, caplog):
    fetched = []

    class Response(io.BytesIO):  # what urlopen returns: a readable body with headers
        headers = {"Content-Length": "8"}

    def served(url, timeout):
        fetched.append(url)
        return Response(b"h5 bytes")

    monkeypatch.setattr(mrcnn.weights, "urlopen", served)
    target = tmp_path / "coco.h5"
    with caplog.at_level(logging.INFO, logger="mrcnn.weights"):
        utils.download_trained_weights(target)
    assert target.read_bytes() == b"h5 bytes" and fetched == [utils.COCO_MODEL_URL]
    assert f"Downloading {utils.COCO_MODEL_URL} to {target}" in caplog.text
    cached = mrcnn.weights.coco_weights_path(cache_dir=str(tmp_path / "keras"))
    assert cached == str(tmp_path / "keras" / "models" / "mask_rcnn_coco.h5")
    assert Path(cached).read_bytes() == b"h5 bytes" and len(fetched) == 2
    mrcnn.weights.coco_weights_path(cache_dir=str(tmp_path / "keras"))  # there: no new fetch
    assert len(fetched) == 2


# ---------------------------------------------------------------------------------- plots
def test_plot_precision_recall_draws_the_envelope():
    ap, precisions, recalls, _ = utils.compute_ap(*ap_case())
    ax = visualize.plot_precision_recall(ap, precisions, recalls)
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_xdata(), recalls)
    np.testing.assert_allclose(line.get_ydata(), precisions)
    assert "AP@50 = 0.550" in ax.get_title()


def test_display_differences_colours_and_captions():
    gt_boxes, gt_ids, gt_masks, pred_boxes, pred_ids, scores, pred_masks = ap_case()
    # Input order shuffled and a padding row added: captions must still follow the scores.
    order = [4, 2, 0, 3, 1]
    pred_boxes = np.concatenate([pred_boxes[order], np.zeros((1, 4))])
    pred_masks = np.concatenate([pred_masks[..., order], np.zeros((*SHAPE, 1), bool)], axis=-1)
    pred_ids, scores = np.append(pred_ids[order], 1), np.append(scores[order], 0.95)
    image = np.full((*SHAPE, 3), 90, np.uint8)
    ax = visualize.display_differences(image, gt_boxes, gt_ids, gt_masks, pred_boxes, pred_ids,
                                       scores, pred_masks, ["BG", "benign", "malignant"])
    captions = [t.get_text() for t in ax.texts]
    assert captions == ["", "", "", "",
                        "0.90 / 1.00", "0.80 / 1.00", "0.70 / 1.00", "0.60 / 0.50",
                        "0.50 / 1.00"]
    edges = [tuple(np.round(r.get_edgecolor()[:3], 3)) for r in ax.patches
             if isinstance(r, Rectangle)]
    assert edges == [(0.0, 1.0, 0.0)] * 4 + [(1.0, 0.0, 0.0)] * 5
    assert "Ground truth (green)" in ax.get_title()
