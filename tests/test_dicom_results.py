"""DICOM results of a detection (ftmtl/dicom_results.py): the SEG and the TID 1500 SR written
for a small DICOM with hand-made detections, read back with pydicom and highdicom: the source's
UIDs, one segment a mass with the JSON's masks as pixels, the codes, the SR's groups and their
references, zero detections, a source without a Frame of Reference, and bad input. The
dicom3tools validator (dciodvfy) checks the files where it is installed."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_files import write_dicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from ftmtl import detect_io, dicom_results
from ftmtl.dicom_results import Algorithm, write_dicom_results
from ftmtl.inbreast.dicom_io import read_dicom

SHAPE = (40, 30)
MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
ALGORITHM = Algorithm("FT-MTL-Net", "9.8.7", {"config": "ftmtl_paper_cpu", "weights": "w.h5"})
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


def hand_made_result():
    """A benign mass (10 x 9 px, score 0.8, p(malignant) 0.1) and a malignant one with a hole
    (18 x 19 - 4 px, score 0.95, p(malignant) 0.8); case score 0.8."""
    masks = np.zeros(SHAPE + (2,), dtype=bool)
    masks[5:15, 3:12, 0] = True
    masks[20:38, 10:29, 1] = True
    masks[25:27, 15:17, 1] = False
    return {"rois": np.array([[5, 3, 15, 12], [20, 10, 38, 29]], np.int32),
            "class_ids": np.array([1, 2], np.int32),
            "scores": np.array([0.8, 0.95], np.float32),
            "class_probs": np.array([[0.2, 0.7, 0.1], [0.05, 0.15, 0.8]], np.float32),
            "case_score": 0.8, "masks": masks}


def no_detection_result():
    return {"rois": np.zeros((0, 4), np.int32), "class_ids": np.zeros(0, np.int32),
            "scores": np.zeros(0, np.float32), "class_probs": np.zeros((0, 3), np.float32),
            "masks": np.zeros(SHAPE + (0,), bool), "case_score": 0.1}


def minimal_source(folder):
    """A Secondary Capture with the UIDs and nothing else: no Frame of Reference, no spacing,
    no patient or study elements (as tests/dicom_files.py writes them)."""
    return write_dicom(folder / "minimal.dcm", np.zeros(SHAPE, np.uint16),
                       StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid())


def mammogram_source(folder):
    """A digital mammogram (For Presentation) as a real one looks: Frame of Reference,
    ImagerPixelSpacing 0.07 mm, patient orientation, laterality, view, patient and study."""
    path = write_dicom(
        folder / "mammogram.dcm", np.zeros(SHAPE, np.uint16),
        StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid(),
        FrameOfReferenceUID=generate_uid(), PositionReferenceIndicator="",
        PatientID="P0001", PatientName="Doe^Jane", PatientBirthDate="19600101",
        PatientSex="F", StudyDate="20240102", StudyTime="093000", StudyID="7",
        AccessionNumber="A42", ReferringPhysicianName="", SeriesNumber=1, InstanceNumber=1,
        ImagerPixelSpacing=[0.07, 0.07], PatientOrientation=["A", "R"], ImageLaterality="L",
        ViewPosition="CC", BodyPartExamined="BREAST")
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MG_FOR_PRESENTATION
    ds.save_as(path, enforce_file_format=True)
    return path


SOURCES = {"minimal": minimal_source, "mammogram": mammogram_source}


@pytest.fixture(params=sorted(SOURCES))
def source(request, tmp_path):
    return read_dicom(SOURCES[request.param](tmp_path))


def write(source, tmp_path, result=None, **options):
    spacing = detect_io.known_pixel_spacing(source)
    return write_dicom_results(tmp_path / "out" / "case", source.header,
                               hand_made_result() if result is None else result, ALGORITHM,
                               detect_io.CLASS_NAMES, pixel_spacing=spacing, **options)


def code_of(item) -> tuple[str, str, str]:
    return item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning


def named(items, code):
    return [i for i in items if i.name == code]


def findings_summary(image_group):
    (summary,) = named(image_group.get_qualitative_evaluations(),
                       codes.DCM.CADProcessingAndFindingsSummary)
    return summary.value


# -------------------------------------------------------------------------------------- SEG
def test_both_files_are_written_with_their_names(source, tmp_path):
    paths = write(source, tmp_path)
    assert [p.name for p in paths] == ["case_seg.dcm", "case_sr.dcm"]
    assert pydicom.dcmread(paths[0]).SOPClassUID == SEGMENTATION_STORAGE
    assert pydicom.dcmread(paths[1]).SOPClassUID == COMPREHENSIVE_3D_SR


def test_segmentation_references_the_source_image(source, tmp_path):
    header = source.header
    seg = hd.seg.segread(write(source, tmp_path)[0])
    assert seg.StudyInstanceUID == header.StudyInstanceUID
    assert seg.SeriesInstanceUID != header.SeriesInstanceUID  # a series of its own
    assert seg.Modality == "SEG" and seg.SeriesNumber == dicom_results.SEG_SERIES_NUMBER
    (series,) = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == header.SeriesInstanceUID
    assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID)
            for i in series.ReferencedInstanceSequence] == [
        (header.SOPClassUID, header.SOPInstanceUID)]
    assert seg.get_source_image_uids() == [
        (header.StudyInstanceUID, header.SeriesInstanceUID, header.SOPInstanceUID)]
    assert (seg.Rows, seg.Columns) == SHAPE
    assert seg.PatientID == header.get("PatientID", "")
    # The Frame of Reference is the source's where it has one; none is invented otherwise.
    assert seg.get("FrameOfReferenceUID") == header.get("FrameOfReferenceUID")
    assert seg.PatientOrientation == header.get("PatientOrientation", "")


def test_segment_pixels_are_the_masks_of_the_json(source, tmp_path):
    result = hand_made_result()
    seg_path = write(source, tmp_path, result)[0]
    record = detect_io.write_detection_json(tmp_path / "case.json", source.path, SHAPE,
                                            result, dicom=source)
    json_masks = [detect_io.rle_decode(d["mask"]) for d in record["detections"]]
    seg = hd.seg.segread(seg_path)
    assert seg.segmentation_type == hd.seg.SegmentationTypeValues.BINARY
    assert seg.number_of_segments == 2 and list(seg.segment_numbers) == [1, 2]
    pixels = seg.get_pixels_by_source_instance([source.header.SOPInstanceUID])
    assert pixels.shape == (1, *SHAPE, 2)
    for i, mask in enumerate(json_masks):
        np.testing.assert_array_equal(pixels[0, ..., i].astype(bool), mask)
    # Read without highdicom: frame N holds segment N.
    raw = pydicom.dcmread(seg_path)
    frames = raw.pixel_array
    assert frames.shape == (2, *SHAPE)
    for i, item in enumerate(raw.PerFrameFunctionalGroupsSequence):
        assert item.SegmentIdentificationSequence[0].ReferencedSegmentNumber == i + 1
        np.testing.assert_array_equal(frames[i].astype(bool), result["masks"][..., i])


def test_segments_are_coded_as_benign_or_malignant_masses(source, tmp_path):
    seg = hd.seg.segread(write(source, tmp_path)[0])
    for number, modifier in ((1, ("30807003", "SCT", "Benign")),
                             (2, ("21594007", "SCT", "Malignant"))):
        segment = seg.get_segment_description(number)
        assert code_of(segment.SegmentedPropertyCategoryCodeSequence[0]) == (
            "49755003", "SCT", "Morphologically Abnormal Structure")
        mass_type = segment.SegmentedPropertyTypeCodeSequence[0]
        assert code_of(mass_type) == ("4147007", "SCT", "Mass")
        assert [code_of(m) for m in mass_type.SegmentedPropertyTypeModifierCodeSequence] == [
            modifier]
        assert segment.SegmentAlgorithmType == "AUTOMATIC"
        (algorithm,) = segment.SegmentationAlgorithmIdentificationSequence
        assert algorithm.AlgorithmName == "FT-MTL-Net" and algorithm.AlgorithmVersion == "9.8.7"
        assert code_of(algorithm.AlgorithmFamilyCodeSequence[0]) == (
            "123110", "DCM", "Artificial Intelligence")
        assert "weights=w.h5" in algorithm.AlgorithmParameters
        assert segment.TrackingID == f"Mass {number}"
    assert seg.get_segment_description(2).SegmentLabel == "Mass 2 malignant 0.95"


# --------------------------------------------------------------------------------------- SR
def measurement_values(group) -> dict[str, tuple[float, str]]:
    return {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}


def test_report_holds_the_image_group_and_one_group_a_mass(source, tmp_path):
    seg_path, sr_path = write(source, tmp_path)
    seg = pydicom.dcmread(seg_path)
    sr = hd.sr.srread(sr_path)
    header = source.header
    assert sr.StudyInstanceUID == header.StudyInstanceUID and sr.Modality == "SR"
    assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"
    # The evidence: the source image and the SEG, each in its series.
    evidence = {(s.SeriesInstanceUID, i.ReferencedSOPInstanceUID)
                for study in sr.CurrentRequestedProcedureEvidenceSequence
                for s in study.ReferencedSeriesSequence for i in s.ReferencedSOPSequence}
    assert evidence == {(header.SeriesInstanceUID, header.SOPInstanceUID),
                        (seg.SeriesInstanceUID, seg.SOPInstanceUID)}

    (image,) = sr.content.get_image_measurement_groups()
    assert measurement_values(image) == {"Probability of cancer": (pytest.approx(80.0), "%")}
    assert findings_summary(image) == codes.DCM.AllAlgorithmsSucceededWithFindings
    assert [s.referenced_sop_instance_uid for s in image.source_images] == [
        header.SOPInstanceUID]

    masses = sr.content.get_planar_roi_measurement_groups()
    assert len(masses) == 2
    spacing = detect_io.known_pixel_spacing(source)
    result = hand_made_result()
    classes = (codes.SCT.Benign, codes.SCT.Malignant)
    for i, (group, pathology) in enumerate(zip(masses, classes, strict=True)):
        assert group.finding_type == codes.SCT.Mass
        assert group.finding_category == codes.SCT.MorphologicallyAbnormalStructure
        (evaluation,) = named(group.get_qualitative_evaluations(), codes.DCM.Pathology)
        assert evaluation.value == pathology
        expected = {
            "Certainty of Finding": (pytest.approx(100 * result["scores"][i]), "%"),
            "Probability of cancer": (pytest.approx(100 * result["class_probs"][i][2]), "%")}
        if spacing is not None:  # 0.07 x 0.07 mm a pixel
            area = int(result["masks"][..., i].sum()) * 0.07 * 0.07
            expected["Area"] = (pytest.approx(area), "mm2")
        assert measurement_values(group) == expected


def test_report_groups_reference_their_segment_frames(source, tmp_path):
    seg_path, sr_path = write(source, tmp_path)
    seg = hd.seg.segread(seg_path)
    masses = hd.sr.srread(sr_path).content.get_planar_roi_measurement_groups()
    for number, group in enumerate(masses, start=1):
        assert group.reference_type == codes.DCM.ReferencedSegmentationFrame
        segment_item, source_item = group.referenced_segmentation_frame
        (reference,) = segment_item.ReferencedSOPSequence
        assert reference.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        assert reference.ReferencedFrameNumber == number
        # One of the two numbers (PS3.3 Image SOP Instance Reference macro): the frame.
        assert "ReferencedSegmentNumber" not in reference
        assert source_item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == (
            source.header.SOPInstanceUID)
        # The SR's group and the SEG's segment track the same mass.
        description = seg.get_segment_description(number)
        assert group.tracking_uid == description.TrackingUID
        assert group.tracking_identifier == description.TrackingID == f"Mass {number}"


def test_report_without_segmentation_references_the_boxes(source, tmp_path):
    paths = write(source, tmp_path, segmentation=False)
    assert [p.name for p in paths] == ["case_sr.dcm"]
    masses = hd.sr.srread(paths[0]).content.get_planar_roi_measurement_groups()
    for group, (y1, x1, y2, x2) in zip(masses, hand_made_result()["rois"].tolist(), strict=True):
        assert group.reference_type == codes.DCM.ImageRegion
        assert group.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        # (column, row) corners of the pixels y1..y2-1, x1..x2-1, closed.
        np.testing.assert_array_equal(group.roi.value, [[x1, y1], [x2, y1], [x2, y2],
                                                        [x1, y2], [x1, y1]])
        (image,) = group.roi.ContentSequence
        assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == (
            source.header.SOPInstanceUID)


def test_no_detection_writes_no_segmentation_and_a_report_without_findings(
        source, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ftmtl.dicom_results"):
        paths = write(source, tmp_path, no_detection_result())
    assert [p.name for p in paths] == ["case_sr.dcm"]
    assert "no mass detected, so no SEG" in caplog.text
    sr = hd.sr.srread(paths[0])
    assert sr.content.get_planar_roi_measurement_groups() == []
    (image,) = sr.content.get_image_measurement_groups()
    assert findings_summary(image) == codes.DCM.AllAlgorithmsSucceededWithoutFindings
    assert measurement_values(image) == {"Probability of cancer": (pytest.approx(10.0), "%")}


def test_segmentation_only(source, tmp_path):
    paths = write(source, tmp_path, report=False)
    assert [p.name for p in paths] == ["case_seg.dcm"]


def test_report_without_class_probabilities_or_case_score(tmp_path):
    source = read_dicom(minimal_source(tmp_path))
    result = hand_made_result()
    del result["class_probs"], result["case_score"]
    (sr_path,) = write(source, tmp_path, result, segmentation=False)
    sr = hd.sr.srread(sr_path)
    (image,) = sr.content.get_image_measurement_groups()
    assert measurement_values(image) == {}
    for group in sr.content.get_planar_roi_measurement_groups():
        assert set(measurement_values(group)) == {"Certainty of Finding"}


# ------------------------------------------------------------------------------- bad input
def test_a_source_without_a_uid_is_refused_naming_file_and_element(tmp_path):
    path = write_dicom(tmp_path / "no_study.dcm", np.zeros(SHAPE, np.uint16),
                       SeriesInstanceUID=generate_uid())
    header = read_dicom(path).header
    with pytest.raises(ValueError, match=r"no_study\.dcm: no StudyInstanceUID"):
        write_dicom_results(tmp_path / "x", header, hand_made_result(), ALGORITHM,
                            detect_io.CLASS_NAMES)
    assert not list(tmp_path.glob("x_*"))


def test_masks_of_another_size_are_refused(tmp_path):
    header = read_dicom(minimal_source(tmp_path)).header
    result = hand_made_result()
    result["masks"] = result["masks"][:20]
    with pytest.raises(ValueError, match=r"masks have shape \(20, 30, 2\), expected \(40, 30, 2\)"):
        write_dicom_results(tmp_path / "x", header, result, ALGORITHM, detect_io.CLASS_NAMES)


@pytest.mark.parametrize("class_id", [0, 3])
def test_a_class_that_is_neither_benign_nor_malignant_is_refused(tmp_path, class_id):
    header = read_dicom(minimal_source(tmp_path)).header
    result = hand_made_result()
    result["class_ids"] = np.array([1, class_id])
    with pytest.raises(ValueError, match=f"detection 2 has class id {class_id}"):
        write_dicom_results(tmp_path / "x", header, result, ALGORITHM, detect_io.CLASS_NAMES)


def test_the_source_header_is_left_unchanged(tmp_path):
    header = read_dicom(minimal_source(tmp_path)).header
    before = json.dumps(header.to_json_dict(), sort_keys=True)
    write_dicom_results(tmp_path / "x", header, hand_made_result(), ALGORITHM,
                        detect_io.CLASS_NAMES)
    assert "PatientID" not in header  # filled in the outputs' copy only
    assert json.dumps(header.to_json_dict(), sort_keys=True) == before


# ------------------------------------------------------------------- the DICOM validator
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dicom3tools' dciodvfy is not installed (apt-get install dicom3tools)")
@pytest.mark.parametrize("case", ["seg_and_sr", "sr_with_boxes", "no_detection"])
def test_dciodvfy_finds_no_error(source, tmp_path, case):
    if case == "seg_and_sr":
        paths = write(source, tmp_path)
    elif case == "sr_with_boxes":
        paths = write(source, tmp_path, segmentation=False)
    else:
        paths = write(source, tmp_path, no_detection_result())
    for path in paths:
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True,
                             timeout=60)
        report = run.stdout + run.stderr
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert errors == [], f"{path.name}:\n{report}"
        iod = "Segmentation" if path.name.endswith("_seg.dcm") else "Comprehensive3DSR"
        assert iod in report.splitlines()
