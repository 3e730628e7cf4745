"""Datasets in the COCO and CSV formats, written by the tests from a synthetic INbreast: the
same pixels and the same masses, so every reader must give exactly what INbreastDataset gives."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.io
from dicom_files import write_dicom
from pycocotools import mask as mask_utils

from ftmtl.inbreast.dataset import INbreastDataset
from ftmtl.inbreast.dicom_io import read_dicom

CATEGORIES = [{"id": 1, "name": "mass_benign"}, {"id": 2, "name": "mass_malignant"}]
CATEGORY_OF = {"benign": 1, "malignant": 2}
CSV_LABEL = {"benign": "BENIGN_WITHOUT_CALLBACK", "malignant": "MALIGNANT"}


@dataclass
class TruthImage:
    """One image as INbreastDataset reads it, at full resolution."""

    file_name: str
    patient_id: str
    pixels: np.ndarray  # uint16 [H, W], 14 bits
    masks: np.ndarray  # bool [H, W, N]
    labels: list[str]


def small_inbreast(root: Path) -> Path:
    """The small synthetic INbreast every format's copy starts from (2 patients, 128 x 96)."""
    from ftmtl.inbreast.synthetic import generate_synthetic_inbreast

    generate_synthetic_inbreast(root, n_patients=2, seed=1, image_shape=(128, 96))
    return root


def inbreast_truth(root: Path) -> list[TruthImage]:
    """Every image of an INbreast folder, in the reader's order, with its full-size masks."""
    dataset = INbreastDataset()
    dataset.load_inbreast(root, image_size=None)
    dataset.prepare()
    truth = []
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        masks, _ = dataset.load_mask(image_id)
        full = dataset.load_transform(image_id).mask_to_original(masks)
        truth.append(TruthImage(info["file_name"], info["patient_id"],
                                read_dicom(info["path"]).pixels, full,
                                [info["mass_label"]] * full.shape[-1]))
    return truth


def write_image(path: Path, pixels: np.ndarray, kind: str) -> Path:
    """``kind``: png16 / tiff16 (the 14-bit values as they are), png8 (scaled to 8 bits),
    rgb8 (png8 in three equal channels) or dicom (MONOCHROME2, 14 bits stored)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dicom":
        return write_dicom(path, pixels)
    if kind in ("png8", "rgb8"):
        pixels = to_8_bits(pixels)
        if kind == "rgb8":
            pixels = np.repeat(pixels[..., None], 3, axis=-1)
    skimage.io.imsave(path, pixels, check_contrast=False)
    return path


def to_8_bits(pixels: np.ndarray) -> np.ndarray:
    return np.round(pixels.astype(np.float64) * 255 / 16383).astype(np.uint8)


SUFFIX = {"png16": ".png", "png8": ".png", "rgb8": ".png", "tiff16": ".tif", "dicom": ".dcm"}


def write_coco(truth: list[TruthImage], out: Path, kind: str = "png16",
               name: str = "annotations.json", patients: bool = True) -> Path:
    """images/<file name><suffix> and a COCO JSON whose masses are compressed RLEs
    (pycocotools' own encoding); returns the JSON's path."""
    images, annotations = [], []
    for index, image in enumerate(truth, start=1):
        relative = f"images/{image.file_name}{SUFFIX[kind]}"
        write_image(out / relative, image.pixels, kind)
        record = {"id": index, "file_name": relative, "height": image.pixels.shape[0],
                  "width": image.pixels.shape[1]}
        if patients:
            record["patient_id"] = image.patient_id
        images.append(record)
        for n, label in enumerate(image.labels):
            rle = mask_utils.encode(np.asfortranarray(image.masks[..., n].astype(np.uint8)))
            annotations.append({"id": len(annotations) + 1, "image_id": index,
                                "category_id": CATEGORY_OF[label], "iscrowd": 0,
                                "segmentation": {"size": rle["size"],
                                                 "counts": rle["counts"].decode("ascii")}})
    path = out / name
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": CATEGORIES}), encoding="utf-8")
    return path


def write_csv(truth: list[TruthImage], out: Path, kind: str = "png16",
              name: str = "annotations.csv") -> Path:
    """images/, masks/ (one 8-bit PNG per mass) and a CSV with CBIS-DDSM's column names: a row
    per mass, a row with no mask for an image without one; returns the CSV's path."""
    header = ["patient_id", "image file path", "pathology", "ROI mask file path"]
    rows = []
    for image in truth:
        relative = f"images/{image.file_name}{SUFFIX[kind]}"
        write_image(out / relative, image.pixels, kind)
        if not image.labels:
            rows.append([image.patient_id, relative, "", ""])
        for n, label in enumerate(image.labels):
            mask = f"masks/{image.file_name}_{n}.png"
            (out / mask).parent.mkdir(exist_ok=True)
            skimage.io.imsave(out / mask, image.masks[..., n].astype(np.uint8) * 255,
                              check_contrast=False)
            rows.append([image.patient_id, relative, CSV_LABEL[label], mask])
    path = out / name
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


# --columns of the CSV write_csv writes.
CSV_COLUMNS = ("image=image file path,label=pathology,mask=ROI mask file path,"
               "patient=patient_id")
