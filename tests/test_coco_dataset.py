"""CocoDataset: COCO instance JSON (RLE, polygons, boxes) over DICOM, PNG and TIFF images, read
into the Dataset API INbreastDataset gives, with clear errors for bad files."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import skimage.io
from own_data_files import inbreast_truth, small_inbreast, to_8_bits, write_coco, write_image
from pycocotools import mask as mask_utils

from ftmtl.datasets.coco_format import CocoDataset
from ftmtl.datasets.instances import BOX, POLYGONS, RLE, AnnotationFormatError, Instance, rasterise
from ftmtl.detect_io import rle_encode
from ftmtl.evaluation import evaluate_predictions, predict_dataset
from ftmtl.inbreast.dataset import INbreastDataset
from ftmtl.inbreast.preprocess import prepare_image
from mrcnn.data import extract_bboxes

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning")  # inside pycocotools, numpy 2
SIZE = 64


@pytest.fixture(scope="module")
def inbreast_root(tmp_path_factory):
    return small_inbreast(tmp_path_factory.mktemp("inbreast"))


@pytest.fixture(scope="module")
def truth(inbreast_root):
    return inbreast_truth(inbreast_root)


@pytest.fixture(scope="module")
def inbreast(inbreast_root):
    dataset = INbreastDataset()
    dataset.load_inbreast(inbreast_root, image_size=SIZE)
    dataset.prepare()
    return dataset


def load(root, **kwargs):
    dataset = CocoDataset()
    dataset.load_coco(root, **{"image_size": SIZE, **kwargs})
    dataset.prepare()
    return dataset


# ------------------------------------------------------------------ the same as INbreast
@pytest.mark.parametrize(("kind", "suffix"), [("png16", ".png"), ("tiff16", ".tif"),
                                              ("dicom", ".dcm")])
def test_the_same_data_as_coco_gives_what_inbreast_gives(kind, suffix, truth, inbreast,
                                                         tmp_path):
    write_coco(truth, tmp_path, kind=kind)
    coco = load(tmp_path, bits_stored=None if kind == "dicom" else 14)
    assert len(coco.image_ids) == len(inbreast.image_ids) == len(truth)
    assert coco.class_names == inbreast.class_names == ["BG", "benign", "malignant"]
    for image_id in inbreast.image_ids:
        ours, theirs = coco.image_info[image_id], inbreast.image_info[image_id]
        assert ours["file_name"] == f"images/{theirs['file_name']}{suffix}"
        assert ours["patient_id"] == theirs["patient_id"]
        assert ours["mass_label"] == theirs["mass_label"]
        np.testing.assert_array_equal(coco.load_image(image_id), inbreast.load_image(image_id))
        for got, expected in zip(coco.load_mask(image_id), inbreast.load_mask(image_id),
                                 strict=True):
            np.testing.assert_array_equal(got, expected)
        assert coco.load_transform(image_id) == inbreast.load_transform(image_id)
    counts = ("images", "patients", "masses", "benign_masses", "malignant_masses", "mass_free")
    assert {k: coco.summary()[k] for k in counts} == {k: inbreast.summary()[k] for k in counts}
    assert coco.summary()["excluded_annotations"] == {}


def test_evaluation_reads_the_annotation_at_full_size_and_scores_as_on_inbreast(
        truth, inbreast, tmp_path):
    write_coco(truth, tmp_path, kind="png16")
    coco = load(tmp_path, bits_stored=14)
    ours = predict_dataset(Oracle(coco), coco, progress=False)
    theirs = predict_dataset(Oracle(inbreast), inbreast, progress=False)
    for case, image in zip(ours, truth, strict=True):
        # The ground truth is the RLE itself at the file's size, not a resized copy.
        np.testing.assert_array_equal(case.gt_masks.dense(), image.masks)
    assert evaluate_predictions(ours).to_dict() == evaluate_predictions(theirs).to_dict()


class Oracle:
    """'Detects' each image's prepared ground truth, found by its pixels."""

    class config:  # noqa: N801 - stands for a Config
        BATCH_SIZE = 2
        NUM_CLASSES = 3

    def __init__(self, dataset):
        self.dataset = dataset

    def detect(self, images):
        out = []
        for image in images:
            image_id = next(i for i in self.dataset.image_ids
                            if np.array_equal(self.dataset.load_image(i), image))
            masks, class_ids = self.dataset.load_mask(image_id)
            probs = np.where((class_ids == 2)[:, None], [0.0, 0.2, 0.8], [0.0, 0.8, 0.2])
            out.append({"rois": extract_bboxes(masks), "class_ids": class_ids,
                        "scores": np.full(class_ids.size, 0.9), "masks": masks,
                        "class_probs": probs.reshape(-1, 3),
                        "case_score": 0.8 if (class_ids == 2).any() else 0.2})
        return out


