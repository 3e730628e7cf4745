"""The generated shapes dataset: deterministic, consistent masks and pixels, valid config."""

from __future__ import annotations

import numpy as np
import pytest

from samples.shapes.shapes import (
    MIN_COLOR_DISTANCE,
    NOISE_AMPLITUDE,
    SHAPES_IMAGE_SIZE,
    ShapesConfig,
    ShapesDataset,
    ShapesFPNConfig,
    shape_pixels,
)

SIZE = 64


def make_dataset(count: int = 24, seed: int = 0, height: int = SIZE,
                 width: int = SIZE) -> ShapesDataset:
    dataset = ShapesDataset()
    dataset.load_shapes(count, height, width, seed=seed)
    dataset.prepare()
    return dataset


@pytest.fixture(scope="module")
def dataset() -> ShapesDataset:
    return make_dataset()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


# ------------------------------------------------------------------------------------ config
def test_configs_validate_with_the_tiny_cpu_sizes():
    config = ShapesConfig()
    assert config.NAME == "shapes"
    assert config.NUM_CLASSES == 3
    assert config.IMAGE_SHAPE.tolist() == [SHAPES_IMAGE_SIZE, SHAPES_IMAGE_SIZE, 3]
    assert config.BACKBONE_STRIDES == [16]
    assert config.MEAN_PIXEL.tolist() == [128.0, 128.0, 128.0]
    assert tuple(config.MASK_SHAPE) == (2 * config.MASK_POOL_SIZE, 2 * config.MASK_POOL_SIZE)
    fpn = ShapesFPNConfig()
    assert fpn.BACKBONE_STRIDES == [4, 8, 16, 32, 64]
    assert len(fpn.RPN_ANCHOR_SCALES) == 5 and fpn.NAME != config.NAME


def test_classes_are_background_ellipse_rectangle(dataset):
    assert dataset.num_classes == 3
    assert dataset.class_names == ["BG", "ellipse", "rectangle"]
    assert dataset.num_images == 24
    assert dataset.image_reference(3) == "shapes:3"


# ------------------------------------------------------------------------------ determinism
def test_same_seed_gives_the_same_images_and_masks():
    first, second = make_dataset(count=5, seed=7), make_dataset(count=5, seed=7)
    assert first.image_info == second.image_info
    for image_id in first.image_ids:
        np.testing.assert_array_equal(first.load_image(image_id), second.load_image(image_id))
        np.testing.assert_array_equal(first.load_image(image_id), first.load_image(image_id))
        masks_a, ids_a = first.load_mask(image_id)
        masks_b, ids_b = second.load_mask(image_id)
        np.testing.assert_array_equal(masks_a, masks_b)
        np.testing.assert_array_equal(ids_a, ids_b)


def test_different_seeds_give_different_images():
    first, second = make_dataset(count=3, seed=1), make_dataset(count=3, seed=2)
    for image_id in first.image_ids:
        assert not np.array_equal(first.load_image(image_id), second.load_image(image_id))


# ----------------------------------------------------------------------------- content
def test_one_to_three_shapes_per_image_and_all_counts_occur(dataset):
    counts = []
    for image_id in dataset.image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        assert 1 <= masks.shape[-1] <= 3
        assert masks.shape[-1] == class_ids.shape[0] == len(dataset.image_info[image_id]["shapes"])
        counts.append(masks.shape[-1])
    assert set(counts) == {1, 2, 3}


def test_mask_types_class_ids_and_no_empty_masks(dataset):
    for image_id in dataset.image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        assert masks.dtype == bool and masks.shape[:2] == (SIZE, SIZE)
        assert class_ids.dtype == np.int32
        assert set(class_ids.tolist()) <= {1, 2}
        assert masks.reshape(-1, masks.shape[-1]).sum(axis=0).min() > 0
        names = [shape["shape"] for shape in dataset.image_info[image_id]["shapes"]]
        assert [dataset.class_names[c] for c in class_ids] == names


def test_masks_match_the_rendered_pixels(dataset):
    """Inside each mask the pixel is that shape's colour, elsewhere the background's (+- noise)."""
    saw_noise = False
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        image = dataset.load_image(image_id).astype(np.int32)
        assert image.shape == (SIZE, SIZE, 3)
        masks, _ = dataset.load_mask(image_id)
        assert not np.any(masks.sum(axis=-1) > 1), "visible masks must not overlap"
        expected = np.empty_like(image)
        expected[:] = info["bg_color"]
        for k, shape in enumerate(info["shapes"]):
            expected[masks[..., k]] = shape["color"]
        deviation = np.abs(image - expected)
        assert deviation.max() <= NOISE_AMPLITUDE
        saw_noise |= bool(deviation.max() > 0)
    assert saw_noise, "images should carry mild noise"


