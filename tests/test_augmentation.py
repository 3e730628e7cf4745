"""Augmentation of image and instance masks together (mrcnn/augmentation.py).

Most checks use an image whose content *is* the masks (channel i = 1000 * mask i, uint16): any
misalignment between the image's geometric transform and the masks' shows up as a bright
region that differs from the mask.
"""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
from scipy import ndimage

from mrcnn.augmentation import (
    Contrast,
    Crop,
    Flip,
    GaussianBlur,
    Rotate,
    Sequential,
    SomeOf,
    Zoom,
    apply_augmentation,
    boxes_from_masks,
    default_augmentation,
    imgaug_mask_activator,
)

SIZE = 64


def instance_masks() -> np.ndarray:
    """Two instances away from the borders: an ellipse and a disk, [64, 64, 2] bool."""
    rows, cols = np.mgrid[:SIZE, :SIZE] + 0.5
    ellipse = ((rows - 20) / 11) ** 2 + ((cols - 22) / 15) ** 2 <= 1
    disk = (rows - 44) ** 2 + (cols - 44) ** 2 <= 13**2
    return np.stack([ellipse, disk], axis=-1)


def mask_image(masks: np.ndarray) -> np.ndarray:
    return (1000 * masks).astype(np.uint16)


def textured_image(dtype, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(7)
    base = rng.uniform(size=(SIZE, SIZE, channels))
    if dtype == np.uint8:
        image = np.rint(base * 255)
        image[0, 0, 0], image[0, 1, 0] = 0, 255
    elif dtype == np.uint16:  # 14-bit data in 16-bit words, like INbreast
        image = np.rint(base * 16383)
        image[0, 0, 0], image[0, 1, 0] = 0, 16383
    else:
        image = 0.2 + 0.7 * base
    return image.astype(dtype)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def extent(region: np.ndarray) -> list[int]:
    """Bounding box (y1, x1, y2, x2), exclusive ends, of a 2-D bool region, 0s when empty."""
    rows, cols = np.nonzero(region)
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]


def centroid(region: np.ndarray) -> np.ndarray:
    return np.array([c.mean() for c in np.nonzero(region)])


ALL_TRANSFORMS = [
    Rotate(),
    Flip(),
    Flip(horizontal=False, vertical=True),
    Zoom(),
    Crop(),
    Contrast(),
    GaussianBlur(),
]
EXACT = (Flip, Contrast)  # no interpolation of geometry: image and masks agree exactly


# ------------------------------------------------------------------------ alignment


@pytest.mark.parametrize("aug", ALL_TRANSFORMS, ids=repr)
def test_bright_region_follows_the_masks(aug):
    masks = instance_masks()
    for seed in range(10):
        rng = np.random.default_rng(seed)
        image, new_masks = apply_augmentation(aug, mask_image(masks), masks, rng)
        assert new_masks.shape == masks.shape and new_masks.dtype == bool
        bright = image > 500
        boxes = boxes_from_masks(new_masks)
        for i in range(masks.shape[2]):
            if isinstance(aug, EXACT):
                np.testing.assert_array_equal(bright[..., i], new_masks[..., i])
                assert boxes[i].tolist() == extent(bright[..., i])
            else:
                assert iou(bright[..., i], new_masks[..., i]) >= 0.95
                # Bilinear image vs nearest-neighbour masks may differ by a pixel at the edge.
                np.testing.assert_allclose(boxes[i], extent(bright[..., i]), atol=1)


GEOMETRIC_SOME_OF = SomeOf((2, 4), [Rotate(), Flip(), Zoom(), Crop()])


@pytest.mark.parametrize("aug", [GEOMETRIC_SOME_OF, default_augmentation()], ids=repr)
def test_composed_pipelines_keep_the_masks_aligned(aug):
    """Each step resamples again (and gamma moves the image's mid-level), so the per-pixel
    differences of single steps add up: a looser bound per sample, a tight one on average."""
    masks = instance_masks()
    ious = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        image, new_masks = apply_augmentation(aug, mask_image(masks), masks, rng)
        bright = image > 500
        boxes = boxes_from_masks(new_masks)
        for i in range(masks.shape[2]):
            ious.append(iou(bright[..., i], new_masks[..., i]))
            np.testing.assert_allclose(boxes[i], extent(bright[..., i]), atol=2)
    assert min(ious) >= 0.9
    assert np.mean(ious) >= 0.95


