"""Generated "shapes" toy data: ellipses and rectangles on a plain background.

Small enough to train Mask R-CNN end to end on a CPU in tests and in the first demo. Each image
is fully described by a few numbers drawn from a seed (stored in ``image_info``) and rendered on
demand, so a dataset of any size costs no disk and is the same on every machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import skimage.draw

from mrcnn.config import Config
from mrcnn.dataset import Dataset

SOURCE = "shapes"
CLASS_NAMES = ("ellipse", "rectangle")

# Every pixel gets independent uniform integer noise in [-NOISE_AMPLITUDE, NOISE_AMPLITUDE].
NOISE_AMPLITUDE = 8
# Colours in one image (background and shapes) differ by at least this much in some channel,
# far more than the noise can blur.
MIN_COLOR_DISTANCE = 64
# Shapes may overlap, but their intersection stays below this fraction of the smaller one
# (which also keeps their IoU below it), so each stays mostly visible.
MAX_OVERLAP = 0.3
MAX_SHAPES = 3
PLACEMENT_ATTEMPTS = 50
MIN_IMAGE_SIDE = 16


# Side of the shapes images of the README example and the learning tests.
SHAPES_IMAGE_SIZE = 128


class ShapesConfig(Config):
    """The paper's single stride-16 feature map (C4) on a tiny backbone, trained from random
    weights in a few CPU minutes (README, "Mask R-CNN in five lines").

    What makes it learn (docs/training.md has the measurements): GroupNorm (a frozen BatchNorm
    is an identity from random weights), Adam with a warm-up and a cosine decay, 128-px images
    (on 64-px images the shapes span less than one stride-16 cell and the ROIs of a shape and
    of its background cannot be told apart), and Matterport's FC head over the 7x7 ROI (the
    paper's mean-pooled head classifies far more slowly from scratch).
    """

    NAME = "shapes"
    NUM_CLASSES = 1 + len(CLASS_NAMES)  # background, ellipse, rectangle

    IMAGES_PER_GPU = 4
    # The README trains 4 epochs: 1500 steps here (measured 0.85 mAP@0.5 after 1000), 1000
    # for the pyramid, each within about 4.5 minutes on 2 CPU cores (docs/training.md).
    STEPS_PER_EPOCH = 375
    VALIDATION_STEPS = 2

    IMAGE_MIN_DIM = SHAPES_IMAGE_SIZE
    IMAGE_MAX_DIM = SHAPES_IMAGE_SIZE
    MEAN_PIXEL = np.array([128.0, 128.0, 128.0])

    BACKBONE = "tiny"
    FEATURE_LAYOUT = "c4"
    HEAD_LAYOUT = "matterport"
    NORM = "group"
    POOL_SIZE = 7
    MASK_POOL_SIZE = 14
    MASK_SHAPE = (28, 28)
    MINI_MASK_SHAPE = (28, 28)
    FPN_CLASSIF_FC_LAYERS_SIZE = 128

    OPTIMIZER = "adam"
    LEARNING_RATE = 0.001
    LR_WARMUP_STEPS = 100
    LR_DECAY = "cosine"

    RPN_ANCHOR_SCALES: tuple[int, ...] = (16, 32, 64)
    RPN_ANCHOR_RATIOS = (0.5, 1, 2)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    PRE_NMS_LIMIT = 256
    POST_NMS_ROIS_TRAINING = 64
    POST_NMS_ROIS_INFERENCE = 32
    TRAIN_ROIS_PER_IMAGE = 32
    # A narrow mask head keeps CPU steps fast; the paper preset uses 256.
    MASK_HEAD_CHANNELS = 32
    MAX_GT_INSTANCES = 4

    DETECTION_MAX_INSTANCES = 8
    DETECTION_MIN_CONFIDENCE = 0.3


class ShapesFPNConfig(ShapesConfig):
    """The same toy task on Matterport's pyramid (P2-P6, one anchor scale a level)."""

    NAME = "shapes_fpn"
    STEPS_PER_EPOCH = 250
    FEATURE_LAYOUT = "fpn"
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 64


