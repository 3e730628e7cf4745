"""What `inbreast detect` says about the source DICOM: its UIDs and pixel spacing in the JSON,
each mass's area in pixels and mm^2, and the DICOM SEG and SR of `detect --dicom-seg --sr`
(checked against the JSON) on a generated DICOM with a built, untrained model."""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest
from detections import hand_made_result
from dicom_files import write_dicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from ftmtl import detect_io
from ftmtl.cli import main
from ftmtl.inbreast.dicom_io import read_dicom
from ftmtl.inbreast.synthetic import generate_synthetic_inbreast


def source_dicom(folder, **elements):
    uids = {"StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid()}
    path = write_dicom(folder / "case.dcm", np.zeros((40, 30), np.uint16), **uids, **elements)
    return path, read_dicom(path)


# ------------------------------------------------------------------------------------ JSON
def test_json_names_the_source_uids_spacing_and_mass_areas(tmp_path):
    path, dicom = source_dicom(tmp_path, PixelSpacing=[0.1, 0.2])
    record = detect_io.write_detection_json(tmp_path / "case.json", path, dicom.shape,
                                            hand_made_result(), dicom=dicom)
    assert json.loads((tmp_path / "case.json").read_text()) == record
    written = pydicom.dcmread(path)
    assert record["source"] == str(path)
    assert record["study_instance_uid"] == written.StudyInstanceUID
    assert record["series_instance_uid"] == written.SeriesInstanceUID
    assert record["sop_instance_uid"] == written.SOPInstanceUID
    assert record["pixel_spacing_mm"] == [0.1, 0.2]  # (row, column)
    assert record["pixel_spacing_source"] == "PixelSpacing"
    first, second = record["detections"]
    assert (first["area_px"], second["area_px"]) == (90, 342)
    # 0.1 mm x 0.2 mm = 0.02 mm^2 a pixel.
    assert first["area_mm2"] == pytest.approx(1.8)
    assert second["area_mm2"] == pytest.approx(6.84)


def test_json_takes_imager_pixel_spacing_and_says_so(tmp_path):
    path, dicom = source_dicom(tmp_path, ImagerPixelSpacing=[0.07, 0.05])
    record = detect_io.detection_record(path, dicom.shape, hand_made_result(), dicom=dicom)
    assert record["pixel_spacing_mm"] == [0.07, 0.05]
    assert record["pixel_spacing_source"] == "ImagerPixelSpacing"
    assert record["detections"][0]["area_mm2"] == pytest.approx(90 * 0.07 * 0.05)


def test_json_without_a_stated_spacing_gives_pixel_areas_only(tmp_path):
    # read_dicom falls back on 0.07 mm; that guess is not a spacing to report.
    path, dicom = source_dicom(tmp_path)
    record = detect_io.detection_record(path, dicom.shape, hand_made_result(), dicom=dicom)
    assert record["pixel_spacing_mm"] is None and record["pixel_spacing_source"] is None
    assert [d["area_px"] for d in record["detections"]] == [90, 342]
    assert [d["area_mm2"] for d in record["detections"]] == [None, None]
    assert record["sop_instance_uid"] == pydicom.dcmread(path).SOPInstanceUID


def test_json_without_the_dicom_has_null_uids(tmp_path):
    record = detect_io.detection_record("x.dcm", (40, 30), hand_made_result())
    assert [record[k] for k in detect_io.SOURCE_UIDS] == [None, None, None]
    assert record["pixel_spacing_mm"] is None
    assert record["detections"][1]["area_px"] == 342


# ------------------------------------------------------------------- detect --dicom-seg --sr
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A built, untrained paper_cpu FT-MTL-Net at 64 px (detecting everything)."""
    from ftmtl.presets import build_model, make_config

    folder = tmp_path_factory.mktemp("weights")
    config = make_config("paper_cpu", "ftmtl", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64,
                         PREPARED_IMAGE_SIZE=64, IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.0)
    path = folder / "tiny.h5"
    build_model("inference", config, folder).save_weights(path)
    return path


def test_detect_writes_seg_and_sr_that_agree_with_the_json(tmp_path, tiny_weights):
    data = tmp_path / "data"
    manifest = generate_synthetic_inbreast(data, n_patients=1, seed=5, image_shape=(192, 144))
    dicom = data / "AllDICOMs" / manifest.images[0].dicom_name
    out = tmp_path / "out"
    code = main(["-q", "detect", str(dicom), "--weights", str(tiny_weights),
                 "--preset", "paper_cpu", "--image-size", "64", "--set", "IMAGE_MIN_DIM=64",
                 "--min-confidence", "0", "--dicom-seg", "--sr", "--out", str(out)])
    assert code == 0
    stem = dicom.stem
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}{suffix}" for suffix in (".json", ".png", "_seg.dcm", "_sr.dcm"))
    record = json.loads((out / f"{stem}.json").read_text())
    source = pydicom.dcmread(dicom, stop_before_pixels=True)
    assert (record["study_instance_uid"], record["series_instance_uid"],
            record["sop_instance_uid"]) == (source.StudyInstanceUID,
                                            source.SeriesInstanceUID, source.SOPInstanceUID)
    assert record["pixel_spacing_mm"] is None  # the generated DICOMs state none
    detections = record["detections"]
    assert detections, "an untrained model at confidence 0 still detects"

    seg = hd.seg.segread(out / f"{stem}_seg.dcm")
    assert seg.number_of_segments == len(detections)
    assert seg.get_source_image_uids() == [
        (source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID)]
    assert "FrameOfReferenceUID" not in seg  # the source has none; none is made up
    pixels = seg.get_pixels_by_source_instance([source.SOPInstanceUID])
    for i, det in enumerate(detections):
        mask = detect_io.rle_decode(det["mask"])
        np.testing.assert_array_equal(pixels[0, ..., i].astype(bool), mask)
        assert det["area_px"] == int(mask.sum())
        segment = seg.get_segment_description(i + 1)
        modifier = segment.SegmentedPropertyTypeCodeSequence[0]
        modifier = modifier.SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning
        assert modifier.lower() == det["class_name"]
        assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == (
            "FT-MTL-Net")

    sr = hd.sr.srread(out / f"{stem}_sr.dcm")
    (image,) = sr.content.get_image_measurement_groups()
    (case,) = image.get_measurements()
    assert case.name == codes.DCM.ProbabilityOfCancer
    assert case.value == pytest.approx(100 * record["case_malignancy_score"], abs=1e-4)
    masses = sr.content.get_planar_roi_measurement_groups()
    assert len(masses) == len(detections)
    for group, det in zip(masses, detections, strict=True):
        certainty = [m for m in group.get_measurements()
                     if m.name == codes.DCM.CertaintyOfFinding]
        assert certainty[0].value == pytest.approx(100 * det["score"], abs=1e-4)
        assert not [m for m in group.get_measurements() if m.name == codes.SCT.Area]
