"""One mammogram's detections as DICOM objects a PACS or viewer reads: a Segmentation (SEG) with
one binary segment a detected mass, and a Comprehensive 3D SR holding a TID 1500 Measurement
Report with one measurement group a mass and one for the image (its malignancy score).

Both are written with highdicom from numpy detections in the source image's own pixels (the
``detect`` result after ``detections_to_original``: ``rois``, ``class_ids``, ``scores``,
``masks`` [H, W, N], optionally ``class_probs`` and ``case_score``) and the source's pydicom
data set (its header is enough). Both carry the source's patient and study, and reference its
Study, Series and SOP Instance UIDs.

Codes (SCT: SNOMED CT, DCM: DICOM, UCUM: units):

- a segment and an SR mass group: finding category (49755003, SCT, "Morphologically Abnormal
  Structure"), type (4147007, SCT, "Mass"); the class is the type's modifier in the SEG
  (Segmented Property Type Modifier Code Sequence) and the value of (111042, DCM, "Pathology")
  in the SR, the concept the Mammography CAD SR (TID 4006) uses for a finding's pathology:
  (30807003, SCT, "Benign") or (21594007, SCT, "Malignant"). These are the qualifier values,
  not "benign/malignant neoplasm": the classes come from BI-RADS assessments, not histology;
- a mass's detection score (1 - p(background)): (111012, DCM, "Certainty of Finding"); its
  p(malignant): (111047, DCM, "Probability of cancer"); both in percent (UCUM "%"), 0-100, as
  the Mammography CAD templates give them; its area (42798000, SCT, "Area") in mm2 where the
  pixel spacing is known;
- the image: (111047, DCM, "Probability of cancer") = the veto's case score in percent, and
  (111017, DCM, "CAD Processing and Findings Summary") = (111242, DCM, "All algorithms
  succeeded; with findings") or (111241, DCM, "All algorithms succeeded; without findings");
- procedure reported (71651007, SCT, "Mammography"); algorithm family (123110, DCM,
  "Artificial Intelligence").

Decisions:

- No Frame of Reference is made up. A mammogram need not have one (the Frame of Reference
  module is optional in the MG and Secondary Capture IODs); highdicom then writes a SEG without
  one, pixel-aligned with the source (one frame a segment), and copies the source's
  FrameOfReferenceUID when it has one. The SEG gets the source's PatientOrientation (empty when
  the source has none), which the General Image module asks for when there is no plane
  orientation.
- Zero detections: no SEG (the standard needs at least one segment; a log line says so); the SR
  is still written, with the image group only, saying "without findings".
- With a SEG, each SR mass group references its segment's frame (frame N is segment N:
  every segment gets its frame, empty masks too). The reference carries the frame number only:
  the Image SOP Instance Reference macro makes Referenced Frame Number and Referenced Segment
  Number alternatives, and highdicom's helper writes both. Without a SEG, a mass group
  references its box in the source image as a closed polyline (SCOORD, pixel corners).
- A source without a Type 2 patient/study element highdicom copies (PatientID, PatientName,
  ...) gets it empty in the outputs, as Type 2 allows; one without its Study, Series or SOP
  Instance UID, SOP Class UID, Rows or Columns is refused with an error naming the element.
- The SEG's segment and the SR's mass group share a tracking UID and identifier ("Mass N").
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

logger = logging.getLogger(__name__)

MASS_CATEGORY = codes.SCT.MorphologicallyAbnormalStructure
MASS_TYPE = codes.SCT.Mass
CLASS_CODES: dict[str, Code] = {"benign": codes.SCT.Benign, "malignant": codes.SCT.Malignant}
PATHOLOGY = codes.DCM.Pathology
CERTAINTY_OF_FINDING = codes.DCM.CertaintyOfFinding
PROBABILITY_OF_CANCER = codes.DCM.ProbabilityOfCancer
FINDINGS_SUMMARY = codes.DCM.CADProcessingAndFindingsSummary
WITH_FINDINGS = codes.DCM.AllAlgorithmsSucceededWithFindings
WITHOUT_FINDINGS = codes.DCM.AllAlgorithmsSucceededWithoutFindings
AREA = codes.SCT.Area
PROCEDURE_REPORTED = codes.SCT.Mammography
ALGORITHM_FAMILY = codes.DCM.ArtificialIntelligence
PERCENT = codes.UCUM.Percent
SQUARE_MILLIMETER = codes.UCUM.SquareMillimeter
# New series numbers, high so that viewers list the results after the source images.
SEG_SERIES_NUMBER = 900
SR_SERIES_NUMBER = 901
MANUFACTURER = "ftmtl"
# The SEG's equipment module needs a device serial number; software has none.
DEVICE_SERIAL_NUMBER = "none (software)"
# Elements the SEG and SR need from the source; a file lacking one is refused.
REQUIRED_SOURCE_ELEMENTS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                            "SOPClassUID", "Rows", "Columns")
# Type 2 patient/study elements highdicom copies; a file lacking one gets it empty.
TYPE2_SOURCE_ELEMENTS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                         "AccessionNumber", "StudyID", "StudyDate", "StudyTime")
_SEG_SUFFIX = "_seg.dcm"
_SR_SUFFIX = "_sr.dcm"


@dataclass(frozen=True)
class Algorithm:
    """What made the detections: its name, version and parameters (e.g. the model's config name
    and weight file), written into the SEG's segments and the SR's groups."""

    name: str
    version: str
    parameters: Mapping[str, str] = field(default_factory=dict)

    def for_segmentation(self) -> hd.AlgorithmIdentificationSequence:
        return hd.AlgorithmIdentificationSequence(
            name=self.name, family=ALGORITHM_FAMILY, version=self.version,
            parameters=dict(self.parameters) or None)

    def for_report(self) -> hd.sr.AlgorithmIdentification:
        return hd.sr.AlgorithmIdentification(
            name=self.name, version=self.version, family=ALGORITHM_FAMILY,
            parameters=[f"{k}={v}" for k, v in self.parameters.items()] or None)


@dataclass(frozen=True)
class Mass:
    """One detection, as the SEG and SR describe it."""

    number: int  # 1-based: the segment number and the SEG frame number
    class_name: str
    score: float
    malignant_probability: float | None
    box: tuple[int, int, int, int]  # (y1, x1, y2, x2) pixels, y2 and x2 exclusive
    mask: np.ndarray  # bool [H, W]
    tracking_uid: str

    @property
    def label(self) -> str:
        return f"Mass {self.number}"


# ------------------------------------------------------------------------------ the source
def source_name(source: Dataset) -> str:
    """The file the data set came from, for error messages."""
    return str(getattr(source, "filename", None) or "the source data set")


def prepared_source(source: Dataset) -> Dataset:
    """A copy of the source header that highdicom accepts: the required elements checked,
    missing Type 2 patient/study elements added empty, no pixel data."""
    for keyword in REQUIRED_SOURCE_ELEMENTS:
        if keyword not in source or source.get(keyword) in (None, ""):
            raise ValueError(f"{source_name(source)}: no {keyword}; DICOM results must "
                             f"reference the source image by it")
    header = copy.deepcopy(source)
    if "PixelData" in header:
        del header.PixelData
    missing = [k for k in TYPE2_SOURCE_ELEMENTS if k not in header]
    for keyword in missing:
        setattr(header, keyword, "")
    if missing:
        logger.debug("%s: no %s; written empty in the DICOM results", source_name(source),
                     ", ".join(missing))
    return header


def source_shape(source: Dataset) -> tuple[int, int]:
    return int(source.Rows), int(source.Columns)


# ------------------------------------------------------------------------------ the masses
def masses_of(result: Mapping[str, Any], class_names: Sequence[str],
              image_shape: tuple[int, int], name: str) -> list[Mass]:
    """The detections of ``result`` as Masses; ``class_names`` indexed by class id."""
    boxes = np.asarray(result["rois"]).reshape(-1, 4)
    class_ids = np.asarray(result["class_ids"]).reshape(-1)
    scores = np.asarray(result["scores"], dtype=np.float64).reshape(-1)
    masks = np.asarray(result["masks"], dtype=bool)
    count = len(boxes)
    if len(class_ids) != count or len(scores) != count:
        raise ValueError(f"{name}: {count} boxes, {len(class_ids)} class ids and {len(scores)} "
                         f"scores; expected one of each a detection")
    if masks.shape != (*image_shape, count):
        raise ValueError(f"{name}: masks have shape {masks.shape}, expected "
                         f"{(*image_shape, count)} (the image's rows, columns, one a detection)")
    probs = result.get("class_probs")
    malignant = _class_id(class_names, "malignant")
    masses = []
    for i in range(count):
        class_id = int(class_ids[i])
        if not 0 < class_id < len(class_names) or class_names[class_id] not in CLASS_CODES:
            raise ValueError(f"{name}: detection {i + 1} has class id {class_id}; expected the "
                             f"id of one of {sorted(CLASS_CODES)} in {list(class_names)}")
        p_malignant = None if probs is None else float(np.asarray(probs)[i][malignant])
        masses.append(Mass(number=i + 1, class_name=class_names[class_id],
                           score=float(scores[i]), malignant_probability=p_malignant,
                           box=tuple(int(v) for v in boxes[i]), mask=masks[..., i],
                           tracking_uid=hd.UID()))
    return masses


def _class_id(class_names: Sequence[str], name: str) -> int:
    if name not in class_names:
        raise ValueError(f"class names {list(class_names)} have no {name!r}")
    return list(class_names).index(name)


# ----------------------------------------------------------------------------------- SEG
def mass_segmentation(source: Dataset, masses: Sequence[Mass], algorithm: Algorithm
                      ) -> hd.seg.Segmentation:
    """A binary SEG of ``source`` with one segment a mass (segment N is frame N)."""
    if not masses:
        raise ValueError(f"{source_name(source)}: no mass to segment; a Segmentation needs at "
                         "least one segment")
    header = prepared_source(source)
    # [1 frame, H, W, segments], each segment's pixels together in memory: highdicom reads the
    # stack a segment at a time (a stack with the segments innermost is several times slower).
    pixels = np.moveaxis(np.stack([m.mask for m in masses]), 0, -1)[None]
    seg = hd.seg.Segmentation(
        source_images=[header],
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment_description(m, algorithm) for m in masses],
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version,
        device_serial_number=DEVICE_SERIAL_NUMBER,
        content_label="MASSES",
        content_description=f"{algorithm.name} mass detections",
        series_description=f"{algorithm.name} masses (SEG)",
        omit_empty_frames=False,
    )
    seg.PatientOrientation = header.get("PatientOrientation", "")
    return seg


def _segment_description(mass: Mass, algorithm: Algorithm) -> hd.seg.SegmentDescription:
    description = hd.seg.SegmentDescription(
        segment_number=mass.number,
        segment_label=f"{mass.label} {mass.class_name} {mass.score:.2f}",
        segmented_property_category=MASS_CATEGORY,
        segmented_property_type=MASS_TYPE,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm.for_segmentation(),
        tracking_uid=mass.tracking_uid,
        tracking_id=mass.label,
    )
    # highdicom has no argument for the modifier: it goes inside the type's code item.
    modifier = hd.sr.CodedConcept.from_code(CLASS_CODES[mass.class_name])
    description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
        modifier]
    return description


# ------------------------------------------------------------------------------------ SR
def measurement_report(source: Dataset, masses: Sequence[Mass], algorithm: Algorithm,
                       case_score: float | None,
                       segmentation: Dataset | None = None,
                       pixel_spacing: tuple[float, float] | None = None,
                       ) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 Measurement Report: the image's group (its malignancy score and whether
    anything was found), then one group a mass, referencing its segment in ``segmentation``
    (or, without one, its box); areas in mm2 where ``pixel_spacing`` (row, column) is known."""
    header = prepared_source(source)
    groups: list[Any] = [_image_group(header, masses, algorithm, case_score)]
    groups += [_mass_group(header, m, algorithm, segmentation, pixel_spacing) for m in masses]
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[algorithm.name, algorithm.version]),
        name=algorithm.name, manufacturer_name=MANUFACTURER, model_name=algorithm.version)
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))
    report = hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=PROCEDURE_REPORTED,
        imaging_measurements=groups)
    evidence = [header] if segmentation is None else [header, segmentation]
    return hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=f"{algorithm.name} masses (SR)",
    )


