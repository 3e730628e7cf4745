"""ftmtl.evaluation: case records, mapping back to original pixels, and the evaluation numbers
checked against direct calls to ftmtl.metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ftmtl.evaluation import (
    CasePrediction,
    EvaluationResult,
    MaskStack,
    UndefinedMetricWarning,
    evaluate_predictions,
    predict_dataset,
)
from ftmtl.inbreast.preprocess import Transform
from ftmtl.metrics import (
    FROC_POINTS,
    case_detected,
    coco_style_ap,
    detected_dice,
    froc,
    roc_auc,
    tpr_vs_iou,
)
from mrcnn.box_ops import extract_bboxes

SHAPE = (60, 50)


# ------------------------------------------------------------------------------ helpers


def ellipse(shape, box) -> np.ndarray:
    """Bool mask of the ellipse inscribed in pixel box (y1, x1, y2, x2)."""
    y1, x1, y2, x2 = box
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    cy, cx = (y1 + y2) / 2 - 0.5, (x1 + x2) / 2 - 0.5
    ry, rx = max((y2 - y1) / 2, 0.5), max((x2 - x1) / 2, 0.5)
    return ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1.0


def random_box(rng, shape, low=6, high=20):
    h, w = rng.integers(low, high, size=2)
    y, x = rng.integers(0, shape[0] - h), rng.integers(0, shape[1] - w)
    return np.array([y, x, y + h, x + w])


def make_case(rng, index: int, label: str) -> tuple[CasePrediction, dict]:
    """A case with 0-2 masses, detections near some of them and random false positives; also
    returns the full-resolution arrays for the reference computations."""
    n_masses = 0 if label == "normal" else int(rng.integers(1, 3))
    gt_masks = np.stack([ellipse(SHAPE, random_box(rng, SHAPE)) for _ in range(n_masses)],
                        axis=-1) if n_masses else np.zeros((*SHAPE, 0), bool)
    gt_boxes = extract_bboxes(gt_masks).astype(float)
    pred_boxes = []
    for g in range(n_masses):
        if rng.uniform() < 0.75:  # found, with some jitter
            pred_boxes.append(np.clip(gt_boxes[g] + rng.integers(-3, 4, size=4),
                                      0, [SHAPE[0], SHAPE[1]] * 2))
    for _ in range(int(rng.integers(0, 3))):
        pred_boxes.append(random_box(rng, SHAPE))
    pred_boxes = np.array(pred_boxes, dtype=float).reshape(-1, 4)
    pred_boxes = pred_boxes[(pred_boxes[:, 2] > pred_boxes[:, 0] + 1)
                            & (pred_boxes[:, 3] > pred_boxes[:, 1] + 1)]
    n = pred_boxes.shape[0]
    pred_masks = (np.stack([ellipse(SHAPE, b.astype(int)) for b in pred_boxes], axis=-1)
                  if n else np.zeros((*SHAPE, 0), bool))
    scores = rng.uniform(0.5, 1.0, size=n)
    probs = rng.dirichlet(np.ones(3), size=n)
    class_ids = np.where(probs[:, 2] > probs[:, 1], 2, 1)
    gt_class = 2 if label == "malignant" else 1
    case = CasePrediction(
        image_id=index, file_name=f"case{index}", patient_id=f"p{index // 2}", label=label,
        original_shape=SHAPE, gt_boxes=gt_boxes, gt_class_ids=np.full(n_masses, gt_class),
        gt_masks=MaskStack.from_dense(gt_masks), rois=pred_boxes, class_ids=class_ids,
        scores=scores, class_probs=probs, case_score=float(rng.uniform()),
        masks=MaskStack.from_dense(pred_masks))
    return case, {"gt_masks": gt_masks, "pred_masks": pred_masks}


@pytest.fixture(scope="module")
def hand_cases():
    rng = np.random.default_rng(7)
    labels = ["malignant", "benign", "normal"] * 6
    return [make_case(rng, i, label) for i, label in enumerate(labels)]


# ---------------------------------------------------------------------------- MaskStack


def test_mask_stack_round_trip_window_and_extents():
    rng = np.random.default_rng(0)
    masks = np.zeros((30, 40, 3), bool)
    masks[5:12, 7:20, 0] = True
    masks[..., 1] = rng.uniform(size=(30, 40)) > 0.97
    stack = MaskStack.from_dense(masks)  # mask 2 stays empty
    np.testing.assert_array_equal(stack.dense(), masks)
    np.testing.assert_array_equal(stack.dense(window=(3, 10, 25, 33)), masks[3:25, 10:33])
    np.testing.assert_array_equal(stack.dense([2, 0]), masks[..., [2, 0]])
    np.testing.assert_array_equal(stack.extents(), extract_bboxes(masks))
    assert stack.crops[0].shape == (7, 13)


# ------------------------------------------------------------------- equal to the metrics


def test_evaluation_equals_direct_metric_calls(hand_cases):
    cases = [case for case, _ in hand_cases]
    result = evaluate_predictions(cases)
    labelled = [c for c in cases if c.label != "normal"]
    y = [int(c.label == "malignant") for c in labelled]
    assert result.auc == pytest.approx(roc_auc(y, [c.case_score for c in labelled]))
    detected = [c for c in labelled if case_detected(c.rois, c.gt_boxes, 0.4)]
    assert 0 < len(detected) < len(labelled)
    assert result.n_detected == len(detected)
    assert result.auc_detected == pytest.approx(
        roc_auc([int(c.label == "malignant") for c in detected], [c.case_score for c in detected]))

    predictions = [(c.rois, c.scores) for c in cases]
    truths = [c.gt_boxes for c in cases]
    curve = froc(predictions, truths, iou_threshold=0.2)
    assert result.tpr_at_fpi == pytest.approx(curve.tpr_at(FROC_POINTS))
    np.testing.assert_allclose(result.froc["fpi"], curve.fpi)
    assert result.tpr_vs_iou == pytest.approx(tpr_vs_iou(predictions, truths, fpi=3.67))

    dices, missed = [], 0
    for case, arrays in hand_cases:
        if case.gt_boxes.shape[0]:
            full = detected_dice(arrays["pred_masks"], case.rois, case.scores,
                                 arrays["gt_masks"], case.gt_boxes, iou_threshold=0.4)
            dices += full.dices
            missed += full.n_missed
    assert result.dices == pytest.approx(dices)
    assert result.n_missed == missed > 0
    assert result.dice_mean == pytest.approx(np.mean(dices))

    records = [{"gt_boxes": c.gt_boxes, "gt_class_ids": c.gt_class_ids, "pred_boxes": c.rois,
                "pred_class_ids": c.class_ids, "pred_scores": c.scores} for c in cases]
    ap = coco_style_ap(records, iou_thresholds=(0.5,))
    assert result.box_ap50 == pytest.approx({"benign": ap["per_class"][1],
                                             "malignant": ap["per_class"][2]})
    assert result.box_map50 == pytest.approx(ap["mAP"])


def test_result_round_trips_through_json(hand_cases):
    result = evaluate_predictions([case for case, _ in hand_cases[:6]])
    text = json.dumps(result.to_dict(), allow_nan=False)
    back = EvaluationResult.from_dict(json.loads(text))
    assert back.auc == pytest.approx(result.auc)
    assert back.tpr_at_fpi == pytest.approx(result.tpr_at_fpi)
    assert back.tpr_vs_iou == pytest.approx(result.tpr_vs_iou)
    assert back.froc_curve().tpr_at() == pytest.approx(result.froc_curve().tpr_at())
    fpr, tpr, thresholds = back.roc_curve()
    np.testing.assert_array_equal(thresholds, result.roc["thresholds"])  # the +inf survives
    assert np.isinf(thresholds[0])


# ------------------------------------------------------------------------------ edge cases


def test_one_class_gives_nan_auc_with_a_warning(hand_cases):
    benign_only = [case for case, _ in hand_cases if case.label in ("benign", "normal")]
    with pytest.warns(UndefinedMetricWarning, match="benign"):
        result = evaluate_predictions(benign_only)
    assert math.isnan(result.auc) and math.isnan(result.auc_detected)
    assert result.roc is None
    assert result.to_dict()["auc"] is None
    assert not math.isnan(result.tpr_at_fpi[3.67])  # detection is still evaluated


def test_no_detection_at_all(hand_cases):
    empty = []
    for case, _ in hand_cases:
        empty.append(CasePrediction(
            image_id=case.image_id, file_name=case.file_name, patient_id=case.patient_id,
            label=case.label, original_shape=SHAPE, gt_boxes=case.gt_boxes,
            gt_class_ids=case.gt_class_ids, gt_masks=case.gt_masks, rois=np.zeros((0, 4)),
            class_ids=[], scores=[], class_probs=np.zeros((0, 3)), case_score=case.case_score,
            masks=MaskStack.empty(SHAPE)))
    with pytest.warns(UndefinedMetricWarning):
        result = evaluate_predictions(empty)
    n_masses = sum(c.gt_boxes.shape[0] for c in empty)
    assert result.n_missed == result.n_masses == n_masses
    assert result.dices == [] and math.isnan(result.dice_mean)
    assert all(v == 0.0 for v in result.tpr_at_fpi.values())
    assert result.n_detected == 0 and math.isnan(result.auc_detected)
    assert not math.isnan(result.auc)  # the case scores still rank the cases
    assert result.box_map50 == 0.0


def test_cases_without_any_mass():
    normals = [CasePrediction(
        image_id=i, file_name=f"n{i}", patient_id="p", label="normal", original_shape=SHAPE,
        gt_boxes=np.zeros((0, 4)), gt_class_ids=[], gt_masks=MaskStack.empty(SHAPE),
        rois=[[1, 1, 9, 9]], class_ids=[1], scores=[0.8], class_probs=[[0.2, 0.7, 0.1]],
        case_score=0.1, masks=MaskStack.from_dense(ellipse(SHAPE, (1, 1, 9, 9))))
        for i in range(3)]
    with pytest.warns(UndefinedMetricWarning):
        result = evaluate_predictions(normals)
    assert result.froc is None and math.isnan(result.tpr_at_fpi[1.0])
    assert math.isnan(result.box_map50)
    json.dumps(result.to_dict(), allow_nan=False)


def test_mismatched_case_arrays_are_refused():
    with pytest.raises(ValueError, match="case0.*must agree"):
        CasePrediction(image_id=0, file_name="case0", patient_id="p", label="benign",
                       original_shape=SHAPE, gt_boxes=np.zeros((0, 4)), gt_class_ids=[],
                       gt_masks=MaskStack.empty(SHAPE), rois=[[1, 1, 5, 5]], class_ids=[1, 2],
                       scores=[0.9], class_probs=[[0.1, 0.8, 0.1]], case_score=0.2,
                       masks=MaskStack.empty(SHAPE))


# ------------------------------------------------------------------- mapping to originals

# Original 200 x 160, breast crop rows 20..180, cols 10..130, prepared at 80 x 60: scale 1/2.
KNOWN = Transform(original_shape=(200, 160), crop=(20, 10, 180, 130), output_shape=(80, 60))


class BlockDataset:
    """One prepared 80 x 60 image whose mass is the block rows 10..30, cols 20..40."""

    def __init__(self):
        self.image_ids = np.array([0])
        # No ROI polygons: the ground truth comes from load_mask.
        self.image_info = [{"file_name": "img0", "patient_id": "pa", "label": "malignant",
                            "birads": "5"}]
        self.mask = np.zeros((80, 60, 1), bool)
        self.mask[10:30, 20:40] = True

    def load_image(self, image_id):
        return np.zeros((80, 60, 3), np.float32)

    def load_mask(self, image_id):
        return self.mask, np.array([2], np.int32)

    def load_transform(self, image_id):
        return KNOWN


class BlockDetector:
    """Detects the block; ``full`` adds FT-MTL-Net's class_probs and case_score."""

    class config:  # noqa: N801 - stands for a Config
        BATCH_SIZE = 2
        NUM_CLASSES = 3

    def __init__(self, full: bool, class_id: int = 2, score: float = 0.9):
        self.full, self.class_id, self.score = full, class_id, score

    def detect(self, images):
        out = []
        for image in images:
            mask = np.zeros((*image.shape[:2], 1), bool)
            mask[10:30, 20:40] = True
            result = {"rois": np.array([[10, 20, 30, 40]], np.int32),
                      "class_ids": np.array([self.class_id], np.int32),
                      "scores": np.array([self.score], np.float32), "masks": mask}
            if self.full:
                result["class_probs"] = np.array([[0.05, 0.15, 0.8]], np.float32)
                result["case_score"] = 0.8
            out.append(result)
        return out


