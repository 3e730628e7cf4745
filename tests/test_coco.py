"""ftmtl.coco: an evaluation's ground truth and detections as COCO files, read back by
pycocotools (COCO, loadRes, COCOeval), whose AP@0.5 must equal the box AP our evaluation reports;
the RLE masks; bad input named."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ftmtl import coco
from ftmtl.evaluation import CasePrediction, MaskStack, evaluate_predictions
from ftmtl.inbreast.preprocess import Transform
from ftmtl.metrics import coco_style_ap

SHAPE = (40, 50)
BENIGN, MALIGNANT = 1, 2


def box_mask(box, shape=SHAPE) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    y1, x1, y2, x2 = (int(round(v)) for v in box)
    mask[y1:y2, x1:x2] = True
    return mask


def ellipse(centre, radii, shape=SHAPE) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2 <= 1.0


def case(image_id, label, gt_masks, gt_class_ids, rois, class_ids, scores, pred_masks=None,
         transform=None, shape=SHAPE) -> CasePrediction:
    gt = MaskStack.from_dense(np.stack(gt_masks, axis=-1)) if gt_masks else MaskStack.empty(shape)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 4)
    if pred_masks is None:
        pred_masks = [box_mask(r, shape) for r in rois]
    predicted = (MaskStack.from_dense(np.stack(pred_masks, axis=-1)) if len(pred_masks)
                 else MaskStack.empty(shape))
    probs = np.zeros((len(rois), 3))
    probs[np.arange(len(rois)), np.asarray(class_ids, dtype=int)] = scores
    return CasePrediction(
        image_id=image_id, file_name=f"{image_id}_MG.dcm", patient_id=str(image_id),
        label=label, original_shape=shape, gt_boxes=gt.extents(), gt_class_ids=gt_class_ids,
        gt_masks=gt, rois=rois, class_ids=class_ids, scores=scores, class_probs=probs,
        case_score=float(max(scores, default=0.0)), masks=predicted, transform=transform)


def cases() -> list[CasePrediction]:
    """Three images: hits, a near miss, wrong classes, false positives, an image without mass,
    sub-pixel boxes and tied scores across images."""
    return [
        case(0, "benign", [box_mask([5, 5, 15, 20])], [BENIGN],
             rois=[[5, 5, 15, 20], [5, 5, 15, 20], [25, 30, 35, 45]],
             class_ids=[BENIGN, MALIGNANT, BENIGN], scores=[0.9, 0.6, 0.4]),
        case(7, "malignant", [ellipse((20, 20), (10, 9)), box_mask([30, 35, 38, 48])],
             [MALIGNANT, BENIGN],
             rois=[[12.5, 10.2, 30.1, 28.7], [30, 35, 38, 48], [0, 0, 5, 5], [8, 30, 20, 44]],
             class_ids=[MALIGNANT, BENIGN, MALIGNANT, MALIGNANT], scores=[0.65, 0.3, 0.7, 0.4]),
        case(3, "normal", [], [], rois=[[1, 1, 9, 9], [20, 20, 30, 30]],
             class_ids=[BENIGN, MALIGNANT], scores=[0.85, 0.55]),
    ]


def evaluated(gt_path, results_path, iou_type: str) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(gt_path))
        evaluation = COCOeval(truth, truth.loadRes(str(results_path)), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def per_class_ap50(evaluation: COCOeval) -> dict[int, float]:
    """COCOeval's AP at IoU 0.5 per category (area 'all', 100 detections an image)."""
    precision = evaluation.eval["precision"][0, :, :, 0, -1]  # [R, K]
    return {cat: float(precision[:, k].mean())
            for k, cat in enumerate(evaluation.params.catIds)}


def test_pycocotools_ap50_equals_our_box_ap(tmp_path):
    predictions = cases()
    gt_path, results_path = coco.write_coco(predictions, tmp_path)
    assert (gt_path.name, results_path.name) == ("coco_gt.json", "coco_results.json")
    evaluation = evaluated(gt_path, results_path, "bbox")
    ours = evaluate_predictions(predictions)
    theirs = per_class_ap50(evaluation)
    assert theirs == pytest.approx({BENIGN: ours.box_ap50["benign"],
                                    MALIGNANT: ours.box_ap50["malignant"]}, abs=1e-9)
    assert evaluation.stats[1] == pytest.approx(ours.box_map50, abs=1e-9)
    # Not a trivial case: neither class is perfect or empty, and they differ.
    assert 0.1 < ours.box_ap50["benign"] < 0.99 and 0.1 < ours.box_ap50["malignant"] < 0.99
    assert ours.box_ap50["benign"] != pytest.approx(ours.box_ap50["malignant"])


def test_mask_ap_from_the_files_equals_ours(tmp_path):
    predictions = cases()
    evaluation = evaluated(*coco.write_coco(predictions, tmp_path), "segm")
    records = [{"gt_boxes": c.gt_boxes, "gt_class_ids": c.gt_class_ids,
                "gt_masks": c.gt_masks.dense(), "pred_boxes": c.rois,
                "pred_class_ids": c.class_ids, "pred_scores": c.scores,
                "pred_masks": c.original_masks().dense()} for c in predictions]
    ours = coco_style_ap(records, iou_thresholds=(0.5,), use_masks=True)
    assert per_class_ap50(evaluation) == pytest.approx(ours["per_class"], abs=1e-9)