def test_horizontal_flip_mirrors_the_centroid():
    masks = instance_masks()
    image, flipped = Flip().apply(mask_image(masks), masks, axis="horizontal")
    for i in range(2):
        row, col = centroid(masks[..., i])
        np.testing.assert_allclose(centroid(flipped[..., i]), [row, SIZE - 1 - col])
        np.testing.assert_array_equal(image[..., i] > 500, flipped[..., i])


def test_vertical_flip_mirrors_the_centroid():
    masks = instance_masks()
    _, flipped = Flip(horizontal=False, vertical=True)(masks.astype(np.uint8), masks,
                                                        np.random.default_rng(0))
    row, col = centroid(masks[..., 0])
    np.testing.assert_allclose(centroid(flipped[..., 0]), [SIZE - 1 - row, col])


def blob_masks() -> np.ndarray:
    """One 10 x 8 rectangle: rows 10..19, cols 28..35, centroid (14.5, 31.5)."""
    masks = np.zeros((SIZE, SIZE, 1), dtype=bool)
    masks[10:20, 28:36, 0] = True
    return masks


@pytest.mark.parametrize(
    ("degrees", "expected"),
    [
        # Relative to the image centre (31.5, 31.5) the blob sits at (-17, 0). Counter-clockwise
        # on screen: row' = cos*dr - sin*dc, col' = sin*dr + cos*dc.
        (90.0, (31.5, 31.5 - 17.0)),  # top goes to the left
        (-90.0, (31.5, 31.5 + 17.0)),  # top goes to the right
        (180.0, (31.5 + 17.0, 31.5)),
        (30.0, (31.5 - 17.0 * 0.8660254, 31.5 - 17.0 * 0.5)),
    ],
)
def test_rotation_moves_the_centroid_as_computed_by_hand(degrees, expected):
    masks = blob_masks()
    image, rotated = Rotate().apply(mask_image(masks), masks, degrees=degrees)
    np.testing.assert_allclose(centroid(rotated[..., 0]), expected, atol=0.3)
    weights = image[..., 0].astype(np.float64)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    intensity_centroid = [(rows * weights).sum() / weights.sum(),
                          (cols * weights).sum() / weights.sum()]
    np.testing.assert_allclose(intensity_centroid, expected, atol=0.1)
    assert abs(int(rotated.sum()) - int(masks.sum())) <= 6  # area kept, up to the border


def test_rotation_matches_scipy_affine_transform():
    """Independent reference: scipy's resampler with the inverse rotation about the centre
    (scipy puts pixel centres at integers, so the centre is (H - 1) / 2)."""
    image = textured_image(np.float32, channels=2)
    masks = instance_masks()
    out, out_masks = Rotate().apply(image, masks, degrees=17.0)
    theta = math.radians(17.0)
    inverse = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    centre = np.full(2, (SIZE - 1) / 2)
    offset = centre - inverse @ centre

    def reference(plane, order):
        return ndimage.affine_transform(plane, inverse, offset=offset, order=order,
                                        mode="grid-constant", cval=0.0, prefilter=False)

    for c in range(2):
        np.testing.assert_allclose(out[..., c], reference(image[..., c].astype(float), 1),
                                   atol=1e-5)
        expected = reference(masks[..., c].astype(np.uint8), 0) > 0
        # Pixels whose source falls within rounding error of a tie may go either way.
        assert (out_masks[..., c] != expected).sum() <= 2


def test_random_rotation_uses_the_drawn_angle():
    masks = blob_masks()
    rotate = Rotate(max_degrees=45)
    params = rotate.draw(np.random.default_rng(3))
    assert -45 <= params["degrees"] <= 45
    _, rotated = rotate(mask_image(masks), masks, np.random.default_rng(3))
    theta = math.radians(params["degrees"])
    expected = (31.5 - 17 * math.cos(theta), 31.5 - 17 * math.sin(theta))
    np.testing.assert_allclose(centroid(rotated[..., 0]), expected, atol=0.3)


