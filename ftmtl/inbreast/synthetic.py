"""Synthetic INbreast: writes the layout of the real dataset (docs/method.md §6-7) from a seed.

INbreast needs a signed agreement, so demos, tests and notebooks run on this instead. The output
folder holds ``INbreast.csv``, ``AllDICOMs/*.dcm`` and ``AllXML/*.xml`` with the real names,
formats and known quirks, plus ``manifest.json`` (the ground truth for people; polygons, labels,
injected faults; no masks). The images come from ``phantom.py``.

Each patient has CC and MLO views of both breasts. A breast is normal, benign or malignant; its
masses (one or two, same label) appear on both its views at different positions. Pixel spacing
is ``230 mm / rows`` (the breast spans the image height); it is written only to the manifest,
never as a DICOM tag, as in the real files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import plistlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from ftmtl.inbreast import phantom
from mrcnn.progress import Progress

logger = logging.getLogger(__name__)

REAL_SHAPES = ((3328, 2560), (4084, 3328))  # (rows, cols) of the two INbreast detector formats
FIELD_HEIGHT_MM = 230.0
MIN_IMAGE_SIDE = 64
# The largest intensity_scale: the brightest tissue (about 2,500) must stay below 2**14.
MAX_INTENSITY_SCALE = 5.0
CSV_NAME = "INbreast.csv"
DICOM_DIR = "AllDICOMs"
XML_DIR = "AllXML"
MANIFEST_NAME = "manifest.json"
CSV_HEADER = ("Patient ID", "Patient age", "Laterality", "View", "Acquisition date", "File Name",
              "ACR", "Bi-Rads")
MAMMOGRAPHY_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
BLANK_ACR = "    "
BIRADS_BY_LABEL = {"normal": ("1",), "benign": ("2", "3"),
                   "malignant": ("4a", "4b", "4c", "5", "6")}
VIEWS = ("CC", "MLO")  # CSV spelling; file names write MLO as ML
LATERALITIES = ("L", "R")
ROI_POLYGON, ROI_POINT = 15, 19

FAULT_POINTS_MISMATCH = "number_of_points_mismatch"
FAULT_ROIS_MISMATCH = "number_of_rois_mismatch"
FAULT_POINT_ROI = "point_roi_named_point"
FAULT_TWO_POINT_ROI = "two_point_roi_unnamed"
FAULT_NO_NAME = "roi_without_name"
FAULT_OUTSIDE = "point_outside_image"
FAULT_BLANK_ACR = "blank_acr"
XML_FAULTS = (FAULT_POINTS_MISMATCH, FAULT_ROIS_MISMATCH, FAULT_POINT_ROI, FAULT_TWO_POINT_ROI,
              FAULT_NO_NAME)


# ---------------------------------------------------------------------------- the manifest
@dataclass
class SyntheticMass:
    """One mass in one image: the polygon as written in the XML and its filled mask."""

    polygon_xy: np.ndarray  # [K, 2] float (x = column, y = row), full-resolution pixels
    label: str  # "benign" or "malignant"
    kind: str  # "oval", "lobulated", "irregular" or "spiculated"
    image_shape: tuple[int, int]
    box: tuple[int, int, int, int]  # (y1, x1, y2, x2) of the mask, y2/x2 exclusive
    crop: np.ndarray  # bool mask inside ``box``

    @property
    def mask(self) -> np.ndarray:
        """The filled polygon at full resolution, clipped to the image (bool [H, W])."""
        full = np.zeros(self.image_shape, dtype=bool)
        y1, x1, y2, x2 = self.box
        full[y1:y2, x1:x2] = self.crop
        return full

    @classmethod
    def from_mask(cls, polygon_xy: np.ndarray, label: str, kind: str,
                  mask: np.ndarray) -> SyntheticMass:
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            box = (0, 0, 0, 0)
        else:
            box = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
        crop = mask[box[0]:box[2], box[1]:box[3]].copy()
        return cls(polygon_xy, label, kind, (int(mask.shape[0]), int(mask.shape[1])), box, crop)


@dataclass
class SyntheticImage:
    """One generated mammogram: its names, CSV fields, ground truth and injected faults."""

    file_name: str  # 8 digits, as in the CSV's File Name column
    dicom_name: str
    patient_hash: str  # 16 lowercase hex digits
    laterality: str  # "L" or "R"
    view: str  # "CC" or "MLO" (CSV spelling)
    birads: str
    acr: str  # "1".."4", or blank for the blank-ACR fault
    acquisition_date: str  # YYYYMM
    label: str  # "normal", "benign" or "malignant"
    masses: list[SyntheticMass] = field(default_factory=list)
    calcifications: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # [N, 2] x, y
    faults: list[str] = field(default_factory=list)

    @property
    def file_view(self) -> str:
        """The view as spelled in file names (MLO is ML)."""
        return "ML" if self.view == "MLO" else self.view

    @property
    def xml_name(self) -> str | None:
        """Normal images have no XML file, as in the real dataset."""
        return None if self.label == "normal" else f"{self.file_name}.xml"


@dataclass
class SyntheticManifest:
    """What was generated: every image with its ground truth, and the generation settings."""

    out_dir: Path
    images: list[SyntheticImage]
    seed: int
    image_shape: tuple[int, int]
    pixel_spacing_mm: float
    difficulty: float
    normal_fraction: float
    intensity_scale: float = 1.0

    def counts(self) -> dict[str, int]:
        """Images, patients, masses; benign/malignant/normal count images (BI-RADS classes)."""
        labels = [image.label for image in self.images]
        masses = [mass for image in self.images for mass in image.masses]
        return {
            "images": len(self.images),
            "patients": len({image.patient_hash for image in self.images}),
            "masses": len(masses),
            "benign": labels.count("benign"),
            "malignant": labels.count("malignant"),
            "normal": labels.count("normal"),
            "benign_masses": sum(mass.label == "benign" for mass in masses),
            "malignant_masses": sum(mass.label == "malignant" for mass in masses),
            "calcifications": sum(len(image.calcifications) for image in self.images),
            "xml_files": sum(image.xml_name is not None for image in self.images),
        }

    @property
    def faults(self) -> dict[str, list[str]]:
        """File name -> faults injected into that image's files."""
        return {image.file_name: list(image.faults) for image in self.images if image.faults}

    def to_json(self) -> str:
        """The manifest for people and other tools: polygons and labels, no masks, no paths."""
        images = []
        for image in self.images:
            images.append({
                "file_name": image.file_name, "dicom_name": image.dicom_name,
                "xml_name": image.xml_name, "patient_hash": image.patient_hash,
                "laterality": image.laterality, "view": image.view, "birads": image.birads,
                "acr": image.acr, "acquisition_date": image.acquisition_date,
                "label": image.label,
                "masses": [{"label": m.label, "kind": m.kind,
                            "polygon_xy": m.polygon_xy.tolist()} for m in image.masses],
                "calcifications_xy": image.calcifications.tolist(),
                "faults": list(image.faults),
            })
        document = {
            "generator": "ftmtl.inbreast.synthetic", "seed": self.seed,
            "image_shape": list(self.image_shape), "pixel_spacing_mm": self.pixel_spacing_mm,
            "difficulty": self.difficulty, "normal_fraction": self.normal_fraction,
            "intensity_scale": self.intensity_scale, "counts": self.counts(), "images": images,
        }
        return json.dumps(document, indent=1) + "\n"


