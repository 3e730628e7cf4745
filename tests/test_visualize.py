"""Plots: every function draws on tiny images under Agg and returns what it promises."""

from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Polygon, Rectangle  # noqa: E402

from mrcnn import visualize  # noqa: E402

CLASS_NAMES = ["BG", "ellipse", "rectangle"]
H = W = 32


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def rectangles(ax: Axes) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def polygons(ax: Axes) -> list[Polygon]:
    return [p for p in ax.patches if isinstance(p, Polygon)]


@pytest.fixture
def scene():
    """A 32x32 image with two rectangular instances and their boxes."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    masks = np.zeros((H, W, 2), dtype=bool)
    masks[4:10, 6:12, 0] = True
    masks[15:30, 18:25, 1] = True
    boxes = np.array([[4, 6, 10, 12], [15, 18, 30, 25]], dtype=np.int32)
    class_ids = np.array([1, 2], dtype=np.int32)
    return image, boxes, masks, class_ids


# ------------------------------------------------------------------------------- colours
def test_random_colors_are_distinct_rgb_and_seedable():
    colors = visualize.random_colors(6, seed=3)
    assert len(colors) == 6 and len(set(colors)) == 6
    assert all(isinstance(c, tuple) and len(c) == 3 for c in colors)
    assert all(0.0 <= v <= 1.0 for c in colors for v in c)
    assert colors == visualize.random_colors(6, seed=3)
    assert sorted(colors) == sorted(visualize.random_colors(6, seed=4))
    dim = visualize.random_colors(4, bright=False, seed=0)
    assert max(max(c) for c in dim) == pytest.approx(0.7)
    assert visualize.random_colors(0) == []
    np.random.seed(5)
    first = visualize.random_colors(5)
    np.random.seed(5)
    assert visualize.random_colors(5) == first


# ---------------------------------------------------------------------------- apply_mask
def test_apply_mask_blends_exactly_and_leaves_the_input_alone():
    image = np.zeros((2, 2, 3), dtype=np.float64)
    image[0, 0] = [100.0, 50.0, 200.0]
    image[1, 1] = [10.0, 20.0, 30.0]
    original = image.copy()
    mask = np.array([[True, False], [False, False]])
    out = visualize.apply_mask(image, mask, (1.0, 0.0, 0.5), alpha=0.5)
    # 0.5 * pixel + 0.5 * 255 * colour, worked by hand.
    np.testing.assert_array_equal(out[0, 0], [177.5, 25.0, 163.75])
    np.testing.assert_array_equal(out[1, 1], [10.0, 20.0, 30.0])
    np.testing.assert_array_equal(image, original)
    assert out is not image


def test_apply_mask_on_uint8_rounds_and_keeps_dtype():
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    original = image.copy()
    out = visualize.apply_mask(image, np.eye(2, dtype=bool), (0.0, 1.0, 0.2), alpha=0.25)
    assert out.dtype == np.uint8
    # 0.75 * 100 + 0.25 * 255 * (0, 1, 0.2) = (75, 138.75, 87.75)
    np.testing.assert_array_equal(out[0, 0], [75, 139, 88])
    np.testing.assert_array_equal(out[0, 1], [100, 100, 100])
    np.testing.assert_array_equal(image, original)


def test_apply_mask_on_grayscale_gives_rgb():
    gray = np.full((3, 3), 40, dtype=np.uint8)
    out = visualize.apply_mask(gray, np.ones((3, 3), dtype=bool), (0.0, 0.0, 1.0), alpha=1.0)
    assert out.shape == (3, 3, 3)
    np.testing.assert_array_equal(out[1, 1], [0, 0, 255])


def test_apply_mask_rejects_a_mask_of_another_size():
    with pytest.raises(ValueError, match="mask shape"):
        visualize.apply_mask(np.zeros((4, 4, 3)), np.zeros((3, 4), dtype=bool), (1, 0, 0))


# ------------------------------------------------------------------------- display images
def test_to_display_image_normalises_gray_and_float_scales():
    unit = np.full((2, 2), 0.5, dtype=np.float32)
    np.testing.assert_array_equal(visualize.to_display_image(unit)[0, 0], [128, 128, 128])
    byte_scale = np.full((2, 2, 1), 100.0)
    np.testing.assert_array_equal(visualize.to_display_image(byte_scale)[0, 0], [100] * 3)
    sixteen_bit = np.array([[1000, 3000], [2000, 3000]], dtype=np.uint16)
    shown = visualize.to_display_image(sixteen_bit)
    assert shown.dtype == np.uint8 and shown.shape == (2, 2, 3)
    assert shown[0, 0, 0] == 0 and shown[0, 1, 0] == 255 and shown[1, 0, 0] == 128
    with pytest.raises(ValueError, match="shape"):
        visualize.to_display_image(np.zeros((4, 4, 2)))


def _display_reference(image):
    """The scaling written out on all three channels in float64 (the stated rule)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    rgb = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3]
    values = rgb.astype(np.float64)
    finite = values[np.isfinite(values)]
    lo, hi = float(finite.min()), float(finite.max())
    if image.dtype == bool or (lo >= 0 and hi <= 1 and np.issubdtype(image.dtype, np.floating)):
        lo, hi = 0.0, 1.0
    elif lo >= 0 and hi <= 255:
        lo, hi = 0.0, 255.0
    elif hi == lo:
        hi = lo + 1.0
    scaled = (np.nan_to_num(values) - lo) / (hi - lo) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["uint16", "uint16 rgb", "uint16 dim", "uint8 gray",
                                  "uint8 rgba", "float nan", "bool", "int column", "float rgb"])
