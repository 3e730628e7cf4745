"""INbreast readers (CSV, XML ROIs, DICOM), breast crop, INbreastDataset and patient folds."""

from ftmtl.inbreast.dataset import INbreastDataset
from ftmtl.inbreast.dicom_io import DEFAULT_PIXEL_SPACING_MM, read_dicom, read_dicom_shape
from ftmtl.inbreast.filenames import index_dicoms, parse_dicom_name, safe_join
from ftmtl.inbreast.folds import patient_folds
from ftmtl.inbreast.masks import (
    MASS_NAMES,
    MASS_NAMES_SPICULATED,
    masses_from_rois,
    polygon_to_mask,
    usable_mass_rois,
)
from ftmtl.inbreast.metadata import CSV_COLUMNS, read_inbreast_csv
from ftmtl.inbreast.preprocess import Transform, breast_bbox, normalise_14bit, prepare_image
from ftmtl.inbreast.records import (
    CaseRecord,
    DicomImage,
    DicomName,
    InbreastFormatError,
    RoiRecord,
    birads_label,
)
from ftmtl.inbreast.rois import parse_point, read_plist, read_rois

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_PIXEL_SPACING_MM",
    "MASS_NAMES",
    "MASS_NAMES_SPICULATED",
    "CaseRecord",
    "DicomImage",
    "DicomName",
    "INbreastDataset",
    "InbreastFormatError",
    "RoiRecord",
    "Transform",
    "birads_label",
    "breast_bbox",
    "index_dicoms",
    "masses_from_rois",
    "normalise_14bit",
    "parse_dicom_name",
    "parse_point",
    "patient_folds",
    "polygon_to_mask",
    "prepare_image",
    "read_dicom",
    "read_dicom_shape",
    "read_inbreast_csv",
    "read_plist",
    "read_rois",
    "safe_join",
    "usable_mass_rois",
]
