"""mrcnn.overlay: masks, outlines, dashed boxes, captions and title drawn with PIL."""

import numpy as np
import pytest
from scipy import ndimage

from mrcnn import overlay
from mrcnn.visualize import apply_mask

RED, BLUE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)


def test_mask_outline_hand_worked():
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True  # a 5 x 5 square
    ring = mask.copy()
    ring[2:5, 2:5] = False
    np.testing.assert_array_equal(overlay.mask_outline(mask, width=1), ring)
    centre_only = mask.copy()
    centre_only[3, 3] = False
    np.testing.assert_array_equal(overlay.mask_outline(mask, width=2), centre_only)
    # The image border counts as outside: a mask filling the image has its edge rows outlined.
    full = np.ones((4, 5), bool)
    expected = full.copy()
    expected[1:3, 1:4] = False
    np.testing.assert_array_equal(overlay.mask_outline(full, width=1), expected)


@pytest.mark.parametrize("width", [1, 2, 3])
def test_mask_outline_matches_scipy_erosion(width):
    rng = np.random.default_rng(width)
    mask = ndimage.binary_opening(rng.random((40, 50)) > 0.4)
    eroded = ndimage.binary_erosion(mask, ndimage.generate_binary_structure(2, 1),
                                    iterations=width, border_value=0)
    np.testing.assert_array_equal(overlay.mask_outline(mask, width), mask & ~eroded)


def scene():
    image = np.full((60, 80), 100, np.uint8)
    masks = np.zeros((60, 80, 2), bool)
    masks[10:30, 10:30, 0] = True
    masks[35:55, 50:75, 1] = True
    boxes = np.array([[10, 10, 30, 30], [35, 50, 55, 75]])
    return image, boxes, masks


def test_render_instances_fills_outlines_and_boxes():
    image, boxes, masks = scene()
    drawn = overlay.render_instances(image, boxes, masks, ["a", "b"], colors=[RED, BLUE])
    assert drawn.shape == (60, 80, 3) and drawn.dtype == np.uint8
    # Inside the first mask, away from its outline and caption: the blend of apply_mask.
    blended = apply_mask(np.full((1, 1), 100, np.uint8), np.ones((1, 1), bool), RED)[0, 0]
    np.testing.assert_array_equal(drawn[25, 20], blended)
    # Its outline, inside the mask, in the mask's colour; the box's dashes on its edges.
    np.testing.assert_array_equal(drawn[28, 20], (255, 0, 0))
    np.testing.assert_array_equal(drawn[11, 11], (255, 0, 0))
    # Far from both: the image untouched (grey).
    np.testing.assert_array_equal(drawn[5, 60], (100, 100, 100))
    # The second mask's interior in its own colour's blend.
    blue = apply_mask(np.full((1, 1), 100, np.uint8), np.ones((1, 1), bool), BLUE)[0, 0]
    np.testing.assert_array_equal(drawn[50, 62], blue)


def test_render_instances_draws_the_captions_and_a_title_band():
    image, boxes, masks = scene()
    bare = overlay.render_instances(image, boxes, masks, ["", ""], colors=[RED, BLUE])
    captioned = overlay.render_instances(image, boxes, masks, ["benign 0.80", ""],
                                         colors=[RED, BLUE])
    changed = np.any(captioned != bare, axis=-1)
    rows, cols = np.nonzero(changed)
    # The caption starts at the box's top left corner (less its plate's margin).
    pad = overlay.CAPTION_PAD_PX
    assert rows.min() >= 10 - pad and cols.min() >= 10 - pad and cols.max() < 80
    assert np.any(np.all(captioned[changed] == 255, axis=-1))  # white text
    assert np.any(np.all(captioned[changed] == 0, axis=-1))  # on its dark plate
    # A caption in the right half ends at its box's right edge.
    right = overlay.render_instances(image, boxes, masks, ["", "malignant"], colors=[RED, BLUE])
    cols = np.nonzero(np.any(right != bare, axis=-1))[1]
    assert cols.max() <= 75 - 1 + pad
    titled = overlay.render_instances(image, boxes, masks, ["", ""], title="case.dcm",
                                      colors=[RED, BLUE])
    band = 2 * overlay.TITLE_PX
    assert titled.shape == (60 + band, 80, 3)
    np.testing.assert_array_equal(titled[band:], bare)
    assert np.any(titled[:band] < 128)  # dark title text on white


def test_render_instances_skips_padding_rows_and_draws_an_empty_result():
    image, boxes, masks = scene()
    boxes[1] = 0
    drawn = overlay.render_instances(image, boxes, masks, ["a", "b"], colors=[RED, BLUE])
    np.testing.assert_array_equal(drawn[50, 62], (100, 100, 100))
    empty = overlay.render_instances(image, np.zeros((0, 4)), np.zeros((60, 80, 0), bool), [])
    np.testing.assert_array_equal(empty, np.repeat(image[..., None], 3, axis=-1))


def test_render_instances_refuses_mismatched_inputs():
    image, boxes, masks = scene()
    with pytest.raises(ValueError, match="captions"):
        overlay.render_instances(image, boxes, masks, ["only one"])
    with pytest.raises(ValueError, match="masks must be"):
        overlay.render_instances(image, boxes, masks[:, :, :1], ["a", "b"])
    with pytest.raises(ValueError, match="masks must be"):
        overlay.render_instances(image[:50], boxes, masks, ["a", "b"])
