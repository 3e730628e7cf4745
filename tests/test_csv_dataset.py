"""CsvDataset: a CSV of mask files or boxes with the user's column names, read into the
Dataset API INbreastDataset gives, with clear errors for bad rows."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from own_data_files import (
    CSV_COLUMNS,
    inbreast_truth,
    small_inbreast,
    write_coco,
    write_csv,
    write_image,
)

from ftmtl.datasets.coco_format import CocoDataset
from ftmtl.datasets.csv_format import CsvDataset, column_names
from ftmtl.datasets.instances import AnnotationFormatError
from ftmtl.inbreast.dataset import INbreastDataset

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning")  # inside pycocotools, numpy 2
SIZE = 64


@pytest.fixture(scope="module")
def inbreast_root(tmp_path_factory):
    return small_inbreast(tmp_path_factory.mktemp("inbreast"))


@pytest.fixture(scope="module")
def truth(inbreast_root):
    return inbreast_truth(inbreast_root)


def load(root, **kwargs):
    dataset = CsvDataset()
    dataset.load_csv(root, **{"image_size": SIZE, **kwargs})
    dataset.prepare()
    return dataset


def test_mask_files_give_what_inbreast_and_coco_give(truth, inbreast_root, tmp_path):
    write_csv(truth, tmp_path / "csv")
    write_coco(truth, tmp_path / "coco")
    ours = load(tmp_path / "csv", columns=CSV_COLUMNS, bits_stored=14)
    coco = CocoDataset()
    coco.load_coco(tmp_path / "coco", image_size=SIZE, bits_stored=14)
    coco.prepare()
    inbreast = INbreastDataset()
    inbreast.load_inbreast(inbreast_root, image_size=SIZE)
    inbreast.prepare()
    assert len(ours.image_ids) == len(truth)
    for image_id in ours.image_ids:
        assert ours.image_info[image_id]["patient_id"] == truth[image_id].patient_id
        for other in (coco, inbreast):
            np.testing.assert_array_equal(ours.load_image(image_id), other.load_image(image_id))
            for got, expected in zip(ours.load_mask(image_id), other.load_mask(image_id),
                                     strict=True):
                np.testing.assert_array_equal(got, expected)
        masks, class_ids = ours.load_original_mask(image_id)
        np.testing.assert_array_equal(masks, truth[image_id].masks)
    assert ours.summary() == {**coco.summary(), "excluded_annotations": {}}


def _image(root, name="a.png", shape=(30, 40)):
    pixels = np.full(shape, 5000, np.uint16)
    pixels[:, 30:] = 20
    return write_image(root / name, pixels, "png16")


def test_boxes_in_a_semicolon_file_with_default_column_names(tmp_path):
    _image(tmp_path)
    _image(tmp_path, "b.png")
    (tmp_path / "annotations.csv").write_text(
        "image;label;xmin;ymin;xmax;ymax;patient\n"
        "a.png;benign;2;3;10;8;p1\n"
        "a.png;Malignant mass;12.6;10;20;25;p1\n"
        "b.png;;;;;;p2\n")
    dataset = load(tmp_path, image_size=None)
    assert [i["file_name"] for i in dataset.image_info] == ["a.png", "b.png"]
    assert [i["mass_label"] for i in dataset.image_info] == ["malignant", None]
    masks, class_ids = dataset.load_original_mask(0)
    assert class_ids.tolist() == [1, 2]
    expected = np.zeros((30, 40, 2), bool)
    expected[3:8, 2:10, 0] = True
    expected[10:25, 13:20, 1] = True  # x_min 12.6: column 12 (centre 12.5) lies out
    np.testing.assert_array_equal(masks, expected)
    summary = dataset.summary()
    assert (summary["images"], summary["patients"], summary["benign_masses"],
            summary["malignant_masses"], summary["mass_free"]) == (2, 2, 1, 1, 1)


def test_ignored_labels_are_counted_and_columns_are_checked(tmp_path):
    _image(tmp_path)
    (tmp_path / "findings.csv").write_text(
        "file,finding,x0,y0,x1,y1\n"
        "a.png,BI-RADS 4,2,3,10,8\n"
        "a.png,Calcification,2,3,10,8\n")
    columns = "image=file,label=finding,xmin=x0,ymin=y0,xmax=x1,ymax=y1"
    dataset = load(tmp_path, annotations=tmp_path / "findings.csv", columns=columns,
                   label_map={"BI-RADS 4": "malignant", "calcification": "ignore"})
    assert dataset.image_info[0]["mass_labels"] == ["malignant"]
    assert dataset.summary()["excluded_annotations"] == {"Calcification": 1}
    with pytest.raises(ValueError, match=r"columns: unknown role\(s\) \['box'\]"):
        column_names("box=x")


@pytest.mark.parametrize(("text", "message"), [
    ("label,mask\nbenign,m.png\n",
     r"no image column 'image' among the header's \['label', 'mask'\]"),
    ("image,label,xmin,ymin\na.png,benign,1,1\n",
     r"box columns \['xmax', 'ymax'\] missing \(a box needs all four\)"),
    ("image,mask\na.png,m.png\n", r"no label column 'label'"),
    ("image,label,mask,mask\n", r"header repeats column\(s\) \['mask'\]"),
    ("image,label,mask\na.png,benign\n", r"row 2: 2 fields, the header has 3"),
    ("image,label,mask\n,benign,m.png\n", r"row 2, column 'image': empty"),
    ("image,label,mask\n../a.png,benign,m.png\n", r"row 2, column 'image': \.\./a\.png: '\.\.' "
                                                  r"refused"),
    ("image,label,mask\na.png,benign,/tmp/m.png\n", r"row 2, column 'mask': /tmp/m\.png: "
                                                    r"absolute path refused"),
    ("image,label,mask\na.png,suspicious,m.png\n", r"row 2, column 'label': label 'suspicious' "
                                                   r"is not benign or malignant"),
    ("image,label,xmin,ymin,xmax,ymax\na.png,benign,5,1,2,3\n",
     r"row 2, columns \['xmin', 'ymin', 'xmax', 'ymax'\]: \['5', '1', '2', '3'\] is not a box"),
    ("image,label,xmin,ymin,xmax,ymax\na.png,benign,a,1,2,3\n", r"are not four numbers"),
    ("image,label,xmin,ymin,xmax,ymax\na.png,benign,,1,2,3\n", r"are not four numbers"),
    ("image,label,mask,xmin,ymin,xmax,ymax\na.png,benign,m.png,1,1,2,2\n",
     r"row 2: both a mask and a box; give one"),
    ("image,label,mask,patient\na.png,,,p1\na.png,,,p2\n",
     r"row 3, column 'patient': 'p2' differs from 'p1' on an earlier row of a.png"),
])
def test_bad_rows_are_errors_naming_the_file_row_and_column(text, message, tmp_path):
    path = tmp_path / "annotations.csv"
    path.write_text(text)
    with pytest.raises(AnnotationFormatError, match=message) as error:
        load(tmp_path)
    assert str(error.value).startswith(str(path))


def test_a_mask_of_another_size_is_an_error_naming_mask_and_row(tmp_path):
    _image(tmp_path)
    write_image(tmp_path / "m.png", np.ones((10, 10), np.uint8), "png8")
    (tmp_path / "annotations.csv").write_text("image,label,mask\na.png,benign,m.png\n")
    dataset = load(tmp_path)
    with pytest.raises(AnnotationFormatError, match=r"annotations.csv: row 2: mask .*m.png is "
                                                    r"10x10, the image 30x40"):
        dataset.load_mask(0)


def test_a_partial_copy_warns_once(tmp_path, caplog):
    _image(tmp_path)
    rows = "".join(f"missing{n}.png,benign,1,1,5,5\n" for n in range(7))
    (tmp_path / "annotations.csv").write_text(
        f"image,label,xmin,ymin,xmax,ymax\na.png,benign,1,1,5,5\n{rows}")
    with caplog.at_level(logging.WARNING):
        dataset = load(tmp_path)
    assert [i["file_name"] for i in dataset.image_info] == ["a.png"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # the missing images, and no patient column
    assert warnings[0].startswith("7 of 8 images listed in ")
    assert "missing0.png, missing1.png, missing2.png, missing3.png, missing4.png and 2 more" \
        in warnings[0]
