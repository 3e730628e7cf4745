"""Input pipeline: image and mask resizing, mini masks, image meta, and training batches.

Batches are built in numpy (loading, augmentation, RPN targets) by ``keras.utils.PyDataset``
workers, so several images are prepared in parallel while the model trains on the last batch.
Each item's randomness comes from a generator seeded by (seed, epoch, batch index), so a batch
is the same whichever worker builds it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import skimage.transform

from mrcnn.anchors import get_anchors
from mrcnn.augmentation import apply_augmentation
from mrcnn.box_ops import denorm_boxes, extract_bboxes, norm_boxes
from mrcnn.image_meta import FIELDS as IMAGE_META_FIELDS
from mrcnn.image_meta import compose_image_meta, parse_image_meta  # noqa: F401  (re-exported)
from mrcnn.resample import linear_taps, ragged_ranges
from mrcnn.targets import build_rpn_targets

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------- resizing
@dataclass(frozen=True)
class ResizeInfo:
    """How an original image maps onto the model input: scale, then pad (and crop)."""

    window: tuple[int, int, int, int]  # (y1, x1, y2, x2) of the image inside the padding
    scale: float
    padding: tuple[tuple[int, int], ...]
    crop: tuple[int, int, int, int] | None = None


def resize_scale(image_shape, min_dim: int | None = None, max_dim: int | None = None,
                 min_scale: float | None = None, mode: str = "square") -> float:
    """The factor resize_image scales an image of image_shape by: the short side at least
    min_dim (never shrinking), at least min_scale, and in "square" mode the long side at
    most max_dim. "crop" mode ignores max_dim: the crop, not the image, has a fixed size."""
    h, w = (int(v) for v in image_shape[:2])
    if mode == "none":
        return 1.0
    scale = max(1.0, min_dim / min(h, w)) if min_dim else 1.0
    if min_scale and scale < min_scale:
        scale = min_scale
    if max_dim and mode == "square" and round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)
    return scale


def _scale_image(image: np.ndarray, scale: float) -> np.ndarray:
    """Bilinear resize by scale (shape rounded), keeping the dtype and the value range."""
    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    new_shape = (round(h * scale), round(w * scale))
    return skimage.transform.resize(image, new_shape + image.shape[2:], order=1,
                                    mode="constant", preserve_range=True,
                                    anti_aliasing=False).astype(image.dtype)


def choose_crop(image_shape, size: int, rng: np.random.Generator,
                boxes: np.ndarray | None = None, instance_share: float = 0.0
                ) -> tuple[int, int, int, int]:
    """A size x size training window (y, x, h, w) of an image of image_shape (h or w less than
    size where the image is smaller; resize_image pads the rest).

    With probability instance_share (and when ``boxes`` [N, 4], y2/x2 exclusive, holds one
    of positive area) the window is placed around a randomly chosen box: uniformly among the
    positions that contain it, or, along an axis where the box is longer than the window,
    that lie inside it. Otherwise it is uniformly random, so background crops still occur.
    """
    height, width = (int(v) for v in image_shape[:2])
    ch, cw = min(int(size), height), min(int(size), width)
    boxes = np.zeros((0, 4)) if boxes is None else np.asarray(boxes).reshape(-1, 4)
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    if len(boxes) and rng.random() < instance_share:
        y1, x1, y2, x2 = boxes[rng.integers(len(boxes))]
        return (_start_around(y1, y2, ch, height, rng), _start_around(x1, x2, cw, width, rng),
                ch, cw)
    return int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1)), ch, cw


def _start_around(lo: float, hi: float, size: int, limit: int,
                  rng: np.random.Generator) -> int:
    """A window start along one axis: the window [start, start + size) covers [lo, hi) when
    it fits, else lies inside it; always inside [0, limit)."""
    lo, hi = int(np.clip(lo, 0, limit)), int(np.clip(hi, 0, limit))
    first, last = sorted((lo, hi - size))
    first, last = max(first, 0), min(last, limit - size)
    return int(rng.integers(first, last + 1))


def _checked_crop(crop, image_shape, size: int) -> tuple[int, int, int, int]:
    """crop as ints, refused (ValueError) unless it lies in the image and fits size x size."""
    y, x, h, w = (int(v) for v in crop)
    if y < 0 or x < 0 or not 0 < h <= size or not 0 < w <= size or (
            y + h > image_shape[0] or x + w > image_shape[1]):
        raise ValueError(f"resize_image: crop {tuple(crop)} (y, x, h, w) is not a window of at "
                         f"most {size} x {size} inside the scaled image {tuple(image_shape)}")
    return y, x, h, w


def _crop_padding(crop: tuple[int, int, int, int], size: int) -> list[tuple[int, int]]:
    """Bottom/right padding that brings a crop up to size x size."""
    return [(0, size - crop[2]), (0, size - crop[3]), (0, 0)]


def _apply_crop(array: np.ndarray, crop: tuple[int, int, int, int], padding) -> np.ndarray:
    """Cut the crop (y, x, h, w) out of array [H, W, ...], then pad it with zeros."""
    y, x, h, w = crop
    return np.pad(array[y:y + h, x:x + w], padding[: array.ndim], mode="constant",
                  constant_values=0)


def resize_image(image: np.ndarray, min_dim: int | None = None, max_dim: int | None = None,
                 min_scale: float | None = None, mode: str = "square",
                 rng: np.random.Generator | None = None,
                 crop: tuple[int, int, int, int] | None = None
                 ) -> tuple[np.ndarray, tuple, float, list, Any]:
    """Resize keeping the aspect ratio, then pad (or crop). Matterport's signature and return
    values: (image, window, scale, padding, crop).

    ``square``: scale so the short side is at least min_dim and the long side at most
    max_dim, then pad to max_dim x max_dim. ``pad64``: scale as square, pad each side to a
    multiple of 64. ``none``: unchanged. ``crop`` (training): scale so the short side is at
    least min_dim, then take a min_dim x min_dim window, ``crop`` = (y, x, h, w) in the scaled
    image: the one given, else a uniformly random one drawn from ``rng``. The window is
    (0, 0, h, w); where the scaled image is smaller than min_dim (only a given crop can be,
    the scale rule keeps both sides >= min_dim) the rest is zero padding at the bottom/right.
    Inference in crop mode uses the whole image: see ``resize_to_stride``.
    """
    h, w = image.shape[:2]
    if mode == "none":
        return image, (0, 0, h, w), 1.0, [(0, 0), (0, 0), (0, 0)], None
    if mode not in ("square", "pad64", "crop"):
        raise ValueError(f"resize_image: unknown mode {mode!r}")
    if mode == "crop" and not min_dim:
        raise ValueError("resize_image: crop mode needs min_dim (the crop size)")
    scale = resize_scale(image.shape, min_dim, max_dim, min_scale, mode)
    image = _scale_image(image, scale)
    h, w = image.shape[:2]
    if mode == "crop":
        if crop is None:
            crop = choose_crop((h, w), min_dim, rng if rng is not None else
                               np.random.default_rng())
        crop = _checked_crop(crop, (h, w), min_dim)
        padding = _crop_padding(crop, min_dim)
        return _apply_crop(image, crop, padding), (0, 0, crop[2], crop[3]), scale, padding, crop
    if mode == "square":
        top = (max_dim - h) // 2
        left = (max_dim - w) // 2
        padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
    else:
        ph, pw = (-h) % 64, (-w) % 64
        padding = [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)]
    image = np.pad(image, padding[: image.ndim], mode="constant", constant_values=0)
    window = (padding[0][0], padding[1][0], padding[0][0] + h, padding[1][0] + w)
    return image, window, scale, padding, None


def resize_to_stride(image: np.ndarray, min_dim: int | None, min_scale: float | None,
                     stride: int) -> tuple[np.ndarray, tuple, float, list]:
    """Crop mode at inference: the whole image, scaled as for training (objects keep their
    training size), zero-padded at the bottom/right to a multiple of stride. Returns (image,
    window, scale, padding); the window is (0, 0, h, w) of the scaled image."""
    scale = resize_scale(image.shape, min_dim, None, min_scale, "crop")
    image = _scale_image(image, scale)
    h, w = image.shape[:2]
    padding = [(0, (-h) % stride), (0, (-w) % stride), (0, 0)]
    image = np.pad(image, padding[: image.ndim], mode="constant", constant_values=0)
    return image, (0, 0, h, w), scale, padding


def resize_mask(mask: np.ndarray, scale: float, padding, crop=None) -> np.ndarray:
    """Resize, crop (y, x, h, w) and pad [H, W, N] masks exactly as resize_image did the
    image."""
    mask = mask.astype(bool)
    if scale != 1.0 and mask.shape[-1] > 0:
        new_shape = (round(mask.shape[0] * scale), round(mask.shape[1] * scale))
        mask = skimage.transform.resize(mask.astype(np.float32), new_shape + (mask.shape[2],),
                                        order=0, mode="constant", preserve_range=True,
                                        anti_aliasing=False) >= 0.5
    elif scale != 1.0:
        mask = np.zeros((round(mask.shape[0] * scale), round(mask.shape[1] * scale), 0), bool)
    if crop is not None:
        return _apply_crop(mask, tuple(int(v) for v in crop), padding)
    return np.pad(mask, padding, mode="constant", constant_values=False)


def minimize_mask(bbox: np.ndarray, mask: np.ndarray, mini_shape) -> np.ndarray:
    """Crop each mask to its box and resize it to mini_shape: [h, w, N] bool."""
    mini = np.zeros(tuple(mini_shape) + (mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = bbox[i][:4]
        crop = mask[y1:y2, x1:x2, i].astype(np.float32)
        if crop.size == 0:
            continue
        mini[:, :, i] = skimage.transform.resize(crop, mini_shape, order=1, mode="constant",
                                                 anti_aliasing=False) >= 0.5
    return mini


def expand_mask(bbox: np.ndarray, mini_mask: np.ndarray, image_shape) -> np.ndarray:
    """Inverse of minimize_mask: paste each mini mask back into a full-size [H, W, N] mask."""
    mask = np.zeros(tuple(image_shape[:2]) + (mini_mask.shape[-1],), dtype=bool)
    for i in range(mini_mask.shape[-1]):
        y1, x1, y2, x2 = bbox[i][:4]
        if y2 <= y1 or x2 <= x1:
            continue
        m = skimage.transform.resize(mini_mask[:, :, i].astype(np.float32), (y2 - y1, x2 - x1),
                                     order=1, mode="constant", anti_aliasing=False)
        mask[y1:y2, x1:x2, i] = m >= 0.5
    return mask


# Pixels ``unmold_mask`` pastes at a time (its temporaries: about 100 bytes a pixel).
_PASTE_PIXELS_PER_GROUP = 1 << 20


def unmold_mask(mask: np.ndarray, bbox, image_shape, threshold: float = 0.5) -> np.ndarray:
    """Paste predicted float masks into their boxes of a full image: a [h, w] mask and its
    box (y1, x1, y2, x2) give [H, W] bool; masks [N, h, w] and boxes [N, 4] give [H, W, N].

    All masks at once, without a loop over boxes or pixels (``detect`` pastes up to
    DETECTION_MAX_INSTANCES an image), computing only the box pixels inside the image: each
    mask resized to its box as ``skimage.transform.resize(order=1, mode="constant",
    anti_aliasing=False)`` does (``linear_taps``), clipped to the mask's range as skimage
    clips, then ``>= threshold``. Boxes are taken in groups of about a million pixels, which
    bounds the temporaries (about 100 bytes a pixel) when boxes are large.
    """
    single = np.ndim(mask) == 2
    masks = np.asarray(mask, dtype=np.float32)
    masks = masks[np.newaxis] if single else masks
    boxes = np.asarray(bbox).reshape(-1, 4).astype(np.int64)
    height, width = (int(v) for v in image_shape[:2])
    mask_h, mask_w = masks.shape[1:]
    full = np.zeros((height, width, len(boxes)), dtype=bool)
    y1, x1, y2, x2 = boxes.T
    top, left = np.maximum(y1, 0), np.maximum(x1, 0)
    rows, cols = np.minimum(y2, height) - top, np.minimum(x2, width) - left
    pasted = np.flatnonzero((y2 > y1) & (x2 > x1) & (rows > 0) & (cols > 0))
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1))).reshape(-1)  # index -1 and h: zero
    low, high = masks.min(axis=(1, 2)), masks.max(axis=(1, 2))
    groups = 1 + int((rows * cols)[pasted].sum()) // _PASTE_PIXELS_PER_GROUP
    for group in np.array_split(pasted, groups):
        # Taps of every row and column of the group's boxes, counted from the unclipped box.
        row_of, row_pos = ragged_ranges(rows[group])
        col_of, col_pos = ragged_ranges(cols[group])
        row_box, col_box = group[row_of], group[col_of]
        row_taps = linear_taps(row_pos + (top - y1)[row_box], mask_h / (y2 - y1)[row_box],
                               mask_h, mirror=False)
        col_taps = linear_taps(col_pos + (left - x1)[col_box], mask_w / (x2 - x1)[col_box],
                               mask_w, mirror=False)
        # Every pixel of the group's boxes: its box, and its row and column among the taps.
        owner, local = ragged_ranges(rows[group] * cols[group])
        det = group[owner]
        dy, dx = np.divmod(local, cols[det])
        row = (np.cumsum(rows[group]) - rows[group])[owner] + dy
        col = (np.cumsum(cols[group]) - cols[group])[owner] + dx
        base = det * (mask_h + 2) * (mask_w + 2)
        value = np.zeros(len(det), dtype=np.float64)
        for r, wr in ((row_taps[0], row_taps[2]), (row_taps[1], row_taps[3])):
            for c, wc in ((col_taps[0], col_taps[2]), (col_taps[1], col_taps[3])):
                source = padded[base + (r[row] + 1) * (mask_w + 2) + c[col] + 1]
                value += (source * wr[row]) * wc[col]
        inside = np.clip(value.astype(np.float32), low[det], high[det]) >= threshold
        full[top[det] + dy, left[det] + dx, det] = inside
    return full[..., 0] if single else full


def mold_image(images: np.ndarray, config) -> np.ndarray:
    """What the network sees: float32, MEAN_PIXEL subtracted."""
    return images.astype(np.float32) - config.MEAN_PIXEL


def unmold_image(normalized_images: np.ndarray, config) -> np.ndarray:
    return (normalized_images + config.MEAN_PIXEL).astype(np.uint8)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Give an image the configured channel count (gray <-> RGB)."""
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if image.shape[-1] == channels:
        return image
    if channels == 1:
        return image.mean(axis=-1, keepdims=True).astype(image.dtype)
    if image.shape[-1] == 1:
        return np.repeat(image, channels, axis=-1)
    raise ValueError(f"cannot convert an image with {image.shape[-1]} channels to {channels}")