def test_zoom_scales_offsets_from_the_centre():
    masks = np.zeros((SIZE, SIZE, 1), dtype=bool)
    masks[24:28, 36:40, 0] = True  # centroid (25.5, 37.5): (-6, +6) from the centre (31.5, 31.5)
    _, zoomed_in = Zoom().apply(mask_image(masks), masks, scale=2.0)
    np.testing.assert_allclose(centroid(zoomed_in[..., 0]), (31.5 - 12, 31.5 + 12), atol=0.3)
    assert zoomed_in.sum() == 4 * masks.sum()
    image, zoomed_out = Zoom().apply(mask_image(masks), masks, scale=0.5)
    np.testing.assert_allclose(centroid(zoomed_out[..., 0]), (31.5 - 3, 31.5 + 3), atol=0.3)
    assert zoomed_out.sum() == masks.sum() // 4


def test_zoom_out_pads_with_zero_and_keeps_the_shape():
    image = np.full((SIZE, SIZE, 1), 200, dtype=np.uint8)
    masks = np.ones((SIZE, SIZE, 1), dtype=bool)
    out, out_masks = Zoom().apply(image, masks, scale=0.5, anchor=(0.0, 1.0))
    assert out.shape == image.shape and out_masks.shape == masks.shape
    # The shrunk image sits top-right: rows 0..31, cols 32..63.
    expected = np.zeros((SIZE, SIZE), dtype=bool)
    expected[:32, 32:] = True
    np.testing.assert_array_equal(out_masks[..., 0], expected)
    np.testing.assert_array_equal(out[..., 0] > 100, expected)


def test_crop_stretches_the_kept_window():
    masks = np.zeros((SIZE, SIZE, 1), dtype=bool)
    masks[20:28, 10:20, 0] = True
    # Remove a quarter at the top and at the bottom: rows 16..47 are stretched by 2.
    _, cropped = Crop().apply(mask_image(masks), masks, top_left=(0.25, 0.0),
                              bottom_right=(0.25, 0.0))
    assert extent(cropped[..., 0]) == [8, 10, 24, 20]


def test_crop_draws_borders_within_the_fraction():
    crop = Crop(max_fraction=0.1)
    for seed in range(20):
        params = crop.draw(np.random.default_rng(seed))
        removed = np.add(params["top_left"], params["bottom_right"])
        assert np.all(removed >= 0) and np.all(removed <= 0.1 + 1e-12)


def test_masks_leaving_the_view_are_kept_empty():
    masks = np.zeros((SIZE, SIZE, 2), dtype=bool)
    masks[50:60, 50:60, 0] = True  # bottom-right: out of a top-left zoom window
    masks[5:10, 5:10, 1] = True
    _, zoomed = Zoom().apply(mask_image(masks), masks, scale=2.0, anchor=(0.0, 0.0))
    assert zoomed.shape[2] == 2
    assert not zoomed[..., 0].any() and zoomed[..., 1].any()
    assert boxes_from_masks(zoomed)[0].tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("aug", [*ALL_TRANSFORMS, default_augmentation()], ids=repr)
def test_no_instances(aug):
    image = textured_image(np.uint8)
    masks = np.zeros((SIZE, SIZE, 0), dtype=bool)
    out, out_masks = apply_augmentation(aug, image, masks, np.random.default_rng(1))
    assert out.shape == image.shape and out_masks.shape == (SIZE, SIZE, 0)


# ------------------------------------------------------------------------ dtype and range


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("aug", [*ALL_TRANSFORMS, default_augmentation()], ids=repr)
def test_dtype_and_value_range_are_kept(aug, dtype):
    image = textured_image(dtype, channels=3)
    low, high = float(image.min()), float(image.max())
    masks = instance_masks()
    for seed in range(3):
        out, _ = apply_augmentation(aug, image, masks, np.random.default_rng(seed))
        assert out.dtype == image.dtype and out.shape == image.shape
        # Geometric transforms may add the fill value 0; nothing ever exceeds the input's max,
        # so 14-bit data in uint16 stays <= 16383.
        assert out.max() <= high
        assert out.min() >= min(low, 0.0)
        if isinstance(aug, Contrast | GaussianBlur):
            assert out.min() >= low


