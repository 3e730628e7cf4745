"""Mass annotations outside the INbreast layout, and the Dataset that serves them.

``InstanceDataset`` is what the COCO and CSV readers fill: per image a file (DICOM or raster),
a patient, and its masses, each an ``Instance`` with its class and outline (COCO polygons, a
COCO run-length encoding, a box, or a mask file). It gives the API ``INbreastDataset`` gives
(``load_image``, ``load_mask``, ``load_transform``, the same ``image_info`` keys the folds,
the sampler and the evaluation read, ``summary()``), so training, cross-validation and the
metrics run unchanged; ``load_original_mask`` hands the evaluation the masks at the file's own
size, drawn from the annotation rather than resized back.

Geometry is COCO's: continuous pixel coordinates, pixel (row r, column c) covering
[c, c + 1) x [r, r + 1), so a box (x_min, y_min, x_max, y_max) holds the pixels whose centres lie
inside it (x_max exclusive, like COCO's x + width). Polygons and run-length encodings are
decoded with pycocotools, the reference implementation of the format.

An image's case label (``mass_label``, what the folds stratify by and the case AUC scores) is
malignant when any of its masses is, benign when all are, and None without masses; each mass
keeps its own class in ``load_mask``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ftmtl.datasets.cache import DEFAULT_CACHE_BYTES, Prepared, PreparedCache
from ftmtl.datasets.images import read_mask_file, read_pixels
from ftmtl.datasets.reporting import excluded_counts, image_counts, warn_missing
from ftmtl.inbreast.dataset import CLASS_IDS
from ftmtl.inbreast.filenames import safe_join
from ftmtl.inbreast.intensity import DEFAULT_WINDOW, check_window
from ftmtl.inbreast.preprocess import Transform, prepare_image
from mrcnn.dataset import Dataset

logger = logging.getLogger(__name__)

POLYGONS, RLE, BOX, MASK_FILE = "polygons", "rle", "box", "mask_file"
KINDS = (POLYGONS, RLE, BOX, MASK_FILE)


class AnnotationFormatError(ValueError):
    """An annotation file is not usable (the message names the file, the record and field)."""


@dataclass(frozen=True)
class Instance:
    """One mass: ``label`` benign or malignant; ``kind`` one of KINDS with ``data`` a list of
    COCO polygons [[x1, y1, x2, y2, ...], ...], a COCO RLE dict, a box (x_min, y_min, x_max,
    y_max) or a mask file's Path; ``where`` names the file and record for messages."""

    label: str
    kind: str
    data: Any
    where: str


@dataclass
class AnnotatedImage:
    """One image as a reader found it: ``file_name`` as the annotations spell it (unique, the
    image's name in folds and results), the file's ``path``, the patient (None when the
    annotations do not say), its masses, the annotations left out by label, the bits its
    values use (raster files; None: the file's sample size) and the (rows, columns) the
    annotations declare (None: not declared), checked against the file when it is read."""

    file_name: str
    path: Path
    patient_id: str | None
    instances: list[Instance] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)
    bits_stored: int | None = None
    shape: tuple[int, int] | None = None


def inside(root: str | os.PathLike, relative: str, where: str) -> Path:
    """``relative`` joined under ``root``; a path that would leave it (absolute, ``..``, a link
    out) is an AnnotationFormatError starting with ``where``."""
    try:
        return safe_join(root, relative)
    except ValueError as err:
        raise AnnotationFormatError(f"{where}: {err}") from err


def rasterise(instance: Instance, shape: tuple[int, int]) -> np.ndarray:
    """The instance as a bool [H, W] mask of an image of ``shape`` (clipped to it)."""
    height, width = int(shape[0]), int(shape[1])
    if instance.kind == BOX:
        return _box_mask(instance.data, (height, width))
    if instance.kind == MASK_FILE:
        mask = read_mask_file(instance.data)
        if mask.shape != (height, width):
            raise AnnotationFormatError(f"{instance.where}: mask {instance.data} is "
                                        f"{mask.shape[0]}x{mask.shape[1]}, the image "
                                        f"{height}x{width}")
        return mask
    try:
        if instance.kind == POLYGONS:
            rle = mask_utils.merge(mask_utils.frPyObjects(instance.data, height, width))
        else:
            rle = _rle_object(instance, (height, width))
        return mask_utils.decode(rle).astype(bool)
    except AnnotationFormatError:
        raise
    except Exception as err:  # pycocotools' C code raises plain exceptions on bad input
        raise AnnotationFormatError(f"{instance.where}: segmentation not decodable "
                                    f"({type(err).__name__}: {str(err)[:200]})") from err


def _rle_object(instance: Instance, shape: tuple[int, int]) -> dict[str, Any]:
    size = [int(v) for v in instance.data["size"]]
    if size != list(shape):
        raise AnnotationFormatError(f"{instance.where}: RLE size {size} differs from the "
                                    f"image's {list(shape)}")
    counts = instance.data["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects(instance.data, *shape)
    return {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str)
            else counts}