def test_colours_are_distinct_from_background_and_each_other(dataset):
    for info in dataset.image_info:
        colors = [info["bg_color"]] + [shape["color"] for shape in info["shapes"]]
        for i in range(len(colors)):
            for j in range(i):
                assert np.max(np.abs(np.subtract(colors[i], colors[j]))) >= MIN_COLOR_DISTANCE


def test_shapes_overlap_little_and_fit_with_a_margin(dataset):
    margin = SIZE // 16
    for info in dataset.image_info:
        full = [shape_pixels(shape, SIZE, SIZE) for shape in info["shapes"]]
        for pixels in full:
            rows, cols = np.nonzero(pixels)
            assert rows.min() >= margin and rows.max() < SIZE - margin
            assert cols.min() >= margin and cols.max() < SIZE - margin
        for i in range(len(full)):
            for j in range(i):
                assert iou(full[i], full[j]) < 0.3


def test_other_image_sizes():
    dataset = make_dataset(count=4, height=48, width=80, seed=3)
    for image_id in dataset.image_ids:
        assert dataset.load_image(image_id).shape == (48, 80, 3)
        assert dataset.load_mask(image_id)[0].shape[:2] == (48, 80)


# ------------------------------------------------------------------------- hand-made cases
def test_rectangle_and_ellipse_pixels():
    rect = shape_pixels({"shape": "rectangle", "center": (20, 30), "size": (3, 5)}, 40, 50)
    expected = np.zeros((40, 50), dtype=bool)
    expected[17:23, 25:35] = True
    np.testing.assert_array_equal(rect, expected)

    ellipse = shape_pixels({"shape": "ellipse", "center": (32, 32), "size": (12, 6),
                            "angle": 0.0}, 64, 64)
    assert ellipse[32, 32]
    assert abs(ellipse.sum() - np.pi * 12 * 6) < 0.1 * np.pi * 12 * 6
    rows, cols = np.nonzero(ellipse)
    assert rows.max() - rows.min() > cols.max() - cols.min()  # the row axis is the long one
    turned = shape_pixels({"shape": "ellipse", "center": (32, 32), "size": (12, 6),
                           "angle": 90.0}, 64, 64)
    rows, cols = np.nonzero(turned)
    assert rows.max() - rows.min() < cols.max() - cols.min()


def test_unknown_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="triangle"):
        shape_pixels({"shape": "triangle", "center": (5, 5), "size": (2, 2)}, 10, 10)


def test_occlusion_trims_earlier_masks_and_drops_hidden_ones():
    dataset = ShapesDataset()
    dataset.load_shapes(0, SIZE, SIZE)
    shapes = [
        {"shape": "rectangle", "color": (255, 0, 0), "center": (20, 20), "size": (5, 5)},
        # Wholly inside the next rectangle, drawn before it: hidden.
        {"shape": "ellipse", "color": (0, 255, 0), "center": (26, 26), "size": (2, 2),
         "angle": 0.0},
        {"shape": "rectangle", "color": (0, 0, 255), "center": (25, 25), "size": (5, 5)},
        {"shape": "ellipse", "color": (255, 255, 0), "center": (50, 50), "size": (6, 4),
         "angle": 30.0},
    ]
    dataset.add_image("shapes", image_id=0, path=None, height=SIZE, width=SIZE,
                      bg_color=(0, 0, 0), shapes=shapes, noise_seed=0)
    dataset.prepare()
    masks, class_ids = dataset.load_mask(0)
    assert class_ids.tolist() == [2, 2, 1]
    # Rectangles of 10x10 pixels overlapping in a 5x5 corner: the first keeps 100 - 25.
    assert masks[..., 0].sum() == 75
    assert not masks[20:25, 20:25, 0].any()
    assert masks[..., 1].sum() == 100
    assert masks[..., 2].sum() > 0
    image = dataset.load_image(0).astype(int)
    assert np.abs(image[26, 26] - np.array([0, 0, 255])).max() <= NOISE_AMPLITUDE


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="count"):
        ShapesDataset().load_shapes(-1, SIZE, SIZE)
    with pytest.raises(ValueError, match="height and width"):
        ShapesDataset().load_shapes(2, 8, SIZE)