def test_contrast_gamma_by_hand():
    image = np.array([0, 250, 500, 1000], dtype=np.uint16).reshape(1, 4, 1)
    masks = np.zeros((1, 4, 1), dtype=bool)
    out, _ = Contrast().apply(image, masks, gamma=2.0)
    # x = v / 1000; 1000 * x**2
    assert out[0, :, 0].tolist() == [0, 62, 250, 1000]
    out, _ = Contrast().apply(image + 100, masks, gamma=0.5)
    # low 100, high 1100: 100 + 1000 * sqrt(x)
    assert out[0, :, 0].tolist() == [100, 600, 807, 1100]


def test_contrast_of_a_flat_image_is_a_copy():
    image = np.full((4, 4, 1), 9, dtype=np.uint8)
    out, _ = Contrast().apply(image, np.zeros((4, 4, 0), bool), gamma=1.3)
    np.testing.assert_array_equal(out, image)


def reference_blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian (kernel truncated at 4 sigma, edge pixels repeated), numpy only."""
    radius = int(4.0 * sigma + 0.5)
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-(taps**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(plane, radius, mode="edge")
    rows = sum(k * padded[radius + t : radius + t + plane.shape[0], :]
               for t, k in zip(taps, kernel, strict=True))
    return sum(k * rows[:, radius + t : radius + t + plane.shape[1]]
               for t, k in zip(taps, kernel, strict=True))


def test_gaussian_blur_matches_a_numpy_reference():
    image = textured_image(np.float32, channels=2)
    out, _ = GaussianBlur().apply(image, np.zeros((SIZE, SIZE, 0), bool), sigma=1.2)
    for c in range(2):
        np.testing.assert_allclose(out[..., c], reference_blur(image[..., c].astype(float), 1.2),
                                   atol=1e-5)
    same, _ = GaussianBlur().apply(image, np.zeros((SIZE, SIZE, 0), bool), sigma=0.0)
    np.testing.assert_array_equal(same, image)


def test_photometric_transforms_leave_masks_alone():
    masks = instance_masks()
    image = textured_image(np.uint16, channels=1)
    for aug in (Contrast(), GaussianBlur()):
        _, out_masks = aug(image, masks, np.random.default_rng(0))
        np.testing.assert_array_equal(out_masks, masks)


def test_inputs_are_not_modified():
    masks = instance_masks()
    image = mask_image(masks)
    image_copy, masks_copy = image.copy(), masks.copy()
    for seed in range(5):
        apply_augmentation(default_augmentation(), image, masks, np.random.default_rng(seed))
    np.testing.assert_array_equal(image, image_copy)
    np.testing.assert_array_equal(masks, masks_copy)


# ------------------------------------------------------------------------ determinism


def test_same_seed_same_result_different_seed_different_result():
    masks = instance_masks()
    image = textured_image(np.uint16, channels=1) // 2 + mask_image(masks)[..., :1]
    aug = default_augmentation()

    def run(seed):
        return apply_augmentation(aug, image, masks, np.random.default_rng(seed))

    first, again = run(11), run(11)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    others = [run(seed) for seed in (12, 13)]
    assert all(not np.array_equal(first[0], other[0]) for other in others)


# ------------------------------------------------------------------------ composition


class Recorder:
    """A child that only records that it ran."""

    def __init__(self, name: str, log: list[str]):
        self.name, self.log = name, log

    def __call__(self, image, masks, rng):
        self.log.append(self.name)
        return image, masks


def test_some_of_applies_two_to_five_distinct_children_in_random_order():
    log: list[str] = []
    names = [f"c{i}" for i in range(6)]
    some_of = SomeOf((2, 5), [Recorder(name, log) for name in names])
    image, masks = textured_image(np.uint8), instance_masks()
    counts, orders = set(), set()
    rng = np.random.default_rng(0)
    for _ in range(300):
        log.clear()
        some_of(image, masks, rng)
        assert 2 <= len(log) <= 5
        assert len(set(log)) == len(log)
        counts.add(len(log))
        orders.add(tuple(log))
    assert counts == {2, 3, 4, 5}
    assert any(list(order) != sorted(order) for order in orders)  # not always in list order
    assert {name for order in orders for name in order} == set(names)


def test_some_of_with_fewer_children_than_the_upper_bound():
    log: list[str] = []
    some_of = SomeOf((2, 5), [Recorder(n, log) for n in "abc"])
    rng = np.random.default_rng(0)
    for _ in range(50):
        log.clear()
        some_of(textured_image(np.uint8), instance_masks(), rng)
        assert 2 <= len(log) <= 3


def test_some_of_exact_count_and_errors():
    log: list[str] = []
    some_of = SomeOf(3, [Recorder(n, log) for n in "abcd"])
    some_of(textured_image(np.uint8), instance_masks(), np.random.default_rng(0))
    assert len(log) == 3
    with pytest.raises(ValueError, match="at least 4"):
        SomeOf((4, 5), [Recorder(n, log) for n in "abc"])
    with pytest.raises(ValueError, match="SomeOf.n"):
        SomeOf((3, 2), [Recorder(n, log) for n in "abc"])


def test_sequential_applies_every_child_in_order():
    log: list[str] = []
    seq = Sequential([Recorder(n, log) for n in "abc"])
    seq(textured_image(np.uint8), instance_masks(), np.random.default_rng(0))
    assert log == ["a", "b", "c"]


def test_default_augmentation_is_the_papers_set():
    aug = default_augmentation()
    assert aug.n == (2, 5)
    assert [type(c) for c in aug.children] == [Rotate, Flip, Zoom, Crop, Contrast, GaussianBlur]


def test_repr_names_the_parameters():
    assert repr(Rotate(10)) == "Rotate(max_degrees=10.0)"
    assert repr(Zoom(0.9, 1.1)) == "Zoom(min_scale=0.9, max_scale=1.1)"
    assert "SomeOf(n=(2, 5)" in repr(default_augmentation())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Flip(horizontal=False, vertical=False), "at least one"),
        (lambda: Zoom(1.2, 0.8), "exceeds"),
        (lambda: Zoom(0.0, 1.0), "smallest"),
        (lambda: Crop(1.0), "below 1"),
        (lambda: Rotate(-5), "exceeds"),
        (lambda: Contrast((1.5, 0.7)), "exceeds"),
        (lambda: GaussianBlur((-1.0, 1.0)), "smallest"),
    ],
)
def test_bad_parameters_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ------------------------------------------------------------------------ imgaug-style objects


class FakeDeterministicFliplr:
    """Stands in for ``imgaug.augmenters.Fliplr(1.0).to_deterministic()``."""

    def __init__(self, calls: list[tuple[int, ...]]):
        self.calls = calls

    def augment_image(self, image):
        self.calls.append(image.shape)
        return np.ascontiguousarray(image[:, ::-1])


class FakeImgaugFliplr:
    def __init__(self):
        self.calls: list[tuple[int, ...]] = []

    def to_deterministic(self):
        return FakeDeterministicFliplr(self.calls)


def test_imgaug_style_object_without_imgaug():
    masks = instance_masks()
    image = mask_image(masks)
    aug = FakeImgaugFliplr()
    out, out_masks = apply_augmentation(aug, image, masks, np.random.default_rng(0))
    np.testing.assert_array_equal(out, image[:, ::-1])
    np.testing.assert_array_equal(out_masks, masks[:, ::-1])
    assert out_masks.dtype == bool
    # Once for the image, once for each mask (as a one-channel image).
    assert aug.calls == [(SIZE, SIZE, 2), (SIZE, SIZE, 1), (SIZE, SIZE, 1)]


def test_imgaug_style_object_is_seeded_from_our_rng():
    seeds: list[tuple[int, bool]] = []

    class Seedable(FakeDeterministicFliplr):
        def seed_(self, entropy, deterministic_too=False):
            seeds.append((entropy, deterministic_too))

    class Pipeline(FakeImgaugFliplr):
        def to_deterministic(self):
            return Seedable(self.calls)

    masks = instance_masks()
    for _ in range(2):
        apply_augmentation(Pipeline(), mask_image(masks), masks, np.random.default_rng(5))
    assert seeds[0] == seeds[1] and seeds[0][1] is True


def test_real_imgaug_pipeline_uses_hooks_so_only_geometry_reaches_masks(monkeypatch):
    """imgaug itself cannot be imported on numpy 2; a stand-in module checks the wiring."""

    class HooksImages:
        def __init__(self, activator):
            self.activator = activator

    monkeypatch.setitem(sys.modules, "imgaug", types.SimpleNamespace(HooksImages=HooksImages))

    class Fliplr:
        pass

    class Multiply:
        pass

    class Deterministic:
        def augment_image(self, image, hooks=None):
            calls.append(image.shape)
            for step in (Fliplr(), Multiply()):
                if hooks is not None and not hooks.activator(image, step, [], True):
                    continue
                image = image[:, ::-1] if isinstance(step, Fliplr) else image * 3
            return np.ascontiguousarray(image)

    class Pipeline:
        __module__ = "imgaug.augmenters.meta"

        def to_deterministic(self):
            return Deterministic()

    calls: list[tuple[int, ...]] = []
    masks = instance_masks()
    image = mask_image(masks)
    out, out_masks = apply_augmentation(Pipeline(), image, masks, np.random.default_rng(0))
    np.testing.assert_array_equal(out, image[:, ::-1] * 3)
    np.testing.assert_array_equal(out_masks, masks[:, ::-1])
    assert calls == [(SIZE, SIZE, 2), (SIZE, SIZE, 2)]  # all masks at once, as Matterport did


def test_imgaug_mask_activator_lets_only_geometry_through():
    def named(name, base=object):
        return type(name, (base,), {})()

    affine = type("Affine", (), {})
    assert imgaug_mask_activator(None, named("Fliplr"), [], True)
    assert imgaug_mask_activator(None, named("Rotate", affine), [], True)  # Affine subclass
    assert not imgaug_mask_activator(None, named("GaussianBlur"), [], True)
    assert not imgaug_mask_activator(None, named("Multiply"), [], True)


# ------------------------------------------------------------------------ checks and errors


class Named:
    """A protocol callable with a recognisable repr, wrapping a function."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, image, masks, rng):
        return self.fn(image, masks)

    def __repr__(self):
        return "BrokenAug()"


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda im, m: (im.astype(np.float32), m), "dtype changed"),
        (lambda im, m: (im[:-2], m), "no longer aligned"),
        (lambda im, m: (im, m[..., :1]), "mask count changed"),
        (lambda im, m: (im, m.astype(np.uint8)), "stay bool"),
        (lambda im, m: (im[..., 0], m), r"\[H, W, C\]"),
        (lambda im, m: [im, m], "must return"),
    ],
)
def test_broken_augmentation_is_named_in_the_error(fn, message):
    masks = instance_masks()
    with pytest.raises(ValueError, match=message) as error:
        apply_augmentation(Named(fn), mask_image(masks), masks, np.random.default_rng(0))
    assert "BrokenAug()" in str(error.value)


def test_bad_inputs():
    masks = instance_masks()
    image = mask_image(masks)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="bool"):
        apply_augmentation(Flip(), image, masks.astype(np.uint8), rng)
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        apply_augmentation(Flip(), image[..., 0], masks, rng)
    with pytest.raises(ValueError, match="differ"):
        apply_augmentation(Flip(), image[:32], masks, rng)
    with pytest.raises(TypeError, match="Generator"):
        apply_augmentation(Flip(), image, masks, 0)
    with pytest.raises(TypeError, match="neither"):
        apply_augmentation("flip", image, masks, rng)
    with pytest.raises(TypeError, match="no augment_image"):
        apply_augmentation(types.SimpleNamespace(to_deterministic=lambda: None), image, masks, rng)
    with pytest.raises(ValueError, match="axis"):
        Flip().apply(image, masks, axis="diagonal")