def _image_group(header: Dataset, masses: Sequence[Mass], algorithm: Algorithm,
                 case_score: float | None) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    measurements = []
    if case_score is not None:
        measurements.append(_percent(PROBABILITY_OF_CANCER, case_score))
    summary = hd.sr.QualitativeEvaluation(FINDINGS_SUMMARY,
                                          WITH_FINDINGS if masses else WITHOUT_FINDINGS)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="Image"),
        algorithm_id=algorithm.for_report(),
        measurements=measurements or None,
        qualitative_evaluations=[summary],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(header)],
    )


def _mass_group(header: Dataset, mass: Mass, algorithm: Algorithm,
                segmentation: Dataset | None, pixel_spacing: tuple[float, float] | None
                ) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    measurements = [_percent(CERTAINTY_OF_FINDING, mass.score)]
    if mass.malignant_probability is not None:
        measurements.append(_percent(PROBABILITY_OF_CANCER, mass.malignant_probability))
    if pixel_spacing is not None:
        area = float(mass.mask.sum()) * pixel_spacing[0] * pixel_spacing[1]
        measurements.append(hd.sr.Measurement(name=AREA, value=area, unit=SQUARE_MILLIMETER))
    reference: dict[str, Any]
    if segmentation is None:
        reference = {"referenced_region": _box_region(header, mass.box)}
    else:
        reference = {"referenced_segment": _segment_frame(header, segmentation, mass.number)}
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=mass.tracking_uid,
                                                     identifier=mass.label),
        finding_category=MASS_CATEGORY,
        finding_type=MASS_TYPE,
        algorithm_id=algorithm.for_report(),
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(PATHOLOGY,
                                                             CLASS_CODES[mass.class_name])],
        **reference,
    )


