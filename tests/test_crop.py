"""Crop IMAGE_RESIZE_MODE: random training crops (around an instance with probability
CROP_INSTANCE_SHARE), boxes and masks at the crop's edges, and whole images at inference."""

import logging

import numpy as np
import pytest
from test_data import Rects
from tiny_config import TinyConfig

import mrcnn.data
from mrcnn.config import ConfigError
from mrcnn.data import (
    DataGenerator,
    choose_crop,
    load_image_gt,
    mold_inputs,
    parse_image_meta,
    resize_image,
    resize_mask,
)
from mrcnn.model import to_original_pixels


class CropConfig(TinyConfig):
    """TinyConfig (C4, stride 16) cropping 32 x 32 windows."""

    IMAGE_RESIZE_MODE = "crop"
    IMAGE_MIN_DIM = 32
    IMAGE_MAX_DIM = 64


class FullMaskCropConfig(CropConfig):
    USE_MINI_MASK = False


class Coded(Rects):
    """Images whose pixels code their position (channel 0: row, 1: column) with rectangles."""

    def load_image(self, image_id):
        h, w = self.image_info[image_id]["shape"]
        rows, cols = np.mgrid[:h, :w]
        return np.stack([rows, cols, np.full((h, w), 7)], axis=-1).astype(np.uint8)
def crop_origin(image: np.ndarray) -> tuple[int, int]:
    """(y, x) of a Coded image's crop, read from its top-left pixel (scale 1 only)."""
    return int(image[0, 0, 0]), int(image[0, 0, 1])


def contains(crop, box) -> bool:
    y, x, h, w = crop
    y1, x1, y2, x2 = box
    return y <= y1 and x <= x1 and y + h >= y2 and x + w >= x2


def fixed_crop(monkeypatch, crop):
    """Make load_image_gt's crop choice return ``crop``."""
    monkeypatch.setattr(mrcnn.data, "choose_crop", lambda *args, **kwargs: crop)


# ----------------------------------------------------------------------------- config
def test_config_crop_mode_shape_and_default_share():
    cfg = CropConfig()
    assert cfg.IMAGE_SHAPE.tolist() == [32, 32, 3]
    assert cfg.CROP_INSTANCE_SHARE == 0.5


def test_config_crop_min_dim_must_fit_the_stride():
    class Bad(CropConfig):
        IMAGE_MIN_DIM = 40

    with pytest.raises(ConfigError, match=r"IMAGE_MIN_DIM.*stride 16"):
        Bad()

    class Square(Bad):
        IMAGE_RESIZE_MODE = "square"

    assert Square().IMAGE_MIN_DIM == 40  # only crop mode crops at IMAGE_MIN_DIM


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_config_crop_share_in_unit_interval(share):
    class Bad(CropConfig):
        CROP_INSTANCE_SHARE = share

    with pytest.raises(ConfigError, match="CROP_INSTANCE_SHARE"):
        Bad()


# ------------------------------------------------------------------------ resize_image
def test_resize_image_crop_window_size_and_position():
    image = Coded([((48, 80), [])]).load_image(0)
    for seed in range(20):
        out, window, scale, padding, crop = resize_image(
            image, min_dim=32, max_dim=64, mode="crop", rng=np.random.default_rng(seed))
        y, x, h, w = crop
        assert (h, w) == (32, 32) and 0 <= y <= 16 and 0 <= x <= 48
        assert out.shape == (32, 32, 3) and scale == 1.0
        np.testing.assert_array_equal(out, image[y:y + 32, x:x + 32])
        assert window == (0, 0, 32, 32)
        assert padding == [(0, 0), (0, 0), (0, 0)]


def test_resize_image_crop_scales_short_side_to_min_dim():
    image = np.zeros((16, 40, 3), np.uint8)
    out, window, scale, _, crop = resize_image(image, min_dim=32, mode="crop",
                                               rng=np.random.default_rng(0))
    assert scale == 2.0 and out.shape == (32, 32, 3)
    assert crop[0] == 0 and 0 <= crop[1] <= 80 - 32 and crop[2:] == (32, 32)


def test_same_seed_same_crop():
    image = np.zeros((200, 300, 3), np.uint8)

    def crop(seed):
        return resize_image(image, min_dim=32, mode="crop", rng=np.random.default_rng(seed))[4]

    assert crop(11) == crop(11)
    assert len({crop(seed) for seed in range(10)}) > 1


def test_resize_image_crop_refuses_a_crop_outside_the_image():
    with pytest.raises(ValueError, match="not a window"):
        resize_image(np.zeros((40, 40, 3)), min_dim=32, mode="crop", crop=(10, 0, 32, 32))