@pytest.mark.filterwarnings("ignore::ftmtl.evaluation.UndefinedMetricWarning")  # one case
def test_boxes_and_masks_map_back_exactly_for_a_known_crop_and_scale():
    dataset = BlockDataset()
    (case,) = predict_dataset(BlockDetector(full=True), dataset, [0], progress=False)
    # Prepared box (10, 20, 30, 40) -> (10 * 2 + 20, 20 * 2 + 10, 30 * 2 + 20, 40 * 2 + 10).
    np.testing.assert_array_equal(case.rois, [[40, 50, 80, 90]])
    expected = np.zeros((200, 160), bool)
    expected[40:80, 50:90] = True  # the block doubled; bilinear edges fall at exactly 0.25/0.75
    np.testing.assert_array_equal(case.original_masks().dense()[..., 0], expected)
    np.testing.assert_array_equal(case.gt_masks.dense()[..., 0], expected)
    np.testing.assert_array_equal(case.gt_boxes, [[40, 50, 80, 90]])
    assert case.original_shape == (200, 160)
    assert (case.label, case.file_name, case.patient_id) == ("malignant", "img0", "pa")
    assert case.case_score == pytest.approx(0.8)
    result = evaluate_predictions([case])
    assert result.dices == [1.0] and result.n_missed == 0


