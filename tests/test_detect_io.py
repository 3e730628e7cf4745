"""Detection I/O of the inbreast command line: DICOM -> model input, detections back to DICOM
pixels, our COCO RLE (checked against pycocotools), the JSON and PNG writers, and the whole
`detect` command on a generated DICOM with a built (untrained) model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from detections import hand_made_result
from dicom_files import write_dicom
from pycocotools import mask as coco_mask

from ftmtl import detect_io
from ftmtl.cli import main
from ftmtl.inbreast.dataset import INbreastDataset
from ftmtl.inbreast.preprocess import Transform
from ftmtl.inbreast.synthetic import generate_synthetic_inbreast


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


# ------------------------------------------------------------------------------------ RLE
def test_rle_of_a_hand_worked_mask():
    # Column-major pixels: column 0 = (0, 1), column 1 = (1, 1), column 2 = (1, 0).
    mask = np.array([[0, 1, 1], [1, 1, 0]], dtype=bool)
    assert detect_io.rle_encode(mask) == {"size": [2, 3], "counts": [1, 4, 1]}
    # A mask starting with foreground begins with an empty background run.
    assert detect_io.rle_encode(~mask)["counts"] == [0, 1, 4, 1]
    assert detect_io.rle_encode(np.zeros((2, 2), bool))["counts"] == [4]


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (13, 17), (40, 31)])
@pytest.mark.parametrize("density", [0.0, 0.05, 0.5, 1.0])
def test_rle_round_trip_on_random_masks(shape, density):
    rng = np.random.default_rng([shape[0], shape[1], int(density * 100)])
    mask = rng.uniform(size=shape) < density
    rle = detect_io.rle_encode(mask)
    assert rle["size"] == list(shape)
    assert sum(rle["counts"]) == mask.size
    assert all(isinstance(c, int) and c >= 0 for c in rle["counts"])
    assert all(c > 0 for c in rle["counts"][1:])  # only the first run may be empty
    decoded = detect_io.rle_decode(json.loads(json.dumps(rle)))
    assert decoded.dtype == bool and np.array_equal(decoded, mask)


@pytest.mark.parametrize("seed", range(4))
def test_rle_counts_equal_pycocotools(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(5, 60)), int(rng.integers(5, 60))
    mask = np.zeros((h, w), dtype=bool)
    y1, x1 = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
    mask[y1:int(rng.integers(y1 + 1, h + 1)), x1:int(rng.integers(x1 + 1, w + 1))] = True
    mask ^= rng.uniform(size=(h, w)) < 0.1  # holes and specks
    ours = detect_io.rle_encode(mask)
    theirs = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    # pycocotools compresses uncompressed counts with frPyObjects: same runs, same string.
    assert coco_mask.frPyObjects(ours, h, w)["counts"] == theirs["counts"]
    assert np.array_equal(coco_mask.decode(coco_mask.frPyObjects(ours, h, w)), mask)


def test_rle_decode_refuses_counts_that_do_not_fill_the_size():
    with pytest.raises(ValueError, match=r"'counts' add up to 5 pixels, 'size' \[2, 3\]"):
        detect_io.rle_decode({"size": [2, 3], "counts": [1, 4]})
    with pytest.raises(ValueError, match="need 'size'"):
        detect_io.rle_decode({"counts": [6]})
    with pytest.raises(ValueError, match="2-D"):
        detect_io.rle_encode(np.zeros((2, 2, 1), bool))


# ------------------------------------------------------------------ back to DICOM pixels
def test_detections_to_original_on_a_hand_worked_transform():
    # Crop rows 40..200, cols 30..130 of a 256x192 DICOM, resized to 80x50: 2 DICOM pixels
    # per prepared pixel both ways.
    transform = Transform((256, 192), (40, 30, 200, 130), (80, 50))
    masks = np.zeros((80, 50, 2), dtype=bool)
    masks[8:24, 5:25, 0] = True
    masks[0:80, 40:50, 1] = True
    result = {"rois": np.array([[8, 5, 24, 25], [0, 40, 80, 50]], np.int32),
              "class_ids": np.array([2, 1], np.int32),
              "scores": np.array([0.9, 0.6], np.float32),
              "class_probs": np.array([[0.1, 0.2, 0.7], [0.4, 0.5, 0.1]], np.float32),
              "case_score": 0.7}
    result["masks"] = masks
    original = detect_io.detections_to_original(result, transform)
    # y = 40 + 2 * y', x = 30 + 2 * x'
    assert original["rois"].tolist() == [[56, 40, 88, 80], [40, 110, 200, 130]]
    assert original["rois"].dtype == np.int32
    assert original["masks"].shape == (256, 192, 2)
    assert mask_box(original["masks"][..., 0]) == (56, 40, 88, 80)
    assert mask_box(original["masks"][..., 1]) == (40, 110, 200, 130)
    assert original["masks"][..., 0].sum() == 32 * 40
    assert original["case_score"] == 0.7
    assert np.array_equal(original["class_ids"], [2, 1])
    np.testing.assert_array_equal(original["class_probs"], result["class_probs"])


def test_detections_to_original_refuses_masks_that_do_not_match_the_boxes():
    transform = Transform((10, 10), (0, 0, 10, 10), (10, 10))
    with pytest.raises(ValueError, match=r"masks has shape \(10, 10, 2\) for 1 boxes"):
        detect_io.detections_to_original(
            {"rois": np.zeros((1, 4)), "masks": np.zeros((10, 10, 2), bool)}, transform)


@pytest.fixture(scope="module")
def rectangle_dicom(tmp_path_factory):
    """A 256x192 DICOM, black except a textured 'breast' at rows 60..180, cols 0..110."""
    pixels = np.zeros((256, 192), dtype=np.uint16)
    rng = np.random.default_rng(0)
    pixels[60:180, 0:110] = rng.integers(6000, 9000, size=(120, 110))
    path = tmp_path_factory.mktemp("rect") / "rect.dcm"
    return write_dicom(path, pixels), pixels


def test_prepare_dicom_crops_the_breast_and_maps_boxes_back(rectangle_dicom):
    path, pixels = rectangle_dicom
    image, transform, dicom = detect_io.prepare_dicom(path, image_size=64)
    assert dicom.shape == (256, 192) and np.array_equal(dicom.pixels, pixels)
    assert image.dtype == np.float32 and image.shape[2] == 3
    assert max(image.shape[:2]) == 64
    assert image.min() >= 0.0 and image.max() <= 255.0
    y1, x1, y2, x2 = transform.crop
    # The crop holds the breast with a small margin (at most 5% of the image) around it.
    assert 60 - 13 <= y1 <= 60 and 0 <= x1 <= 0 and 180 <= y2 <= 180 + 13 and 110 <= x2 <= 120
    # The breast fills the prepared image but for the margin: its box there, taken back,
    # is the rectangle again (within the rounding of one prepared pixel).
    breast = image[..., 0] > 0.1 * 255 * 6000 / 16383
    box = np.array([mask_box(breast)], dtype=np.int32)
    result = {"rois": box, "class_ids": np.array([1]), "scores": np.array([1.0]),
              "masks": breast[..., None]}
    original = detect_io.detections_to_original(result, transform)
    step = 1 / min(transform.scale)
    np.testing.assert_allclose(original["rois"][0], [60, 0, 180, 110], atol=step + 1)
    np.testing.assert_allclose(mask_box(original["masks"][..., 0]), [60, 0, 180, 110],
                               atol=step + 1)


def test_prepare_dicom_gives_what_the_dataset_gives(tmp_path):
    # Normal images (no masses, so no mask widens the crop): the model sees in `detect`
    # exactly what it saw in training.
    generate_synthetic_inbreast(tmp_path, n_patients=1, normal_fraction=1.0, seed=3,
                                image_shape=(160, 128))
    dataset = INbreastDataset()
    dataset.load_inbreast(tmp_path, image_size=64)
    dataset.prepare()
    assert len(dataset.image_ids) == 4
    for image_id in dataset.image_ids:
        image, transform, _ = detect_io.prepare_dicom(dataset.image_info[image_id]["path"], 64)
        assert transform == dataset.load_transform(image_id)
        np.testing.assert_array_equal(image, dataset.load_image(image_id))


def test_prepare_dicom_names_an_unreadable_file(tmp_path):
    from ftmtl.inbreast.records import InbreastFormatError

    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"not a dicom")
    with pytest.raises(InbreastFormatError, match="broken.dcm"):
        detect_io.prepare_dicom(bad, 64)


# --------------------------------------------------------------------------------- writers
def test_detection_json_holds_boxes_classes_probabilities_and_rle_masks(tmp_path):
    result = hand_made_result()
    path = tmp_path / "out" / "case.json"
    detect_io.write_detection_json(path, "/data/case.dcm", (40, 30), result,
                                   extra={"model": "ftmtl_paper"})
    record = json.loads(path.read_text())
    assert record["source"] == "/data/case.dcm"
    assert record["image_shape"] == [40, 30]
    assert record["case_malignancy_score"] == pytest.approx(0.8)
    assert record["model"] == "ftmtl_paper"
    assert "exclusive" in record["box_format"]
    first, second = record["detections"]
    assert first["box"] == [5, 3, 15, 12] and second["box"] == [20, 10, 38, 29]
    assert (first["class_name"], second["class_name"]) == ("benign", "malignant")
    assert second["score"] == pytest.approx(0.95)
    assert second["class_probabilities"] == pytest.approx(
        {"BG": 0.05, "benign": 0.15, "malignant": 0.8})
    for i, det in enumerate(record["detections"]):
        assert det["mask"]["size"] == [40, 30]
        np.testing.assert_array_equal(detect_io.rle_decode(det["mask"]),
                                      result["masks"][..., i])


def test_detection_json_without_detections(tmp_path):
    result = {"rois": np.zeros((0, 4), np.int32), "class_ids": np.zeros(0, np.int32),
              "scores": np.zeros(0, np.float32), "class_probs": np.zeros((0, 3), np.float32),
              "masks": np.zeros((40, 30, 0), bool), "case_score": 0.1}
    path = tmp_path / "none.json"
    detect_io.write_detection_json(path, "x.dcm", (40, 30), result)
    record = json.loads(path.read_text())
    assert record["detections"] == [] and record["case_malignancy_score"] == pytest.approx(0.1)


def test_overlay_captions_show_class_score_and_both_probabilities():
    captions = detect_io.overlay_captions(hand_made_result())
    assert captions == ["benign 0.80 (B 0.70, M 0.10)", "malignant 0.95 (B 0.15, M 0.80)"]


def test_overlay_png_is_written_for_a_large_image(tmp_path):
    import matplotlib.image

    shape = (2100, 1500)  # larger than OVERLAY_MAX_SIDE: subsampled by 3
    result = hand_made_result()
    big = np.zeros(shape + (2,), dtype=bool)
    big[150:450, 90:360, 0] = True
    big[600:1140, 300:870, 1] = True
    result.update(masks=big, rois=np.array([[150, 90, 450, 360], [600, 300, 1140, 870]]))
    image = np.random.default_rng(0).integers(0, 16383, size=shape).astype(np.uint16)
    path = tmp_path / "overlay.png"
    detect_io.write_overlay_png(path, image, result, title="case.dcm")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = matplotlib.image.imread(path)
    assert drawn.ndim == 3 and 300 < max(drawn.shape[:2]) < 2000
    # The colours come from a fixed seed: writing again gives the same file, byte for byte.
    np.random.seed(123)
    detect_io.write_overlay_png(tmp_path / "again.png", image, result, title="case.dcm")
    assert (tmp_path / "again.png").read_bytes() == path.read_bytes()


# -------------------------------------------------------------------- the detect command
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A built, untrained paper_cpu FT-MTL-Net at 64 px (detecting everything) and its
    weight file."""
    from ftmtl.presets import build_model, make_config

    folder = tmp_path_factory.mktemp("weights")
    config = make_config("paper_cpu", "ftmtl", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64,
                         PREPARED_IMAGE_SIZE=64, IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.0)
    model = build_model("inference", config, folder)
    path = folder / "tiny.h5"
    model.save_weights(path)
    return model, path


