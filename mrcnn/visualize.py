"""Plots of images, instance masks, boxes and training curves.

The public names and arguments follow Matterport's ``mrcnn.visualize`` so that existing notebooks
keep working. Every function draws and returns its Figure or Axes and never calls ``plt.show()``:
a notebook displays what is returned, a script passes it to ``save_figure``. Nothing here picks a
matplotlib backend; headless callers select "Agg" themselves.

Boxes are pixel boxes ``(y1, x1, y2, x2)`` with ``y2``/``x2`` exclusive (docs/DESIGN.md). Images
are drawn with the extent ``(0, W, H, 0)`` so that those continuous coordinates land exactly on the
pixel edges.
"""

from __future__ import annotations

import colorsys
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import lines, patches
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from skimage.measure import find_contours

from mrcnn.box_ops import extract_bboxes

logger = logging.getLogger(__name__)

Color = tuple[float, ...]

# Space left around the image in instance plots, so that captions near the border stay visible.
_PLOT_MARGIN_PX = 10


# ----------------------------------------------------------------------------------- colours
def random_colors(N: int, bright: bool = True, seed: int | None = None) -> list[Color]:
    """N visually distinct RGB colours in [0, 1], in random order.

    Hues are spaced evenly (so colours differ) and shuffled (so neighbouring instances do not get
    neighbouring hues). ``seed`` makes the order reproducible; without it the order comes from
    numpy's global generator, so ``np.random.seed`` also fixes it.
    """
    if N < 0:
        raise ValueError(f"random_colors: N must be >= 0, got {N}")
    value = 1.0 if bright else 0.7
    colors = [colorsys.hsv_to_rgb(i / max(N, 1), 1.0, value) for i in range(N)]
    order = np.random.permutation(N) if seed is None else np.random.default_rng(seed).permutation(N)
    return [tuple(float(c) for c in colors[i]) for i in order]


