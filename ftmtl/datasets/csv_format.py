"""A CSV of mass annotations (boxes or mask files) as a dataset of benign and malignant masses.

One row per mass, or per image for an image without one. Columns, by their role (each name
can be the user's own, ``columns={"image": "image file path", ...}``):

- ``image`` (required): the image file under the dataset folder (DICOM, or 8-/16-bit
  PNG/TIFF); rows with the same image belong to one image;
- ``label``: the mass's class, mapped to benign / malignant by
  ``ftmtl.datasets.labels.LabelMap`` (default rule: names containing "benign" or
  "malignant");
- ``mask``: a mask file under the dataset folder (nonzero inside, the image's size), or
- ``xmin``, ``ymin``, ``xmax``, ``ymax``: a box in pixel coordinates (x is the column; x_max
  exclusive, COCO's convention), drawn as a rectangular mask;
- ``patient`` (optional): groups the folds, so that a patient's views stay on one side.

A row whose mask and box cells are empty adds its image without a mass (a negative). The
delimiter is whichever of ``,``, ``;`` or a tab the header uses most. The file is untrusted
input: its size is bounded, paths must stay inside the dataset folder, and a bad cell is an
AnnotationFormatError naming the file, the row and the column.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ftmtl.datasets.instances import (
    BOX,
    MASK_FILE,
    AnnotatedImage,
    AnnotationFormatError,
    Instance,
    InstanceDataset,
    inside,
)
from ftmtl.datasets.labels import LabelMap, parse_pairs
from ftmtl.inbreast.intensity import DEFAULT_WINDOW

DEFAULT_ANNOTATIONS = "annotations.csv"
BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")
COLUMN_KEYS = ("image", "label", "patient", "mask", *BOX_KEYS)
MAX_CSV_BYTES = 64 * 2**20
_DELIMITERS = (",", ";", "\t")


class CsvDataset(InstanceDataset):
    """A CSV of boxes or mask files and its images as a Mask R-CNN Dataset (module doc)."""

    source = "csv"

    def load_csv(
        self,
        root: str | os.PathLike,
        annotations: str | os.PathLike | None = None,
        columns: Mapping[str, str] | str | None = None,
        label_map: Mapping[str, str] | str | None = None,
        subset_file_names: Iterable[str] | None = None,
        image_size: int | None = None,
        bits_stored: int | None = None,
        window: str = DEFAULT_WINDOW,
    ) -> None:
        """Register the images of ``annotations`` (default ``root/annotations.csv``) whose
        files exist under ``root``; call ``prepare()`` after.

        ``columns`` maps roles (COLUMN_KEYS) to the file's column names, a dict or
        ``"image=path,label=pathology"`` (roles not given keep their own name as the column);
        the other arguments as in ``CocoDataset.load_coco``.
        """
        path = Path(annotations) if annotations is not None else Path(root) / DEFAULT_ANNOTATIONS
        images = read_csv_annotations(path, root, column_names(columns), LabelMap(label_map),
                                      bits_stored)
        self.add_images(images, path, subset_file_names, image_size, window)


def column_names(columns: Mapping[str, str] | str | None) -> dict[str, str]:
    """Role -> column name: the defaults (each role's own name) updated with ``columns``."""
    given = parse_pairs(columns, "columns") if isinstance(columns, str) else dict(columns or {})
    unknown = sorted(set(given) - set(COLUMN_KEYS))
    if unknown:
        raise ValueError(f"columns: unknown role(s) {unknown}; the roles are "
                         f"{', '.join(COLUMN_KEYS)}")
    return {key: str(given.get(key, key)).strip() for key in COLUMN_KEYS}


def read_csv_annotations(path: str | os.PathLike, root: str | os.PathLike,
                         columns: Mapping[str, str], labels: LabelMap,
                         bits_stored: int | None = None) -> list[AnnotatedImage]:
    """The images of an annotation CSV with their masses (see the module doc)."""
    path = Path(path)
    rows = _read_rows(path)
    if not rows:
        raise AnnotationFormatError(f"{path}: empty file, expected a header row")
    index = _header(path, rows[0], columns)
    images: dict[str, AnnotatedImage] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(rows[0]):
            raise AnnotationFormatError(f"{path}: row {line}: {len(row)} fields, the header "
                                        f"has {len(rows[0])}")
        _add_row(path, line, row, index, columns, root, labels, images, bits_stored)
    return list(images.values())


def _read_rows(path: Path) -> list[list[str]]:
    try:
        size = path.stat().st_size
        if size > MAX_CSV_BYTES:
            raise AnnotationFormatError(f"{path}: {size} bytes, above the limit of "
                                        f"{MAX_CSV_BYTES}")
        text = path.read_text(encoding="utf-8-sig")
        header = text.splitlines()[0] if text.strip() else ""
        delimiter = max(_DELIMITERS, key=header.count)
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except UnicodeDecodeError as err:
        raise AnnotationFormatError(f"{path}: not UTF-8 text ({err})") from err
    except OSError as err:
        raise AnnotationFormatError(f"{path}: cannot read ({err})") from err
    except csv.Error as err:
        raise AnnotationFormatError(f"{path}: not readable as CSV ({err})") from err


def _header(path: Path, header: list[str], columns: Mapping[str, str]) -> dict[str, int]:
    """Role -> column index, for the roles whose column the file has."""
    names = [cell.strip() for cell in header]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise AnnotationFormatError(f"{path}: header repeats column(s) {repeated}")
    index = {key: names.index(columns[key]) for key in COLUMN_KEYS if columns[key] in names}
    boxes = [key for key in BOX_KEYS if key in index]
    problems = []
    if "image" not in index:
        problems.append(f"no image column {columns['image']!r}")
    if "label" not in index:
        problems.append(f"no label column {columns['label']!r}")
    if boxes and len(boxes) != len(BOX_KEYS):
        problems.append(f"box columns {[columns[k] for k in BOX_KEYS if k not in index]} "
                        "missing (a box needs all four)")
    if "mask" not in index and not boxes:
        problems.append(f"neither a mask column {columns['mask']!r} nor box columns "
                        f"{[columns[k] for k in BOX_KEYS]}")
    if problems:
        raise AnnotationFormatError(
            f"{path}: {'; '.join(problems)} among the header's {names}; name your columns with "
            "columns=ROLE=NAME,... (--columns on the command line), roles "
            f"{', '.join(COLUMN_KEYS)}")
    return index


def _add_row(path: Path, line: int, row: list[str], index: Mapping[str, int],
             columns: Mapping[str, str], root: str | os.PathLike, labels: LabelMap,
             images: dict[str, AnnotatedImage], bits_stored: int | None) -> None:
    def cell(key: str) -> str:
        return row[index[key]].strip() if key in index else ""

    def where(key: str) -> str:
        return f"{path}: row {line}, column {columns[key]!r}"

    name = cell("image")
    if not name:
        raise AnnotationFormatError(f"{where('image')}: empty; expected an image path")
    patient = cell("patient") or None
    image = images.get(name)
    if image is None:
        image = images[name] = AnnotatedImage(
            file_name=name, path=inside(root, name, where("image")), patient_id=patient,
            bits_stored=bits_stored)
    elif patient != image.patient_id:
        raise AnnotationFormatError(f"{where('patient')}: {patient!r} differs from "
                                    f"{image.patient_id!r} on an earlier row of {name}")
    mask, box = cell("mask"), [cell(key) for key in BOX_KEYS]
    if not mask and not any(box):
        return
    if mask and any(box):
        raise AnnotationFormatError(f"{path}: row {line}: both a mask and a box; give one")
    label = labels.label(cell("label"), where("label"))
    if label is None:
        image.excluded[cell("label")] += 1
    elif mask:
        image.instances.append(Instance(label, MASK_FILE, inside(root, mask, where("mask")),
                                        f"{path}: row {line}"))
    else:
        image.instances.append(Instance(label, BOX, _box(box, path, line, columns),
                                        f"{path}: row {line}"))


def _box(cells: list[str], path: Path, line: int, columns: Mapping[str, str]
         ) -> tuple[float, float, float, float]:
    where = f"{path}: row {line}, columns {[columns[k] for k in BOX_KEYS]}"
    try:
        x1, y1, x2, y2 = (float(value) for value in cells)
    except ValueError:
        raise AnnotationFormatError(f"{where}: {cells} are not four numbers") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        raise AnnotationFormatError(f"{where}: {cells} is not a box with xmin < xmax and "
                                    "ymin < ymax")
    return x1, y1, x2, y2
