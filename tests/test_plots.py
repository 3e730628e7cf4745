"""ftmtl.plots: each figure is built from hand-made fold results and written as a PNG."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from ftmtl import plots
from ftmtl.metrics import FROC_POINTS, froc, roc_curve
from mrcnn.visualize import save_figure


def fold_rocs(seed: int, n_folds: int = 3):
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(n_folds):
        labels = np.repeat([0, 1], 15)
        scores = labels * 0.6 + rng.uniform(size=30)
        curves.append(roc_curve(labels, scores))
    return curves


def fold_frocs(seed: int, n_folds: int = 3):
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(n_folds):
        truths = [np.array([[10.0, 10, 30, 30]]) for _ in range(8)]
        predictions = []
        for truth in truths:
            hit = truth + rng.integers(-3, 4, size=(1, 4))
            misses = rng.uniform(40, 90, size=(3, 2))
            boxes = np.vstack([hit, np.hstack([misses, misses + 8])])
            predictions.append((boxes, rng.uniform(size=4)))
        curves.append(froc(predictions, truths))
    return curves


def test_roc_draws_the_mean_curve_and_a_band_per_model(tmp_path):
    curves = {"ftmtl": fold_rocs(0), "maskrcnn": fold_rocs(1)}
    fig = plots.plot_roc(curves, {"ftmtl": [0.9, 0.8, 0.85], "maskrcnn": [0.7, 0.75, 0.8]})
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert labels[0].startswith("FT-MTL-Net (AUC 0.85 +- 0.05, 3 folds)")
    assert labels[1].startswith("Mask R-CNN (AUC 0.75 +- 0.05")
    # The drawn mean is the mean of the fold curves interpolated on the grid (independent
    # numpy interpolation: fold ROC curves are monotone, so np.interp at the top of each rise).
    grid = ax.lines[0].get_xdata()
    expected = np.mean([np.interp(grid, f, t, right=1.0) for f, t, _ in curves["ftmtl"]], axis=0)
    inner = (grid > 0) & ~np.isin(grid, np.concatenate([f for f, _, _ in curves["ftmtl"]]))
    np.testing.assert_allclose(ax.lines[0].get_ydata()[inner], expected[inner], atol=1e-12)
    assert len(ax.collections) == 2  # the two std bands
    save_figure(fig, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").stat().st_size > 1000


def test_froc_and_iou_sweep(tmp_path):
    curves = {"ftmtl": fold_frocs(2), "maskrcnn": fold_frocs(3)}
    fig = plots.plot_froc(curves)
    ax = fig.axes[0]
    mean_line, markers = ax.lines[0], ax.lines[1]
    np.testing.assert_allclose(markers.get_xdata(), FROC_POINTS)
    expected = np.mean([[c.tpr_at()[p] for p in FROC_POINTS] for c in curves["ftmtl"]], axis=0)
    np.testing.assert_allclose(markers.get_ydata(), expected)
    assert mean_line.get_xdata()[-1] == pytest.approx(5.0)
    save_figure(fig, tmp_path / "froc.png")

    sweeps = {"ftmtl": [{0.1: 1.0, 0.5: 0.6}, {0.1: 0.8, 0.5: 0.4}],
              "maskrcnn": [{0.1: 0.9, 0.5: 0.5}]}
    fig = plots.plot_iou_sweep(sweeps)
    line = fig.axes[0].lines[0]
    np.testing.assert_allclose(np.asarray(line.get_xdata(), float), [0.1, 0.5])
    np.testing.assert_allclose(np.asarray(line.get_ydata(), float), [0.9, 0.5])
    save_figure(fig, tmp_path / "sweep.png")
    assert (tmp_path / "froc.png").is_file() and (tmp_path / "sweep.png").is_file()


def make_example(seed: int, n: int = 2) -> plots.Example:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, size=(40, 30)).astype(np.uint8)
    gt = np.zeros((40, 30, 1), bool)
    gt[10:20, 5:15] = True
    masks = np.zeros((40, 30, 2), bool)
    masks[11:21, 6:16, 0] = True
    return plots.Example(image=image, gt_masks=gt,
                         rois=np.array([[11, 6, 21, 16], [2, 2, 8, 9]], float)[:n],
                         masks=masks[..., :n], class_ids=np.array([2, 1])[:n],
                         scores=np.array([0.9, 0.6])[:n],
                         class_probs=np.array([[0.1, 0.2, 0.7], [0.4, 0.5, 0.1]])[:n],
                         file_name=f"img{seed}", label="malignant", case_score=0.7)


def test_examples_round_trip_and_grid(tmp_path):
    examples = [make_example(0), make_example(1, n=0)]  # the second has no detection
    plots.save_examples(tmp_path / "ex.npz", examples)
    loaded = plots.load_examples(tmp_path / "ex.npz")
    assert [e.file_name for e in loaded] == ["img0", "img1"]
    for a, b in zip(examples, loaded, strict=True):
        for name in ("image", "gt_masks", "rois", "masks", "class_ids", "scores", "class_probs"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert b.case_score == pytest.approx(0.7)
    fig = plots.plot_examples({"ftmtl": loaded, "maskrcnn": loaded}, max_detections=1)
    assert len(fig.axes) == 4
    first = fig.axes[0]
    assert "FT-MTL-Net" in first.get_title() and "img0" in first.get_title()
    texts = [t.get_text() for t in first.texts]
    assert texts == ["B 0.20 / M 0.70"]  # only the best detection, with its probabilities
    save_figure(fig, tmp_path / "examples.png")
    assert (tmp_path / "examples.png").stat().st_size > 1000


def test_histories_mark_the_stages(tmp_path):
    histories = {"ftmtl": [{"rpn": {"loss": [3.0, 2.5], "val_loss": [3.1, 2.6]},
                            "heads": {"loss": [1.0], "val_loss": [1.2]}}, {}],
                 "maskrcnn": [{}, {}]}
    fig = plots.plot_histories(histories)
    assert len(fig.axes) == 1  # a model without histories gets no panel
    ax = fig.axes[0]
    loss = next(line for line in ax.lines if line.get_label() == "fold 0 loss")
    np.testing.assert_allclose(loss.get_ydata(), [3.0, 2.5, 1.0])
    assert [t.get_text() for t in ax.texts] == ["rpn", "heads"]
    save_figure(fig, tmp_path / "losses.png")
    with pytest.raises(ValueError, match="no history"):
        plots.plot_histories({"ftmtl": [{}]})


def test_one_fold_shows_its_value_without_a_spread():
    assert plots._mean_std_text([0.85]) == "0.85"
    assert plots._mean_std_text([0.8, 0.9]) == "0.85 +- 0.07"
    assert plots._folds_text(1) == "1 fold" and plots._folds_text(3) == "3 folds"


def test_a_box_repeated_on_the_same_mass_gets_no_second_caption():
    example = make_example(0)
    example.rois[1] = example.rois[0] + [0, 0, 1, 1]  # IoU 0.83 with the best box
    fig = Figure()
    plots.draw_example(fig.add_subplot(), example, max_detections=2)
    assert [t.get_text() for t in fig.axes[0].texts] == ["B 0.20 / M 0.70", ""]
    assert plots._repeated_boxes(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)) == []