def test_to_display_image_matches_the_rule_on_every_kind_of_image(kind):
    rng = np.random.default_rng(len(kind))
    image = {
        "uint16": rng.integers(0, 16383, (30, 20)).astype(np.uint16),
        "uint16 rgb": rng.integers(7, 65536, (30, 20, 3)).astype(np.uint16),
        "uint16 dim": rng.integers(0, 200, (30, 20)).astype(np.uint16),
        "uint8 gray": rng.integers(0, 256, (30, 20)).astype(np.uint8),
        "uint8 rgba": rng.integers(0, 256, (30, 20, 4)).astype(np.uint8),
        "float nan": np.where(rng.random((30, 20)) < 0.1, np.nan, rng.normal(0, 50, (30, 20))),
        "bool": rng.random((30, 20)) < 0.5,
        "int column": rng.integers(-500, 500, (30, 20, 1)),
        "float rgb": rng.random((30, 20, 3)) * 3.0,
    }[kind]
    before = image.copy()
    shown = visualize.to_display_image(image)
    np.testing.assert_array_equal(shown, _display_reference(image))
    assert shown.flags.writeable and not np.shares_memory(shown, image)
    np.testing.assert_array_equal(image, before)


# ---------------------------------------------------------------------- display_instances
def test_display_instances_draws_boxes_captions_masks_and_outlines(scene):
    image, boxes, masks, class_ids = scene
    colors = [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)]
    ax = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES,
                                     scores=np.array([0.9, 0.75]), title="t", colors=colors)
    assert isinstance(ax, Axes)
    rects = rectangles(ax)
    assert len(rects) == 2
    assert [(r.get_x(), r.get_y(), r.get_width(), r.get_height()) for r in rects] == [
        (6.0, 4.0, 6.0, 6.0), (18.0, 15.0, 7.0, 15.0)]
    assert [t.get_text() for t in ax.texts] == ["ellipse 0.900", "rectangle 0.750"]
    # A box in the right half ends its caption at its right edge, so the image does not cut it.
    assert [(t.get_position()[0], t.get_horizontalalignment()) for t in ax.texts] == [
        (6.0, "left"), (25.0, "right")]
    # Outlines sit on the pixel edges, i.e. on the box of a rectangular mask.
    outlines = polygons(ax)
    assert len(outlines) == 2
    xy = outlines[0].get_xy()
    assert (xy[:, 0].min(), xy[:, 0].max(), xy[:, 1].min(), xy[:, 1].max()) == (6, 12, 4, 10)
    shown = np.asarray(ax.images[0].get_array())
    expected = np.round(0.5 * image[5, 7].astype(float) + 0.5 * np.array([255.0, 0.0, 0.0]))
    np.testing.assert_array_equal(shown[5, 7], expected)
    np.testing.assert_array_equal(shown[0, 0], image[0, 0])


