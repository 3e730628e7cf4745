"""Input pipeline: resizing, mini masks, image meta, ground-truth loading and batches."""

import logging

import numpy as np
import pytest
from tiny_config import TinyConfig

from mrcnn.box_ops import extract_bboxes
from mrcnn.data import (
    DataGenerator,
    compose_image_meta,
    expand_mask,
    load_image_gt,
    minimize_mask,
    mold_inputs,
    parse_image_meta,
    resize_image,
    resize_mask,
    unmold_mask,
)
from mrcnn.dataset import Dataset


class Rects(Dataset):
    """Images of a given size with given rectangles (and an empty mask, on request)."""

    def __init__(self, specs):
        super().__init__()
        self.add_class("r", 1, "a")
        self.add_class("r", 2, "b")
        for i, (shape, rects) in enumerate(specs):
            self.add_image("r", i, None, shape=shape, rects=rects)
        self.prepare()

    def load_image(self, image_id):
        h, w = self.image_info[image_id]["shape"]
        image = np.full((h, w, 3), 20, np.uint8)
        for _, y1, x1, y2, x2 in self.image_info[image_id]["rects"]:
            image[y1:y2, x1:x2] = 200
        return image

    def load_mask(self, image_id):
        h, w = self.image_info[image_id]["shape"]
        rects = self.image_info[image_id]["rects"]
        mask = np.zeros((h, w, len(rects)), bool)
        for i, (_, y1, x1, y2, x2) in enumerate(rects):
            mask[y1:y2, x1:x2, i] = True
        return mask, np.array([r[0] for r in rects], np.int32)


def test_resize_square_keeps_aspect_and_pads():
    image = np.ones((30, 60, 3), np.uint8)
    out, window, scale, padding, _ = resize_image(image, min_dim=64, max_dim=64, mode="square")
    assert out.shape == (64, 64, 3)
    assert scale == pytest.approx(64 / 60)
    assert window == (padding[0][0], 0, padding[0][0] + 32, 64)
    assert out[window[0]:window[2], window[1]:window[3]].min() == 1
    assert out.sum() == 32 * 64 * 3


def test_resize_pad64_and_none():
    image = np.zeros((70, 100, 3), np.uint8)
    out, window, scale, _, _ = resize_image(image, mode="pad64")
    assert out.shape[:2] == (128, 128) and scale == 1.0
    assert window[2] - window[0] == 70
    same, *_ = resize_image(image, mode="none")
    assert same is image


def test_resize_mask_follows_image():
    mask = np.zeros((30, 60, 1), bool)
    mask[10:20, 30:40] = True
    _, window, scale, padding, _ = resize_image(np.zeros((30, 60, 3)), 64, 64, mode="square")
    out = resize_mask(mask, scale, padding)
    assert out.shape == (64, 64, 1)
    y1, x1, y2, x2 = extract_bboxes(out)[0]
    assert abs(y1 - (window[0] + 10 * scale)) <= 1 and abs(x2 - 40 * scale) <= 1


def test_mini_mask_round_trip():
    mask = np.zeros((64, 64, 2), bool)
    mask[5:25, 10:40, 0] = True
    mask[30:60, 30:50, 1] = True
    boxes = extract_bboxes(mask)
    mini = minimize_mask(boxes, mask, (28, 28))
    assert mini.shape == (28, 28, 2) and mini.all()
    back = expand_mask(boxes, mini, (64, 64))
    np.testing.assert_array_equal(back, mask)


def test_unmold_mask_pastes_into_box():
    small = np.zeros((28, 28), np.float32)
    small[:, :14] = 1.0
    full = unmold_mask(small, (10, 20, 30, 40), (50, 60))
    assert full.shape == (50, 60)
    assert full[10:30, 20:30].all() and not full[10:30, 31:40].any()
    assert full.sum() == 20 * 10


def test_image_meta_round_trip():
    meta = compose_image_meta(7, (30, 60, 3), (64, 64, 3), (16, 0, 48, 64), 1.5, [1, 1, 0])
    parsed = parse_image_meta(meta[np.newaxis])
    assert parsed["image_id"][0] == 7
    assert parsed["window"][0].tolist() == [16, 0, 48, 64]
    assert parsed["active_class_ids"][0].tolist() == [1, 1, 0]
    assert parsed["scale"][0] == pytest.approx(1.5)


def test_load_image_gt_drops_empty_masks_with_warning(caplog):
    ds = Rects([((64, 64), [(1, 5, 5, 20, 20), (2, 10, 10, 10, 30)])])
    with caplog.at_level(logging.WARNING):
        image, meta, class_ids, bbox, mask = load_image_gt(ds, TinyConfig(), 0)
    assert class_ids.tolist() == [1]
    assert "zero-area" in caplog.text and "r:0" in caplog.text
    assert bbox.tolist() == [[5, 5, 20, 20]]
    assert mask.shape == (28, 28, 1)


