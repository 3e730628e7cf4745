"""mrcnn.resample.resize_anti_aliased against skimage.transform.resize, the reference it
replaces in the preparation of full-size mammograms, and the pieces it is built from."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.transform

from mrcnn.resample import _gaussian_taps, _mirror, axis_matrix, resize_anti_aliased


def textured(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Noise plus stripes and an edge in the 14-bit range: content at every frequency."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 4000, shape)
    image += 6000 * (np.sin(np.arange(shape[1]) / 3.0)[None, :] > 0)
    image[: shape[0] // 3] += 5000
    return image.astype(np.float32)


def skimage_resize(image: np.ndarray, shape, anti_aliasing: bool) -> np.ndarray:
    return skimage.transform.resize(image, shape, order=1, anti_aliasing=anti_aliasing,
                                    preserve_range=True).astype(np.float32)


@pytest.mark.parametrize("in_shape, out_shape", [
    ((1021, 687), (96, 65)),     # ten times smaller, the detect case at a test's size
    ((300, 200), (130, 87)),     # a non-integer factor
    ((97, 31), (20, 9)),         # odd sizes, short axis
    ((120, 80), (120, 40)),      # one axis only
    ((50, 40), (75, 60)),        # enlarging (no blur; mirrored edges)
    ((64, 64), (64, 64)),        # identity
    ((40, 30), (1, 1)),          # one output pixel
])
@pytest.mark.parametrize("anti_aliasing", [True, False])
def test_equals_skimage_up_to_float32_rounding(in_shape, out_shape, anti_aliasing):
    image = textured(in_shape, seed=sum(in_shape))
    expected = skimage_resize(image, out_shape, anti_aliasing)
    got = resize_anti_aliased(image, out_shape, anti_aliasing)
    assert got.shape == tuple(out_shape) and got.dtype == np.float32
    # float32 sums of up to a few hundred terms of values near 1.5e4: a few ulps.
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * float(np.abs(image).max()))


def test_integer_input_and_the_default_flag_follow_skimage():
    image = textured((200, 150), seed=3).astype(np.uint16)
    expected = skimage.transform.resize(image, (50, 40), order=1, preserve_range=True)
    got = resize_anti_aliased(image, (50, 40))
    np.testing.assert_allclose(got, expected, atol=0.02)


def test_the_gaussian_taps_are_scipys_kernel():
    for sigma in (0.5, 1.7, 4.8):
        impulse = np.zeros(101)
        impulse[50] = 1.0
        offsets, weights = _gaussian_taps(sigma)
        kernel = ndi.gaussian_filter1d(impulse, sigma, mode="mirror")
        nonzero = np.flatnonzero(kernel)
        np.testing.assert_array_equal(nonzero - 50, offsets)
        np.testing.assert_allclose(kernel[nonzero], weights, rtol=1e-12)
    offsets, weights = _gaussian_taps(0.0)
    assert offsets.tolist() == [0] and weights.tolist() == [1.0]


def test_mirror_reflects_about_the_edge_pixels():
    # size 4: ... c b | a b c d | c b a ...
    index = np.array([-3, -2, -1, 0, 3, 4, 5, 6, 7])
    assert _mirror(index, 4).tolist() == [3, 2, 1, 0, 3, 2, 1, 0, 1]
    assert _mirror(np.array([-2, 0, 5]), 1).tolist() == [0, 0, 0]


def test_each_output_row_of_a_shrinking_matrix_sums_to_one():
    matrix = axis_matrix(1000, 97, anti_aliasing=True)
    assert matrix.shape == (97, 1000)
    np.testing.assert_allclose(np.asarray(matrix.sum(axis=1)).ravel(), 1.0, atol=1e-6)
    assert (matrix.data >= 0).all()
    # Only the Gaussian's reach around two taps: 2 x (2 x radius + 1) entries at most.
    radius = int(4.0 * (1000 / 97 - 1) / 2 + 0.5)
    assert matrix.getnnz(axis=1).max() <= 2 * (2 * radius + 1)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="2-D"):
        resize_anti_aliased(np.zeros((4, 4, 3)), (2, 2))
    with pytest.raises(ValueError, match="positive"):
        resize_anti_aliased(np.zeros((4, 4)), (0, 2))
