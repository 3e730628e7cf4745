"""One way in for every dataset format: a ``DatasetSpec`` (the folder, its format and the
format's options) and ``load_dataset``, which the command line, cross-validation and a Python
user share.

Formats: ``inbreast`` (INbreast.csv, AllDICOMs, AllXML), ``coco`` (a COCO instance JSON) and
``csv`` (a CSV of boxes or mask files); see ``ftmtl.inbreast.dataset``,
``ftmtl.datasets.coco_format`` and ``ftmtl.datasets.csv_format``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftmtl.datasets.coco_format import CocoDataset
from ftmtl.datasets.csv_format import CsvDataset
from ftmtl.inbreast.dataset import INbreastDataset
from ftmtl.inbreast.intensity import DEFAULT_WINDOW
from ftmtl.inbreast.masks import MASS_NAMES

INBREAST, COCO, CSV = "inbreast", "coco", "csv"
DATASET_FORMATS = (INBREAST, COCO, CSV)


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset is and how to read it.

    ``root``: the dataset folder (every path the annotations give lies under it).
    ``format``: one of DATASET_FORMATS. ``annotations``: the COCO JSON or CSV file (default
    ``root/annotations.json`` or ``root/annotations.csv``). ``label_map``: category names or
    label values -> benign / malignant / ignore (coco, csv). ``columns``: the CSV's column
    names by role (csv). ``bits_stored``: bits the values of 16-bit PNG/TIFF images use (coco,
    csv). ``mass_names``: the ROI Names read as masses (inbreast; default "Mass"). Maps may be
    dicts or ``"a=x,b=y"`` text.
    """

    root: str | os.PathLike
    format: str = INBREAST
    annotations: str | os.PathLike | None = None
    label_map: Mapping[str, str] | str | None = None
    columns: Mapping[str, str] | str | None = None
    bits_stored: int | None = None
    mass_names: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.format not in DATASET_FORMATS:
            raise ValueError(f"dataset format {self.format!r}; expected one of "
                             f"{', '.join(DATASET_FORMATS)}")
        given = {name for name in ("annotations", "label_map", "columns", "bits_stored",
                                   "mass_names") if getattr(self, name) is not None}
        allowed = {INBREAST: {"mass_names"}, COCO: {"annotations", "label_map", "bits_stored"},
                   CSV: {"annotations", "label_map", "columns", "bits_stored"}}[self.format]
        if given - allowed:
            raise ValueError(f"dataset format {self.format}: {', '.join(sorted(given - allowed))}"
                             f" do(es) not apply (it takes {', '.join(sorted(allowed))})")


def as_spec(dataset: DatasetSpec | str | os.PathLike) -> DatasetSpec:
    """A spec as given, or an INbreast folder's."""
    return dataset if isinstance(dataset, DatasetSpec) else DatasetSpec(root=dataset)


def load_dataset(dataset: DatasetSpec | str | os.PathLike, image_size: int | None,
                 subset: Sequence[str] | None = None, progress: bool = False,
                 window: str = DEFAULT_WINDOW) -> Any:
    """The prepared dataset (images, or only those of ``subset`` by file name) of a spec or an
    INbreast folder, its images prepared at ``image_size`` through the intensity ``window``
    (``ftmtl.inbreast.intensity``); ValueError when none is usable.

    ``progress`` (off by default: Python callers stay quiet) shows the reading of an INbreast
    folder, an XML and a DICOM header an image (seconds for hundreds of images); COCO and
    CSV annotations are one file, read in well under a second, so nothing is shown for them."""
    spec = as_spec(dataset)
    if spec.format == INBREAST:
        loaded: Any = INbreastDataset()
        loaded.load_inbreast(spec.root, subset_file_names=subset, image_size=image_size,
                             mass_names=tuple(spec.mass_names or MASS_NAMES),
                             progress=progress, window=window)
    elif spec.format == COCO:
        loaded = CocoDataset()
        loaded.load_coco(spec.root, spec.annotations, spec.label_map, subset, image_size,
                         spec.bits_stored, window)
    else:
        loaded = CsvDataset()
        loaded.load_csv(spec.root, spec.annotations, spec.columns, spec.label_map, subset,
                        image_size, spec.bits_stored, window)
    loaded.prepare()
    if not len(loaded.image_ids):
        raise ValueError(f"{Path(spec.root)}: no usable images ({spec.format} format)")
    return loaded
