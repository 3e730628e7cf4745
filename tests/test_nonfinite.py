"""Non-finite values in training: NaN/inf images are refused by name (load_image_gt) and skipped
with a warning in batches, degenerate masks are dropped consistently, and a NaN loss stops the
run naming the batch's images while the last good checkpoint stays the last one."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_config import TinyConfig, TinyShapesConfig

from mrcnn.box_ops import extract_bboxes
from mrcnn.data import (
    DataGenerator,
    NonFiniteImageError,
    expand_mask,
    load_image_gt,
)
from mrcnn.dataset import Dataset
from mrcnn.model import MaskRCNN, NonFiniteLossError
from mrcnn.weights import load_legacy_h5
from samples.shapes.shapes import ShapesDataset


class Painted(Dataset):
    """float32 images with one square each; chosen images get a NaN/inf pixel, and any image can
    be given its own masks and class ids."""

    def __init__(self, count: int, side: int = 64, poison: dict[int, float] | None = None,
                 masks: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        super().__init__()
        self.add_class("p", 1, "a")
        self.add_class("p", 2, "b")
        for i in range(count):
            self.add_image("p", i, f"painted/{i}.png", side=side)
        self.prepare()
        self.poison = poison or {}
        self.masks = masks or {}

    def load_image(self, image_id):
        side = self.image_info[image_id]["side"]
        image = np.full((side, side, 3), 30.0, np.float32)
        image[8:24, 8:24] = 200.0
        if image_id in self.poison:
            image[5, 7, 1] = self.poison[image_id]
        return image

    def load_mask(self, image_id):
        if image_id in self.masks:
            return self.masks[image_id]
        side = self.image_info[image_id]["side"]
        mask = np.zeros((side, side, 1), bool)
        mask[8:24, 8:24, 0] = True
        return mask, np.array([1], np.int32)


# ----------------------------------------------------------------------------- NaN images
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_load_image_gt_refuses_a_non_finite_image_by_name(value):
    ds = Painted(3, poison={1: value})
    with pytest.raises(NonFiniteImageError, match=r"painted/1\.png: image loaded with 1 "
                                                  r"non-finite pixel value\(s\) \(NaN or inf\)"):
        load_image_gt(ds, TinyConfig(), 1)
    image, *_ = load_image_gt(ds, TinyConfig(), 0)
    assert np.isfinite(image).all()


def test_an_augmentation_that_makes_nan_is_caught():
    def spoil(image, masks, rng):
        image = image.copy()
        image[0, 0, 0] = np.nan
        return image, masks

    with pytest.raises(NonFiniteImageError, match=r"painted/0\.png: image augmented with 1"):
        load_image_gt(Painted(1), TinyConfig(), 0, augmentation=spoil,
                      rng=np.random.default_rng(0))


def test_batches_skip_non_finite_images_with_a_warning(caplog):
    ds = Painted(6, poison={2: np.nan, 4: np.inf})
    gen = DataGenerator(ds, TinyConfig(), steps=6, seed=1, workers=1)
    seen = []
    with caplog.at_level(logging.WARNING, logger="mrcnn.data"):
        for index in range(len(gen)):
            batch = gen[index]
            for key in ("input_image", "input_gt_boxes", "input_rpn_bbox"):
                assert np.isfinite(batch[key]).all(), key
            seen += batch["input_image_meta"][:, 0].astype(int).tolist()
    assert len(seen) == 12 and not {2, 4} & set(seen)
    assert set(seen) == {0, 1, 3, 5}
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped and all(("painted/2.png" in m) or ("painted/4.png" in m) for m in skipped)
    assert any("painted/2.png" in m for m in skipped)
    assert all("takes its place in the batch" in m for m in skipped)


def test_a_dataset_of_only_non_finite_images_is_refused():
    ds = Painted(2, poison={0: np.nan, 1: np.nan})
    gen = DataGenerator(ds, TinyConfig(), steps=1, workers=1)
    with pytest.raises(NonFiniteImageError, match="the 2 image.s. tried all hold non-finite"):
        gen[0]


def test_class_ids_outside_the_classes_are_refused_by_name():
    mask = np.zeros((64, 64, 2), bool)
    mask[4:20, 4:20, 0] = mask[30:40, 30:40, 1] = True
    ds = Painted(1, masks={0: (mask, np.array([1, 3], np.int32))})
    with pytest.raises(ValueError, match=r"painted/0\.png: instance class id\(s\) \[3\] outside "
                                         r"1\.\.2"):
        load_image_gt(ds, TinyConfig(), 0)
    ds = Painted(1, masks={0: (mask, np.array([0, 2], np.int32))})
    with pytest.raises(ValueError, match=r"class id\(s\) \[0\]"):
        load_image_gt(ds, TinyConfig(), 0)


# ------------------------------------------------------------------------ degenerate masks
def degenerate_masks(side: int) -> dict[str, np.ndarray]:
    """[side, side] masks of the kinds that may vanish: lines one pixel wide, single pixels,
    scattered pixels."""
    cases = {}
    for pos in (10, 11):
        line = np.zeros((side, side), bool)
        line[pos, 5:45] = True
        cases[f"row {pos}"] = line
        column = np.zeros((side, side), bool)
        column[5:45, pos] = True
        cases[f"column {pos}"] = column
        dot = np.zeros((side, side), bool)
        dot[pos, pos + 20] = True
        cases[f"pixel {pos}"] = dot
    diagonal = np.zeros((side, side), bool)
    diagonal[np.arange(side), np.arange(side)] = True
    cases["diagonal"] = diagonal
    anti = np.zeros((side, side), bool)
    anti[np.arange(side), side - 1 - np.arange(side)] = True
    cases["anti-diagonal"] = anti
    corners = np.zeros((side, side), bool)
    corners[0, 0] = corners[side - 1, side - 1] = True
    cases["opposite corners"] = corners
    return cases


@pytest.mark.parametrize("side", [32, 64, 128])  # upscaled, kept, downscaled to 64 px
@pytest.mark.parametrize("mini_mask", [True, False])
def test_degenerate_masks_are_kept_with_a_mask_or_dropped_with_a_warning(side, mini_mask,
                                                                          caplog):
    config = TinyConfig()
    config.USE_MINI_MASK = mini_mask
    cases = degenerate_masks(side)
    square = np.zeros((side, side), bool)
    square[side // 4:side // 2, side // 4:side // 2] = True  # a normal instance stays
    for name, degenerate in cases.items():
        masks = np.stack([square, degenerate], axis=-1)
        ds = Painted(1, side=side, masks={0: (masks, np.array([1, 2], np.int32))})
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mrcnn.data"):
            _, _, class_ids, boxes, out = load_image_gt(ds, config, 0)
        dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert class_ids[0] == 1, name
        assert len(class_ids) + len(dropped) == 2, (name, dropped)
        assert all("painted/0.png" in m for m in dropped)
        assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all(), name
        full = expand_mask(boxes, out, (64, 64)) if mini_mask else out
        assert full.any(axis=(0, 1)).all(), name  # every instance kept has mask pixels
        if not mini_mask:
            np.testing.assert_array_equal(extract_bboxes(out), boxes)


def test_scattered_pixels_that_vanish_at_the_mini_mask_size_are_dropped(caplog):
    """Two pixels in opposite corners: non-empty at full size, empty at 28x28 (bilinear
    samples fall between them): the instance would teach an empty mask, so it is dropped."""
    corners = degenerate_masks(64)["opposite corners"]
    ds = Painted(1, masks={0: (corners[..., None], np.array([2], np.int32))})
    with caplog.at_level(logging.WARNING, logger="mrcnn.data"):
        _, _, class_ids, boxes, masks = load_image_gt(ds, TinyConfig(), 0)
    assert class_ids.size == 0 and boxes.shape == (0, 4) and masks.shape == (28, 28, 0)
    assert "painted/0.png: dropped 1 degenerate mask(s) that vanish at MINI_MASK_SHAPE" in (
        caplog.text)


# ---------------------------------------------------------------------------- NaN loss
class NanConfig(TinyShapesConfig):
    NAME = "nan"
    IMAGES_PER_GPU = 2
    STEPS_PER_EPOCH = 1
    DATA_WORKERS = 1
    WEIGHT_DECAY = 0.0


def test_a_nan_loss_stops_the_run_naming_the_images_and_keeps_the_last_checkpoint(
        tmp_path, monkeypatch):
    ds = ShapesDataset()
    ds.load_shapes(2, 64, 64, seed=8)
    ds.prepare()
    model = MaskRCNN("training", NanConfig(), tmp_path)
    model.train(ds, None, learning_rate=0.01, epochs=1, layers="all", verbose=0)
    good = Path(model.find_last())
    assert good.name == "mask_rcnn_nan_0001.h5"

    trainer = model.keras_model
    honest = trainer.compute_losses

    def poisoned(batch, outputs):
        losses = honest(batch, outputs)
        has_image_1 = tf.reduce_any(tf.equal(tf.round(batch["input_image_meta"][:, 0]), 1.0))
        losses["mrcnn_mask_loss"] = tf.where(has_image_1, tf.constant(np.nan, tf.float32),
                                             losses["mrcnn_mask_loss"])
        return losses

    monkeypatch.setattr(trainer, "compute_losses", poisoned)
    with pytest.raises(NonFiniteLossError) as error:
        model.train(ds, None, learning_rate=0.01, epochs=3, layers="all", verbose=0)
    message = str(error.value)
    assert "non-finite loss (loss=nan, mrcnn_mask_loss=nan) at epoch 2, batch 1" in message
    assert "shapes:0 (image id 0)" in message and "shapes:1 (image id 1)" in message
    assert f"the last checkpoint is {good}" in message

    assert model.find_last() == str(good) and model.epoch == 1
    assert sorted(p.name for p in good.parent.glob("*.h5")) == [good.name]
    # the step was not applied: the weights in memory are still the checkpoint's
    # (a fresh optimizer, no weight decay: a zero gradient moves nothing)
    in_memory = [w.numpy() for w in trainer.weights]
    fresh = MaskRCNN("training", NanConfig(), tmp_path)
    load_legacy_h5(fresh.keras_model, good)
    for mine, saved in zip(in_memory, fresh.keras_model.weights, strict=True):
        np.testing.assert_array_equal(mine, saved.numpy(), err_msg=saved.path)
    assert all(np.isfinite(w).all() for w in in_memory)

    def poisoned_gradient(batch, outputs):
        """Finite losses, non-finite gradient: sqrt(|u|) at u = 0 has value 0, slope inf."""
        losses = honest(batch, outputs)
        masks = outputs["mrcnn_mask"]
        kink = tf.reduce_sum(tf.sqrt(tf.abs(masks - tf.stop_gradient(masks))))
        losses["mrcnn_mask_loss"] = losses["mrcnn_mask_loss"] + kink
        return losses

    monkeypatch.setattr(trainer, "compute_losses", poisoned_gradient)
    with pytest.raises(NonFiniteLossError, match=r"non-finite gradient \(the losses were "
                                                 r"finite: loss=\d.*\) at epoch 2, batch 1"):
        model.train(ds, None, learning_rate=0.01, epochs=3, layers="all", verbose=0)
    assert model.find_last() == str(good)
    assert all(np.isfinite(w.numpy()).all() for w in trainer.weights)


def test_checkpoint_callback_never_saves_a_non_finite_epoch(tmp_path, caplog):
    model = MaskRCNN("training", NanConfig(), tmp_path)
    model.compile(0.01, 0.9)
    callback = model_checkpoint_callback(model)
    with caplog.at_level(logging.ERROR, logger="mrcnn.model"):
        callback.on_epoch_end(0, {"loss": float("nan")})
    assert "mean loss nan is not finite; no checkpoint written" in caplog.text
    assert not list(Path(model.log_dir).glob("*.h5")) and model.epoch == 0


def model_checkpoint_callback(model: MaskRCNN) -> keras.callbacks.Callback:
    from mrcnn.model import CheckpointCallback

    callback = CheckpointCallback(model)
    callback.set_model(model.keras_model)
    callback.set_params({"epochs": 1})
    return callback
