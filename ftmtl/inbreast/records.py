"""Small records shared by the INbreast readers, and the error they raise.

Each reader turns one file format into plain records; nothing here reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset as PydicomDataset

BIRADS_VALUES = ("1", "2", "3", "4a", "4b", "4c", "5", "6")
_BIRADS_LABELS = {
    "1": "normal",
    "2": "benign",
    "3": "benign",
    "4a": "malignant",
    "4b": "malignant",
    "4c": "malignant",
    "5": "malignant",
    "6": "malignant",
}


class InbreastFormatError(ValueError):
    """A file of the INbreast layout does not have the expected format (message names the file)."""


def birads_label(birads: str) -> str:
    """Map a BI-RADS assessment to the paper's label: "normal", "benign" or "malignant".

    1 is normal; 2 and 3 are benign; 4a, 4b, 4c, 5 and 6 are malignant.
    """
    key = str(birads).strip().lower()
    if key not in _BIRADS_LABELS:
        raise ValueError(f"unknown BI-RADS value {birads!r}; expected one of {BIRADS_VALUES}")
    return _BIRADS_LABELS[key]


@dataclass(frozen=True)
class CaseRecord:
    """One row of INbreast.csv (one image). ``row`` is the line number in the file."""

    patient_id: str | None
    patient_age: int | None
    laterality: str
    view: str
    acquisition_date: str
    file_name: str
    acr: int | None
    birads: str
    row: int = 0

    @property
    def label(self) -> str:
        return birads_label(self.birads)


@dataclass
class RoiRecord:
    """One ROI of an OsiriX XML export.

    ``points_px`` is [K, 2] float64 in (x = column, y = row) full-resolution pixel indices, as in
    the file; the polygon is not closed. ``points_mm`` is [K, 3] (or [K, 2]) when present.
    """

    name: str | None
    type: int | None
    index: int
    points_px: np.ndarray
    image_index: int = 0
    points_mm: np.ndarray | None = None
    center: tuple[float, ...] | None = None
    declared_points: int | None = None
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return int(self.points_px.shape[0])


@dataclass(frozen=True)
class DicomName:
    """The parts of an INbreast DICOM file name.

    ``view`` uses the CSV's words: the "ML" of file names is reported as "MLO".
    """

    file_name: str
    patient_hash: str
    laterality: str
    view: str


@dataclass
class DicomImage:
    """Pixels of one DICOM: stored values as uint16 [H, W], high = dense (MONOCHROME1 inverted).

    ``pixel_spacing`` is (row, column) mm; ``pixel_spacing_source`` names the element it came
    from ("PixelSpacing" or "ImagerPixelSpacing"), None when the file has neither and the
    spacing is the INbreast default. ``header`` is the file's data set without its pixel data
    (the UIDs and patient/study elements that results referring to the image need).
    """

    pixels: np.ndarray
    bits_stored: int
    pixel_spacing: tuple[float, float]
    photometric: str
    path: Path
    pixel_spacing_source: str | None = None
    header: PydicomDataset | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])
