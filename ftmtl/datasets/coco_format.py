"""COCO instance annotations (one JSON file) as a dataset of benign and malignant masses.

The JSON holds ``images`` (``id``, ``file_name`` under the dataset folder, ``height``,
``width``, and optionally ``patient_id``, which groups the folds), ``categories`` (``id``,
``name``: mapped to benign / malignant by ``ftmtl.datasets.labels.LabelMap``) and
``annotations`` (``image_id``, ``category_id``, and a ``segmentation``: polygons
[[x1, y1, x2, y2, ...], ...] or a run-length encoding {"size": [h, w], "counts": ...},
compressed or not; an annotation without a segmentation uses its ``bbox`` [x, y, w, h] as a
rectangle). Images without annotations are mass-free negatives. Image files are DICOMs or
8-/16-bit PNG/TIFF (``ftmtl.datasets.images``). ``iscrowd`` is not read: every annotation is a
mass.

The file is untrusted input: its size is bounded, paths must stay inside the dataset folder,
and any field of the wrong type or value is an AnnotationFormatError naming the file, the
record and the field.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ftmtl.datasets.instances import (
    BOX,
    POLYGONS,
    RLE,
    AnnotatedImage,
    AnnotationFormatError,
    Instance,
    InstanceDataset,
    inside,
)
from ftmtl.datasets.labels import LabelMap
from ftmtl.inbreast.intensity import DEFAULT_WINDOW

DEFAULT_ANNOTATIONS = "annotations.json"
MAX_JSON_BYTES = 512 * 2**20
# category id -> (name, "benign" / "malignant", or None: left out)
Categories = dict[int | str, tuple[str, str | None]]


class CocoDataset(InstanceDataset):
    """COCO instance JSON and its images as a Mask R-CNN Dataset (see the module doc)."""

    source = "coco"

    def load_coco(
        self,
        root: str | os.PathLike,
        annotations: str | os.PathLike | None = None,
        label_map: Mapping[str, str] | str | None = None,
        subset_file_names: Iterable[str] | None = None,
        image_size: int | None = None,
        bits_stored: int | None = None,
        window: str = DEFAULT_WINDOW,
    ) -> None:
        """Register the images of ``annotations`` (default ``root/annotations.json``) whose
        files exist under ``root``; call ``prepare()`` after.

        ``label_map`` maps category names to benign / malignant / ignore (a dict or
        ``"name=label,..."``); ``subset_file_names`` keeps those images (by ``file_name``);
        ``image_size`` and ``window`` as in ``INbreastDataset.load_inbreast``; ``bits_stored``
        the bits the values of 16-bit raster images use (``ftmtl.datasets.images``).
        """
        path = Path(annotations) if annotations is not None else Path(root) / DEFAULT_ANNOTATIONS
        images = read_coco(path, root, LabelMap(label_map), bits_stored)
        self.add_images(images, path, subset_file_names, image_size, window)


def read_coco(path: str | os.PathLike, root: str | os.PathLike, labels: LabelMap,
              bits_stored: int | None = None) -> list[AnnotatedImage]:
    """The images of a COCO instance JSON with their masses (see the module doc)."""
    path = Path(path)
    document = _load_json(path)
    categories = _categories(path, _list_field(path, document, "categories", required=True),
                             labels)
    images = _images(path, root, _list_field(path, document, "images", required=True),
                     bits_stored)
    for index, annotation in enumerate(_list_field(path, document, "annotations")):
        _add_annotation(path, index, annotation, images, categories)
    return list(images.values())


def _load_json(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise AnnotationFormatError(f"{path}: {size} bytes, above the limit of "
                                        f"{MAX_JSON_BYTES}")
        return json.loads(path.read_bytes())
    except OSError as err:
        raise AnnotationFormatError(f"{path}: cannot read ({err})") from err
    except (ValueError, RecursionError) as err:
        if isinstance(err, AnnotationFormatError):
            raise
        raise AnnotationFormatError(f"{path}: not valid JSON ({str(err)[:200]})") from err


def _list_field(path: Path, document: Any, key: str, required: bool = False) -> list:
    if not isinstance(document, dict):
        raise AnnotationFormatError(f"{path}: the top level is not a JSON object; expected "
                                    "COCO's {\"images\": [...], \"annotations\": [...], "
                                    "\"categories\": [...]}")
    if key not in document and not required:
        return []
    value = document.get(key)
    if not isinstance(value, list):
        raise AnnotationFormatError(f"{path}: field '{key}' is {_kind(value)}, expected a list")
    return value


def _kind(value: Any) -> str:
    return "missing" if value is None else f"a {type(value).__name__}"


def _record(path: Path, part: str, index: int, record: Any) -> tuple[dict, str]:
    where = f"{path}: {part}[{index}]"
    if not isinstance(record, dict):
        raise AnnotationFormatError(f"{where} is {_kind(record)}, expected an object")
    return record, where


def _integer(record: dict, key: str, where: str, positive: bool = False) -> int:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or (positive and value < 1):
        raise AnnotationFormatError(f"{where}: field '{key}' is {value!r:.60}, expected "
                                    f"{'a positive' if positive else 'an'} integer")
    return value


def _identifier(record: dict, key: str, where: str) -> int | str:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise AnnotationFormatError(f"{where}: field '{key}' is {value!r:.60}, expected an "
                                    "integer or a string")
    return value


def _categories(path: Path, records: list, labels: LabelMap) -> Categories:
    categories: Categories = {}
    for index, raw in enumerate(records):
        record, where = _record(path, "categories", index, raw)
        category_id = _identifier(record, "id", where)
        name = record.get("name")
        if not isinstance(name, str) or not name.strip():
            raise AnnotationFormatError(f"{where}: field 'name' is {name!r:.60}, expected a "
                                        "category name")
        if category_id in categories:
            raise AnnotationFormatError(f"{where}: category id {category_id!r} repeats")
        categories[category_id] = (name, labels.label(name, f"{where} 'name'"))
    return categories


def _images(path: Path, root: str | os.PathLike, records: list, bits_stored: int | None
            ) -> dict[int | str, AnnotatedImage]:
    images: dict[int | str, AnnotatedImage] = {}
    names: set[str] = set()
    for index, raw in enumerate(records):
        record, where = _record(path, "images", index, raw)
        image_id = _identifier(record, "id", where)
        file_name = record.get("file_name")
        if not isinstance(file_name, str) or not file_name.strip():
            raise AnnotationFormatError(f"{where}: field 'file_name' is {file_name!r:.60}, "
                                        "expected a path under the dataset folder")
        if image_id in images or file_name in names:
            raise AnnotationFormatError(f"{where}: image id {image_id!r} or file_name "
                                        f"{file_name!r} repeats")
        shape = (_integer(record, "height", where, positive=True),
                 _integer(record, "width", where, positive=True))
        patient = record.get("patient_id")
        if patient is not None and (isinstance(patient, bool)
                                    or not isinstance(patient, (int, str))):
            raise AnnotationFormatError(f"{where}: field 'patient_id' is {patient!r:.60}, "
                                        "expected a string or an integer")
        images[image_id] = AnnotatedImage(
            file_name=file_name, path=inside(root, file_name, f"{where} 'file_name'"),
            patient_id=None if patient is None else str(patient), bits_stored=bits_stored,
            shape=shape)
        names.add(file_name)
    return images


def _add_annotation(path: Path, index: int, raw: Any, images: dict[int | str, AnnotatedImage],
                    categories: Categories) -> None:
    record, where = _record(path, "annotations", index, raw)
    if "id" in record:
        where = f"{where} (id {record['id']!r:.40})"
    image_id = record.get("image_id")
    if isinstance(image_id, bool) or not isinstance(image_id, (int, str)) \
            or image_id not in images:
        raise AnnotationFormatError(f"{where}: field 'image_id' is {image_id!r:.60}, not the "
                                    "id of an image")
    category_id = record.get("category_id")
    if isinstance(category_id, bool) or not isinstance(category_id, (int, str)) \
            or category_id not in categories:
        raise AnnotationFormatError(f"{where}: field 'category_id' is {category_id!r:.60}, not "
                                    "the id of a category")
    image = images[image_id]
    name, label = categories[category_id]
    if label is None:
        image.excluded[name] += 1
        return
    image.instances.append(_instance(record, label, where, image.shape))


def _instance(record: dict, label: str, where: str, shape: tuple[int, int]) -> Instance:
    segmentation = record.get("segmentation")
    if segmentation is None or segmentation == []:
        return Instance(label, BOX, _bbox(record.get("bbox"), where), where)
    if isinstance(segmentation, list):
        return Instance(label, POLYGONS, _polygons(segmentation, where, shape), where)
    if isinstance(segmentation, dict):
        return Instance(label, RLE, _rle(segmentation, where, shape), where)
    raise AnnotationFormatError(f"{where}: field 'segmentation' is {_kind(segmentation)}; "
                                "expected polygons (a list of lists) or an RLE object")


def _finite_numbers(values: Any) -> bool:
    return isinstance(values, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in values)


def _bbox(bbox: Any, where: str) -> tuple[float, float, float, float]:
    if not _finite_numbers(bbox) or len(bbox) != 4 or bbox[2] <= 0 or bbox[3] <= 0:
        raise AnnotationFormatError(f"{where}: no segmentation, and field 'bbox' is "
                                    f"{bbox!r:.80}, not [x, y, width, height] with a positive "
                                    "width and height")
    x, y, w, h = (float(v) for v in bbox)
    return x, y, x + w, y + h


def _polygons(polygons: list, where: str, shape: tuple[int, int]) -> list[list[float]]:
    """The polygons, checked; points may lie outside the image by at most its size (the
    filling walks every edge, so a point far out would cost time and memory unbounded)."""
    height, width = shape
    for n, polygon in enumerate(polygons):
        if not _finite_numbers(polygon) or len(polygon) % 2 or len(polygon) < 6:
            raise AnnotationFormatError(
                f"{where}: field 'segmentation' polygon {n} is {polygon!r:.80}; expected "
                "[x1, y1, x2, y2, ...] of at least 3 points, finite numbers")
        xs, ys = polygon[0::2], polygon[1::2]
        if min(xs) < -width or max(xs) > 2 * width or min(ys) < -height or max(ys) > 2 * height:
            raise AnnotationFormatError(
                f"{where}: field 'segmentation' polygon {n} reaches beyond the {height}x{width} "
                "image by more than the image's size")
    return [[float(v) for v in polygon] for polygon in polygons]


def _rle(rle: dict, where: str, shape: tuple[int, int]) -> dict[str, Any]:
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
        raise AnnotationFormatError(f"{where}: field 'segmentation.size' is {size!r:.60}, "
                                    "expected [height, width]")
    if tuple(size) != tuple(shape):
        raise AnnotationFormatError(f"{where}: field 'segmentation.size' is {size}, but the "
                                    f"image is declared {list(shape)} (height, width)")
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts) \
                or sum(counts) != size[0] * size[1]:
            raise AnnotationFormatError(f"{where}: field 'segmentation.counts' is not a list of "
                                        f"non-negative run lengths adding up to {size[0]}x"
                                        f"{size[1]} pixels")
    elif not (isinstance(counts, str) and counts.isascii() and counts):
        raise AnnotationFormatError(f"{where}: field 'segmentation.counts' is {_kind(counts)}; "
                                    "expected a run-length list or a compressed RLE string")
    return {"size": list(size), "counts": counts}
