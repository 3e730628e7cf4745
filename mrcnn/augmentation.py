"""Online augmentation of an image and its instance masks together.

An augmentation is any callable ``aug(image, masks, rng) -> (image, masks)``:

- ``image`` is ``[H, W, C]`` of any numeric dtype (uint8, uint16, float32, ...);
- ``masks`` is ``[H, W, N]`` bool, one channel per instance (``N`` may be 0);
- ``rng`` is a ``numpy.random.Generator``, the only source of randomness, so the result is
  deterministic for a seed.

The result keeps the image's dtype and never leaves the input's value range (geometric
transforms may add the fill value 0 at uncovered pixels). Masks stay bool, keep their count
``N`` and follow the image pixel for pixel: both go through the same geometric map, the image
with bilinear interpolation, the masks with nearest neighbour. A mask may become empty (rotated
or cropped out of view); it is kept, so that class ids stay aligned, and the input pipeline drops
empty instances after augmentation. Boxes are never transformed: recompute them from the
augmented masks with :func:`boxes_from_masks`.

The transforms here are the paper's set (rotate, flip, zoom in/out, crop, contrast, Gaussian
smoothing), written with numpy and scipy.ndimage; :func:`default_augmentation` picks 2 to 5 of
them per sample. :func:`apply_augmentation` also accepts an imgaug-style pipeline (an object
with ``to_deterministic()`` and ``augment_image``), as Matterport's users pass.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from mrcnn.box_ops import extract_bboxes

Augmentation = Callable[
    [np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]
]

# imgaug augmenters (or their base classes) that move pixels, so they must also move the masks.
# Matterport's list, plus the other geometric augmenters of imgaug 0.4; colour, blur and noise
# augmenters are skipped for masks.
IMGAUG_MASK_AUGMENTERS = frozenset(
    {
        "Sequential",
        "SomeOf",
        "OneOf",
        "Sometimes",
        "Fliplr",
        "Flipud",
        "Rot90",
        "CropAndPad",
        "Crop",
        "Pad",
        "CropToFixedSize",
        "PadToFixedSize",
        "Resize",
        "Affine",
        "PiecewiseAffine",
        "PerspectiveTransform",
        "ElasticTransformation",
    }
)


# --------------------------------------------------------------------------- helpers


def _restore_dtype(values: np.ndarray, like: np.ndarray, with_fill: bool) -> np.ndarray:
    """Cast float results back to ``like``'s dtype, clipped to ``like``'s value range.

    The range is the input's own [min, max] (so a 14-bit image in uint16 stays 14-bit), widened
    to include the fill value 0 when a geometric transform may have uncovered pixels.
    """
    low, high = float(like.min()), float(like.max())
    if with_fill:
        low, high = min(low, 0.0), max(high, 0.0)
    if np.issubdtype(like.dtype, np.integer):
        values = np.rint(values)
    return np.clip(values, low, high).astype(like.dtype)


def _source_coordinates(
    shape: tuple[int, int], matrix: np.ndarray, shift: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where each output pixel centre comes from, for the map ``in = matrix @ out + shift``.

    The map is in edge coordinates (pixel ``r`` covers ``[r, r + 1)``, as in DESIGN.md); the
    result is in index coordinates (pixel centres at integers), rows and columns [H, W] each.
    """
    rows, cols = np.meshgrid(
        np.arange(shape[0]) + 0.5, np.arange(shape[1]) + 0.5, indexing="ij"
    )
    src_rows = matrix[0, 0] * rows + matrix[0, 1] * cols + shift[0] - 0.5
    src_cols = matrix[1, 0] * rows + matrix[1, 1] * cols + shift[1] - 0.5
    return src_rows, src_cols


