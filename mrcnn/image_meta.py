"""image_meta: the one row of numbers that travels with each image through the network.

Matterport's layout, kept for compatibility: image id (1), original image shape (3), molded
image shape (3), window of the image inside the padding in pixels (4: y1, x1, y2, x2), scale
(1), active class ids (NUM_CLASSES). This module owns it: everything else reads a field by
name, with ``parse_image_meta`` (numpy) or ``parse_image_meta_graph`` (tensors).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Columns of each field; the active class ids run to the end of the row.
FIELDS = {
    "image_id": slice(0, 1),
    "original_image_shape": slice(1, 4),
    "image_shape": slice(4, 7),
    "window": slice(7, 11),
    "scale": slice(11, 12),
    "active_class_ids": slice(12, None),
}
_SCALARS = ("image_id", "scale")


def image_meta_size(num_classes: int) -> int:
    """Length of one row for ``num_classes`` classes (background included)."""
    return FIELDS["active_class_ids"].start + int(num_classes)


def compose_image_meta(image_id: int, original_image_shape, image_shape, window, scale: float,
                       active_class_ids) -> np.ndarray:
    """One image's row: id, original shape, image shape, window, scale, active class ids."""
    return np.array(
        [image_id, *original_image_shape, *image_shape, *window, scale, *active_class_ids],
        dtype=np.float32,
    )


def _field(meta, name: str):
    column = meta[:, FIELDS[name]]
    return column[:, 0] if name in _SCALARS else column


def parse_image_meta(meta: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``[B, META]`` as named numpy fields (integers, the scale as float32)."""
    meta = np.asarray(meta)
    return {name: _field(meta, name).astype(np.float32 if name == "scale" else np.int32)
            for name in FIELDS}


def parse_image_meta_graph(meta: tf.Tensor) -> dict[str, tf.Tensor]:
    """Rows ``[B, META]`` as named float32 tensors (Matterport's name), for use inside the
    graph."""
    meta = tf.cast(meta, tf.float32)
    return {name: _field(meta, name) for name in FIELDS}
