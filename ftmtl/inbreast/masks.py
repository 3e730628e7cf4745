"""ROI polygons to instance masks, and the choice of which ROIs are masses.

Coordinates are those of the XML: x = column, y = row, in full-resolution pixel indices (a
pixel's centre sits at integer coordinates). Polygons are stored open; rasterising closes them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import skimage.draw

from ftmtl.inbreast.records import RoiRecord

logger = logging.getLogger(__name__)

MASS_NAMES = ("Mass",)
MASS_NAMES_SPICULATED = ("Spiculated Region", "Espiculated Region", "Spiculated region")


def polygon_to_mask(
    points_xy: np.ndarray,
    shape: tuple[int, int],
    *,
    file: str = "<unknown file>",
    roi_index: int | None = None,
) -> np.ndarray | None:
    """Fill the closed polygon through ``points_xy`` [K, 2] into a bool [H, W] mask.

    The polygon is clipped to the image. ROIs of 1 or 2 points have no area: they return None
    with a warning naming the file and ROI.
    """
    points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    if len(points) < 3:
        logger.warning("%s: ROI %s has %d point(s), not a polygon; skipped",
                       file, roi_index, len(points))
        return None
    mask = np.zeros(shape[:2], dtype=bool)
    rows, cols = skimage.draw.polygon(points[:, 1], points[:, 0], shape=shape[:2])
    mask[rows, cols] = True
    return mask


def points_outside(points_xy: np.ndarray, shape: tuple[int, int]) -> int:
    """How many points lie outside the image (pixel centres at integers, half a pixel margin)."""
    points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    height, width = shape[:2]
    inside = ((points[:, 0] >= -0.5) & (points[:, 0] <= width - 0.5)
              & (points[:, 1] >= -0.5) & (points[:, 1] <= height - 0.5))
    return int(np.count_nonzero(~inside))


def usable_mass_rois(
    rois: Iterable[RoiRecord],
    shape: tuple[int, int],
    file: str,
    mass_names: Sequence[str] = MASS_NAMES,
) -> list[RoiRecord]:
    """The mass ROIs that give a non-empty mask; every mass left out is warned about."""
    kept = []
    for roi in rois:
        if roi.name not in mass_names:
            continue
        if roi.num_points < 3:
            logger.warning("%s: mass ROI %s has %d point(s), not a polygon; skipped",
                           file, roi.index, roi.num_points)
            continue
        outside = points_outside(roi.points_px, shape)
        rows, _ = skimage.draw.polygon(roi.points_px[:, 1], roi.points_px[:, 0], shape=shape[:2])
        if rows.size == 0:
            logger.warning("%s: mass ROI %s lies outside the %dx%d image; skipped",
                           file, roi.index, shape[0], shape[1])
            continue
        if outside:
            logger.warning("%s: mass ROI %s has %d of %d points outside the %dx%d image; "
                           "clipped", file, roi.index, outside, roi.num_points, shape[0], shape[1])
        kept.append(roi)
    return kept


def masses_from_rois(
    rois: Iterable[RoiRecord],
    shape: tuple[int, int],
    file: str,
    mass_names: Sequence[str] = MASS_NAMES,
) -> list[np.ndarray]:
    """Bool [H, W] masks of the masses (ROIs named in ``mass_names``) that fall in the image."""
    masks = []
    for roi in usable_mass_rois(rois, shape, file, mass_names):
        mask = polygon_to_mask(roi.points_px, shape, file=file, roi_index=roi.index)
        if mask is not None:
            masks.append(mask)
    return masks