# -------------------------------------------------------------------------------- rendering
def shape_pixels(shape: dict[str, Any], height: int, width: int) -> np.ndarray:
    """The pixels a shape description covers, as a bool [height, width] mask.

    Rendering and masks both come from here, so they agree pixel for pixel.
    """
    cy, cx = shape["center"]
    half_h, half_w = shape["size"]
    pixels = np.zeros((height, width), dtype=bool)
    if shape["shape"] == "rectangle":
        pixels[max(cy - half_h, 0):cy + half_h, max(cx - half_w, 0):cx + half_w] = True
    elif shape["shape"] == "ellipse":
        rows, cols = skimage.draw.ellipse(cy, cx, half_h, half_w, shape=(height, width),
                                          rotation=np.deg2rad(shape["angle"]))
        pixels[rows, cols] = True
    else:
        raise ValueError(f"shape description: unknown shape {shape['shape']!r} "
                         f"(expected one of {CLASS_NAMES})")
    return pixels


def render_image(info: dict[str, Any]) -> np.ndarray:
    """Draw a described image: background, shapes in order (later ones on top), noise."""
    height, width = info["height"], info["width"]
    image = np.empty((height, width, 3), dtype=np.int32)
    image[:] = info["bg_color"]
    for shape in info["shapes"]:
        image[shape_pixels(shape, height, width)] = shape["color"]
    noise_rng = np.random.default_rng(info["noise_seed"])
    image += noise_rng.integers(-NOISE_AMPLITUDE, NOISE_AMPLITUDE, size=image.shape,
                                endpoint=True, dtype=np.int32)
    return np.clip(image, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ generation
def _distinct_color(rng: np.random.Generator, taken: list[tuple[int, int, int]]
                    ) -> tuple[int, int, int]:
    """A random colour at least MIN_COLOR_DISTANCE (in some channel) from every taken one."""
    while True:
        color = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if all(np.max(np.abs(np.subtract(color, other))) >= MIN_COLOR_DISTANCE
               for other in taken):
            return color


def _random_shape(rng: np.random.Generator, height: int, width: int,
                  color: tuple[int, int, int]) -> dict[str, Any]:
    """A shape of random class, size and position that fits inside the image with a margin.

    The placement bound uses the larger half-size in both directions, so a rotated ellipse
    fits too.
    """
    side = min(height, width)
    margin = max(2, side // 16)
    smallest, largest = max(3, side // 16), max(4, side // 5)
    name = CLASS_NAMES[int(rng.integers(len(CLASS_NAMES)))]
    half_h, half_w = (int(v) for v in rng.integers(smallest, largest, size=2, endpoint=True))
    reach = max(half_h, half_w)
    cy = int(rng.integers(margin + reach, height - margin - reach, endpoint=True))
    cx = int(rng.integers(margin + reach, width - margin - reach, endpoint=True))
    shape = {"shape": name, "color": color, "center": (cy, cx), "size": (half_h, half_w)}
    if name == "ellipse":
        shape["angle"] = float(rng.uniform(-90.0, 90.0))
    return shape


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller area (an upper bound of the IoU)."""
    smaller = min(a.sum(), b.sum())
    return float(np.logical_and(a, b).sum() / smaller) if smaller else 1.0


def random_image_description(rng: np.random.Generator, height: int, width: int
                             ) -> dict[str, Any]:
    """Background colour and 1-3 shapes that overlap little, drawn from ``rng``.

    A shape that cannot be placed within PLACEMENT_ATTEMPTS tries is left out (the first one
    always fits), so every image has at least one shape.
    """
    bg_color = _distinct_color(rng, [])
    colors = [bg_color]
    wanted = int(rng.integers(1, MAX_SHAPES, endpoint=True))
    shapes: list[dict[str, Any]] = []
    placed: list[np.ndarray] = []
    for _ in range(wanted):
        color = _distinct_color(rng, colors)
        for _ in range(PLACEMENT_ATTEMPTS):
            shape = _random_shape(rng, height, width, color)
            pixels = shape_pixels(shape, height, width)
            if all(_overlap(pixels, other) < MAX_OVERLAP for other in placed):
                shapes.append(shape)
                placed.append(pixels)
                colors.append(color)
                break
    return {"bg_color": bg_color, "shapes": shapes,
            "noise_seed": int(rng.integers(2**31))}


# --------------------------------------------------------------------------------- dataset
class ShapesDataset(Dataset):
    """Generated images of filled ellipses and rectangles, with exact instance masks."""

    def load_shapes(self, count: int, height: int, width: int, seed: int = 0) -> None:
        """Register the two classes and ``count`` images of ``height`` x ``width``.

        The same seed always gives the same images; call ``prepare()`` afterwards.
        """
        if count < 0:
            raise ValueError(f"ShapesDataset.load_shapes: count must be >= 0, got {count}")
        if min(height, width) < MIN_IMAGE_SIDE:
            raise ValueError(f"ShapesDataset.load_shapes: height and width must be >= "
                             f"{MIN_IMAGE_SIDE}, got {height} x {width}")
        for class_id, name in enumerate(CLASS_NAMES, start=1):
            self.add_class(SOURCE, class_id, name)
        rng = np.random.default_rng(seed)
        for image_id in range(count):
            description = random_image_description(rng, height, width)
            self.add_image(SOURCE, image_id=image_id, path=None, height=height, width=width,
                           **description)

    def load_image(self, image_id: int) -> np.ndarray:
        """Render the image from its description: uint8 [H, W, 3], the same on every call."""
        info = self.image_info[image_id]
        if info["source"] != SOURCE:
            return super().load_image(image_id)
        return render_image(info)

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Visible pixels of each shape (bool [H, W, N]) and their class ids (int32 [N]).

        A later shape hides the pixels of earlier ones it covers; a shape hidden completely has
        no instance.
        """
        info = self.image_info[image_id]
        if info["source"] != SOURCE:
            return super().load_mask(image_id)
        height, width = info["height"], info["width"]
        visible: list[np.ndarray] = []
        covered = np.zeros((height, width), dtype=bool)
        for shape in reversed(info["shapes"]):
            pixels = shape_pixels(shape, height, width)
            visible.append(pixels & ~covered)
            covered |= pixels
        visible.reverse()
        class_of = self._class_ids_by_name()
        kept = [i for i, mask in enumerate(visible) if mask.any()]
        masks = np.zeros((height, width, len(kept)), dtype=bool)
        for k, i in enumerate(kept):
            masks[..., k] = visible[i]
        class_ids = np.array([class_of[info["shapes"][i]["shape"]] for i in kept],
                             dtype=np.int32)
        return masks, class_ids

    def image_reference(self, image_id: int) -> str:
        info = self.image_info[image_id]
        if info["source"] != SOURCE:
            return super().image_reference(image_id)
        return f"{SOURCE}:{info['id']}"

    def _class_ids_by_name(self) -> dict[str, int]:
        """Internal class id of each shape class (its index in class_info; no prepare needed)."""
        return {c["name"]: i for i, c in enumerate(self.class_info) if c["source"] == SOURCE}


# ------------------------------------------------------------------------------ evaluation
def box_map50(detector, dataset: ShapesDataset, image_ids=None) -> float:
    """Class-aware box mAP at IoU 0.5 (COCO-style, 101 recall points) of an inference-mode
    model on ``dataset``: the README's and the learning tests' measure of the toy task."""
    from mrcnn.average_precision import coco_style_ap
    from mrcnn.box_ops import extract_bboxes

    ids = dataset.image_ids if image_ids is None else image_ids
    records = []
    for image_id in ids:
        result = detector.detect([dataset.load_image(image_id)])[0]
        masks, class_ids = dataset.load_mask(image_id)
        records.append({"gt_boxes": extract_bboxes(masks), "gt_class_ids": class_ids,
                        "pred_boxes": result["rois"], "pred_class_ids": result["class_ids"],
                        "pred_scores": result["scores"]})
    return float(coco_style_ap(records, class_ids=range(1, len(CLASS_NAMES) + 1))["mAP"])
