"""INbreastDataset: the INbreast layout (INbreast.csv, AllDICOMs, AllXML) as a Mask R-CNN Dataset.

Masses take the label of their image's BI-RADS (2, 3 benign; 4a-6 malignant). Images without
masses are negatives. Every image or mass left out is named in a warning.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ftmtl.inbreast.dicom_io import read_dicom, read_dicom_shape
from ftmtl.inbreast.filenames import index_dicoms, parse_dicom_name, safe_join
from ftmtl.inbreast.masks import MASS_NAMES, polygon_to_mask, usable_mass_rois
from ftmtl.inbreast.metadata import read_inbreast_csv
from ftmtl.inbreast.preprocess import Transform, prepare_image
from ftmtl.inbreast.records import CaseRecord, RoiRecord
from ftmtl.inbreast.rois import read_rois
from mrcnn.dataset import Dataset

logger = logging.getLogger(__name__)

SOURCE = "inbreast"
CLASS_IDS = {"benign": 1, "malignant": 2}
CSV_NAME = "INbreast.csv"
DICOM_FOLDER = "AllDICOMs"
XML_FOLDER = "AllXML"

Prepared = tuple[np.ndarray, np.ndarray, Transform]
# Memory the prepared-image cache may hold by default.
DEFAULT_CACHE_BYTES = 512 * 2**20


def _nbytes(prepared: Prepared) -> int:
    return int(prepared[0].nbytes + prepared[1].nbytes)


class INbreastDataset(Dataset):
    """INbreast images (per image, or one sample per mass) with breast-cropped, aligned masks.

    Call ``load_inbreast`` then ``prepare()`` (Matterport's order). Loading an image prepares it
    once: the most recently used prepared images are kept, up to ``cache_bytes`` (and at most
    ``cache_size`` images when given), so that training epochs do not read and prepare every
    DICOM again; at the CPU presets' 384 px a prepared image takes about 0.5 MB. Safe to use
    from the input pipeline's worker threads.
    """

    def __init__(self, class_map: dict | None = None, cache_size: int | None = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        super().__init__(class_map)
        self.image_size: int | None = None
        self._cache: OrderedDict[str, Prepared] = OrderedDict()
        self._cache_size = None if cache_size is None else max(1, int(cache_size))
        self._cache_bytes = int(cache_bytes)
        self._cached_bytes = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------- loading
    def load_inbreast(
        self,
        root: str | os.PathLike,
        subset_file_names: Iterable[str] | None = None,
        mass_names: Sequence[str] = MASS_NAMES,
        include_normals: bool = True,
        per_mass: bool = False,
        image_size: int | None = None,
    ) -> None:
        """Register the images (or masses) of an INbreast folder.

        ``subset_file_names`` keeps only those CSV File Names; ``include_normals`` keeps images
        without masses as negatives; ``per_mass`` gives one sample per mass; ``image_size``
        resizes prepared images so their long side has that many pixels (None: full size).
        """
        root = Path(root)
        self.image_size = image_size
        for name, class_id in CLASS_IDS.items():
            self.add_class(SOURCE, class_id, name)
        records = _select(read_inbreast_csv(safe_join(root, CSV_NAME)), subset_file_names, root)
        dicoms = index_dicoms(safe_join(root, DICOM_FOLDER))
        xml_folder = safe_join(root, XML_FOLDER)
        if not xml_folder.is_dir():
            logger.warning("%s: no ROI folder; every image is read as having no mass", xml_folder)
        if subset_file_names is None:
            for file_name in sorted(set(dicoms) - {r.file_name for r in records}):
                logger.warning("%s: DICOM not listed in %s; skipped", dicoms[file_name], CSV_NAME)
        skipped_negatives = 0
        for record in records:
            if record.file_name not in dicoms:
                logger.warning("%s row %d: no DICOM for File Name %s in %s; skipped",
                               CSV_NAME, record.row, record.file_name, DICOM_FOLDER)
                continue
            info = _image_info(record, dicoms[record.file_name], xml_folder, mass_names)
            if not info["masses"] and not include_normals:
                skipped_negatives += 1
                continue
            self._add_samples(info, per_mass)
        if skipped_negatives:
            logger.info("%d images without masses left out (include_normals=False)",
                        skipped_negatives)

    def _add_samples(self, info: dict[str, Any], per_mass: bool) -> None:
        path = info.pop("path")
        if per_mass and info["masses"]:
            for mass_index in range(len(info["masses"])):
                self.add_image(SOURCE, f"{info['file_name']}#{mass_index}", path,
                               mass_index=mass_index, **info)
        else:
            self.add_image(SOURCE, info["file_name"], path, mass_index=None, **info)

    # ---------------------------------------------------------------------- per image
    def load_image(self, image_id: int) -> np.ndarray:
        """Breast-cropped image as float32 [H, W, 3] in [0, 255] (gray replicated)."""
        image = self._prepared(image_id)[0]
        return np.repeat(image[..., None] * np.float32(255.0), 3, axis=-1)

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(bool [H, W, N] masks aligned with load_image, int32 class ids [N])."""
        info = self.image_info[image_id]
        masks = self._prepared(image_id)[1]
        if info["mass_index"] is not None:
            masks = masks[..., info["mass_index"]:info["mass_index"] + 1]
        class_id = (self.map_source_class_id(f"{SOURCE}.{CLASS_IDS[info['mass_label']]}")
                    if info["mass_label"] else 0)
        return masks.copy(), np.full(masks.shape[-1], class_id, dtype=np.int32)

    def load_transform(self, image_id: int) -> Transform:
        """Geometry from the DICOM's pixels to load_image's pixels."""
        return self._prepared(image_id)[2]

    def _prepared(self, image_id: int) -> Prepared:
        info = self.image_info[image_id]
        key = info["file_name"]
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        dicom = read_dicom(info["path"])
        masks = _rasterise(info["masses"], dicom.shape, str(info["xml"]))
        prepared = prepare_image(dicom.pixels, masks, dicom.bits_stored, self.image_size)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = prepared
                self._cached_bytes += _nbytes(prepared)
            self._evict()
        return prepared

    def _evict(self) -> None:
        """Drop the least recently used images beyond the cache's limits (one always stays)."""
        while len(self._cache) > 1 and (
                self._cached_bytes > self._cache_bytes
                or (self._cache_size is not None and len(self._cache) > self._cache_size)):
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= _nbytes(dropped)

    # -------------------------------------------------------------------------- counts
    def summary(self) -> dict[str, int]:
        """Counts over distinct images: samples, images, masses by label, normals, patients."""
        images = {info["file_name"]: info for info in self.image_info}.values()
        masses = {"benign": 0, "malignant": 0}
        for info in images:
            if info["mass_label"]:
                masses[info["mass_label"]] += len(info["masses"])
        return {
            "samples": len(self.image_info),
            "images": len(images),
            "masses": masses["benign"] + masses["malignant"],
            "benign": masses["benign"],
            "malignant": masses["malignant"],
            "normal": sum(1 for info in images if not info["masses"]),
            "patients": len({info["patient_id"] for info in images}),
        }


def _select(records: list[CaseRecord], subset: Iterable[str] | None, root: Path
            ) -> list[CaseRecord]:
    if subset is None:
        return records
    wanted = {str(name) for name in subset}
    unknown = sorted(wanted - {r.file_name for r in records})
    if unknown:
        raise ValueError(f"{root / CSV_NAME}: subset names not in the CSV: {unknown[:10]}")
    return [r for r in records if r.file_name in wanted]


def _image_info(record: CaseRecord, dicom_path: Path, xml_folder: Path,
                mass_names: Sequence[str]) -> dict[str, Any]:
    name = parse_dicom_name(dicom_path.name)
    if name.laterality != record.laterality or (
        record.view != "FB" and name.view != record.view
    ):
        logger.warning("%s: name says %s %s, %s row %d says %s %s; the CSV is used",
                       dicom_path, name.laterality, name.view, CSV_NAME, record.row,
                       record.laterality, record.view)
    xml_path = safe_join(xml_folder, f"{record.file_name}.xml")
    masses: list[RoiRecord] = []
    if xml_path.is_file():
        masses = usable_mass_rois(read_rois(xml_path), read_dicom_shape(dicom_path),
                                  str(xml_path), mass_names)
    else:
        xml_path = None
        if record.label != "normal":
            logger.warning("%s: BI-RADS %s (%s) but no ROI file; kept without masks",
                           dicom_path, record.birads, record.label)
    return {
        "path": str(dicom_path),
        "file_name": record.file_name,
        "patient_id": name.patient_hash,
        "laterality": record.laterality,
        "view": record.view,
        "birads": record.birads,
        "acr": record.acr,
        "label": record.label,
        "mass_label": _mass_label(record, masses, dicom_path),
        "xml": xml_path,
        "masses": masses,
    }


def _mass_label(record: CaseRecord, masses: list[RoiRecord], dicom_path: Path) -> str | None:
    if not masses:
        return None
    if record.label == "normal":
        logger.warning("%s: BI-RADS 1 image with %d mass ROI(s); they are labelled benign",
                       dicom_path, len(masses))
        return "benign"
    return record.label


def _rasterise(masses: list[RoiRecord], shape: tuple[int, int], file: str) -> np.ndarray:
    stack = np.zeros(shape + (len(masses),), dtype=bool)
    for n, roi in enumerate(masses):
        mask = polygon_to_mask(roi.points_px, shape, file=file, roi_index=roi.index)
        if mask is not None:
            stack[..., n] = mask
    return stack