# -------------------------------------------------------------------- image file kinds
@pytest.mark.parametrize("kind", ["png8", "rgb8"])
def test_8_bit_images_are_scaled_by_255(kind, truth, tmp_path):
    write_coco(truth[:2], tmp_path, kind=kind)
    coco = load(tmp_path)
    pixels = to_8_bits(truth[1].pixels)
    expected, masks, _ = prepare_image(pixels, truth[1].masks, 8, SIZE)
    np.testing.assert_allclose(coco.load_image(1)[..., 0], expected * 255, rtol=1e-6)
    np.testing.assert_array_equal(coco.load_mask(1)[0], masks)


def test_16_bit_images_use_16_bits_unless_told(truth, tmp_path):
    write_coco(truth[:1], tmp_path, kind="png16")
    expected = prepare_image(truth[0].pixels, None, 16, SIZE)[0]
    np.testing.assert_allclose(load(tmp_path).load_image(0)[..., 0], expected * 255, rtol=1e-6)


def test_a_monochrome1_dicom_is_inverted(truth, tmp_path):
    from dicom_files import write_dicom

    write_coco(truth[:1], tmp_path, kind="dicom")
    inverted = (16383 - truth[0].pixels).astype(np.uint16)
    write_dicom(tmp_path / "images" / f"{truth[0].file_name}.dcm", inverted,
                photometric="MONOCHROME1")
    reference = write_image(tmp_path / "ref" / "x.png", truth[0].pixels, "png16")
    np.testing.assert_array_equal(load(tmp_path).load_image(0),
                                  _one_image(reference, tmp_path).load_image(0))


def _one_image(path, root):
    document = {"images": [{"id": 1, "file_name": str(path.relative_to(root)),
                            "height": 128, "width": 96}], "categories": CATEGORIES}
    (root / "one.json").write_text(json.dumps(document))
    return load(root, annotations=root / "one.json", bits_stored=14)


CATEGORIES = [{"id": 1, "name": "mass_benign"}, {"id": 2, "name": "mass_malignant"}]


# ------------------------------------------------------------------ segmentation kinds
SHAPE = (8, 6)


def test_a_polygon_fills_the_pixels_whose_centres_it_holds():
    # The square x 1..4, y 2..5 holds the pixel centres of columns 1-3 and rows 2-4.
    square = Instance("benign", POLYGONS, [[1, 2, 4, 2, 4, 5, 1, 5]], "test")
    expected = np.zeros(SHAPE, bool)
    expected[2:5, 1:4] = True
    np.testing.assert_array_equal(rasterise(square, SHAPE), expected)


def test_a_box_is_the_rectangle_of_the_pixels_whose_centres_it_holds():
    box = Instance("benign", BOX, (1.0, 2.0, 4.0, 5.0), "test")
    expected = np.zeros(SHAPE, bool)
    expected[2:5, 1:4] = True
    np.testing.assert_array_equal(rasterise(box, SHAPE), expected)
    # Edges between centres round to the nearest pixel boundary; the image clips.
    np.testing.assert_array_equal(
        rasterise(Instance("benign", BOX, (-3.0, 6.6, 1.4, 20.0), "t"), SHAPE),
        np.pad(np.ones((1, 1), bool), ((7, 0), (0, 5))))