def test_padding_when_the_image_is_smaller_than_the_crop():
    # The scale rule keeps both scaled sides >= min_dim, so only a window chosen for a smaller
    # image is smaller than the crop: choose_crop gives one, resize_image pads it with zeros.
    assert choose_crop((20, 50), 32, np.random.default_rng(0))[::2] == (0, 20)
    image = np.full((20, 50, 3), 9, np.uint8)  # scaled x1.6 to 32 x 80
    mask = np.ones((20, 50, 1), bool)
    out, window, scale, padding, crop = resize_image(image, min_dim=32, mode="crop",
                                                     crop=(0, 5, 20, 32))
    assert scale == pytest.approx(1.6) and crop == (0, 5, 20, 32)
    assert out.shape == (32, 32, 3) and window == (0, 0, 20, 32)
    assert padding == [(0, 12), (0, 0), (0, 0)]
    assert (out[:20] == 9).all() and (out[20:] == 0).all()
    cut = resize_mask(mask, scale, padding, crop)
    assert cut.shape == (32, 32, 1) and cut[:20].all() and not cut[20:].any()


# ------------------------------------------------------------------------- choose_crop
def test_share_zero_places_crops_uniformly():
    rng = np.random.default_rng(0)
    boxes = np.array([[0, 0, 4, 4]])  # ignored with share 0: no pull to the corner
    crops = np.array([choose_crop((96, 64), 32, rng, boxes, 0.0) for _ in range(4000)])
    ys, xs = crops[:, 0], crops[:, 1]
    assert (crops[:, 2:] == 32).all()
    assert ys.min() == 0 and ys.max() == 64 and xs.min() == 0 and xs.max() == 32
    assert abs(ys.mean() - 32) < 1.5 and abs(xs.mean() - 16) < 1.0
    # 65 start rows: each quarter of the range holds about a quarter of the crops.
    quarters = np.histogram(ys, bins=4, range=(0, 65))[0] / len(ys)
    np.testing.assert_allclose(quarters, 0.25, atol=0.04)
    assert np.mean([contains(c, boxes[0]) for c in crops]) < 0.01


def test_share_one_always_contains_a_fitting_instance():
    rng = np.random.default_rng(1)
    boxes = np.array([[10, 10, 20, 30], [150, 100, 170, 125]])
    hits = np.zeros(2, int)
    starts = set()
    for _ in range(500):
        crop = choose_crop((200, 150), 32, rng, boxes, 1.0)
        inside = [contains(crop, box) for box in boxes]
        assert any(inside) and crop[2:] == (32, 32)
        assert 0 <= crop[0] <= 200 - 32 and 0 <= crop[1] <= 150 - 32
        hits += inside
        starts.add(crop[:2])
    assert (hits > 150).all()  # both instances get chosen
    assert len(starts) > 20  # at random positions around them


def test_share_one_window_inside_an_instance_longer_than_the_crop():
    rng = np.random.default_rng(2)
    box = (0, 10, 100, 30)  # 100 rows: longer than the crop; 20 columns: fits
    for _ in range(300):
        y, x, h, w = choose_crop((120, 60), 32, rng, np.array([box]), 1.0)
        assert y >= 0 and y + h <= 100  # rows inside the instance
        assert x <= 10 and x + w >= 30  # columns contain it


def test_share_half_mixes_instance_and_uniform_crops():
    rng = np.random.default_rng(3)
    box = np.array([[300, 300, 304, 304]])
    crops = [choose_crop((512, 512), 32, rng, box, 0.5) for _ in range(2000)]
    share = np.mean([contains(c, box[0]) for c in crops])
    assert 0.45 < share < 0.56  # 0.5 placed on it, plus a rare uniform hit


def test_share_one_ignores_zero_area_boxes():
    rng = np.random.default_rng(4)
    crops = [choose_crop((64, 64), 32, rng, np.zeros((2, 4)), 1.0) for _ in range(200)]
    assert len({c[:2] for c in crops}) > 20  # uniform: nothing to place around


# ----------------------------------------------------------------- load_image_gt edges
def test_instance_touching_the_image_border(monkeypatch):
    ds = Coded([((64, 64), [(1, 50, 54, 64, 64), (2, 0, 0, 10, 12)])])
    fixed_crop(monkeypatch, (32, 32, 32, 32))
    image, meta, class_ids, bbox, mask = load_image_gt(ds, FullMaskCropConfig(), 0)
    assert crop_origin(image) == (32, 32)
    assert class_ids.tolist() == [1]  # the top-left instance lies outside the crop
    assert bbox.tolist() == [[18, 22, 32, 32]]  # ends at the crop's (and image's) edge
    assert mask[:, :, 0].sum() == 14 * 10 and mask[18:, 22:, 0].all()
    fixed_crop(monkeypatch, (0, 0, 32, 32))
    _, _, class_ids, bbox, _ = load_image_gt(ds, FullMaskCropConfig(), 0)
    assert class_ids.tolist() == [2] and bbox.tolist() == [[0, 0, 10, 12]]