def read_manifest(out_dir: str | Path) -> SyntheticManifest:
    """Load ``manifest.json`` back; masks are rebuilt by filling the polygons."""
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST_NAME
    document = json.loads(path.read_text(encoding="utf-8"))
    shape = tuple(int(v) for v in document["image_shape"])
    images = []
    for entry in document["images"]:
        masses = []
        for item in entry["masses"]:
            polygon = np.asarray(item["polygon_xy"], dtype=np.float64).reshape(-1, 2)
            masses.append(SyntheticMass.from_mask(polygon, item["label"], item["kind"],
                                                  phantom.polygon_mask(polygon, shape)))
        calcs = np.asarray(entry["calcifications_xy"], dtype=np.float64).reshape(-1, 2)
        images.append(SyntheticImage(
            entry["file_name"], entry["dicom_name"], entry["patient_hash"], entry["laterality"],
            entry["view"], entry["birads"], entry["acr"], entry["acquisition_date"],
            entry["label"], masses, calcs, list(entry["faults"])))
    return SyntheticManifest(out_dir, images, int(document["seed"]), shape,
                             float(document["pixel_spacing_mm"]), float(document["difficulty"]),
                             float(document["normal_fraction"]),
                             float(document.get("intensity_scale", 1.0)))


# ---------------------------------------------------------------------------- planning
@dataclass
class _BreastPlan:
    patient: int
    side: int  # index into LATERALITIES
    label: str
    birads: str
    mass_shapes: list[phantom.MassShape]
    n_calcifications: int


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent stream per (seed, purpose, item): changing one part leaves others alone."""
    return np.random.default_rng([seed, *keys])


def _unique_file_names(count: int, rng: np.random.Generator) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        candidate = f"{int(rng.integers(20_000_000, 54_000_000)):08d}"
        if candidate not in names:
            names.append(candidate)
    return names


def _unique_hashes(count: int, rng: np.random.Generator) -> list[str]:
    hashes: list[str] = []
    while len(hashes) < count:
        candidate = rng.bytes(8).hex()
        if candidate not in hashes:
            hashes.append(candidate)
    return hashes


def _breast_labels(n_breasts: int, normal_fraction: float, rng: np.random.Generator) -> list[str]:
    """Exact class counts (not coin flips), so that small data sets still have every class."""
    n_normal = int(round(normal_fraction * n_breasts))
    n_malignant = (n_breasts - n_normal) // 2
    labels = (["normal"] * n_normal + ["malignant"] * n_malignant
              + ["benign"] * (n_breasts - n_normal - n_malignant))
    return [labels[i] for i in rng.permutation(n_breasts)]


def _plan_breasts(n_patients: int, seed: int, difficulty: float, normal_fraction: float,
                  layout: np.random.Generator) -> list[_BreastPlan]:
    labels = _breast_labels(2 * n_patients, normal_fraction, layout)
    abnormal = [i for i, label in enumerate(labels) if label != "normal"]
    n_double = max(1, int(round(0.2 * len(abnormal)))) if abnormal else 0
    doubles = set(layout.permutation(abnormal)[:n_double].tolist()) if abnormal else set()
    calc_draws = layout.uniform(size=len(labels))
    plans = []
    for index, label in enumerate(labels):
        patient, side = divmod(index, 2)
        rng = _rng(seed, 1, patient, side)
        birads = str(rng.choice(BIRADS_BY_LABEL[label]))
        shapes = []
        n_calcs = 0
        if label != "normal":
            count = 2 if index in doubles else 1
            shapes = [phantom.sample_mass_shape(label, difficulty, rng) for _ in range(count)]
            n_calcs = int(rng.integers(3, 9)) if calc_draws[index] < 0.4 else 0
        plans.append(_BreastPlan(patient, side, label, birads, shapes, n_calcs))
    return plans


# ---------------------------------------------------------------------------- the generator
def generate_synthetic_inbreast(out_dir: str | Path, n_patients: int = 8, seed: int = 0,
                                image_shape: Sequence[int] = (416, 320), difficulty: float = 0.5,
                                normal_fraction: float = 0.25, faults: bool = True,
                                overwrite: bool = False, progress: bool = False,
                                intensity_scale: float = 1.0) -> SyntheticManifest:
    """Write a synthetic INbreast (CSV, DICOMs, XMLs, manifest.json) to ``out_dir``.

    The same arguments give byte-identical files. ``difficulty`` (0..1) lowers mass contrast and
    blurs the benign/malignant shape difference. With ``faults`` the files carry the known quirks
    of the real data (recorded in ``SyntheticImage.faults``). An existing output folder with
    DICOMs or XMLs is refused unless ``overwrite``, which deletes those files first.
    ``progress`` shows the images written on stderr (``mrcnn.progress.Progress``: a bar on a
    terminal, a few lines in a log); off by default, so that Python callers stay quiet.
    ``intensity_scale`` multiplies every stored value (another detector gain; the same
    anatomy, masses and files otherwise): robustness checks of the intensity window.
    """
    shape = _check_arguments(n_patients, seed, image_shape, difficulty, normal_fraction)
    if not 0.0 < intensity_scale <= MAX_INTENSITY_SCALE:
        raise ValueError(f"generate_synthetic_inbreast: intensity_scale must be in "
                         f"(0, {MAX_INTENSITY_SCALE}], got {intensity_scale!r}")
    out_dir = Path(out_dir)
    _prepare_folders(out_dir, overwrite)
    spacing = FIELD_HEIGHT_MM / shape[0]
    layout = _rng(seed, 0)
    file_names = _unique_file_names(4 * n_patients, layout)
    hashes = _unique_hashes(n_patients, layout)
    dates = [f"{int(layout.integers(2008, 2011))}{int(layout.integers(1, 13)):02d}"
             for _ in range(n_patients)]
    acrs = [int(a) for a in layout.choice([1, 2, 3, 4], size=n_patients, p=[.2, .35, .3, .15])]
    plans = _plan_breasts(n_patients, seed, difficulty, normal_fraction, layout)
    n_images = 4 * n_patients
    abnormal_images = [i for i in range(n_images) if plans[i // 2].label != "normal"]
    overhang_image = _pick_overhang_image(abnormal_images, layout) if faults else None
    xml_faults = _assign_xml_faults(abnormal_images, layout) if faults else {}
    blank_acr_image = int(layout.integers(n_images)) if faults else None

    images = []
    with Progress(n_images, "writing synthetic INbreast", show=progress) as bar:
        for index in range(n_images):
            plan = plans[index // 2]
            view = VIEWS[index % 2]
            laterality = LATERALITIES[plan.side]
            acr = acrs[plan.patient]
            view_rng = _rng(seed, 2, plan.patient, plan.side, index % 2)
            drawn = phantom.render_view(shape, laterality, view, acr, plan.mass_shapes,
                                        plan.n_calcifications, spacing, view_rng,
                                        overhang=index == overhang_image,
                                        intensity_scale=intensity_scale)
            image = SyntheticImage(
                file_name=file_names[index],
                dicom_name="",
                patient_hash=hashes[plan.patient], laterality=laterality, view=view,
                birads=plan.birads, acr=str(acr), acquisition_date=dates[plan.patient],
                label=plan.label,
                masses=[SyntheticMass.from_mask(m.polygon_xy, plan.label, m.shape.kind, m.mask)
                        for m in drawn.masses],
                calcifications=drawn.calcifications)
            image.dicom_name = (f"{image.file_name}_{image.patient_hash}_MG_{laterality}_"
                                f"{image.file_view}_ANON.dcm")
            if drawn.overhang_mass is not None:
                image.faults.append(FAULT_OUTSIDE)
            if index == blank_acr_image:
                image.acr = BLANK_ACR
                image.faults.append(FAULT_BLANK_ACR)
            image.faults.extend(xml_faults.get(index, []))
            _write_dicom(out_dir / DICOM_DIR / image.dicom_name, drawn.pixels, image, seed)
            if image.xml_name is not None:
                fault_rng = _rng(seed, 3, index)
                xml = _xml_bytes(image, drawn, spacing, fault_rng)
                (out_dir / XML_DIR / image.xml_name).write_bytes(xml)
            images.append(image)
            bar.update()

    manifest = SyntheticManifest(out_dir, images, seed, shape, spacing, float(difficulty),
                                 float(normal_fraction), float(intensity_scale))
    (out_dir / CSV_NAME).write_bytes(_csv_bytes(images))
    (out_dir / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    logger.info("synthetic INbreast in %s: %s", out_dir, manifest.counts())
    return manifest


def _check_arguments(n_patients: int, seed: int, image_shape: Sequence[int], difficulty: float,
                     normal_fraction: float) -> tuple[int, int]:
    if not isinstance(n_patients, (int, np.integer)) or n_patients < 1:
        raise ValueError(f"generate_synthetic_inbreast: n_patients must be >= 1, "
                         f"got {n_patients!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"generate_synthetic_inbreast: seed must be an int >= 0, got {seed!r}")
    if len(image_shape) != 2 or min(int(v) for v in image_shape) < MIN_IMAGE_SIDE:
        raise ValueError("generate_synthetic_inbreast: image_shape must be (rows, cols), each "
                         f">= {MIN_IMAGE_SIDE}, got {tuple(image_shape)!r}")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"generate_synthetic_inbreast: difficulty must be in [0, 1], "
                         f"got {difficulty!r}")
    if not 0.0 <= normal_fraction <= 1.0:
        raise ValueError(f"generate_synthetic_inbreast: normal_fraction must be in [0, 1], "
                         f"got {normal_fraction!r}")
    return int(image_shape[0]), int(image_shape[1])


def _prepare_folders(out_dir: Path, overwrite: bool) -> None:
    stale = [p for folder, pattern in ((DICOM_DIR, "*.dcm"), (XML_DIR, "*.xml"))
             for p in sorted((out_dir / folder).glob(pattern))]
    if stale and not overwrite:
        raise FileExistsError(f"generate_synthetic_inbreast: {out_dir} already holds "
                              f"{len(stale)} DICOM/XML files; pass overwrite=True to replace them")
    for path in stale:
        path.unlink()
    (out_dir / DICOM_DIR).mkdir(parents=True, exist_ok=True)
    (out_dir / XML_DIR).mkdir(parents=True, exist_ok=True)


def _pick_overhang_image(abnormal_images: list[int], rng: np.random.Generator) -> int | None:
    """A CC view (no muscle in the way) whose first mass will reach beyond the chest wall."""
    cc_images = [i for i in abnormal_images if VIEWS[i % 2] == "CC"]
    return int(rng.choice(cc_images)) if cc_images else None


def _assign_xml_faults(abnormal_images: list[int],
                       rng: np.random.Generator) -> dict[int, list[str]]:
    """Spread the XML faults over the images that have an XML (several per image if few)."""
    assigned: dict[int, list[str]] = {}
    if not abnormal_images:
        return assigned
    order = rng.permutation(abnormal_images)
    for k, fault in enumerate(XML_FAULTS):
        assigned.setdefault(int(order[k % len(order)]), []).append(fault)
    return assigned


# ---------------------------------------------------------------------------- CSV
def _csv_bytes(images: list[SyntheticImage]) -> bytes:
    """``;``-separated, CRLF line ends, no BOM, one row per image."""
    lines = [";".join(CSV_HEADER)]
    for image in images:
        lines.append(";".join(["removed", "removed", image.laterality, image.view,
                               image.acquisition_date, image.file_name, image.acr,
                               image.birads]))
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


# ---------------------------------------------------------------------------- DICOM
def _uid(seed: int, *parts: str) -> str:
    """A UID hashed from the seed and names (2.25 + 128-bit integer form), never random."""
    key = "\n".join(["ftmtl-synthetic-inbreast", str(seed), *parts]).encode("utf-8")
    return f"2.25.{int.from_bytes(hashlib.sha256(key).digest()[:16], 'big')}"


def _write_dicom(path: Path, pixels: np.ndarray, image: SyntheticImage, seed: int) -> None:
    """An uncompressed 14-bit-in-16 MONOCHROME2 digital-mammography DICOM file."""
    sop_uid = _uid(seed, image.file_name, "sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MAMMOGRAPHY_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "FTMTL_SYNTH"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = MAMMOGRAPHY_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    date = f"{image.acquisition_date}01"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.Modality = "MG"
    ds.Manufacturer = "ftmtl synthetic INbreast"
    ds.PatientName = ""
    ds.PatientID = "removed"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "BREAST"
    ds.ViewPosition = image.view
    ds.ImageLaterality = image.laterality
    ds.StudyInstanceUID = _uid(seed, image.patient_hash, "study")
    ds.SeriesInstanceUID = _uid(seed, image.file_name, "series")
    ds.StudyID = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BurnedInAnnotation = "NO"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = 14
    ds.HighBit = 13
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)


# ---------------------------------------------------------------------------- XML (plist)
def _point(xy: Sequence[float]) -> str:
    return f"({xy[0]:f}, {xy[1]:f})"


def _point_mm(xy: Sequence[float], spacing: float) -> str:
    return f"({xy[0] * spacing:f}, {xy[1] * spacing:f}, {0.0:f})"


def _roi(name: str | None, points_xy: np.ndarray, roi_type: int, values: np.ndarray,
         area_px: int, spacing: float) -> dict:
    """An OsiriX ROI dict with its statistics (Area in cm^2, intensity stats of the region)."""
    values = values.astype(np.float64)
    if values.size == 0:
        values = np.zeros(1)
    roi = {
        "Area": float(area_px * spacing**2 / 100.0),
        "Center": _point_mm(points_xy.mean(axis=0), spacing),
        "Dev": float(values.std()),
        "IndexInImage": 0,
        "Max": float(values.max()),
        "Mean": float(values.mean()),
        "Min": float(values.min()),
        "NumberOfPoints": len(points_xy),
        "Point_mm": [_point_mm(p, spacing) for p in points_xy],
        "Point_px": [_point(p) for p in points_xy],
        "Total": float(values.sum()),
        "Type": roi_type,
    }
    if name is not None:
        roi["Name"] = name
    return roi


def _pixel_values(pixels: np.ndarray, points_xy: np.ndarray) -> np.ndarray:
    cols = np.clip(np.rint(points_xy[:, 0]).astype(int), 0, pixels.shape[1] - 1)
    rows = np.clip(np.rint(points_xy[:, 1]).astype(int), 0, pixels.shape[0] - 1)
    return pixels[rows, cols]


def _random_breast_points(drawn: phantom.ViewPhantom, count: int,
                          rng: np.random.Generator) -> np.ndarray:
    rows, cols = np.nonzero(drawn.maps.breast)
    picks = rng.choice(rows.size, size=count, replace=False)
    return np.stack([cols[picks], rows[picks]], axis=1).astype(np.float64)


def _xml_bytes(image: SyntheticImage, drawn: phantom.ViewPhantom, spacing: float,
               rng: np.random.Generator) -> bytes:
    """The Apple-plist ROI export (OsiriX) of one image, with this image's faults applied."""
    pixels = drawn.pixels
    rois = []
    for mass in drawn.masses:
        rois.append(_roi("Mass", mass.polygon_xy, ROI_POLYGON, pixels[mass.mask],
                         int(mass.mask.sum()), spacing))
    for point in drawn.calcifications:
        rois.append(_roi("Calcification", point[None, :], ROI_POINT,
                         _pixel_values(pixels, point[None, :]), 0, spacing))
    if FAULT_POINTS_MISMATCH in image.faults:
        rois[0]["NumberOfPoints"] = len(rois[0]["Point_px"]) + 2
    if FAULT_POINT_ROI in image.faults:
        point = _random_breast_points(drawn, 1, rng)
        rois.append(_roi("Point 1", point, ROI_POINT, _pixel_values(pixels, point), 0, spacing))
    if FAULT_TWO_POINT_ROI in image.faults:
        pair = _random_breast_points(drawn, 2, rng)
        rois.append(_roi("Unnamed", pair, ROI_POLYGON, _pixel_values(pixels, pair), 0, spacing))
    if FAULT_NO_NAME in image.faults:
        point = _random_breast_points(drawn, 1, rng)
        rois.append(_roi(None, point, ROI_POINT, _pixel_values(pixels, point), 0, spacing))
    for index, roi in enumerate(rois):
        roi["IndexInImage"] = index
    n_rois = len(rois) + (1 if FAULT_ROIS_MISMATCH in image.faults else 0)
    document = {"Images": [{"ImageIndex": 0, "NumberOfROIs": n_rois, "ROIs": rois}]}
    return plistlib.dumps(document, fmt=plistlib.FMT_XML, sort_keys=True)
