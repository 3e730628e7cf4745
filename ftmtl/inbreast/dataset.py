"""INbreastDataset: the INbreast layout (INbreast.csv, AllDICOMs, AllXML) as a Mask R-CNN Dataset.

Masses take the label of their image's BI-RADS (2, 3 benign; 4a-6 malignant). Images without
masses are negatives. Every image or mass left out is named in a warning; images missing from
a partial copy are counted in one warning and listed at DEBUG level. Only ROIs named in
``mass_names`` are masses (by default "Mass": Spiculated Region ROIs are left out, and
``summary()`` says how many and how to take them in).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ftmtl.datasets.cache import DEFAULT_CACHE_BYTES, Prepared, PreparedCache
from ftmtl.datasets.reporting import excluded_counts, image_counts, warn_missing
from ftmtl.inbreast.dicom_io import read_dicom, read_dicom_shape
from ftmtl.inbreast.filenames import index_dicoms, parse_dicom_name, safe_join
from ftmtl.inbreast.intensity import DEFAULT_WINDOW, check_window, file_voi
from ftmtl.inbreast.masks import (
    MASS_NAMES,
    MASS_NAMES_SPICULATED,
    polygon_to_mask,
    usable_mass_rois,
)
from ftmtl.inbreast.metadata import read_inbreast_csv
from ftmtl.inbreast.preprocess import Transform, prepare_image
from ftmtl.inbreast.records import CaseRecord, RoiRecord
from ftmtl.inbreast.rois import read_rois
from mrcnn.dataset import Dataset
from mrcnn.progress import Progress

logger = logging.getLogger(__name__)

SOURCE = "inbreast"
CLASS_IDS = {"benign": 1, "malignant": 2}
CSV_NAME = "INbreast.csv"
DICOM_FOLDER = "AllDICOMs"
XML_FOLDER = "AllXML"
NO_NAME = "(no name)"  # how summary() counts ROIs without a Name


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
        self.intensity_window: str = DEFAULT_WINDOW
        self.mass_names: tuple[str, ...] = MASS_NAMES
        self._cache = PreparedCache(cache_bytes, cache_size)

    # ------------------------------------------------------------------------- loading
    def load_inbreast(
        self,
        root: str | os.PathLike,
        subset_file_names: Iterable[str] | None = None,
        mass_names: Sequence[str] = MASS_NAMES,
        include_normals: bool = True,
        per_mass: bool = False,
        image_size: int | None = None,
        progress: bool = False,
        window: str = DEFAULT_WINDOW,
    ) -> None:
        """Register the images (or masses) of an INbreast folder.

        ``subset_file_names`` keeps only those CSV File Names; ``mass_names`` are the ROI
        Names read as masses (add ``MASS_NAMES_SPICULATED`` for the Spiculated Region ROIs);
        ``include_normals`` keeps images without masses as negatives; ``per_mass`` gives one
        sample per mass; ``image_size`` resizes prepared images so their long side has that
        many pixels (None: full size); ``window`` is the intensity window
        (``ftmtl.inbreast.intensity``: "percentile", "dicom" or "full_range"). ``progress``
        shows the images read on stderr (``mrcnn.progress.Progress``); off by default, so
        that Python callers stay quiet.
        Reading takes each image's ROIs and DICOM header, not its pixels: images are prepared
        when first used (a training epoch, a prediction).
        """
        root = Path(root)
        self.image_size = image_size
        self.intensity_window = check_window(window, "load_inbreast: window")
        self.mass_names = tuple(mass_names)
        for name, class_id in CLASS_IDS.items():
            self.add_class(SOURCE, class_id, name)
        records = _select(read_inbreast_csv(safe_join(root, CSV_NAME)), subset_file_names, root)
        dicoms = index_dicoms(safe_join(root, DICOM_FOLDER))
        xml_folder = safe_join(root, XML_FOLDER)
        if not xml_folder.is_dir():
            logger.warning("%s: no ROI folder; every image is read as having no mass", xml_folder)
        if subset_file_names is None:
            _warn_unlisted(dicoms, records)
        _warn_without_dicom(records, dicoms)
        present = [record for record in records if record.file_name in dicoms]
        skipped_negatives = 0
        with Progress(len(present), f"reading INbreast in {root}", show=progress) as bar:
            for record in present:
                info = _image_info(record, dicoms[record.file_name], xml_folder, mass_names)
                bar.update()
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
        return self._cache.get(info["file_name"], lambda: _prepare(info, self.image_size,
                                                                    self.intensity_window))

    # -------------------------------------------------------------------------- counts
    def summary(self) -> dict[str, Any]:
        """What was loaded, over distinct images.

        ``samples``, ``images``, ``patients``; ``masses``, ``benign_masses``,
        ``malignant_masses``; ``normal_birads1``: images of BI-RADS 1 (normal by assessment);
        ``mass_free``: images without a mass ROI, whatever their BI-RADS (the negatives the
        model sees: BI-RADS 1, and e.g. calcification-only images); ``excluded_rois``: ROIs
        left out (not named in ``mass_names``) by Name, and ``include_excluded``: how to count
        them as masses.
        """
        images = {info["file_name"]: info for info in self.image_info}.values()
        return {
            **image_counts(self.image_info),
            "normal_birads1": sum(1 for info in images if info["birads"] == "1"),
            "excluded_rois": excluded_counts(self.image_info, "excluded_rois"),
            "include_excluded": (
                f"only ROIs named {', '.join(self.mass_names)} are masses; to count others, "
                "name them in load_inbreast's mass_names (e.g. MASS_NAMES + "
                "MASS_NAMES_SPICULATED from ftmtl.inbreast for the Spiculated Region ROIs) or "
                f"in the command line's --mass-rois (e.g. --mass-rois "
                f"\"{','.join(MASS_NAMES + MASS_NAMES_SPICULATED)}\")"),
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


def _warn_unlisted(dicoms: dict[str, Path], records: list[CaseRecord]) -> None:
    unlisted = sorted(set(dicoms) - {r.file_name for r in records})
    warn_missing(logger, [dicoms[name].name for name in unlisted],
                 [f"{dicoms[name]}: DICOM not listed in {CSV_NAME}; skipped" for name in unlisted],
                 f"DICOMs in {DICOM_FOLDER} are not listed in {CSV_NAME}", len(dicoms))


def _warn_without_dicom(records: list[CaseRecord], dicoms: dict[str, Path]) -> None:
    missing = [r for r in records if r.file_name not in dicoms]
    warn_missing(logger, [r.file_name for r in missing],
                 [f"{CSV_NAME} row {r.row}: no DICOM for File Name {r.file_name} in "
                  f"{DICOM_FOLDER}; skipped" for r in missing],
                 f"rows of {CSV_NAME} have no DICOM in {DICOM_FOLDER} (a partial copy?)",
                 len(records))


def _prepare(info: dict[str, Any], image_size: int | None, window: str) -> Prepared:
    dicom = read_dicom(info["path"])
    masks = _rasterise(info["masses"], dicom.shape, str(info["xml"]))
    return prepare_image(dicom.pixels, masks, dicom.bits_stored, image_size, window,
                         file_voi(dicom) if window == "dicom" else None)


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
    excluded: Counter[str] = Counter()
    if xml_path.is_file():
        rois = read_rois(xml_path)
        excluded.update(roi.name or NO_NAME for roi in rois if roi.name not in mass_names)
        masses = usable_mass_rois(rois, read_dicom_shape(dicom_path), str(xml_path), mass_names)
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
        "excluded_rois": dict(excluded),
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