def test_instance_cut_in_half_keeps_its_visible_part(monkeypatch):
    ds = Coded([((64, 64), [(1, 20, 10, 44, 30)])])
    fixed_crop(monkeypatch, (32, 0, 32, 32))
    image, meta, class_ids, bbox, mask = load_image_gt(ds, FullMaskCropConfig(), 0)
    assert class_ids.tolist() == [1]
    assert bbox.tolist() == [[0, 10, 12, 30]]  # rows 32..44 of the original
    assert mask.shape == (32, 32, 1) and mask[:, :, 0].sum() == 12 * 20
    # With mini masks the box is the same and the mini mask is full (a rectangle).
    _, _, _, mini_bbox, mini = load_image_gt(ds, CropConfig(), 0)
    assert mini_bbox.tolist() == [[0, 10, 12, 30]] and mini.shape == (28, 28, 1)
    assert mini.all()


def test_instance_outside_the_crop_dropped_without_warning(monkeypatch, caplog):
    ds = Coded([((64, 64), [(1, 0, 0, 8, 8), (2, 40, 40, 50, 50)])])
    fixed_crop(monkeypatch, (32, 32, 32, 32))
    with caplog.at_level(logging.DEBUG, logger="mrcnn.data"):
        _, _, class_ids, bbox, _ = load_image_gt(ds, CropConfig(), 0)
    assert class_ids.tolist() == [2] and bbox.tolist() == [[8, 8, 18, 18]]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(r.levelno == logging.DEBUG and "outside the crop" in r.getMessage()
               for r in caplog.records)


def test_zero_area_masks_still_warned_in_crop_mode(caplog):
    ds = Coded([((64, 64), [(1, 5, 5, 20, 20), (2, 10, 10, 10, 30)])])
    with caplog.at_level(logging.WARNING):
        _, _, class_ids, _, _ = load_image_gt(ds, CropConfig(), 0, rng=np.random.default_rng(0))
    assert "zero-area" in caplog.text and "r:0" in caplog.text
    assert 2 not in class_ids.tolist()


def test_crops_agree_with_the_instances_for_many_seeds():
    """For random crops, every returned box is its rectangle cut by the crop, and every
    rectangle the crop overlaps is returned."""
    rects = [(1, 0, 0, 20, 20), (2, 30, 40, 90, 60), (1, 70, 5, 80, 90)]
    ds = Coded([((96, 100), rects)])
    cfg = FullMaskCropConfig()
    for seed in range(40):
        image, meta, class_ids, bbox, mask = load_image_gt(ds, cfg, 0,
                                                           rng=np.random.default_rng(seed))
        y, x = crop_origin(image)
        expected = []
        for class_id, y1, x1, y2, x2 in rects:
            box = [max(y1, y) - y, max(x1, x) - x, min(y2, y + 32) - y, min(x2, x + 32) - x]
            if box[2] > box[0] and box[3] > box[1]:
                expected.append((class_id, box))
        assert [(c, b) for c, b in zip(class_ids.tolist(), bbox.tolist(), strict=True)] == \
            expected
        assert mask.shape == (32, 32, len(expected))


def test_share_one_crops_always_hold_the_instance():
    ds = Coded([((128, 128), [(1, 90, 20, 110, 36)])])

    class Always(FullMaskCropConfig):
        CROP_INSTANCE_SHARE = 1.0

    class Never(FullMaskCropConfig):
        CROP_INSTANCE_SHARE = 0.0

    for seed in range(30):
        image, _, class_ids, bbox, _ = load_image_gt(ds, Always(), 0,
                                                     rng=np.random.default_rng(seed))
        y, x = crop_origin(image)
        assert class_ids.tolist() == [1]
        assert bbox.tolist() == [[90 - y, 20 - x, 110 - y, 36 - x]]  # whole: it fits
    found = [load_image_gt(ds, Never(), 0, rng=np.random.default_rng(s))[2].size
             for s in range(30)]
    assert 0 in found  # uniform crops miss it