def test_instances_moved_out_by_augmentation_are_dropped_without_a_warning(caplog):
    ds = Rects([((64, 64), [(1, 5, 5, 20, 20), (2, 30, 30, 50, 50)])])

    def hide_first(image, masks, rng):  # moves instance 0 out of the image
        masks = masks.copy()
        masks[..., 0] = False
        return image, masks

    with caplog.at_level(logging.DEBUG, logger="mrcnn.data"):
        _, _, class_ids, bbox, _ = load_image_gt(ds, TinyConfig(), 0, augmentation=hide_first)
    assert class_ids.tolist() == [2] and bbox.tolist() == [[30, 30, 50, 50]]
    moved = [r for r in caplog.records if "moved out of the image" in r.getMessage()]
    assert len(moved) == 1 and moved[0].levelno == logging.DEBUG
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_load_image_gt_keeps_images_without_instances():
    ds = Rects([((64, 64), [])])
    image, meta, class_ids, bbox, mask = load_image_gt(ds, TinyConfig(), 0)
    assert image.shape == (64, 64, 3) and class_ids.size == 0 and bbox.shape == (0, 4)


def test_generator_batches_and_targets():
    cfg = TinyConfig()
    ds = Rects([((64, 64), [(1, 5, 5, 30, 30)]), ((64, 64), []),
                ((40, 64), [(2, 0, 0, 16, 16), (1, 20, 20, 40, 40)])])
    gen = DataGenerator(ds, cfg, steps=2, seed=3, workers=1)
    batch = gen[0]
    assert batch["input_image"].shape == (2, 64, 64, 3)
    assert batch["input_gt_masks"].shape == (2, 28, 28, 3)
    assert batch["input_rpn_match"].shape[1] == batch["input_anchors"].shape[1]
    for i in range(2):
        n = int((batch["input_gt_class_ids"][i] > 0).sum())
        boxes = batch["input_gt_boxes"][i]
        assert (boxes[:n] > 0).any(axis=1).all() and not boxes[n:].any()
        assert (boxes[:n] <= 1).all()
        # non-empty ground truth yields at least one positive anchor
        assert ((batch["input_rpn_match"][i] == 1).sum() > 0) == (n > 0)
    again = DataGenerator(ds, cfg, steps=2, seed=3, workers=1)[0]
    for key in batch:
        np.testing.assert_array_equal(batch[key], again[key])


def test_mold_inputs_gray_to_rgb():
    cfg = TinyConfig()
    molded, metas, windows = mold_inputs([np.full((32, 64), 100, np.uint8)], cfg)
    assert molded.shape == (1, 64, 64, 3)
    assert windows[0].tolist() == [16, 0, 48, 64]
    np.testing.assert_allclose(molded[0, 20, 5], 100 - cfg.MEAN_PIXEL, rtol=1e-6)


def test_mold_inputs_refuses_nan_images():
    from mrcnn.data import NonFiniteImageError

    image = np.zeros((32, 32, 3), np.float32)
    image[3, 4, 1] = np.nan
    with pytest.raises(NonFiniteImageError, match="detect input #1"):
        mold_inputs([np.zeros((32, 32, 3), np.float32), image], TinyConfig())


def test_image_meta_layout_reads_the_same_with_numpy_and_in_the_graph():
    import tensorflow as tf

    from mrcnn.image_meta import image_meta_size, parse_image_meta_graph

    metas = np.stack([
        compose_image_meta(7, (30, 60, 3), (64, 64, 3), (16, 0, 48, 64), 1.5, [1, 1, 0]),
        compose_image_meta(9, (64, 32, 1), (64, 64, 1), (0, 16, 64, 48), 0.5, [1, 0, 1]),
    ])
    assert metas.shape[1] == image_meta_size(3) == 15
    numpy_fields = parse_image_meta(metas)
    graph_fields = {k: v.numpy() for k, v in parse_image_meta_graph(tf.constant(metas)).items()}
    assert set(numpy_fields) == set(graph_fields)
    for name, value in numpy_fields.items():
        np.testing.assert_array_equal(graph_fields[name], value.astype(np.float32), err_msg=name)
    np.testing.assert_array_equal(numpy_fields["image_id"], [7, 9])
    np.testing.assert_array_equal(numpy_fields["window"][1], [0, 16, 64, 48])
    np.testing.assert_array_equal(numpy_fields["active_class_ids"][1], [1, 0, 1])