def test_display_instances_draws_what_whole_image_blending_and_tracing_give():
    # Irregular masks, one touching the border, one empty, overlapping ones: the drawing
    # (which visits only each mask's set region) equals blending and tracing whole images.
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    masks = np.zeros((40, 48, 4), dtype=bool)
    yy, xx = np.mgrid[:40, :48]
    masks[..., 0] = (yy - 12) ** 2 + (xx - 14) ** 2 < 50
    masks[..., 1] = ((yy - 25) ** 2 / 40 + (xx - 40) ** 2 / 90 < 1) | (yy > 37)
    masks[..., 3] = (np.abs(yy - 20) + np.abs(xx - 20) < 9) & (xx % 5 != 0)
    boxes = np.array([[5, 7, 20, 22], [18, 20, 40, 48], [1, 1, 3, 3], [11, 11, 30, 30]])
    colors = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0)]
    ax = visualize.display_instances(image, boxes, masks, np.array([1, 2, 1, 2]), CLASS_NAMES,
                                     colors=colors)
    expected = image.copy()
    expected_outlines = []
    for i in range(4):
        expected = visualize.apply_mask(expected, masks[..., i], colors[i])
        expected_outlines += visualize._mask_outlines(masks[..., i])
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), expected)
    drawn = polygons(ax)
    assert len(drawn) == len(expected_outlines)
    for polygon, outline in zip(drawn, expected_outlines, strict=True):
        np.testing.assert_array_equal(polygon.get_xy()[:len(outline)], outline)


def test_display_instances_options_and_given_axes(scene):
    image, boxes, masks, class_ids = scene
    _, ax = plt.subplots()
    out = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, ax=ax,
                                      show_bbox=False, show_mask=False, captions=["a", "b"])
    assert out is ax
    assert rectangles(ax) == []
    assert [t.get_text() for t in ax.texts] == ["a", "b"]
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), image)


def test_display_instances_skips_padding_rows(scene):
    image, boxes, masks, class_ids = scene
    boxes = boxes.copy()
    boxes[1] = 0
    ax = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES)
    assert len(rectangles(ax)) == 1 and len(ax.texts) == 1


def test_display_instances_with_no_instances_logs_and_draws_the_image(caplog):
    image = np.zeros((H, W), dtype=np.float32)
    with caplog.at_level(logging.INFO, logger="mrcnn.visualize"):
        ax = visualize.display_instances(image, np.zeros((0, 4)), np.zeros((H, W, 0)),
                                         np.zeros((0,), dtype=np.int32), CLASS_NAMES)
    assert "No instances to display" in caplog.text
    assert len(ax.patches) == 0 and len(ax.texts) == 0
    assert np.asarray(ax.images[0].get_array()).shape == (H, W, 3)


def test_display_instances_grayscale_float_image(scene):
    _, boxes, masks, class_ids = scene
    gray = np.linspace(0.0, 1.0, H * W).reshape(H, W, 1)
    ax = visualize.display_instances(gray, boxes, masks, class_ids, CLASS_NAMES, show_mask=False)
    shown = np.asarray(ax.images[0].get_array())
    assert shown.dtype == np.uint8 and shown.shape == (H, W, 3)
    assert shown[-1, -1, 0] == 255 and shown[0, 0, 0] == 0