def test_detect_writes_json_and_png_in_dicom_coordinates(tmp_path, tiny_model):
    model, tiny_weights = tiny_model
    data = tmp_path / "data"
    manifest = generate_synthetic_inbreast(data, n_patients=1, seed=5, image_shape=(192, 144))
    dicom = data / "AllDICOMs" / manifest.images[0].dicom_name
    out = tmp_path / "out"
    code = main(["-q", "detect", str(dicom), "--weights", str(tiny_weights),
                 "--preset", "paper_cpu", "--image-size", "64", "--set", "IMAGE_MIN_DIM=64",
                 "--min-confidence", "0",
                 "--out", str(out)])
    assert code == 0
    stem = dicom.stem
    assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    record = json.loads((out / f"{stem}.json").read_text())
    assert record["source"] == str(dicom)
    assert record["image_shape"] == [192, 144]
    assert 0.0 <= record["case_malignancy_score"] <= 1.0
    assert record["detections"], "an untrained model at confidence 0 still detects"
    image, transform, _ = detect_io.prepare_dicom(dicom, 64)
    cy1, cx1, cy2, cx2 = transform.crop
    # The same model on the same input, its boxes (prepared pixels) mapped by hand: scale by
    # crop size / prepared size, then shift by the crop's corner.
    expected = model.detect([image])[0]["rois"].astype(np.float64)
    fy = (cy2 - cy1) / image.shape[0]
    fx = (cx2 - cx1) / image.shape[1]
    expected = np.round(expected * [fy, fx, fy, fx] + [cy1, cx1, cy1, cx1])
    assert [d["box"] for d in record["detections"]] == expected.astype(int).tolist()
    for det in record["detections"]:
        y1, x1, y2, x2 = det["box"]
        # Inside the breast crop, in DICOM pixels (the model input is only 64 px).
        assert cy1 <= y1 < y2 <= cy2 and cx1 <= x1 < x2 <= cx2
        assert det["class_name"] in ("benign", "malignant")
        assert sum(det["class_probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert det["score"] == pytest.approx(1.0 - det["class_probabilities"]["BG"], abs=1e-5)
        mask = detect_io.rle_decode(det["mask"])
        assert mask.shape == (192, 144)
        if mask.any():
            my1, mx1, my2, mx2 = mask_box(mask)
            # The mask lies in its box; both went through the same transform (one prepared
            # pixel of slack for rounding: 192 / 64 = 3 DICOM pixels).
            assert my1 >= y1 - 3 and mx1 >= x1 - 3 and my2 <= y2 + 3 and mx2 <= x2 + 3