# ------------------------------------------------------------------------------- image prep
def _as_rgb(image: np.ndarray) -> np.ndarray:
    """[H, W], [H, W, 1] or [H, W, 3] -> [H, W, 3] (gray replicated, alpha dropped)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        return image[..., :3]
    raise ValueError(f"image: expected [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], "
                     f"got shape {image.shape}")


def _value_range(image: np.ndarray) -> tuple[float, float]:
    """The range that maps an image's values to black..white.

    Boolean images and float images within [0, 1] are unit-scaled; images within [0, 255] are
    8-bit-scaled; anything else (16-bit mammograms, mean-subtracted inputs) is stretched from its
    minimum to its maximum.
    """
    if image.dtype == bool:
        return 0.0, 1.0
    finite = image[np.isfinite(image)] if np.issubdtype(image.dtype, np.floating) else image
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if lo >= 0 and hi <= 1 and np.issubdtype(image.dtype, np.floating):
        return 0.0, 1.0
    if lo >= 0 and hi <= 255:
        return 0.0, 255.0
    return lo, (hi if hi > lo else lo + 1.0)


def to_display_image(image: np.ndarray) -> np.ndarray:
    """Any supported image -> uint8 [H, W, 3] for drawing (see ``_value_range`` for scaling).

    A gray image is scaled before its channel is replicated (a third of the work on a
    mammogram), and only floating-point images are searched for NaN and infinity."""
    image = np.asarray(image)
    gray = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    channels = gray if gray.ndim == 2 else _as_rgb(image)
    lo, hi = _value_range(channels)
    if lo == 0.0 and hi == 255.0 and channels.dtype == np.uint8:
        return _as_rgb(channels).copy() if channels.ndim == 3 else _as_rgb(channels)
    if channels.dtype == np.uint16:  # a DICOM's pixels: each level's shade once, looked up
        levels = np.arange(2**16, dtype=np.float64)
        return _as_rgb(_shades(levels, lo, hi)[channels])
    values = channels.astype(np.float64)
    if np.issubdtype(channels.dtype, np.floating):
        values = np.nan_to_num(values)
    return _as_rgb(_shades(values, lo, hi))


def _shades(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """float64 ``values`` from ``lo`` (black) to ``hi`` (white) as uint8 shades."""
    return np.clip(np.round((values - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def apply_mask(image: np.ndarray, mask: np.ndarray, color: Sequence[float],
               alpha: float = 0.5) -> np.ndarray:
    """Blend ``color`` (RGB in [0, 1]) into the pixels where ``mask`` is set.

    The image is in [0, 255] scale (as Matterport's); each masked pixel becomes
    ``(1 - alpha) * pixel + alpha * 255 * color``. Returns a new array of the input's dtype
    (integer images are rounded); a grayscale image comes back as RGB. The input is not modified.
    """
    rgb = _as_rgb(image)
    mask = np.asarray(mask)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"apply_mask: mask shape {mask.shape} does not match image "
                         f"shape {rgb.shape[:2]}")
    color_255 = np.asarray(color, dtype=np.float64)[:3] * 255.0
    blended = rgb.astype(np.float64)
    selected = mask.astype(bool)
    blended[selected] = (1.0 - alpha) * blended[selected] + alpha * color_255
    if np.issubdtype(rgb.dtype, np.integer):
        info = np.iinfo(rgb.dtype)
        return np.clip(np.round(blended), info.min, info.max).astype(rgb.dtype)
    return blended.astype(rgb.dtype, copy=False)


def _mask_outlines(mask: np.ndarray) -> list[np.ndarray]:
    """Outlines of a binary mask as (x, y) vertex arrays on the pixel edges.

    The mask is padded by one pixel so that shapes touching the border still give closed
    outlines; find_contours works on pixel centres, so +0.5 moves vertices onto pixel edges.
    """
    padded = np.pad(mask.astype(np.uint8), 1)
    outlines = []
    for contour in find_contours(padded, 0.5):
        rows_cols = contour - 1 + 0.5
        outlines.append(rows_cols[:, ::-1])
    return outlines


def _new_axes(figsize: tuple[float, float]) -> Axes:
    _, ax = plt.subplots(1, figsize=figsize)
    return ax


def _show_image(ax: Axes, image: np.ndarray, title: str) -> None:
    """Draw an RGB uint8 image in pixel-edge coordinates with a margin around it."""
    height, width = image.shape[:2]
    ax.imshow(image, extent=(0, width, height, 0), interpolation="nearest")
    ax.set_xlim(-_PLOT_MARGIN_PX, width + _PLOT_MARGIN_PX)
    ax.set_ylim(height + _PLOT_MARGIN_PX, -_PLOT_MARGIN_PX)
    ax.axis("off")
    ax.set_title(title)


def _box_rectangle(box: np.ndarray, color: Any, linestyle: str = "dashed",
                   alpha: float = 0.7, linewidth: float = 2) -> patches.Rectangle:
    y1, x1, y2, x2 = (float(v) for v in box)
    return patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=linewidth, alpha=alpha,
                             linestyle=linestyle, edgecolor=color, facecolor="none")


def _is_padding(box: np.ndarray) -> bool:
    return not np.any(box)


# ------------------------------------------------------------------------------- instances
def _check_count(caller: str, count: int, **per_box) -> None:
    """Each given per-box sequence must hold ``count`` values (one per box)."""
    for name, values in per_box.items():
        if values is not None and len(values) != count:
            raise ValueError(f"{caller}: {name} has {len(values)} values for {count} boxes")


def display_instances(image: np.ndarray, boxes: np.ndarray, masks: np.ndarray,
                      class_ids: np.ndarray, class_names: Sequence[str],
                      scores: np.ndarray | None = None, title: str = "",
                      figsize: tuple[float, float] = (16, 16), ax: Axes | None = None,
                      show_mask: bool = True, show_bbox: bool = True,
                      colors: Sequence[Any] | None = None,
                      captions: Sequence[str] | None = None) -> Axes:
    """Draw detections or ground truth: boxes, mask overlays, mask outlines and captions.

    boxes [N, 4] pixel (y1, x1, y2, x2); masks [H, W, N]; class_ids [N]; scores [N] or None;
    captions replace the default "class score" text. Rows whose box is all zeros are padding
    and are skipped. Returns the Axes drawn on (a new one when ``ax`` is None).
    """
    boxes = np.asarray(boxes).reshape(-1, 4)
    masks = np.asarray(masks)
    class_ids = np.asarray(class_ids).reshape(-1)
    n = boxes.shape[0]
    if n and (masks.ndim != 3 or masks.shape[-1] != n or class_ids.shape[0] != n):
        raise ValueError(f"display_instances: boxes has {n} rows but masks has shape "
                         f"{masks.shape} and class_ids {class_ids.shape}; they must agree")
    _check_count("display_instances", n, scores=scores, captions=captions)
    if n == 0:
        logger.info("No instances to display")
    colors = list(colors) if colors is not None else random_colors(n)
    ax = ax if ax is not None else _new_axes(figsize)

    shown = to_display_image(image)
    regions = mask_regions(masks) if n else []
    for i in range(n):
        if _is_padding(boxes[i]):
            continue
        color = colors[i]
        if show_bbox:
            ax.add_patch(_box_rectangle(boxes[i], color))
        # Boxes in the right half get captions that end at their right edge: a caption
        # starting there would run off the image and be cut.
        right_half = boxes[i][1] + boxes[i][3] > image.shape[1]
        ax.text(float(boxes[i][3] if right_half else boxes[i][1]), float(boxes[i][0]) + 8,
                captions[i] if captions is not None else _caption(i, class_ids, class_names,
                                                                  scores),
                color="w", size=11, backgroundcolor="none",
                horizontalalignment="right" if right_half else "left")
        region = regions[i]
        if region is None:
            continue
        mask = masks[..., i][region]
        # Blend and trace only where the mask is set: the same pixels and outlines as over
        # the whole image, without visiting it once a mask.
        if show_mask:
            shown[region] = apply_mask(shown[region], mask, color)
        offset = np.array([region[1].start, region[0].start], dtype=np.float64)
        for outline in _mask_outlines(mask):
            # add_artist, not add_patch: _show_image sets the limits, and add_patch's update
            # of the data limits walks every vertex of a long outline (a third of an
            # overlay's drawing time on a full-size mammogram).
            ax.add_artist(patches.Polygon(outline + offset, facecolor="none",
                                          edgecolor=color))
    _show_image(ax, shown, title)
    return ax


def mask_regions(masks: np.ndarray, windows: np.ndarray | None = None
                 ) -> list[tuple[slice, slice] | None]:
    """Per mask of ``masks`` [H, W, N]: the (rows, columns) slices of its tight box, None if
    no pixel is set (``extract_bboxes``, with its ``windows``)."""
    return [None if not np.any(box) else (slice(box[0], box[2]), slice(box[1], box[3]))
            for box in extract_bboxes(masks, windows)]


# Matterport's colours for display_differences: ground truth green, predictions red.
GT_COLOR: Color = (0.0, 1.0, 0.0, 0.8)
PRED_COLOR: Color = (1.0, 0.0, 0.0, 1.0)


def display_differences(image: np.ndarray, gt_box: np.ndarray, gt_class_id: np.ndarray,
                        gt_mask: np.ndarray, pred_box: np.ndarray, pred_class_id: np.ndarray,
                        pred_score: np.ndarray, pred_mask: np.ndarray,
                        class_names: Sequence[str], title: str = "", ax: Axes | None = None,
                        show_mask: bool = True, show_box: bool = True,
                        iou_threshold: float = 0.5, score_threshold: float = 0.5) -> Axes:
    """Ground truth (green) and predictions (red) on one image; each prediction is captioned
    "score / IoU" with the mask IoU of the ground truth it matches (``mrcnn.utils.
    compute_matches`` with these thresholds), or its best IoU when it matches none.

    Padding rows (boxes without area) are left out; predictions are drawn best score first.
    """
    # Imported here: they bring TensorFlow, which drawing alone does not need.
    from mrcnn.box_ops import valid_boxes
    from mrcnn.instance_eval import compute_matches

    gt_box = np.asarray(gt_box).reshape(-1, 4)
    pred_box = np.asarray(pred_box).reshape(-1, 4)
    pred_score = np.asarray(pred_score, dtype=np.float64).reshape(-1)
    gt = np.flatnonzero(valid_boxes(gt_box))
    pred = np.flatnonzero(valid_boxes(pred_box))
    pred = pred[np.argsort(-pred_score[pred], kind="stable")]
    gt_box, gt_class_id, gt_mask = gt_box[gt], np.asarray(gt_class_id)[gt], gt_mask[..., gt]
    pred_box, pred_class_id = pred_box[pred], np.asarray(pred_class_id)[pred]
    pred_score, pred_mask = pred_score[pred], pred_mask[..., pred]
    # Already valid and sorted, so the matches' prediction order is the drawing order.
    _, pred_match, overlaps = compute_matches(
        gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
        iou_threshold=iou_threshold, score_threshold=score_threshold)
    ious = [overlaps[i, pred_match[i]] if pred_match[i] >= 0 else overlaps[i].max(initial=0.0)
            for i in range(len(pred))]
    captions = [""] * len(gt) + [f"{s:.2f} / {iou:.2f}" for s, iou in zip(pred_score, ious,
                                                                          strict=True)]
    return display_instances(
        image, np.concatenate([gt_box, pred_box]),
        np.concatenate([np.asarray(gt_mask, bool), np.asarray(pred_mask, bool)], axis=-1),
        np.concatenate([gt_class_id, pred_class_id]), class_names,
        scores=np.concatenate([np.zeros(len(gt)), pred_score]),
        title=title or "Ground truth (green) and detections (red); captions: score / IoU",
        ax=ax, show_mask=show_mask, show_bbox=show_box,
        colors=[GT_COLOR] * len(gt) + [PRED_COLOR] * len(pred), captions=captions)


def _caption(i: int, class_ids: np.ndarray, class_names: Sequence[str],
             scores: np.ndarray | None) -> str:
    class_id = int(class_ids[i])
    label = class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)
    return f"{label} {float(scores[i]):.3f}" if scores is not None else label


def draw_boxes(image: np.ndarray, boxes: np.ndarray | None = None,
               refined_boxes: np.ndarray | None = None, masks: np.ndarray | None = None,
               captions: Sequence[str] | None = None,
               visibilities: Sequence[int] | None = None, title: str = "",
               ax: Axes | None = None) -> Axes:
    """Draw proposals (``boxes``) and what the heads made of them (``refined_boxes``).

    Each proposal is joined to its refined box by a line between their top-left corners.
    ``visibilities`` per box: 0 grey and faint, 1 coloured dotted, 2 (default) coloured solid;
    refined boxes, captions and masks are drawn for visibility > 0.
    """
    if boxes is None and refined_boxes is None:
        raise ValueError("draw_boxes: give boxes, refined_boxes or both")
    if boxes is not None:
        boxes = np.asarray(boxes).reshape(-1, 4)
    if refined_boxes is not None:
        refined_boxes = np.asarray(refined_boxes).reshape(-1, 4)
    n = (boxes if boxes is not None else refined_boxes).shape[0]
    if boxes is not None and refined_boxes is not None and refined_boxes.shape[0] != n:
        raise ValueError(f"draw_boxes: boxes has {n} rows, refined_boxes "
                         f"{refined_boxes.shape[0]}; they must agree")
    _check_count("draw_boxes", n, visibilities=visibilities, captions=captions)
    ax = ax if ax is not None else _new_axes((12, 12))
    colors = random_colors(n)
    shown = to_display_image(image)

    for i in range(n):
        visibility = int(visibilities[i]) if visibilities is not None else 2
        color = colors[i] if visibility > 0 else "gray"
        style = "solid" if visibility == 2 else "dotted"
        alpha = 1.0 if visibility > 0 else 0.5
        if boxes is not None and not _is_padding(boxes[i]):
            ax.add_patch(_box_rectangle(boxes[i], color, linestyle=style, alpha=alpha))
        if visibility == 0:
            continue
        if refined_boxes is not None and not _is_padding(refined_boxes[i]):
            ax.add_patch(_box_rectangle(refined_boxes[i], color, linestyle="solid"))
            if boxes is not None and not _is_padding(boxes[i]):
                ax.add_line(lines.Line2D([boxes[i][1], refined_boxes[i][1]],
                                         [boxes[i][0], refined_boxes[i][0]], color=color))
        if captions is not None:
            anchor = refined_boxes[i] if refined_boxes is not None else boxes[i]
            ax.text(float(anchor[1]), float(anchor[0]), captions[i], size=11,
                    verticalalignment="top", color="w", backgroundcolor="none",
                    bbox={"facecolor": color, "alpha": 0.5, "pad": 2, "edgecolor": "none"})
        if masks is not None:
            mask = np.asarray(masks)[..., i]
            shown = apply_mask(shown, mask, color)
            for outline in _mask_outlines(mask):
                ax.add_patch(patches.Polygon(outline, facecolor="none", edgecolor=color))
    _show_image(ax, shown, title)
    return ax


# ---------------------------------------------------------------------------------- grids
def display_images(images: Sequence[np.ndarray], titles: Sequence[str] | None = None,
                   cols: int = 4, cmap: Any = None, norm: Any = None,
                   interpolation: str | None = None) -> Figure:
    """Show images in a grid, ``cols`` per row; returns the Figure.

    Colour images are normalised to 8-bit RGB. Single-channel images (masks, mammograms,
    activations) keep their values and are drawn with ``cmap`` (gray by default), scaled over
    their natural range unless a ``norm`` is given.
    """
    images = list(images)
    if not images:
        raise ValueError("display_images: no images given")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"display_images: {len(titles)} titles for {len(images)} images")
    cols = max(1, min(cols, len(images)))
    rows = math.ceil(len(images) / cols)
    fig = plt.figure(figsize=(14, max(14 * rows / cols, 2)))
    for index, image in enumerate(images, start=1):
        ax = fig.add_subplot(rows, cols, index)
        ax.set_title(titles[index - 1] if titles is not None else "", fontsize=9)
        ax.axis("off")
        image = np.asarray(image)
        plane = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
        if plane.ndim == 2:
            vmin, vmax = _value_range(plane) if norm is None else (None, None)
            ax.imshow(plane.astype(np.float64), cmap=cmap or "gray", norm=norm,
                      interpolation=interpolation, vmin=vmin, vmax=vmax)
        else:
            ax.imshow(to_display_image(image), interpolation=interpolation)
    return fig


def display_top_masks(image: np.ndarray, mask: np.ndarray, class_ids: np.ndarray,
                      class_names: Sequence[str], limit: int = 4) -> Figure:
    """The image beside the masks of its ``limit`` largest classes (by total mask area).

    Each class panel labels that class's instances 1..k (shaded by ``Blues_r``); missing
    panels, when the image has fewer classes, are blank and titled "-".
    """
    mask = np.asarray(mask)
    class_ids = np.asarray(class_ids).reshape(-1)
    if mask.ndim != 3 or mask.shape[-1] != class_ids.shape[0]:
        raise ValueError(f"display_top_masks: mask shape {mask.shape} does not match "
                         f"{class_ids.shape[0]} class ids")
    height, width = mask.shape[:2]
    # Converted to RGB so that a grayscale image is not tinted by the masks' colour map.
    panels: list[np.ndarray] = [to_display_image(image)]
    titles = [f"H x W={height}x{width}"]
    unique = np.unique(class_ids)
    areas = [mask[..., class_ids == c].sum() for c in unique]
    for class_id in unique[np.argsort(areas, kind="stable")[::-1]][:limit]:
        instances = mask[..., class_ids == class_id].astype(np.float64)
        labels = (instances * np.arange(1, instances.shape[-1] + 1)).max(axis=-1)
        panels.append(labels / instances.shape[-1])
        titles.append(class_names[int(class_id)] if int(class_id) < len(class_names)
                      else str(class_id))
    while len(panels) < limit + 1:
        panels.append(np.zeros((height, width)))
        titles.append("-")
    return display_images(panels, titles=titles, cols=limit + 1, cmap="Blues_r")


# --------------------------------------------------------------------------------- curves
def plot_losses(history: Mapping[str, Sequence[float]] | Any, ax: Axes | None = None) -> Axes:
    """One curve per loss against the epoch; ``val_*`` curves are dashed in their loss's colour.

    Accepts a dict of lists or a Keras ``History`` (its ``.history``).
    """
    history = getattr(history, "history", history)
    if not history:
        raise ValueError("plot_losses: history is empty")
    ax = ax if ax is not None else _new_axes((10, 6))
    line_colors: dict[str, Any] = {}
    for name in sorted(history, key=lambda key: (key.startswith("val_"), key)):
        values = np.asarray(history[name], dtype=np.float64).reshape(-1)
        if values.size == 0:
            logger.warning("plot_losses: %r has no values; skipped", name)
            continue
        epochs = np.arange(1, values.size + 1)
        base = name.removeprefix("val_")
        if name.startswith("val_") and base in line_colors:
            ax.plot(epochs, values, linestyle="--", color=line_colors[base], label=name)
        else:
            (line,) = ax.plot(epochs, values, label=name)
            line_colors[name] = line.get_color()
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_precision_recall(AP: float, precisions: Sequence[float], recalls: Sequence[float],
                          ax: Axes | None = None) -> Axes:
    """The precision-recall curve ``compute_ap`` returns (its padded envelope), titled with the
    AP."""
    ax = ax if ax is not None else _new_axes((8, 6))
    ax.plot(np.asarray(recalls, dtype=np.float64), np.asarray(precisions, dtype=np.float64))
    ax.set_title(f"Precision-recall curve, AP@50 = {float(AP):.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.1)
    ax.set_ylim(0, 1.1)
    return ax


# ---------------------------------------------------------------------------------- files
def save_figure(fig: Figure | Axes, path: str | Path) -> None:
    """Write a figure (or the figure of an Axes) at 100 dpi, tightly cropped, and close it.

    Closing matters in scripts that make many figures: pyplot keeps every open one alive.
    """
    if isinstance(fig, Axes):
        fig = fig.get_figure(root=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
