"""Dataset base class with Matterport's API.

Sub-class it: register classes with ``add_class``, images with ``add_image``, call ``prepare``,
and override ``load_mask`` (and ``load_image`` when images are not ordinary files).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


class Dataset:
    """A collection of images and their instance masks, drawn from one or more sources."""

    def __init__(self, class_map: dict | None = None) -> None:
        self._image_ids: np.ndarray = np.zeros(0, dtype=np.int64)
        self.image_info: list[dict[str, Any]] = []
        # Background is always the first class.
        self.class_info: list[dict[str, Any]] = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ registration
    def add_class(self, source: str, class_id: int, class_name: str) -> None:
        if "." in source:
            raise ValueError(f"Dataset.add_class: source {source!r} may not contain a dot")
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return  # already registered
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source: str, image_id: Any, path: str | None, **kwargs: Any) -> None:
        info = {"id": image_id, "source": source, "path": path}
        info.update(kwargs)
        self.image_info.append(info)

    def image_reference(self, image_id: int) -> str:
        """A string that identifies the image for a person (a path, a URL, an id)."""
        info = self.image_info[image_id]
        return str(info.get("path") or f"{info['source']}:{info['id']}")

    def prepare(self, class_map: dict | None = None) -> None:
        """Build the internal id tables. Call after adding classes and images."""

        def clean_name(name: str) -> str:
            return ",".join(name.split(",")[:1])

        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [clean_name(c["name"]) for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)
        self.class_from_source_map = {
            f"{info['source']}.{info['id']}": idx for idx, info in enumerate(self.class_info)
        }
        self.image_from_source_map = {
            f"{info['source']}.{info['id']}": idx for idx, info in enumerate(self.image_info)
        }
        self.sources = sorted({c["source"] for c in self.class_info})
        self.source_class_ids = {
            source: [i for i, c in enumerate(self.class_info) if i == 0 or c["source"] == source]
            for source in self.sources
        }

    def map_source_class_id(self, source_class_id: str) -> int:
        """'source.id' -> internal class id."""
        return self.class_from_source_map[source_class_id]

    def get_source_class_id(self, class_id: int, source: str) -> int:
        info = self.class_info[class_id]
        if info["source"] != source:
            raise ValueError(f"class {class_id} belongs to source {info['source']!r}, "
                             f"not {source!r}")
        return info["id"]

    @property
    def image_ids(self) -> np.ndarray:
        return self._image_ids

    def source_image_link(self, image_id: int) -> Any:
        return self.image_info[image_id]["path"]

    # -------------------------------------------------------------------------- loading
    def load_image(self, image_id: int) -> np.ndarray:
        """Load the image as [H, W, 3] uint8 (the default reads an ordinary image file).

        Sub-classes for other data (DICOM, 16-bit) override this.
        """
        import skimage.color
        import skimage.io

        path = self.image_info[image_id]["path"]
        image = skimage.io.imread(path)
        if image.ndim != 3:
            image = skimage.color.gray2rgb(image)
        if image.shape[-1] == 4:
            image = image[..., :3]
        return image

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (masks [H, W, N] bool, class_ids [N] int32).

        The base class has no annotations: it returns no instance, and logs a warning since a
        sub-class almost always should override this.
        """
        logger.warning("Dataset.load_mask is not overridden: image %s has no instances",
                       self.image_reference(image_id))
        return np.empty((0, 0, 0), dtype=bool), np.empty((0,), dtype=np.int32)
