"""Detections drawn straight into an RGB array with PIL, for overlays written in bulk.

``mrcnn.visualize.display_instances`` draws through a matplotlib figure, which is the right
tool in a notebook but costs a tenth of a second or more an image in a command that writes one
overlay a DICOM (``inbreast detect``): the figure, its text layout and the rasteriser run for
what is, in the end, one image with a few boxes on it. Here the masks are blended and their
outlines traced in numpy (only over the rows and columns each mask covers), the dashed boxes,
captions and title are drawn by ``PIL.ImageDraw``, and the result is an array the caller saves
as it likes. The look follows ``display_instances``: the same colours, a half-transparent fill,
an outline, a dashed box and a caption at its top left (top right in the right half), white on
a dark plate.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mrcnn.visualize import apply_mask, mask_regions, random_colors, to_display_image

CAPTION_PX = 14  # caption height in pixels (about matplotlib's 11 points at 100 dpi)
CAPTION_PAD_PX = 1  # the dark plate's margin around a caption
TITLE_PX = 16
OUTLINE_PX = 2  # the outline's width inside the mask
BOX_WIDTH_PX = 2
DASH_PX, GAP_PX = 6, 4


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` px (FreeType's scalable one where available)."""
    return ImageFont.load_default(size=size)


def mask_outline(mask: np.ndarray, width: int = OUTLINE_PX) -> np.ndarray:
    """The pixels of ``mask`` [H, W] (bool) within ``width`` pixels of its edge (4-neighbour
    distance; the image border counts as outside)."""
    mask = np.asarray(mask, dtype=bool)
    inner = np.pad(mask, 1)
    for _ in range(int(width)):
        shrunk = inner.copy()
        shrunk[1:-1, 1:-1] &= (inner[:-2, 1:-1] & inner[2:, 1:-1]
                               & inner[1:-1, :-2] & inner[1:-1, 2:])
        shrunk[0, :] = shrunk[-1, :] = False
        shrunk[:, 0] = shrunk[:, -1] = False
        inner = shrunk
    return mask & ~inner[1:-1, 1:-1]


def _rgb255(color: Sequence[float]) -> tuple[int, int, int]:
    return tuple(int(round(255.0 * float(c))) for c in color[:3])  # type: ignore[return-value]


def _dashes(start: float, end: float) -> list[tuple[float, float]]:
    """(from, to) of the dashes along one side, from ``start`` to ``end``."""
    spans, position = [], float(start)
    while position < end:
        spans.append((position, min(position + DASH_PX, float(end))))
        position += DASH_PX + GAP_PX
    return spans


def _dashed_box(draw: ImageDraw.ImageDraw, box: np.ndarray, color: tuple[int, int, int],
                top: int) -> None:
    """Dashed rectangle along the edges of ``box`` (y1, x1, y2, x2 in pixel edges), drawn
    ``top`` rows lower (below the title band)."""
    y1, x1, y2, x2 = (float(v) for v in box)
    y1, y2 = y1 + top, y2 + top
    for a, b in _dashes(x1, x2):
        draw.line([(a, y1), (b, y1)], fill=color, width=BOX_WIDTH_PX)
        draw.line([(a, y2 - 1), (b, y2 - 1)], fill=color, width=BOX_WIDTH_PX)
    for a, b in _dashes(y1, y2):
        draw.line([(x1, a), (x1, b)], fill=color, width=BOX_WIDTH_PX)
        draw.line([(x2 - 1, a), (x2 - 1, b)], fill=color, width=BOX_WIDTH_PX)


def render_instances(image: np.ndarray, boxes: np.ndarray, masks: np.ndarray,
                     captions: Sequence[str], title: str = "",
                     colors: Sequence[Sequence[float]] | None = None,
                     windows: np.ndarray | None = None) -> np.ndarray:
    """The detections drawn on ``image``: a uint8 RGB array [TITLE band + H, W, 3].

    boxes [N, 4] pixel (y1, x1, y2, x2); masks [H, W, N] bool; one caption a box. Rows whose
    box is all zeros are padding and are skipped. Colours default to ``random_colors(N)``
    (the same as ``display_instances``). A band of ``2 * TITLE_PX`` rows above the image holds
    ``title``; without a title there is no band. ``windows`` [N, 4] (y1, x1, y2, x2 in
    ``masks``' pixels), when known to hold each mask, spare the search of the whole stack.
    """
    boxes = np.asarray(boxes).reshape(-1, 4)
    masks = np.asarray(masks, dtype=bool)
    n = boxes.shape[0]
    if n and (masks.ndim != 3 or masks.shape[-1] != n or masks.shape[:2] != image.shape[:2]):
        raise ValueError(f"render_instances: {n} boxes, masks of shape {masks.shape} and an "
                         f"image of shape {np.shape(image)}; masks must be [H, W, {n}]")
    if len(captions) != n:
        raise ValueError(f"render_instances: {len(captions)} captions for {n} boxes")
    colors = list(colors) if colors is not None else random_colors(n)
    shown = to_display_image(image)
    regions = mask_regions(masks, windows) if n else []
    for i, region in enumerate(regions):
        if region is None or not np.any(boxes[i]):
            continue
        mask = masks[..., i][region]
        patch = apply_mask(shown[region], mask, colors[i])
        patch[mask_outline(mask)] = _rgb255(colors[i])
        shown[region] = patch

    band = 2 * TITLE_PX if title else 0
    canvas = Image.new("RGB", (shown.shape[1], shown.shape[0] + band), (255, 255, 255))
    canvas.paste(Image.fromarray(shown), (0, band))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((shown.shape[1] / 2, band / 2), title, fill=(0, 0, 0), font=_font(TITLE_PX),
                  anchor="mm")
    font = _font(CAPTION_PX)
    for i in range(n):
        if not np.any(boxes[i]):
            continue
        color = _rgb255(colors[i])
        _dashed_box(draw, boxes[i], color, band)
        y1, x1, _, x2 = (float(v) for v in boxes[i])
        # Boxes in the right half get captions that end at their right edge, as in
        # display_instances: a caption starting there would run off the image.
        right_half = x1 + x2 > shown.shape[1]
        _caption(draw, (x2 if right_half else x1, y1 + band + 2), captions[i], font,
                 "ra" if right_half else "la")
    return np.asarray(canvas)


def _caption(draw: ImageDraw.ImageDraw, corner: tuple[float, float], text: str,
             font: ImageFont.ImageFont | ImageFont.FreeTypeFont, anchor: str) -> None:
    """White ``text`` on a dark plate, readable on any tissue. A plate and one rendering
    cost a third of a stroked text's two (FreeType's stroker is the slow part)."""
    if not text:
        return
    left, top, right, bottom = draw.textbbox(corner, text, font=font, anchor=anchor)
    draw.rectangle((left - CAPTION_PAD_PX, top - CAPTION_PAD_PX, right + CAPTION_PAD_PX - 1,
                    bottom + CAPTION_PAD_PX - 1), fill=(0, 0, 0))
    draw.text(corner, text, fill=(255, 255, 255), font=font, anchor=anchor)