@pytest.mark.parametrize(("class_id", "score", "expected"), [(2, 0.9, 0.9), (1, 0.7, 0.3)])
def test_plain_maskrcnn_gets_the_veto_from_its_scores(class_id, score, expected):
    dataset = BlockDataset()
    (case,) = predict_dataset(BlockDetector(full=False, class_id=class_id, score=score),
                              dataset, [0], progress=False)
    assert case.case_score == pytest.approx(expected)
    assert case.class_probs[0, class_id] == pytest.approx(score)


# ---------------------------------------------------------------- on synthetic INbreast


class OracleDetector:
    """'Detects' exactly the prepared ground truth of each image (found by its pixels)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.config = BlockDetector.config

    def detect(self, images):
        out = []
        for image in images:
            image_id = next(i for i in self.dataset.image_ids
                            if np.array_equal(self.dataset.load_image(i), image))
            masks, class_ids = self.dataset.load_mask(image_id)
            malignant = class_ids == 2
            probs = np.where(malignant[:, None], [0.0, 0.1, 0.9], [0.0, 0.9, 0.1])
            out.append({"rois": extract_bboxes(masks), "class_ids": class_ids,
                        "scores": np.full(class_ids.size, 0.95), "masks": masks,
                        "class_probs": probs.reshape(-1, 3),
                        "case_score": 0.9 if malignant.any() else 0.1})
        return out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from ftmtl.inbreast.dataset import INbreastDataset
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_inbreast(root, n_patients=3, seed=1, image_shape=(192, 144))
    dataset = INbreastDataset()
    dataset.load_inbreast(root, image_size=96)
    dataset.prepare()
    return dataset


def test_predict_dataset_on_synthetic_inbreast(synthetic):
    from ftmtl.inbreast.dicom_io import read_dicom
    from ftmtl.inbreast.preprocess import prepare_image

    cases = predict_dataset(OracleDetector(synthetic), synthetic, synthetic.image_ids,
                            batch_size=3, progress=False)
    assert [c.image_id for c in cases] == list(synthetic.image_ids)
    for case in cases:
        info = synthetic.image_info[case.image_id]
        dicom = read_dicom(info["path"])
        assert case.original_shape == dicom.shape
        # The full-resolution ground truth is what the dataset prepares its masks from.
        _, prepared, _ = prepare_image(dicom.pixels, case.gt_masks.dense(), dicom.bits_stored,
                                       96)
        np.testing.assert_array_equal(prepared, synthetic.load_mask(case.image_id)[0])
        assert case.label == (info["mass_label"] or "normal")
        np.testing.assert_allclose(case.rois, case.transform.to_original(
            extract_bboxes(synthetic.load_mask(case.image_id)[0])))
    result = evaluate_predictions(cases)
    assert result.n_masses == sum(len(synthetic.image_info[c.image_id]["masses"]) for c in cases)
    assert result.tpr_at_fpi[0.5] == 1.0 and result.n_missed == 0
    assert result.dice_mean > 0.8  # the prepared masks pasted back at 2x: close, not exact
    if result.n_malignant and result.n_labelled > result.n_malignant:
        assert result.auc == 1.0
