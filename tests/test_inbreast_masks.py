"""ROI polygons to masks: orientation (x = column, y = row), closing, clipping, skips."""

from __future__ import annotations

import logging

import numpy as np

from ftmtl.inbreast.masks import (
    MASS_NAMES_SPICULATED,
    masses_from_rois,
    points_outside,
    polygon_to_mask,
)
from ftmtl.inbreast.records import RoiRecord


def roi(name, points, index=0):
    return RoiRecord(name=name, type=15, index=index, points_px=np.array(points, dtype=float))


def test_square_orientation_on_a_non_square_image():
    # x (columns) 2..6, y (rows) 1..3, on an image 5 rows x 9 columns; the polygon is open.
    mask = polygon_to_mask(np.array([[2, 1], [6, 1], [6, 3], [2, 3]]), (5, 9))
    expected = np.zeros((5, 9), dtype=bool)
    expected[1:4, 2:7] = True
    assert mask.shape == (5, 9) and mask.dtype == bool
    np.testing.assert_array_equal(mask, expected)


def test_triangle_matches_a_point_in_polygon_reference():
    points = np.array([[1.0, 1.0], [12.0, 2.0], [4.0, 9.0]])
    mask = polygon_to_mask(points, (11, 14))
    rows, cols = np.mgrid[0:11, 0:14]

    def side(a, b):  # sign of the cross product for pixel centres against edge a->b
        return (b[0] - a[0]) * (rows - a[1]) - (b[1] - a[1]) * (cols - a[0])

    edges = [side(points[i], points[(i + 1) % 3]) for i in range(3)]
    inside = np.all([e > 0.5 for e in edges], axis=0) | np.all([e < -0.5 for e in edges], axis=0)
    # Pixels within about 1.5 px of an edge (|cross| <= 15) may go either way; the rest agree.
    near_edge = np.any([np.abs(e) <= 15 for e in edges], axis=0)
    np.testing.assert_array_equal(mask[~near_edge], inside[~near_edge])
    assert mask.sum() > 20


def test_polygon_is_clipped_to_the_image():
    mask = polygon_to_mask(np.array([[-5, -5], [4, -5], [4, 2], [-5, 2]]), (6, 6))
    expected = np.zeros((6, 6), dtype=bool)
    expected[0:3, 0:5] = True
    np.testing.assert_array_equal(mask, expected)


def test_one_and_two_point_rois_are_skipped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert polygon_to_mask(np.array([[1, 1]]), (5, 5), file="a.xml", roi_index=4) is None
        assert polygon_to_mask(np.array([[1, 1], [3, 3]]), (5, 5), file="a.xml",
                               roi_index=5) is None
    messages = [r.getMessage() for r in caplog.records]
    assert "a.xml: ROI 4 has 1 point(s)" in messages[0]
    assert "a.xml: ROI 5 has 2 point(s)" in messages[1]


def test_points_outside_counts_with_half_a_pixel_margin():
    points = np.array([[-0.5, 0], [-0.6, 0], [8.5, 4.5], [8.6, 0], [0, 4.6]])
    assert points_outside(points, (5, 9)) == 3


def test_masses_choose_by_name_and_warn_for_each_unusable_mass(caplog):
    square = [[2, 2], [6, 2], [6, 6], [2, 6]]
    rois = [
        roi("Mass", square, 0),
        roi("Spiculated Region", square, 1),
        roi("Calcification", square, 2),
        roi("Mass", [[40, 40], [50, 40], [50, 50]], 3),
        roi(None, square, 4),
    ]
    with caplog.at_level(logging.WARNING):
        masks = masses_from_rois(rois, (10, 12), "f.xml")
    assert len(masks) == 1 and masks[0].sum() == 25
    assert "f.xml: mass ROI 3 lies outside" in caplog.text
    both = masses_from_rois(rois, (10, 12), "f.xml", mass_names=("Mass", *MASS_NAMES_SPICULATED))
    assert len(both) == 2