def _sample_nearest(masks: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Nearest-neighbour gather of all mask channels at once; outside the image is False."""
    near_rows = np.floor(rows + 0.5).astype(np.int64)
    near_cols = np.floor(cols + 0.5).astype(np.int64)
    inside = (
        (near_rows >= 0) & (near_rows < masks.shape[0])
        & (near_cols >= 0) & (near_cols < masks.shape[1])
    )
    out = np.zeros(rows.shape + masks.shape[2:], dtype=masks.dtype)
    out[inside] = masks[near_rows[inside], near_cols[inside]]
    return out


def _sample_bilinear(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear gather of all channels at once, float64; outside the image counts as 0.

    Each pixel is a square, so half a pixel beyond the border blends with 0 (bilinear above
    one half and a nearest-neighbour hit agree along each axis).
    """
    height, width = image.shape[:2]
    # One row/column of zeros before the image, two after, so both neighbours of any clipped
    # coordinate in [-1, size] are valid indices of the padded array.
    padded = np.pad(image.astype(np.float64), ((1, 2), (1, 2), (0, 0)))
    rows = np.clip(rows, -1.0, float(height))
    cols = np.clip(cols, -1.0, float(width))
    top, left = np.floor(rows), np.floor(cols)
    down = (rows - top)[..., None]
    right = (cols - left)[..., None]
    # Flat indices into the padded image (one take per neighbour is much faster than 2-D
    # fancy indexing).
    flat = padded.reshape(-1, image.shape[2])
    corner = (top.astype(np.int64) + 1) * padded.shape[1] + left.astype(np.int64) + 1
    step_down = padded.shape[1]

    def at(offset: int) -> np.ndarray:
        return flat.take(corner + offset, axis=0)

    upper = (1 - right) * at(0) + right * at(1)
    lower = (1 - right) * at(step_down) + right * at(step_down + 1)
    return (1 - down) * upper + down * lower


def _warp(
    image: np.ndarray, masks: np.ndarray, matrix: np.ndarray, shift: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Resample image (bilinear) and masks (nearest) through the output-to-input map
    ``in = matrix @ out + shift`` (edge coordinates, rows then columns); pixels that map
    outside the input get 0. Both use the same source coordinates, so they stay aligned."""
    rows, cols = _source_coordinates(image.shape[:2], matrix, shift)
    warped = _sample_bilinear(image, rows, cols)
    return _restore_dtype(warped, image, with_fill=True), _sample_nearest(masks, rows, cols)


def _check_range(name: str, low: float, high: float, minimum: float | None = None) -> None:
    if not low <= high:
        raise ValueError(f"{name}: the lower bound {low} exceeds the upper bound {high}")
    if minimum is not None and low < minimum:
        raise ValueError(f"{name}: {low} is below the smallest allowed value {minimum}")


# --------------------------------------------------------------------------- transforms


class Transform:
    """Base of the transforms: ``draw`` picks the random parameters, ``apply`` uses them.

    Split in two so tests and users can apply a transform with fixed parameters.
    """

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError

    def apply(self, image: np.ndarray, masks: np.ndarray, **params: Any):
        raise NotImplementedError

    def __call__(
        self, image: np.ndarray, masks: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.apply(image, masks, **self.draw(rng))

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({settings})"


class Rotate(Transform):
    """Rotate about the image centre by an angle drawn from ``[-max_degrees, max_degrees]``.

    Positive angles turn the content counter-clockwise on screen (rows grow downwards). The
    shape is kept; corners that come from outside the image are 0.
    """

    def __init__(self, max_degrees: float = 20.0):
        _check_range("Rotate.max_degrees", 0.0, max_degrees)
        self.max_degrees = float(max_degrees)

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"degrees": float(rng.uniform(-self.max_degrees, self.max_degrees))}

    def apply(self, image: np.ndarray, masks: np.ndarray, degrees: float):
        theta = math.radians(degrees)
        cos, sin = math.cos(theta), math.sin(theta)
        # Forward map (row, col) -> (cos*row - sin*col, sin*row + cos*col) about the centre;
        # scipy needs the inverse (output to input), its transpose.
        inverse = np.array([[cos, sin], [-sin, cos]])
        centre = np.array(image.shape[:2], dtype=np.float64) / 2.0
        return _warp(image, masks, inverse, centre - inverse @ centre)


class Flip(Transform):
    """Mirror the image every time it is applied, along one of the allowed axes.

    ``horizontal`` mirrors left-right (columns), ``vertical`` top-bottom (rows). With both
    allowed, each call picks one of them with equal chance.
    """

    AXES = {"horizontal": 1, "vertical": 0}

    def __init__(self, horizontal: bool = True, vertical: bool = False):
        if not (horizontal or vertical):
            raise ValueError("Flip: at least one of horizontal or vertical must be True")
        self.horizontal = bool(horizontal)
        self.vertical = bool(vertical)

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        allowed = [name for name in self.AXES if getattr(self, name)]
        return {"axis": allowed[int(rng.integers(len(allowed)))]}

    def apply(self, image: np.ndarray, masks: np.ndarray, axis: str):
        if axis not in self.AXES:
            raise ValueError(f"Flip: axis must be one of {sorted(self.AXES)}, got {axis!r}")
        dim = self.AXES[axis]
        return (
            np.ascontiguousarray(np.flip(image, axis=dim)),
            np.ascontiguousarray(np.flip(masks, axis=dim)),
        )


class Zoom(Transform):
    """Zoom by a factor drawn from ``[min_scale, max_scale]``, keeping the shape.

    ``scale > 1`` zooms in: a window of ``1/scale`` of the image is resized to the full shape.
    ``scale < 1`` zooms out: the image shrinks and the border is filled with 0. ``anchor``
    (drawn uniformly in [0, 1] per axis) places the window: 0 is top/left, 0.5 the centre.
    """

    def __init__(self, min_scale: float = 0.8, max_scale: float = 1.2):
        _check_range("Zoom scale", min_scale, max_scale, minimum=1e-3)
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        return {
            "scale": float(rng.uniform(self.min_scale, self.max_scale)),
            "anchor": tuple(float(a) for a in rng.uniform(0.0, 1.0, size=2)),
        }

    def apply(
        self,
        image: np.ndarray,
        masks: np.ndarray,
        scale: float,
        anchor: tuple[float, float] = (0.5, 0.5),
    ):
        size = np.array(image.shape[:2], dtype=np.float64)
        start = np.asarray(anchor, dtype=np.float64) * (size - size / scale)
        return _warp(image, masks, np.eye(2) / scale, start)


class Crop(Transform):
    """Cut a random border and resize what is left back to the full shape.

    Per axis, a fraction in ``[0, max_fraction]`` of the size is removed, split at random
    between the two sides; the axes are independent, so the aspect ratio changes slightly
    (unlike :class:`Zoom`).
    """

    def __init__(self, max_fraction: float = 0.15):
        _check_range("Crop.max_fraction", 0.0, max_fraction)
        if max_fraction >= 1.0:
            raise ValueError(f"Crop.max_fraction must be below 1, got {max_fraction}")
        self.max_fraction = float(max_fraction)

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        fractions = rng.uniform(0.0, self.max_fraction, size=2)
        split = rng.uniform(0.0, 1.0, size=2)
        return {
            "top_left": tuple(float(v) for v in fractions * split),
            "bottom_right": tuple(float(v) for v in fractions * (1.0 - split)),
        }

    def apply(
        self,
        image: np.ndarray,
        masks: np.ndarray,
        top_left: tuple[float, float],
        bottom_right: tuple[float, float],
    ):
        """Remove ``top_left`` (fractions of height, width) from the top and left sides and
        ``bottom_right`` from the bottom and right sides."""
        start = np.asarray(top_left, dtype=np.float64)
        kept = 1.0 - start - np.asarray(bottom_right, dtype=np.float64)
        if np.any(start < 0) or np.any(kept <= 0):
            raise ValueError(f"Crop: invalid borders top_left={top_left}, "
                             f"bottom_right={bottom_right}")
        size = np.array(image.shape[:2], dtype=np.float64)
        return _warp(image, masks, np.diag(kept), start * size)


class Contrast(Transform):
    """Gamma curve on the image's own range: ``low + (high - low) * x ** gamma``.

    ``x`` is the image scaled to [0, 1] by its min and max (over all channels), so the minimum
    and maximum are kept exactly and values never exceed the input's maximum (a 14-bit image
    stays 14-bit). ``gamma > 1`` darkens mid-tones, ``gamma < 1`` brightens them. Masks are
    not changed.
    """

    def __init__(self, gamma_range: tuple[float, float] = (0.7, 1.5)):
        _check_range("Contrast.gamma_range", gamma_range[0], gamma_range[1], minimum=1e-3)
        self.gamma_range = (float(gamma_range[0]), float(gamma_range[1]))

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"gamma": float(rng.uniform(*self.gamma_range))}

    def apply(self, image: np.ndarray, masks: np.ndarray, gamma: float):
        low, high = float(image.min()), float(image.max())
        if high <= low:
            return image.copy(), masks
        scaled = (image.astype(np.float64) - low) / (high - low)
        return _restore_dtype(low + (high - low) * scaled**gamma, image, with_fill=False), masks


class GaussianBlur(Transform):
    """Gaussian smoothing of the image (each channel on its own) with a sigma in pixels drawn
    from ``sigma_range``. Masks are not changed."""

    def __init__(self, sigma_range: tuple[float, float] = (0.0, 1.5)):
        _check_range("GaussianBlur.sigma_range", sigma_range[0], sigma_range[1], minimum=0.0)
        self.sigma_range = (float(sigma_range[0]), float(sigma_range[1]))

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"sigma": float(rng.uniform(*self.sigma_range))}

    def apply(self, image: np.ndarray, masks: np.ndarray, sigma: float):
        if sigma <= 0:
            return image.copy(), masks
        blurred = ndimage.gaussian_filter(
            image.astype(np.float64), sigma=(sigma, sigma, 0.0), mode="nearest"
        )
        return _restore_dtype(blurred, image, with_fill=False), masks


# --------------------------------------------------------------------------- composition


class Sequential:
    """Apply every child in order."""

    def __init__(self, children: Sequence[Augmentation]):
        self.children = list(children)

    def __call__(
        self, image: np.ndarray, masks: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        for child in self.children:
            image, masks = child(image, masks, rng)
        return image, masks

    def __repr__(self) -> str:
        return f"Sequential({self.children!r})"


class SomeOf:
    """Apply a random number (in ``[n[0], n[1]]``) of distinct children, in random order.

    An int ``n`` means exactly that many. An upper bound above the number of children is
    capped at it, so ``SomeOf((2, 5), four_children)`` applies 2 to 4 of them.
    """

    def __init__(self, n: int | tuple[int, int] = (2, 5), children: Sequence[Augmentation] = ()):
        low, high = (n, n) if isinstance(n, int) else (int(n[0]), int(n[1]))
        self.children = list(children)
        _check_range("SomeOf.n", low, high, minimum=0)
        if low > len(self.children):
            raise ValueError(
                f"SomeOf: asked for at least {low} children but only {len(self.children)} given"
            )
        self.n = (low, high)

    def __call__(
        self, image: np.ndarray, masks: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        low, high = self.n[0], min(self.n[1], len(self.children))
        count = int(rng.integers(low, high + 1))
        for index in rng.permutation(len(self.children))[:count]:
            image, masks = self.children[index](image, masks, rng)
        return image, masks

    def __repr__(self) -> str:
        return f"SomeOf(n={self.n!r}, children={self.children!r})"


def default_augmentation() -> SomeOf:
    """The paper's augmentation: 2 to 5 of rotate, flip, zoom, crop, contrast, blur."""
    return SomeOf((2, 5), [Rotate(), Flip(), Zoom(), Crop(), Contrast(), GaussianBlur()])


# --------------------------------------------------------------------------- entry points


def _is_imgaug_style(aug: Any) -> bool:
    """imgaug pipelines are recognised by ``to_deterministic`` (they are callable too)."""
    return hasattr(aug, "to_deterministic")


def imgaug_mask_activator(images: Any, augmenter: Any, parents: Any, default: bool) -> bool:
    """imgaug hook: let only geometric augmenters (and containers) touch the masks.

    Checks the class and its base classes, so imgaug's Affine shortcuts (``Rotate``,
    ``ScaleX``, ...) count as Affine.
    """
    return any(cls.__name__ in IMGAUG_MASK_AUGMENTERS for cls in type(augmenter).__mro__)


def _augment_imgaug_style(
    aug: Any, image: np.ndarray, masks: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Run an imgaug pipeline (or a look-alike) on the image and, identically, on the masks."""
    det = aug.to_deterministic()
    if not hasattr(det, "augment_image"):
        raise TypeError(f"augmentation {aug!r}: to_deterministic() returned {det!r}, which has "
                        "no augment_image()")
    if hasattr(det, "seed_"):
        # Tie imgaug's own random state to ours, so the result is deterministic for a seed.
        det.seed_(int(rng.integers(2**31)), deterministic_too=True)
    new_image = np.asarray(det.augment_image(image))
    if masks.shape[2] == 0:
        return new_image, np.zeros((*new_image.shape[:2], 0), dtype=bool)
    imgaug = sys.modules.get("imgaug")
    if imgaug is not None and type(aug).__module__.startswith("imgaug."):
        hooks = imgaug.HooksImages(activator=imgaug_mask_activator)
        new_masks = np.asarray(det.augment_image(masks.astype(np.uint8), hooks=hooks))
        return new_image, new_masks.astype(bool)
    # A look-alike without imgaug's hooks: every step reaches the masks, so 0/1 masks are
    # thresholded after (photometric steps that keep 0 at 0 leave them intact).
    planes = []
    for i in range(masks.shape[2]):
        plane = np.asarray(det.augment_image(masks[..., i : i + 1].astype(np.uint8)))
        planes.append(plane.reshape(plane.shape[:2]) > 0)
    return new_image, np.stack(planes, axis=-1)


def _check_inputs(image: np.ndarray, masks: np.ndarray) -> None:
    if image.ndim != 3:
        raise ValueError(f"apply_augmentation: image must be [H, W, C], got shape {image.shape}")
    if masks.ndim != 3 or masks.dtype != bool:
        raise ValueError(
            f"apply_augmentation: masks must be [H, W, N] bool, got shape {masks.shape} "
            f"dtype {masks.dtype}"
        )
    if image.shape[:2] != masks.shape[:2]:
        raise ValueError(
            f"apply_augmentation: image {image.shape[:2]} and masks {masks.shape[:2]} differ in "
            "height/width"
        )


def _check_result(aug: Any, image: np.ndarray, masks: np.ndarray, result: Any) -> None:
    """Name the augmenter when its output breaks the protocol, instead of failing later."""
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ValueError(f"augmentation {aug!r} must return (image, masks), got {type(result)}")
    new_image, new_masks = result
    problems = []
    image_shape = getattr(new_image, "shape", None)
    masks_shape = getattr(new_masks, "shape", None)
    if not isinstance(new_image, np.ndarray) or new_image.ndim != 3:
        problems.append(f"image must be an [H, W, C] array, got {image_shape}")
    elif new_image.dtype != image.dtype:
        problems.append(f"image dtype changed from {image.dtype} to {new_image.dtype}")
    elif new_image.shape[2] != image.shape[2]:
        problems.append(f"image channels changed from {image.shape[2]} to {new_image.shape[2]}")
    if not isinstance(new_masks, np.ndarray) or new_masks.ndim != 3:
        problems.append(f"masks must be an [H, W, N] array, got {masks_shape}")
    else:
        if new_masks.dtype != bool:
            problems.append(f"masks dtype must stay bool, got {new_masks.dtype}")
        if new_masks.shape[2] != masks.shape[2]:
            problems.append(f"mask count changed from {masks.shape[2]} to {new_masks.shape[2]}")
        if isinstance(new_image, np.ndarray) and new_image.shape[:2] != new_masks.shape[:2]:
            problems.append(
                f"image {new_image.shape[:2]} and masks {new_masks.shape[:2]} are no longer aligned"
            )
    if problems:
        raise ValueError(f"augmentation {aug!r}: " + "; ".join(problems))


def apply_augmentation(
    aug: Any, image: np.ndarray, masks: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Augment ``image`` [H, W, C] and ``masks`` [H, W, N] bool together and check the result.

    ``aug`` is a callable of this module's protocol or an imgaug-style pipeline (duck-typed:
    ``to_deterministic()`` then ``augment_image``). For a real imgaug pipeline only geometric
    augmenters reach the masks (Matterport's behaviour); for a look-alike without imgaug's hooks
    every step is applied to each mask. Raises ValueError naming ``aug`` when the output is not
    aligned, changes dtype or mask count.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"apply_augmentation: rng must be a numpy Generator, got {type(rng)}")
    _check_inputs(image, masks)
    if _is_imgaug_style(aug):
        result = _augment_imgaug_style(aug, image, masks, rng)
    elif callable(aug):
        result = aug(image, masks, rng)
    else:
        raise TypeError(
            f"augmentation {aug!r} is neither a callable (image, masks, rng) nor an "
            "imgaug-style object with to_deterministic()"
        )
    _check_result(aug, image, masks, result)
    return result


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Boxes [N, (y1, x1, y2, x2)] int32 of augmented masks (y2/x2 exclusive, zeros for an
    empty mask): boxes follow the masks because they are recomputed, never transformed."""
    return extract_bboxes(masks)