def mold_inputs(images: list[np.ndarray], config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize, pad and normalise images for the network: (molded, image_metas, windows).

    In crop mode each image is whole (``resize_to_stride``); images of different sizes are
    padded further at the bottom/right to the batch's largest shape, which leaves their
    windows, and so the mapping back to original pixels, unchanged.
    """
    resized_images, metas, windows = [], [], []
    for index, image in enumerate(images):
        check_finite_image(np.asarray(image), f"detect input #{index}", stage="given")
        image = to_channels(image, config.IMAGE_CHANNEL_COUNT)
        if config.IMAGE_RESIZE_MODE == "crop":
            resized, window, scale, _ = resize_to_stride(
                image, config.IMAGE_MIN_DIM, config.IMAGE_MIN_SCALE,
                max(config.BACKBONE_STRIDES))
        else:
            resized, window, scale, _, _ = resize_image(
                image, min_dim=config.IMAGE_MIN_DIM, max_dim=config.IMAGE_MAX_DIM,
                min_scale=config.IMAGE_MIN_SCALE, mode=config.IMAGE_RESIZE_MODE)
        resized_images.append(resized)
        metas.append(compose_image_meta(0, image.shape, resized.shape, window, scale,
                                        np.zeros(config.NUM_CLASSES, np.int32)))
        windows.append(window)
    if config.IMAGE_RESIZE_MODE == "crop":
        resized_images, metas = _pad_to_common_shape(resized_images, metas)
    molded = [mold_image(image, config) for image in resized_images]
    if len({m.shape for m in molded}) != 1:
        raise ValueError("mold_inputs: images resize to different shapes; use "
                         "IMAGE_RESIZE_MODE='square' or detect one image size at a time")
    return np.stack(molded), np.stack(metas), np.array(windows)


def _pad_to_common_shape(images: list[np.ndarray], metas: list[np.ndarray]
                         ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Zero-pad resized images at the bottom/right to the largest height and width among them
    (the same zeros resize_to_stride pads with) and record the padded shape in their
    image_meta."""
    height = max(m.shape[0] for m in images)
    width = max(m.shape[1] for m in images)
    out_images, out_metas = [], []
    for image, meta in zip(images, metas, strict=True):
        pad = [(0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0)]
        out_images.append(np.pad(image, pad, mode="constant", constant_values=0))
        meta = meta.copy()
        meta[IMAGE_META_FIELDS["image_shape"]][:2] = (height, width)  # a view: writes meta
        out_metas.append(meta)
    return out_images, out_metas


# ------------------------------------------------------------------------- ground truth
# How many other images build_batch tries in place of one with non-finite pixels.
MAX_IMAGE_SUBSTITUTES = 10


class NonFiniteImageError(ValueError):
    """An image holds NaN or inf pixel values (the message names it)."""


def check_finite_image(image: np.ndarray, reference: str, stage: str = "loaded") -> None:
    """Raise NonFiniteImageError naming the image when any pixel is NaN or inf: a single such
    value turns every loss and then every weight into NaN."""
    if image.dtype.kind not in "fc":
        return
    bad = int(np.count_nonzero(~np.isfinite(image)))
    if bad:
        raise NonFiniteImageError(f"{reference}: image {stage} with {bad} non-finite pixel "
                                  f"value(s) (NaN or inf) of {image.size}")


def _check_class_ids(class_ids: np.ndarray, config, reference: str) -> None:
    """Instance class ids must name a foreground class (negative: a crowd region)."""
    bad = (class_ids == 0) | (np.abs(class_ids) >= config.NUM_CLASSES)
    if bad.any():
        found = sorted(set(class_ids[bad].tolist()))
        raise ValueError(f"{reference}: instance class id(s) {found} "
                         f"outside 1..{config.NUM_CLASSES - 1} (NUM_CLASSES "
                         f"{config.NUM_CLASSES}; 0 is the background)")


def _drop_instances(keep: np.ndarray, why: str, reference: str, mask, class_ids, *rest,
                    level: int = logging.WARNING):
    """Keep the instances ``keep`` marks, logging (a warning by default) the others with the
    image's name."""
    if keep.all():
        return (mask, class_ids, *rest)
    logger.log(level, "%s: dropped %d %s", reference, int((~keep).sum()), why)
    return (mask[:, :, keep], class_ids[keep], *(r[keep] for r in rest))


def load_image_gt(dataset, config, image_id: int, augmentation: Callable | None = None,
                  rng: np.random.Generator | None = None):
    """Load one image with its instances, resized for the model.

    Returns (image, image_meta, class_ids [N], bbox [N, 4] pixel, mask [H, W, N] or mini
    masks [h, w, N]). An instance whose training mask would be empty is dropped with a warning
    naming the image: a mask with no pixel left after resizing or augmentation (zero area), or
    a degenerate one (scattered pixels) that vanishes at MINI_MASK_SHAPE. Every instance
    returned has a box of positive area and a non-empty mask. An image without instances is
    kept (it teaches the background). Raises NonFiniteImageError when the image holds NaN or
    inf (``build_batch`` skips such images), ValueError for class ids outside the classes.

    In crop mode the image is a random IMAGE_MIN_DIM crop drawn from ``rng`` (see
    ``_training_crop``); instances the crop misses are dropped without a warning.
    """
    rng = rng if rng is not None else np.random.default_rng()
    reference = dataset.image_reference(image_id)
    image = to_channels(dataset.load_image(image_id), config.IMAGE_CHANNEL_COUNT)
    check_finite_image(image, reference)
    mask, class_ids = dataset.load_mask(image_id)
    if mask.size == 0 or mask.shape[:2] != image.shape[:2]:
        if mask.shape[-1] > 0:
            raise ValueError(f"{dataset.image_reference(image_id)}: mask shape {mask.shape[:2]} "
                             f"differs from image shape {image.shape[:2]}")
        mask = np.zeros(image.shape[:2] + (0,), dtype=bool)
    class_ids = np.asarray(class_ids, dtype=np.int32).reshape(-1)
    if class_ids.size != mask.shape[-1]:
        raise ValueError(f"{dataset.image_reference(image_id)}: {mask.shape[-1]} masks but "
                         f"{class_ids.size} class ids")
    _check_class_ids(class_ids, config, reference)
    original_shape = image.shape
    if config.IMAGE_RESIZE_MODE == "crop":
        image, window, scale, mask, class_ids = _training_crop(image, mask, class_ids, config,
                                                               rng, reference)
    else:
        image, window, scale, padding, crop = resize_image(
            image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
            max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
        mask = resize_mask(mask, scale, padding, crop)
        mask, class_ids = _drop_instances(mask.any(axis=(0, 1)), "zero-area mask(s)",
                                          reference, mask, class_ids)
    if augmentation is not None:
        image, mask = apply_augmentation(augmentation, image, mask, rng)
        check_finite_image(image, reference, stage="augmented")
        # A rotation, zoom or crop may move an instance out of the image: by design, not a
        # fault of the data, so not a warning.
        mask, class_ids = _drop_instances(mask.any(axis=(0, 1)), "instance(s) moved out of "
                                          "the image by augmentation", reference, mask,
                                          class_ids, level=logging.DEBUG)
    bbox = extract_bboxes(mask)
    active_class_ids = np.zeros(dataset.num_classes, dtype=np.int32)
    source = dataset.image_info[image_id]["source"]
    active_class_ids[dataset.source_class_ids.get(source, list(range(dataset.num_classes)))] = 1
    if config.USE_MINI_MASK:
        mask = minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)
        mask, class_ids, bbox = _drop_instances(
            mask.any(axis=(0, 1)), f"degenerate mask(s) that vanish at MINI_MASK_SHAPE "
            f"{tuple(config.MINI_MASK_SHAPE)}", reference, mask, class_ids, bbox)
    meta = compose_image_meta(image_id, original_shape, image.shape, window, scale,
                              active_class_ids)
    return image, meta, class_ids, bbox, mask


def _training_crop(image: np.ndarray, mask: np.ndarray, class_ids: np.ndarray, config,
                   rng: np.random.Generator, reference: str):
    """Crop mode's training resize: scale image and masks, choose the crop from ``rng``
    (around an instance with probability CROP_INSTANCE_SHARE), cut both.

    Returns (image, window, scale, mask, class_ids). Instances that resizing empties are
    dropped with a warning; those the crop misses only at DEBUG level, since most crops miss
    some instances by design. A cut instance keeps its visible part.
    """
    size = int(config.IMAGE_MIN_DIM)
    scale = resize_scale(image.shape, size, None, config.IMAGE_MIN_SCALE, "crop")
    mask = resize_mask(mask, scale, [(0, 0), (0, 0), (0, 0)])
    mask, class_ids = _drop_instances(mask.any(axis=(0, 1)), "zero-area mask(s)", reference,
                                      mask, class_ids)
    crop = choose_crop(mask.shape[:2], size, rng, extract_bboxes(mask),
                       config.CROP_INSTANCE_SHARE)
    image, window, scale, padding, crop = resize_image(
        image, min_dim=size, min_scale=config.IMAGE_MIN_SCALE, mode="crop", crop=crop)
    mask = resize_mask(mask, 1.0, padding, crop)
    mask, class_ids = _drop_instances(mask.any(axis=(0, 1)), f"instance(s) outside the crop "
                                      f"{crop} (y, x, h, w)", reference, mask, class_ids,
                                      level=logging.DEBUG)
    return image, window, scale, mask, class_ids


# ------------------------------------------------------------------------------- batches
class DataGenerator(keras.utils.PyDataset):
    """Training batches for ``MaskRCNN.train``: a dict of the model's named inputs.

    ``sampler`` (optional) chooses which images an epoch sees (e.g. class-balanced sampling);
    it must offer ``epoch_indices(n, epoch)`` returning dataset image indices. Images with NaN
    or inf pixels are replaced by others, with a warning (see ``build_batch``).
    """

    def __init__(self, dataset, config, shuffle: bool = True, augmentation=None,
                 steps: int | None = None, sampler=None, seed: int = 0,
                 workers: int | None = None, use_multiprocessing: bool = False,
                 max_queue_size: int = 10, initial_epoch: int = 0) -> None:
        workers = config.DATA_WORKERS if workers is None else workers
        super().__init__(workers=max(1, workers), use_multiprocessing=use_multiprocessing,
                         max_queue_size=max_queue_size)
        self.dataset = dataset
        self.config = config
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.sampler = sampler
        self.seed = seed
        self.batch_size = config.BATCH_SIZE
        n_images = len(dataset.image_ids)
        if n_images == 0:
            raise ValueError("DataGenerator: the dataset has no images (did you call prepare()?)")
        self.steps = steps or math.ceil(n_images / self.batch_size)
        # The epoch to order from; a resumed run starts where it stopped, so its batches are
        # those an uninterrupted run would have seen.
        self.epoch = int(initial_epoch)
        shape = tuple(int(v) for v in config.IMAGE_SHAPE[:2])
        self.anchors_px = denorm_boxes(get_anchors(config, shape), shape)
        self._order = self._epoch_order(self.epoch)

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._epoch_order(self.epoch)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        needed = self.steps * self.batch_size
        if self.sampler is not None:
            return np.asarray(self.sampler.epoch_indices(needed, epoch=epoch))
        ids = np.asarray(self.dataset.image_ids)
        rng = np.random.default_rng([self.seed, epoch])
        reps = math.ceil(needed / len(ids))
        parts = [rng.permutation(ids) if self.shuffle else ids for _ in range(reps)]
        return np.concatenate(parts)[:needed]

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        ids = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return build_batch(self.dataset, self.config, ids, self.anchors_px, rng,
                           self.augmentation)


def _load_finite_gt(dataset, config, image_id: int, augmentation, rng: np.random.Generator):
    """load_image_gt, but an image with NaN or inf pixels is skipped with a warning and a
    randomly drawn other image takes its place (up to MAX_IMAGE_SUBSTITUTES tries), so the
    model is never fed a non-finite value."""
    tried = {int(image_id)}
    while True:
        try:
            return load_image_gt(dataset, config, image_id, augmentation, rng)
        except NonFiniteImageError as error:
            others = np.setdiff1d(np.asarray(dataset.image_ids), sorted(tried))
            if len(tried) > MAX_IMAGE_SUBSTITUTES or others.size == 0:
                raise NonFiniteImageError(f"{error}; the {len(tried)} image(s) tried all hold "
                                          f"non-finite values, giving up") from error
            image_id = int(rng.choice(others))
            tried.add(image_id)
            logger.warning("%s; skipped, %s takes its place in the batch", error,
                           dataset.image_reference(image_id))


def build_batch(dataset, config, image_ids, anchors_px: np.ndarray, rng: np.random.Generator,
                augmentation=None) -> dict[str, np.ndarray]:
    """Load, augment and pack the images of one batch with their RPN and head targets
    (an image with NaN or inf pixels is replaced by another, with a warning)."""
    cfg = config
    b = len(image_ids)
    shape = tuple(int(v) for v in cfg.IMAGE_SHAPE[:2])
    mask_shape = tuple(cfg.MINI_MASK_SHAPE) if cfg.USE_MINI_MASK else shape
    batch = {
        "input_image": np.zeros((b, *shape, cfg.IMAGE_CHANNEL_COUNT), np.float32),
        "input_image_meta": np.zeros((b, cfg.IMAGE_META_SIZE), np.float32),
        "input_anchors": np.broadcast_to(norm_boxes(anchors_px, shape),
                                         (b, *anchors_px.shape)).astype(np.float32),
        "input_rpn_match": np.zeros((b, anchors_px.shape[0]), np.int32),
        "input_rpn_bbox": np.zeros((b, cfg.RPN_TRAIN_ANCHORS_PER_IMAGE, 4), np.float32),
        "input_gt_class_ids": np.zeros((b, cfg.MAX_GT_INSTANCES), np.int32),
        "input_gt_boxes": np.zeros((b, cfg.MAX_GT_INSTANCES, 4), np.float32),
        "input_gt_masks": np.zeros((b, *mask_shape, cfg.MAX_GT_INSTANCES), np.uint8),
    }
    for i, image_id in enumerate(image_ids):
        image, meta, class_ids, boxes, masks = _load_finite_gt(dataset, cfg, int(image_id),
                                                               augmentation, rng)
        image_id = int(meta[IMAGE_META_FIELDS["image_id"]][0])
        if image.shape[:2] != shape:
            raise ValueError(f"{dataset.image_reference(int(image_id))}: resized to "
                             f"{image.shape[:2]}, the model expects {shape}; use "
                             f"IMAGE_RESIZE_MODE='square' for batches")
        if class_ids.size > cfg.MAX_GT_INSTANCES:
            logger.warning("%s: %d instances, keeping a random %d (MAX_GT_INSTANCES)",
                           dataset.image_reference(int(image_id)), class_ids.size,
                           cfg.MAX_GT_INSTANCES)
            pick = np.sort(rng.choice(class_ids.size, cfg.MAX_GT_INSTANCES, replace=False))
            class_ids, boxes, masks = class_ids[pick], boxes[pick], masks[:, :, pick]
        rpn_match, rpn_bbox = build_rpn_targets(anchors_px, class_ids, boxes, cfg, rng=rng)
        n = class_ids.size
        batch["input_image"][i] = mold_image(image, cfg)
        batch["input_image_meta"][i] = meta
        batch["input_rpn_match"][i] = rpn_match
        batch["input_rpn_bbox"][i] = rpn_bbox
        batch["input_gt_class_ids"][i, :n] = class_ids
        batch["input_gt_boxes"][i, :n] = norm_boxes(boxes.astype(np.float32), shape)
        batch["input_gt_masks"][i, :, :, :n] = masks
    return batch