def _percent(name: Code, probability: float) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=100.0 * float(probability), unit=PERCENT)


def _segment_frame(header: Dataset, segmentation: Dataset, number: int
                   ) -> hd.sr.ReferencedSegmentationFrame:
    reference = hd.sr.ReferencedSegmentationFrame(
        sop_class_uid=segmentation.SOPClassUID,
        sop_instance_uid=segmentation.SOPInstanceUID,
        frame_number=number,
        segment_number=number,
        source_image=hd.sr.SourceImageForSegmentation.from_source_image(header),
    )
    # The frame identifies the segment; the reference macro allows one of the two numbers.
    del reference[0].ReferencedSOPSequence[0].ReferencedSegmentNumber
    return reference


def _box_region(header: Dataset, box: tuple[int, int, int, int]) -> hd.sr.ImageRegion:
    """The box's outline: (column, row) pixel corners, (0, 0) the top left pixel's top left."""
    y1, x1, y2, x2 = box
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]], dtype=np.float64)
    return hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=corners,
        source_image=hd.sr.SourceImageForRegion.from_source_image(header))


# ------------------------------------------------------------------------------- writing
def write_dicom_results(stem: str | os.PathLike, source: Dataset, result: Mapping[str, Any],
                        algorithm: Algorithm, class_names: Sequence[str], *,
                        segmentation: bool = True, report: bool = True,
                        pixel_spacing: tuple[float, float] | None = None) -> list[Path]:
    """Write ``<stem>_seg.dcm`` (``segmentation``; skipped, with a log line, when nothing was
    detected) and ``<stem>_sr.dcm`` (``report``) for one image; returns the paths written.

    ``result`` holds the detections in ``source``'s pixels; ``class_names`` are indexed by
    class id; ``pixel_spacing`` (row, column) mm, None when unknown (no areas in the SR).
    """
    stem = Path(stem)
    name = source_name(source)
    masses = masses_of(result, class_names, source_shape(source), name)
    written = []
    seg = None
    if segmentation and masses:
        seg = mass_segmentation(source, masses, algorithm)
        written.append(_save(seg, stem.with_name(stem.name + _SEG_SUFFIX)))
    elif segmentation:
        logger.info("%s: no mass detected, so no SEG (a Segmentation needs at least one "
                    "segment)%s", name, "; the SR says so" if report else "")
    if report:
        sr = measurement_report(source, masses, algorithm, _optional_float(
            result.get("case_score")), seg, pixel_spacing)
        written.append(_save(sr, stem.with_name(stem.name + _SR_SUFFIX)))
    return written


def _save(dataset: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