@pytest.mark.parametrize("encoding", ["uncompressed", "compressed"])
def test_run_length_encodings_decode_to_the_mask(encoding):
    rng = np.random.default_rng(3)
    mask = rng.random(SHAPE) > 0.6
    if encoding == "uncompressed":
        rle = rle_encode(mask)  # our writer (detect_io), counts as a list
    else:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    np.testing.assert_array_equal(rasterise(Instance("malignant", RLE, rle, "t"), SHAPE), mask)


def test_polygons_boxes_and_images_without_annotations_in_one_file(tmp_path):
    image = np.full((40, 30), 9000, np.uint16)
    image[:, 20:] = 50  # background on the right, so the crop keeps columns 0..~20
    for name in ("a.png", "b.png"):
        write_image(tmp_path / name, image, "png16")
    document = {
        "images": [{"id": "a", "file_name": "a.png", "height": 40, "width": 30,
                    "patient_id": 7},
                   {"id": "b", "file_name": "b.png", "height": 40, "width": 30,
                    "patient_id": 7}],
        "categories": [{"id": 3, "name": "Benign mass"}, {"id": 4, "name": "MALIGNANT"}],
        "annotations": [
            {"id": 1, "image_id": "a", "category_id": 3,
             "segmentation": [[2, 2, 8, 2, 8, 8], [10, 10, 14, 10, 14, 14, 10, 14]]},
            {"id": 2, "image_id": "a", "category_id": 4, "bbox": [4, 20, 6, 5],
             "segmentation": []},
        ]}
    (tmp_path / "annotations.json").write_text(json.dumps(document))
    coco = load(tmp_path, image_size=None)
    assert [i["patient_id"] for i in coco.image_info] == ["7", "7"]
    assert [i["mass_label"] for i in coco.image_info] == ["malignant", None]
    masks, class_ids = coco.load_original_mask(0)
    assert class_ids.tolist() == [1, 2] and masks.shape == (40, 30, 2)
    expected_box = np.zeros((40, 30), bool)
    expected_box[20:25, 4:10] = True
    np.testing.assert_array_equal(masks[..., 1], expected_box)
    assert masks[..., 0].sum() == 15 + 16  # the triangle's 15 centres and the 4x4 square
    assert coco.summary()["mass_free"] == 1 and coco.summary()["masses"] == 2
    prepared, prepared_ids = coco.load_mask(0)  # image_size None: the breast crop only
    y1, x1, y2, x2 = coco.load_transform(0).crop
    assert x2 < 30  # the background column block is cropped off
    np.testing.assert_array_equal(prepared, masks[y1:y2, x1:x2])
    assert prepared_ids.tolist() == [1, 2]


# ----------------------------------------------------------------------------- labels
def _small(tmp_path, categories, annotations, images=None):
    write_image(tmp_path / "a.png", np.full((20, 20), 3000, np.uint16), "png16")
    document = {"images": images or [{"id": 1, "file_name": "a.png", "height": 20,
                                      "width": 20}],
                "categories": categories, "annotations": annotations}
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(document))
    return path


def test_a_label_map_places_names_and_ignored_ones_are_counted(tmp_path):
    box = {"bbox": [2, 2, 5, 5]}
    _small(tmp_path, [{"id": 1, "name": "BI-RADS 4"}, {"id": 2, "name": "calcification"},
                      {"id": 3, "name": "mass (benign)"}],
           [{"image_id": 1, "category_id": 1, **box}, {"image_id": 1, "category_id": 2, **box},
            {"image_id": 1, "category_id": 2, **box}, {"image_id": 1, "category_id": 3, **box}])
    coco = load(tmp_path, label_map="bi-rads 4=malignant, Calcification=ignore")
    assert coco.image_info[0]["mass_labels"] == ["malignant", "benign"]
    assert coco.summary()["excluded_annotations"] == {"calcification": 2}