def test_ground_truth_file_by_hand(tmp_path):
    predictions = cases()
    gt_path, _ = coco.write_coco(predictions, tmp_path)
    document = json.loads(gt_path.read_text())
    assert document["categories"] == [
        {"id": 1, "name": "benign", "supercategory": "mass"},
        {"id": 2, "name": "malignant", "supercategory": "mass"}]
    assert document["images"] == [
        {"id": i, "file_name": f"{i}_MG.dcm", "height": 40, "width": 50} for i in (0, 7, 3)]
    first, second, third = document["annotations"]
    assert [a["id"] for a in (first, second, third)] == [1, 2, 3]  # COCOeval reads 0 as none
    assert first == {"id": 1, "image_id": 0, "category_id": 1, "bbox": [5.0, 5.0, 15.0, 10.0],
                     "area": 150, "iscrowd": 0, "segmentation": first["segmentation"]}
    assert second["category_id"] == MALIGNANT and second["area"] == int(
        ellipse((20, 20), (10, 9)).sum())
    y1, x1, y2, x2 = predictions[1].gt_boxes[0]
    assert second["bbox"] == [x1, y1, x2 - x1, y2 - y1]
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(gt_path))
    for annotation, mask in ((first, box_mask([5, 5, 15, 20])),
                             (second, ellipse((20, 20), (10, 9)))):
        np.testing.assert_array_equal(truth.annToMask(annotation).astype(bool), mask)
        np.testing.assert_array_equal(coco.rle_decode(annotation["segmentation"]), mask)
        assert coco_mask.area(truth.annToRLE(annotation)) == annotation["area"]


def test_results_file_by_hand(tmp_path):
    _, results_path = coco.write_coco(cases(), tmp_path)
    results = json.loads(results_path.read_text())
    assert len(results) == 3 + 4 + 2
    sub_pixel = results[3]
    assert sub_pixel["image_id"] == 7 and sub_pixel["category_id"] == MALIGNANT
    assert sub_pixel["score"] == 0.65
    assert sub_pixel["bbox"] == pytest.approx([10.2, 12.5, 28.7 - 10.2, 30.1 - 12.5])
    np.testing.assert_array_equal(coco.rle_decode(sub_pixel["segmentation"]),
                                  box_mask([12.5, 10.2, 30.1, 28.7]))


def test_detection_masks_are_pasted_back_to_the_dicom(tmp_path):
    """Masks held in the model's frame (a crop of columns 10-50 at half size) come back in the
    DICOM's pixels; boxes already are."""
    transform = Transform(original_shape=SHAPE, crop=(0, 10, 40, 50), output_shape=(20, 20))
    model_mask = box_mask([2, 3, 6, 8], (20, 20))
    pasted = transform.mask_to_original(model_mask)
    assert pasted.sum() == 4 * 5 * 4  # twice the size each way
    prediction = case(1, "benign", [box_mask([4, 16, 12, 26])], [BENIGN],
                      rois=[[4, 16, 12, 26]], class_ids=[BENIGN], scores=[0.9],
                      pred_masks=[model_mask], transform=transform)
    (result,) = coco.coco_results([prediction])
    np.testing.assert_array_equal(coco.rle_decode(result["segmentation"]), pasted)
    assert result["segmentation"]["size"] == [40, 50]


def test_rle_round_trip_and_pycocotools_agree():
    rng = np.random.default_rng(3)
    for shape in ((1, 1), (5, 7), (40, 50)):
        mask = rng.random(shape) < 0.4
        rle = coco.rle_encode(mask)
        np.testing.assert_array_equal(coco.rle_decode(json.loads(json.dumps(rle))), mask)
        ours = coco_mask.frPyObjects(rle, *shape)
        np.testing.assert_array_equal(coco_mask.decode(ours).astype(bool), mask)
    assert coco.rle_encode(np.ones((2, 2), bool))["counts"] == [0, 4]


def test_rle_from_a_given_tight_box_is_the_rle_of_the_whole_mask():
    rng = np.random.default_rng(5)
    mask = np.zeros((30, 20), bool)
    mask[7:19, 3:11] = rng.random((12, 8)) < 0.6
    mask[7, 3] = mask[18, 10] = True  # the box's corners are set
    assert coco.rle_encode(mask, [7, 3, 19, 11]) == coco.rle_encode(mask)
    assert coco.rle_encode(np.zeros((3, 4), bool), [0, 0, 0, 0])["counts"] == [12]


def test_bad_input_is_named():
    first, second, _ = cases()
    second.image_id = first.image_id
    with pytest.raises(ValueError, match=r"'7_MG\.dcm': image_id 0 is also '0_MG\.dcm'"):
        coco.coco_ground_truth([first, second])
    stray = cases()[0]
    stray.class_ids[1] = 5
    with pytest.raises(ValueError, match=r"'0_MG\.dcm': class_ids holds class id 5, which is "
                                         r"not a category \(1 benign, 2 malignant\)"):
        coco.coco_results([stray])
    with pytest.raises(ValueError, match="rle_encode: the mask must be 2-D"):
        coco.rle_encode(np.zeros((2, 2, 1), bool))
    with pytest.raises(ValueError, match=r"'counts' add up to 3 pixels"):
        coco.rle_decode({"size": [2, 2], "counts": [1, 2]})