def test_display_instances_rejects_mismatched_inputs(scene):
    image, boxes, masks, class_ids = scene
    with pytest.raises(ValueError, match="masks"):
        visualize.display_instances(image, boxes, masks[..., :1], class_ids, CLASS_NAMES)


# ------------------------------------------------------------------------------ draw_boxes
def test_draw_boxes_proposals_refinements_and_visibility(scene):
    image, boxes, masks, _ = scene
    proposals = np.vstack([boxes, [[1, 1, 5, 5]]])
    refined = proposals + 1
    three_masks = np.concatenate([masks, np.zeros((H, W, 1), dtype=bool)], axis=-1)
    ax = visualize.draw_boxes(image, boxes=proposals, refined_boxes=refined,
                              masks=three_masks, captions=["a", "b", "c"],
                              visibilities=[2, 1, 0], title="rois")
    assert isinstance(ax, Axes)
    # 3 proposals + 2 refined boxes (the hidden one gets none), 2 joining lines, 2 captions.
    assert len(rectangles(ax)) == 5
    assert len(ax.lines) == 2
    assert [t.get_text() for t in ax.texts] == ["a", "b"]
    assert rectangles(ax)[-1].get_edgecolor()[:3] == pytest.approx(
        matplotlib.colors.to_rgb("gray"))


def test_draw_boxes_needs_some_boxes():
    with pytest.raises(ValueError, match="boxes"):
        visualize.draw_boxes(np.zeros((H, W, 3)))


# ---------------------------------------------------------------------------------- grids
def test_display_images_grid_with_gray_and_colour(scene):
    image = scene[0]
    gray = np.linspace(0, 1, H * W).reshape(H, W)
    fig = visualize.display_images([image, gray, gray[..., None]], titles=["rgb", "g", "g1"],
                                   cols=2)
    assert isinstance(fig, Figure)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 3
    assert [ax.get_title() for ax in axes] == ["rgb", "g", "g1"]
    assert axes[1].images[0].get_clim() == (0.0, 1.0)
    assert axes[1].images[0].get_cmap().name == "gray"


def test_display_top_masks_orders_classes_by_area(scene):
    image, _, masks, class_ids = scene
    fig = visualize.display_top_masks(image, masks, class_ids, CLASS_NAMES, limit=3)
    assert isinstance(fig, Figure)
    # Rectangle (7x15 pixels) is larger than ellipse (6x6); the third panel is blank.
    assert [ax.get_title() for ax in fig.axes] == ["H x W=32x32", "rectangle", "ellipse", "-"]


# --------------------------------------------------------------------------------- curves
def test_plot_losses_draws_one_curve_per_loss():
    history = {"loss": [3.0, 2.0, 1.5], "val_loss": [3.5, 2.5, 2.0],
               "rpn_class_loss": [0.7, 0.4, 0.3]}
    ax = visualize.plot_losses(history)
    assert isinstance(ax, Axes)
    by_label = {line.get_label(): line for line in ax.lines}
    assert set(by_label) == set(history)
    for name, values in history.items():
        np.testing.assert_array_equal(by_label[name].get_ydata(), values)
        np.testing.assert_array_equal(by_label[name].get_xdata(), [1, 2, 3])
    assert by_label["val_loss"].get_linestyle() == "--"
    assert by_label["val_loss"].get_color() == by_label["loss"].get_color()


def test_plot_losses_rejects_an_empty_history():
    with pytest.raises(ValueError, match="empty"):
        visualize.plot_losses({})


# ---------------------------------------------------------------------------------- files
def test_save_figure_writes_a_png_and_closes_the_figure(tmp_path, scene):
    image, boxes, masks, class_ids = scene
    ax = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES,
                                     figsize=(3, 3))
    fig = ax.figure
    path = tmp_path / "out" / "instances.png"
    visualize.save_figure(fig, path)
    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)

    curves = visualize.plot_losses({"loss": [1.0, 0.5]})
    visualize.save_figure(curves, tmp_path / "losses.png")
    assert (tmp_path / "losses.png").stat().st_size > 0