def test_image_meta_window_describes_the_crop():
    ds = Coded([((24, 45), [(1, 4, 4, 12, 12)])])  # scaled x4/3 to 32 x 60
    _, meta, _, _, _ = load_image_gt(ds, CropConfig(), 0, rng=np.random.default_rng(0))
    parsed = parse_image_meta(meta[np.newaxis])
    assert parsed["original_image_shape"][0].tolist() == [24, 45, 3]
    assert parsed["image_shape"][0].tolist() == [32, 32, 3]
    assert parsed["window"][0].tolist() == [0, 0, 32, 32]  # all image content, no padding
    assert parsed["scale"][0] == pytest.approx(32 / 24)


def test_generator_crop_batches_are_reproducible():
    ds = Coded([((64, 64), [(1, 5, 5, 30, 30)]), ((40, 100), [(2, 0, 0, 16, 16)]),
                ((100, 48), [(1, 60, 10, 90, 40), (2, 5, 5, 15, 15)])])
    cfg = CropConfig()
    batch = DataGenerator(ds, cfg, steps=2, seed=3, workers=1)[0]
    assert batch["input_image"].shape == (2, 32, 32, 3)
    boxes = batch["input_gt_boxes"]
    assert (boxes >= 0).all() and (boxes <= 1).all()
    again = DataGenerator(ds, cfg, steps=2, seed=3, workers=1)[0]
    for key in batch:
        np.testing.assert_array_equal(batch[key], again[key])
    other = DataGenerator(ds, cfg, steps=2, seed=4, workers=1)[0]
    assert not np.array_equal(batch["input_image"], other["input_image"])


# --------------------------------------------------------------------------- inference
def test_mold_inputs_crop_mode_whole_image_padded_to_the_stride():
    cfg = CropConfig()
    small = np.full((24, 45, 3), 100, np.uint8)  # x4/3 -> 32 x 60 -> padded to 32 x 64
    molded, metas, windows = mold_inputs([small], cfg)
    assert molded.shape == (1, 32, 64, 3)
    assert windows[0].tolist() == [0, 0, 32, 60]
    assert np.allclose(molded[0, :, :60], 100 - cfg.MEAN_PIXEL)
    assert np.allclose(molded[0, :, 60:], -cfg.MEAN_PIXEL)
    large = np.full((40, 70, 3), 50, np.uint8)  # scale 1 -> padded to 48 x 80
    molded, metas, windows = mold_inputs([large], cfg)
    assert molded.shape == (1, 48, 80, 3) and windows[0].tolist() == [0, 0, 40, 70]
    assert np.allclose(molded[0, :40, :70], 50 - cfg.MEAN_PIXEL)  # padding bottom/right only
    assert np.allclose(molded[0, 40:], -cfg.MEAN_PIXEL)
    assert np.allclose(molded[0, :, 70:], -cfg.MEAN_PIXEL)
    assert parse_image_meta(metas)["scale"][0] == 1.0


def test_mold_inputs_crop_mode_batches_images_of_different_sizes():
    cfg = CropConfig()
    images = [np.full((24, 45, 3), 100, np.uint8), np.full((40, 70, 3), 50, np.uint8)]
    molded, metas, windows = mold_inputs(images, cfg)
    assert molded.shape == (2, 48, 80, 3)
    assert windows.tolist() == [[0, 0, 32, 60], [0, 0, 40, 70]]
    parsed = parse_image_meta(metas)
    assert parsed["image_shape"].tolist() == [[48, 80, 3], [48, 80, 3]]
    assert parsed["window"].tolist() == windows.tolist()
    assert np.allclose(molded[0, 32:, :], -cfg.MEAN_PIXEL)
    assert np.allclose(molded[0, :32, :60], 100 - cfg.MEAN_PIXEL)


def test_crop_mode_boxes_map_back_to_original_pixels_as_in_square_mode():
    class Square(TinyConfig):
        IMAGE_MIN_DIM = 32
        IMAGE_MAX_DIM = 64

    image = np.zeros((24, 45, 3), np.uint8)  # both modes scale x4/3 to 32 x 60
    # Boxes in the scaled image: (6, 9, 18, 30), one on the right edge, one into the padding.
    scaled = np.array([[8, 12, 24, 40], [0, 40, 32, 60], [16, 48, 32, 62]], np.float64)
    expected = [[6, 9, 18, 30], [0, 30, 24, 45], [12, 36, 24, 45]]
    for cfg, shift in ((CropConfig(), (0, 0)), (Square(), (16, 2))):
        molded, _, windows = mold_inputs([image], cfg)
        h, w = molded.shape[1:3]
        assert windows[0].tolist() == [shift[0], shift[1], shift[0] + 32, shift[1] + 60]
        normalised = (scaled + np.array([*shift, *shift])) / np.array([h, w, h, w])
        back = to_original_pixels(normalised, (h, w), windows[0], image.shape)
        assert back.tolist() == expected, type(cfg).__name__
