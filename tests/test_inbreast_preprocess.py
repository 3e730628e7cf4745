"""Breast crop, 14-bit normalisation, resize, and the Transform that maps boxes back."""

from __future__ import annotations

import numpy as np
import pytest

from ftmtl.inbreast.intensity import PERCENTILES
from ftmtl.inbreast.preprocess import Transform, breast_bbox, normalise_14bit, prepare_image


def half_disc_image(shape=(120, 90), centre_row=60, radius=50, left=True):
    """A breast-like half disc against the left (or right) edge, dimmer towards the skin line."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    edge_col = 0 if left else shape[1] - 1
    distance = np.hypot(rows - centre_row, cols - edge_col)
    breast = distance <= radius
    image = np.zeros(shape, dtype=np.float64)
    image[breast] = 3000 + 9000 * (1 - distance[breast] / radius)  # skin line still ~3000
    rng = np.random.default_rng(0)
    image += rng.normal(0, 40, shape).clip(0)
    return np.clip(image, 0, 2**14 - 1).astype(np.uint16), breast


@pytest.mark.parametrize("left", [True, False])
def test_breast_box_holds_the_whole_breast_and_ignores_a_marker(left):
    image, breast = half_disc_image(left=left)
    marker_cols = slice(80, 86) if left else slice(4, 10)
    image[2:8, marker_cols] = 16000  # a bright label marker, apart from the breast
    y1, x1, y2, x2 = breast_bbox(image)
    rows, cols = np.nonzero(breast)
    assert y1 <= rows.min() and x1 <= cols.min() and y2 >= rows.max() + 1 and x2 >= cols.max() + 1
    assert (y2 - y1) * (x2 - x1) <= 1.2 * (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
    assert not (y1 <= 2 and (x2 >= 86 if left else x1 <= 4))  # the marker is not included


def test_breast_box_on_a_large_image_uses_subsampling_but_keeps_the_breast():
    image, breast = half_disc_image(shape=(1500, 1100), centre_row=700, radius=600)
    y1, x1, y2, x2 = breast_bbox(image)
    rows, cols = np.nonzero(breast)
    assert y1 <= rows.min() and x1 <= cols.min() and y2 > rows.max() and x2 > cols.max()
    assert y2 - y1 <= np.ptp(rows) + 1 + 2 * (3 + 15) and x2 - x1 <= np.ptp(cols) + 1 + 3 + 11


def test_uniform_image_keeps_everything():
    assert breast_bbox(np.full((7, 5), 100, dtype=np.uint16)) == (0, 0, 7, 5)


def test_normalise_14bit():
    out = normalise_14bit(np.array([0, 8191, 16383], dtype=np.uint16), 14)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 8191 / 16383, 1.0])
    np.testing.assert_allclose(normalise_14bit(np.array([255, 4095]), 12), [255 / 4095, 1.0])


def test_transform_maps_a_hand_made_box_and_round_trips():
    transform = Transform(original_shape=(400, 300), crop=(100, 20, 300, 220),
                          output_shape=(100, 100))
    assert transform.scale == (0.5, 0.5)
    np.testing.assert_allclose(transform.to_model([[110, 40, 150, 60]]), [[5, 10, 25, 20]])
    np.testing.assert_allclose(transform.to_original([[5, 10, 25, 20]]), [[110, 40, 150, 60]])
    boxes = np.random.default_rng(1).uniform(0, 300, size=(6, 4))
    np.testing.assert_allclose(transform.to_original(transform.to_model(boxes)), boxes)


def test_prepare_without_resize_is_a_plain_crop():
    image, breast = half_disc_image()
    masks = np.zeros(image.shape + (1,), dtype=bool)
    masks[50:60, 10:20, 0] = True
    prepared, out_masks, transform = prepare_image(image, masks, 14, window="full_range")
    y1, x1, y2, x2 = transform.crop
    assert prepared.dtype == np.float32 and prepared.shape == (y2 - y1, x2 - x1)
    np.testing.assert_allclose(prepared, image[y1:y2, x1:x2] / 16383.0, rtol=1e-6)
    by_percentile = prepare_image(image, masks, 14)[0]  # the default window: the crop's own
    low, high = np.percentile(image[y1:y2, x1:x2], PERCENTILES)
    np.testing.assert_allclose(by_percentile, np.clip((image[y1:y2, x1:x2] - low)
                                                      / (high - low), 0, 1), atol=1e-6)
    np.testing.assert_array_equal(out_masks, masks[y1:y2, x1:x2])
    assert transform.scale == (1.0, 1.0)


def test_prepare_with_resize_keeps_aspect_and_aligns_masks_with_boxes():
    image, _ = half_disc_image(shape=(240, 180), centre_row=120, radius=100)
    masks = np.zeros(image.shape + (2,), dtype=bool)
    masks[100:140, 20:60, 0] = True
    masks[30:32, 40:42, 1] = True  # 2x2 px: resizing would erase it, its centre is kept
    prepared, out_masks, transform = prepare_image(image, masks, 14, target_size=64)
    assert max(prepared.shape) == 64
    crop_h = transform.crop[2] - transform.crop[0]
    crop_w = transform.crop[3] - transform.crop[1]
    assert abs(prepared.shape[0] / prepared.shape[1] - crop_h / crop_w) < 0.05
    assert out_masks.shape == prepared.shape + (2,) and out_masks[..., 1].sum() >= 1
    expected = transform.to_model([[100, 20, 140, 60]])[0]
    rows, cols = np.nonzero(out_masks[..., 0])
    found = [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
    np.testing.assert_allclose(found, expected, atol=1.0)
    assert prepared.min() >= 0.0 and prepared.max() <= 1.0


def test_crop_keeps_a_mask_that_reaches_beyond_the_breast():
    image, _ = half_disc_image()
    masks = np.zeros(image.shape + (1,), dtype=bool)
    masks[0:4, 80:90, 0] = True  # annotated in the background corner
    _, out_masks, transform = prepare_image(image, masks, 14)
    assert out_masks.sum() == masks.sum()
    assert transform.crop[0] == 0 and transform.crop[3] == 90


def test_mask_to_original_inverts_the_resize():
    image, _ = half_disc_image(shape=(240, 180), centre_row=120, radius=100)
    masks = np.zeros(image.shape + (1,), dtype=bool)
    masks[100:140, 20:60, 0] = True
    _, out_masks, transform = prepare_image(image, masks, 14, target_size=90)
    back = transform.mask_to_original(out_masks[..., 0])
    assert back.shape == image.shape
    dice = 2 * (back & masks[..., 0]).sum() / (back.sum() + masks[..., 0].sum())
    assert dice > 0.9
