"""INbreastDataset on a tiny hand-written INbreast folder (CSV, XML plists, DICOMs)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from dicom_files import write_dicom

import ftmtl.inbreast.dataset as dataset_module
from ftmtl.inbreast import INbreastDataset, polygon_to_mask
from ftmtl.inbreast.intensity import percentile_window

ROWS, COLS = 48, 64
HASH = {"A": "0123456789abcdef", "B": "fedcba9876543210", "C": "00000000deadbeef"}
# file name, patient, laterality, name view, CSV view, BI-RADS, ROIs (name, points x/y)
MASS_1 = [(10.0, 12.0), (22.0, 12.0), (22.0, 24.0), (10.0, 24.0)]
MASS_2 = [(5.0, 30.0), (15.0, 30.0), (10.0, 40.0)]
MASS_3 = [(12.0, 5.0), (20.0, 5.0), (20.0, 11.0), (12.0, 11.0)]
CALC = [(30.0, 30.0)]
IMAGES = [
    ("1001", "A", "R", "CC", "CC", "4c", [("Mass", MASS_1)]),
    ("1002", "A", "R", "ML", "MLO", "5", [("Mass", MASS_2), ("Calcification", CALC)]),
    ("2001", "B", "L", "CC", "CC", "2", [("Mass", MASS_1), ("Mass", MASS_3),
                                         ("Mass", [(1.0, 1.0), (3.0, 3.0)])]),
    ("2002", "B", "L", "ML", "MLO", "1", None),
    ("3001", "C", "R", "CC", "CC", "3", None),
    ("3002", "C", "R", "ML", "MLO", "2", [("Calcification", CALC)]),
]


def breast_pixels():
    """A half disc against the left edge (columns 0..40), brighter downwards."""
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    inside = np.hypot(rows - ROWS / 2, cols) <= 40
    return np.where(inside, 6000 + rows * 20, 30).astype(np.uint16)


def write_xml(path, rois):
    items = []
    for index, (name, points) in enumerate(rois):
        px = "".join(f"<string>({x:f}, {y:f})</string>" for x, y in points)
        items.append(
            f"<dict><key>IndexInImage</key><integer>{index}</integer>"
            f"<key>Name</key><string>{name}</string>"
            f"<key>NumberOfPoints</key><integer>{len(points)}</integer>"
            f"<key>Point_px</key><array>{px}</array><key>Type</key><integer>15</integer></dict>"
        )
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict><key>Images</key>'
        "<array><dict><key>ImageIndex</key><integer>0</integer><key>NumberOfROIs</key>"
        f"<integer>{len(rois)}</integer><key>ROIs</key><array>{''.join(items)}</array></dict>"
        "</array></dict></plist>\n"
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("inbreast")
    (root / "AllDICOMs").mkdir()
    (root / "AllXML").mkdir()
    lines = ["Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"]
    for file_name, patient, side, name_view, view, birads, rois in IMAGES:
        lines.append(f"removed;removed;{side};{view};201001;{file_name};2;{birads}")
        dicom = f"{file_name}_{HASH[patient]}_MG_{side}_{name_view}_ANON.dcm"
        write_dicom(root / "AllDICOMs" / dicom, breast_pixels())
        if rois is not None:
            write_xml(root / "AllXML" / f"{file_name}.xml", rois)
    lines.append("removed;removed;L;CC;201001;9999;2;2")  # a row without DICOM
    (root / "INbreast.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    write_dicom(root / "AllDICOMs" / f"8888_{HASH['C']}_MG_L_CC_ANON.dcm", breast_pixels())
    return root


def load(root, **kwargs):
    dataset = INbreastDataset()
    dataset.load_inbreast(root, **kwargs)
    dataset.prepare()
    return dataset


def test_counts_labels_and_patients(root):
    dataset = load(root)
    summary = dataset.summary()
    assert {key: summary[key] for key in (
        "samples", "images", "patients", "masses", "benign_masses", "malignant_masses",
        "normal_birads1", "mass_free", "excluded_rois")} == {
        "samples": 6, "images": 6, "patients": 3, "masses": 4, "benign_masses": 2,
        "malignant_masses": 2, "normal_birads1": 1, "mass_free": 3,
        "excluded_rois": {"Calcification": 2}}
    info = {i["file_name"]: i for i in dataset.image_info}
    assert info["1001"]["patient_id"] == HASH["A"] and info["3001"]["patient_id"] == HASH["C"]
    assert info["1002"]["view"] == "MLO" and info["2001"]["laterality"] == "L"
    assert [info[f]["label"] for f in ("1001", "2001", "2002", "3001")] == [
        "malignant", "benign", "normal", "benign"]
    assert info["2002"]["xml"] is None and info["3002"]["xml"].name == "3002.xml"
    assert dataset.class_names == ["BG", "benign", "malignant"]
    assert dataset.image_reference(0).endswith("1001_0123456789abcdef_MG_R_CC_ANON.dcm")


def test_every_left_out_item_is_named_in_a_warning(root, caplog):
    with caplog.at_level(logging.WARNING):
        load(root)
    text = caplog.text
    assert "8888_" in text and "not listed" in text           # DICOM without a CSV row
    assert "9999" in text and "no DICOM" in text                # CSV row without DICOM
    assert "3001_" in text and "no ROI file" in text            # BI-RADS 3 without XML
    assert "2001.xml: mass ROI 2 has 2 point(s)" in text        # degenerate mass
    assert "2002_" not in text                                  # a normal without XML is normal


def test_per_mass_and_without_normals(root):
    per_mass = load(root, per_mass=True)
    assert per_mass.summary()["samples"] == 7 and per_mass.summary()["masses"] == 4
    only_masses = load(root, per_mass=True, include_normals=False)
    assert [i["id"] for i in only_masses.image_info] == ["1001#0", "1002#0", "2001#0", "2001#1"]
    masks, class_ids = only_masses.load_mask(3)
    assert masks.shape[-1] == 1 and class_ids.tolist() == [1]
    full_masks, _ = load(root, subset_file_names=["2001"]).load_mask(0)
    np.testing.assert_array_equal(masks[..., 0], full_masks[..., 1])


def test_subset_and_unknown_subset_name(root):
    dataset = load(root, subset_file_names=["1001", "2002"])
    assert [i["file_name"] for i in dataset.image_info] == ["1001", "2002"]
    with pytest.raises(ValueError, match="not in the CSV"):
        load(root, subset_file_names=["1001", "4242"])


def test_image_and_masks_are_aligned_at_full_resolution(root):
    dataset = load(root)
    index = [i["file_name"] for i in dataset.image_info].index("2001")
    image = dataset.load_image(index)
    masks, class_ids = dataset.load_mask(index)
    transform = dataset.load_transform(index)
    assert image.dtype == np.float32 and image.shape[2] == 3 and image.shape[:2] == masks.shape[:2]
    assert image.min() >= 0.0 and image.max() <= 255.0
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    assert class_ids.dtype == np.int32 and class_ids.tolist() == [1, 1]
    y1, x1, y2, x2 = transform.crop
    assert (y1, x1, y2) == (0, 0, ROWS) and 41 <= x2 < COLS  # the breast, not the background
    for n, points in enumerate([MASS_1, MASS_3]):
        full = polygon_to_mask(np.array(points), (ROWS, COLS))
        np.testing.assert_array_equal(masks[..., n], full[y1:y2, x1:x2])
    pixels = breast_pixels()
    np.testing.assert_allclose(image[..., 1], percentile_window(pixels[y1:y2, x1:x2]) * 255,
                               rtol=1e-5, atol=1e-4)


def test_resized_masks_follow_the_transform(root):
    dataset = load(root, image_size=32)
    index = [i["file_name"] for i in dataset.image_info].index("1001")
    image = dataset.load_image(index)
    masks, class_ids = dataset.load_mask(index)
    assert max(image.shape[:2]) == 32 and masks.shape[:2] == image.shape[:2]
    assert class_ids.tolist() == [2]
    # MASS_1 covers pixel columns 10..22 and rows 12..24: box (12, 10, 25, 23).
    expected = dataset.load_transform(index).to_model([[12, 10, 25, 23]])[0]
    rows, cols = np.nonzero(masks[..., 0])
    found = [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
    np.testing.assert_allclose(found, expected, atol=1.0)


def test_negative_image_has_no_masks(root):
    dataset = load(root)
    index = [i["file_name"] for i in dataset.image_info].index("3002")
    masks, class_ids = dataset.load_mask(index)
    image = dataset.load_image(index)
    assert masks.shape == image.shape[:2] + (0,) and class_ids.shape == (0,)


def test_one_dicom_read_serves_image_mask_and_transform(root, monkeypatch):
    dataset = load(root, per_mass=True)
    calls = _count_reads(monkeypatch)
    first, second = [i for i, info in enumerate(dataset.image_info)
                     if info["file_name"] == "2001"]
    dataset.load_image(first)
    dataset.load_mask(first)
    dataset.load_transform(first)
    dataset.load_mask(second)  # the other mass of the same image
    assert len(calls) == 1


def _count_reads(monkeypatch) -> list:
    calls = []
    real = dataset_module.read_dicom

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(dataset_module, "read_dicom", counting)
    return calls


def test_an_epoch_over_a_small_set_reads_each_dicom_once(root, monkeypatch):
    dataset = load(root)
    calls = _count_reads(monkeypatch)
    for _ in range(3):  # three epochs
        for image_id in dataset.image_ids:
            dataset.load_image(image_id)
    assert len(calls) == len(dataset.image_ids)


def test_the_cache_evicts_the_least_recently_used_beyond_its_limits(root, monkeypatch):
    counted = INbreastDataset(cache_size=2)
    counted.load_inbreast(root)
    counted.prepare()
    one_image = counted._prepared(0)
    one_size = one_image[0].nbytes + one_image[1].nbytes
    calls = _count_reads(monkeypatch)
    a, b, c = counted.image_ids[:3]
    for image_id in (a, b, a, c, a, b):  # b is the least recently used when c comes
        counted.load_image(image_id)
    assert [str(p) for p in calls] == [str(counted.image_info[i]["path"]) for i in (b, c, b)]
    # A byte limit below one image still keeps the last one.
    tiny = INbreastDataset(cache_bytes=one_size // 2)
    tiny.load_inbreast(root)
    tiny.prepare()
    calls.clear()
    tiny.load_image(a)
    tiny.load_mask(a)
    tiny.load_image(b)
    tiny.load_image(a)
    assert len(calls) == 3