def test_a_name_neither_benign_nor_malignant_needs_a_map(tmp_path):
    path = _small(tmp_path, [{"id": 1, "name": "mass"}], [])
    with pytest.raises(ValueError, match=r"annotations.json: categories\[0\] 'name': label "
                                         r"'mass' is not benign or malignant; map it, e.g. "
                                         r"--label-map 'mass=malignant'") as error:
        load(tmp_path)
    assert str(path) in str(error.value)
    with pytest.raises(ValueError, match="maps to 'cancer'; expected one of benign, malignant"):
        load(tmp_path, label_map={"mass": "cancer"})


# ------------------------------------------------------------------------ bad input
GOOD_IMAGE = {"id": 1, "file_name": "a.png", "height": 20, "width": 20}
GOOD_CATEGORY = {"id": 1, "name": "benign"}


@pytest.mark.parametrize(("document", "message"), [
    ([], "the top level is not a JSON object"),
    ({"images": {}, "categories": []}, "field 'images' is a dict, expected a list"),
    ({"images": [GOOD_IMAGE]}, "field 'categories' is missing, expected a list"),
    ({"images": [{**GOOD_IMAGE, "height": "20"}], "categories": []},
     r"images\[0\]: field 'height' is '20', expected a positive integer"),
    ({"images": [{**GOOD_IMAGE, "file_name": "../outside.png"}], "categories": []},
     r"images\[0\] 'file_name': \.\./outside\.png: '\.\.' refused"),
    ({"images": [{**GOOD_IMAGE, "file_name": "/etc/passwd"}], "categories": []},
     r"images\[0\] 'file_name': /etc/passwd: absolute path refused"),
    ({"images": [GOOD_IMAGE, GOOD_IMAGE], "categories": []}, r"images\[1\]: image id 1"),
    ({"images": [GOOD_IMAGE], "categories": [GOOD_CATEGORY],
      "annotations": [{"id": 5, "image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2]}]},
     r"annotations\[0\] \(id 5\): field 'image_id' is 2, not the id of an image"),
    ({"images": [GOOD_IMAGE], "categories": [GOOD_CATEGORY],
      "annotations": [{"image_id": 1, "category_id": 9, "bbox": [1, 1, 2, 2]}]},
     r"annotations\[0\]: field 'category_id' is 9, not the id of a category"),
    ({"images": [GOOD_IMAGE], "categories": [GOOD_CATEGORY],
      "annotations": [{"image_id": 1, "category_id": 1, "segmentation": [[1, 2, 3, 4, 5]]}]},
     r"field 'segmentation' polygon 0 is \[1, 2, 3, 4, 5\]; expected \[x1, y1, x2, y2, \.\.\.\] "
     r"of at least 3 points"),
    ({"images": [GOOD_IMAGE], "categories": [GOOD_CATEGORY],
      "annotations": [{"image_id": 1, "category_id": 1,
                       "segmentation": [[1, 2, 3, 4, 1e9, 5]]}]},
     r"field 'segmentation' polygon 0 reaches beyond the 20x20 image by more than the image's "
     r"size"),
    ({"images": [GOOD_IMAGE], "categories": [GOOD_CATEGORY],
      "annotations": [{"image_id": 1, "category_id": 1,
                       "segmentation": {"size": [20, 21], "counts": [420]}}]},
     r"field 'segmentation.size' is \[20, 21\], but the image is declared \[20, 20\]"),
    ({"images": [GOOD_IMAGE], "categories": [GOOD_CATEGORY],
      "annotations": [{"image_id": 1, "category_id": 1,
                       "segmentation": {"size": [20, 20], "counts": [10, 5]}}]},
     r"field 'segmentation.counts' is not a list of non-negative run lengths adding up to "
     r"20x20"),
    ({"images": [GOOD_IMAGE], "categories": [GOOD_CATEGORY],
      "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 2]}]},
     r"no segmentation, and field 'bbox' is \[1, 1, 0, 2\]"),
])
def test_bad_files_are_errors_naming_the_file_record_and_field(document, message, tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(document))
    with pytest.raises(AnnotationFormatError, match=message) as error:
        load(tmp_path)
    assert str(error.value).startswith(str(path))


def test_an_undecodable_compressed_rle_is_an_error_naming_the_annotation(tmp_path):
    _small(tmp_path, [GOOD_CATEGORY], [{"id": 8, "image_id": 1, "category_id": 1,
                                        "segmentation": {"size": [20, 20], "counts": "abc"}}])
    coco = load(tmp_path)
    with pytest.raises(AnnotationFormatError, match=r"annotations\[0\] \(id 8\): segmentation "
                                                    r"not decodable"):
        coco.load_mask(0)


def test_unreadable_json_and_a_wrong_declared_size_are_errors(tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text('{"images": [')
    with pytest.raises(AnnotationFormatError, match="annotations.json: not valid JSON"):
        load(tmp_path)
    _small(tmp_path, [GOOD_CATEGORY], [], images=[{**GOOD_IMAGE, "height": 21}])
    coco = load(tmp_path)
    with pytest.raises(AnnotationFormatError, match="image a.png is declared 21x20 .height x "
                                                    "width. but .*a.png is 20x20"):
        coco.load_image(0)


# ------------------------------------------------------------------ partial copies
def test_a_partial_copy_gives_one_warning_and_a_debug_line_per_missing_image(
        truth, tmp_path, caplog):
    write_coco(truth, tmp_path)
    present = {truth[0].file_name, truth[3].file_name}
    for image in truth:
        if image.file_name not in present:
            (tmp_path / "images" / f"{image.file_name}.png").unlink()
    with caplog.at_level(logging.DEBUG, logger="ftmtl.datasets"):
        coco = load(tmp_path)
    assert sorted(i["file_name"] for i in coco.image_info) == sorted(
        f"images/{name}.png" for name in present)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    missing = [f"images/{i.file_name}.png" for i in truth if i.file_name not in present]
    assert warnings[0].startswith(f"{len(missing)} of {len(truth)} images listed in ")
    assert ", ".join(missing[:5]) in warnings[0] and "DEBUG" in warnings[0]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG
             and "no file" in r.getMessage()]
    assert [line.split(": ")[1] for line in debug] == missing


def test_images_without_a_patient_are_their_own_patient_with_one_warning(
        truth, tmp_path, caplog):
    write_coco(truth[:3], tmp_path, patients=False)
    with caplog.at_level(logging.WARNING):
        coco = load(tmp_path)
    assert [i["patient_id"] for i in coco.image_info] == [i["file_name"]
                                                          for i in coco.image_info]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "3 of 3 images name no patient" in warnings[0]


def test_subset_keeps_the_named_images_and_refuses_unknown_names(truth, tmp_path):
    write_coco(truth[:3], tmp_path)
    names = [f"images/{truth[2].file_name}.png"]
    assert [i["file_name"] for i in load(tmp_path, subset_file_names=names).image_info] == names
    with pytest.raises(ValueError, match=r"subset names not among its images: \['nope.png'\]"):
        load(tmp_path, subset_file_names=["nope.png"])


def test_the_raster_reader_refuses_float_images(tmp_path):
    skimage.io.imsave(tmp_path / "a.tif", np.ones((20, 20), np.float32), check_contrast=False)
    document = {"images": [{**GOOD_IMAGE, "file_name": "a.tif"}], "categories": []}
    (tmp_path / "annotations.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"a.tif: samples of type float32; expected 8- or "
                                         r"16-bit unsigned integers"):
        load(tmp_path).load_image(0)