def _box_mask(box: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    mask = np.zeros(shape, dtype=bool)
    rows = slice(max(0, int(np.ceil(y1 - 0.5))), max(0, int(np.ceil(y2 - 0.5))))
    cols = slice(max(0, int(np.ceil(x1 - 0.5))), max(0, int(np.ceil(x2 - 0.5))))
    mask[rows, cols] = True
    return mask


def case_label(labels: Iterable[str]) -> str | None:
    """An image's label from its masses': malignant if any is, benign if all are, else None."""
    labels = set(labels)
    if "malignant" in labels:
        return "malignant"
    return "benign" if labels else None


class InstanceDataset(Dataset):
    """Images with benign/malignant mass annotations, breast-cropped and resized as
    ``INbreastDataset`` prepares them; see the module doc. Readers call ``add_images``."""

    source = "instances"

    def __init__(self, class_map: dict | None = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        super().__init__(class_map)
        self.image_size: int | None = None
        self.intensity_window: str = DEFAULT_WINDOW
        self._cache = PreparedCache(cache_bytes)

    # ------------------------------------------------------------------------- loading
    def add_images(self, images: Sequence[AnnotatedImage], annotations: str | os.PathLike,
                   subset: Iterable[str] | None, image_size: int | None,
                   window: str = DEFAULT_WINDOW) -> None:
        """Register the images (those of ``subset``, by file name, when given) whose files
        exist; one warning counts those that do not (a partial copy). ``image_size`` and
        ``window`` prepare them as ``INbreastDataset.load_inbreast`` does."""
        self.image_size = image_size
        self.intensity_window = check_window(window, "add_images: window")
        for name, class_id in CLASS_IDS.items():
            self.add_class(self.source, class_id, name)
        chosen = _select(images, subset, annotations)
        missing = [image for image in chosen if not image.path.is_file()]
        warn_missing(logger, [image.file_name for image in missing],
                     [f"{annotations}: {image.file_name}: no file {image.path}; skipped"
                      for image in missing],
                     f"images listed in {annotations} have no file (a partial copy?)",
                     len(chosen))
        present = [image for image in chosen if image.path.is_file()]
        anonymous = [image.file_name for image in present if image.patient_id is None]
        if anonymous:
            logger.warning("%s: %d of %d images name no patient; each is then a patient of its "
                           "own, so the folds may put views of one breast on both sides of a "
                           "split (give a patient field or column)", annotations,
                           len(anonymous), len(present))
        for image in present:
            labels = [instance.label for instance in image.instances]
            self.add_image(
                self.source, image.file_name, str(image.path), file_name=image.file_name,
                patient_id=image.file_name if image.patient_id is None else image.patient_id,
                mass_label=case_label(labels), mass_labels=labels,
                masses=list(image.instances), mass_index=None,
                excluded=dict(image.excluded), bits_stored=image.bits_stored,
                declared_shape=image.shape, annotations=str(annotations))

    # ---------------------------------------------------------------------- per image
    def load_image(self, image_id: int) -> np.ndarray:
        """Breast-cropped image as float32 [H, W, 3] in [0, 255] (gray replicated)."""
        image = self._prepared(image_id)[0]
        return np.repeat(image[..., None] * np.float32(255.0), 3, axis=-1)

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(bool [H, W, N] masks aligned with load_image, int32 class ids [N], one per mass)."""
        masks = self._prepared(image_id)[1]
        return masks.copy(), self._class_ids(image_id)

    def load_transform(self, image_id: int) -> Transform:
        """Geometry from the file's pixels to load_image's pixels."""
        return self._prepared(image_id)[2]

    def load_original_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(bool [H, W, N] masks at the image file's own size, int32 class ids [N])."""
        shape = self.load_transform(image_id).original_shape
        return _stack(self.image_info[image_id]["masses"], shape), self._class_ids(image_id)

    def _class_ids(self, image_id: int) -> np.ndarray:
        labels = self.image_info[image_id]["mass_labels"]
        return np.asarray([self.map_source_class_id(f"{self.source}.{CLASS_IDS[label]}")
                           for label in labels], dtype=np.int32).reshape(-1)

    def _prepared(self, image_id: int) -> Prepared:
        info = self.image_info[image_id]
        return self._cache.get(info["file_name"], lambda: _prepare(info, self.image_size,
                                                                    self.intensity_window))

    # -------------------------------------------------------------------------- counts
    def summary(self) -> dict[str, Any]:
        """Counts over distinct images (``ftmtl.datasets.reporting.image_counts``: samples,
        images, patients, masses by class, mass-free images) and ``excluded_annotations``:
        annotations left out (mapped to "ignore") by their label."""
        return {**image_counts(self.image_info),
                "excluded_annotations": excluded_counts(self.image_info, "excluded")}


def _select(images: Sequence[AnnotatedImage], subset: Iterable[str] | None,
            annotations: str | os.PathLike) -> list[AnnotatedImage]:
    if subset is None:
        return list(images)
    wanted = {str(name) for name in subset}
    unknown = sorted(wanted - {image.file_name for image in images})
    if unknown:
        raise ValueError(f"{annotations}: subset names not among its images: {unknown[:10]}")
    return [image for image in images if image.file_name in wanted]


def _stack(instances: Sequence[Instance], shape: tuple[int, int]) -> np.ndarray:
    stack = np.zeros(tuple(shape) + (len(instances),), dtype=bool)
    for n, instance in enumerate(instances):
        stack[..., n] = rasterise(instance, shape)
    return stack


def _prepare(info: Mapping[str, Any], image_size: int | None, window: str) -> Prepared:
    pixels, bits, voi = read_pixels(info["path"], info["bits_stored"])
    declared = info["declared_shape"]
    if declared is not None and tuple(declared) != pixels.shape:
        raise AnnotationFormatError(
            f"{info['annotations']}: image {info['file_name']} is declared "
            f"{declared[0]}x{declared[1]} (height x width) but {info['path']} is "
            f"{pixels.shape[0]}x{pixels.shape[1]}")
    masks = _stack(info["masses"], pixels.shape)
    return prepare_image(pixels, masks, bits, image_size, window,
                         voi if window == "dicom" else None)
