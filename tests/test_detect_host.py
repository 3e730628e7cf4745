"""The vectorised mask pasting of ``detect`` and ``inbreast detect`` (issue #14: host overhead)
gives the masks the per-box loops gave, pixel for pixel, and the box-limited RLE of
``rle_encode`` gives the runs of the whole mask; plus the fast parts of
benchmarks/bench_detect_host.py.

The references are the implementations these replaced: ``reference_unmold_mask`` and
``reference_unmold_detections`` are the former ``mrcnn.data.unmold_mask`` and the loop of
``MaskRCNN.unmold_detections``, kept here verbatim in substance; the full-size reference is
``reference_mask_to_original``, the former ``Transform.mask_to_original`` (every mask resized
to the crop by ``_resize_masks``); ``reference_rle`` the former ``rle_encode``, which ran over
every pixel. The new code reproduces skimage's arithmetic
(``mrcnn.resample.linear_taps``), so the masks must be identical, with no tolerance.
"""

from __future__ import annotations

import bench_detect_host as bench  # benchmarks/ is on pytest's pythonpath (pyproject.toml)
import numpy as np
import pytest
import skimage.transform

import ftmtl.inbreast.preprocess as preprocess
import mrcnn.data
from ftmtl import detect_io
from ftmtl.inbreast.preprocess import Transform, _resize_masks
from mrcnn.data import unmold_mask
from mrcnn.model import MaskRCNN, to_original_pixels
from mrcnn.resample import linear_taps, ragged_ranges


# ------------------------------------------------------------------------- the references
def reference_rle(mask):
    """The former rle_encode: the runs of all the column-major pixels."""
    flat = mask.ravel(order="F")
    bounds = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs.insert(0, 0)
    return {"size": list(mask.shape), "counts": runs}


def reference_unmold_mask(mask, bbox, image_shape, threshold=0.5):
    """The former mrcnn.data.unmold_mask: one box, skimage's resize."""
    y1, x1, y2, x2 = (int(v) for v in bbox)
    full = np.zeros(tuple(image_shape[:2]), dtype=bool)
    y1c, x1c = max(y1, 0), max(x1, 0)
    y2c, x2c = min(y2, image_shape[0]), min(x2, image_shape[1])
    if y2 <= y1 or x2 <= x1 or y2c <= y1c or x2c <= x1c:
        return full
    resized = skimage.transform.resize(mask.astype(np.float32), (y2 - y1, x2 - x1), order=1,
                                       mode="constant", anti_aliasing=False)
    full[y1c:y2c, x1c:x2c] = resized[y1c - y1:y2c - y1, x1c - x1:x2c - x1] >= threshold
    return full


def reference_mask_to_original(masks, transform):
    """The former ``Transform.mask_to_original``: every mask resized to the crop alone."""
    y1, x1, y2, x2 = transform.crop
    full = np.zeros(tuple(transform.original_shape) + masks.shape[2:], dtype=bool)
    full[y1:y2, x1:x2] = _resize_masks(masks, (y2 - y1, x2 - x1))
    return full


def reference_unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape,
                                window):
    """The former MaskRCNN.unmold_detections: a loop over the boxes."""
    rows = MaskRCNN.returned_rows(detections, original_image_shape, image_shape, window)
    detections, masks = detections[rows], mrcnn_mask[rows]
    class_ids = detections[:, 4].astype(np.int32)
    boxes = to_original_pixels(detections[:, :4], image_shape, window, original_image_shape)
    h, w = original_image_shape[:2]
    full = np.zeros((h, w, len(boxes)), dtype=bool)
    for i in range(len(boxes)):
        full[:, :, i] = reference_unmold_mask(masks[i, :, :, class_ids[i]], boxes[i], (h, w))
    return boxes.astype(np.int32), full


def random_boxes(rng, count, height, width):
    """Boxes inside, touching and crossing every edge, 1-2 px ones, empty and inverted ones."""
    y1 = rng.integers(-15, height + 5, count)
    x1 = rng.integers(-15, width + 5, count)
    h = rng.choice([-3, 0, 1, 2, 3, 7, 28, 41, 90], count)
    w = rng.choice([-2, 0, 1, 2, 5, 13, 28, 57, 120], count)
    return np.stack([y1, x1, y1 + h, x1 + w], axis=1)


# ------------------------------------------------------------------ the taps are skimage's
@pytest.mark.parametrize("mirror", [False, True])
def test_linear_taps_rebuild_skimage_resize_bit_for_bit(mirror):
    rng = np.random.default_rng(7)
    for _ in range(200):
        source = rng.integers(1, 30, 2)
        target = rng.integers(1, 90, 2)
        image = rng.random(source).astype(np.float32)
        expected = skimage.transform.resize(image, target, order=1, anti_aliasing=False,
                                            mode="reflect" if mirror else "constant",
                                            clip=False)
        rows = linear_taps(np.arange(target[0]), source[0] / target[0], source[0], mirror)
        cols = linear_taps(np.arange(target[1]), source[1] / target[1], source[1], mirror)
        padded = np.pad(image.astype(np.float64), 1)  # index -1 and size: zero
        total = np.zeros(tuple(target))
        for r, wr in ((rows[0], rows[2]), (rows[1], rows[3])):
            for c, wc in ((cols[0], cols[2]), (cols[1], cols[3])):
                total += (padded[r[:, None] + 1, c[None, :] + 1] * wr[:, None]) * wc[None, :]
        np.testing.assert_array_equal(total.astype(np.float32), expected)


def test_ragged_ranges_lay_ranges_end_to_end():
    owner, position = ragged_ranges(np.array([2, 0, 3, 1]))
    assert owner.tolist() == [0, 0, 2, 2, 2, 3]
    assert position.tolist() == [0, 1, 0, 1, 2, 0]
    owner, position = ragged_ranges(np.zeros(0, dtype=np.int64))
    assert owner.size == position.size == 0


# ------------------------------------------------------------ pasting at the prepared size
@pytest.mark.parametrize("seed", range(4))
def test_unmold_mask_pastes_a_stack_as_the_former_loop(seed):
    rng = np.random.default_rng(seed)
    height, width, count = 70, 55, 40
    boxes = random_boxes(rng, count, height, width)
    masks = rng.random((count, 28, 28)).astype(np.float32)
    # Sigmoid-like masks that never reach 0 (skimage then clips to the mask's range, which
    # sets the edge pixels a mask at or above the threshold everywhere blends with zero),
    # and constant masks on either side of the threshold.
    masks[::5] = 0.5 + 0.5 * masks[::5]
    masks[1::7] = 0.5
    masks[2::7] = 0.25
    pasted = unmold_mask(masks, boxes, (height, width, 3))
    expected = np.stack([reference_unmold_mask(m, b, (height, width)) for m, b in
                         zip(masks, boxes, strict=True)], axis=-1)
    assert pasted.shape == (height, width, count) and pasted.dtype == bool
    np.testing.assert_array_equal(pasted, expected)
    assert expected.any(axis=(0, 1)).sum() >= count // 4  # not all boxes empty


def test_unmold_mask_in_small_groups(monkeypatch):
    monkeypatch.setattr(mrcnn.data, "_PASTE_PIXELS_PER_GROUP", 50)
    rng = np.random.default_rng(8)
    boxes = random_boxes(rng, 25, 60, 50)
    masks = rng.random((25, 28, 28)).astype(np.float32)
    expected = np.stack([reference_unmold_mask(m, b, (60, 50)) for m, b in
                         zip(masks, boxes, strict=True)], axis=-1)
    np.testing.assert_array_equal(unmold_mask(masks, boxes, (60, 50)), expected)


def test_unmold_mask_of_one_mask_and_of_none():
    rng = np.random.default_rng(11)
    mask = rng.random((28, 28)).astype(np.float32)
    for box in ([3, 4, 5, 6], [-4, -6, 1, 2], [10, 10, 10, 30], [0, 0, 64, 48],
                [63, 47, 70, 60], [20.7, 5.2, 40.9, 9.99]):
        np.testing.assert_array_equal(unmold_mask(mask, box, (64, 48)),
                                      reference_unmold_mask(mask, box, (64, 48)))
    none = unmold_mask(np.zeros((0, 28, 28), np.float32), np.zeros((0, 4)), (64, 48))
    assert none.shape == (64, 48, 0) and none.dtype == bool


def test_unmold_detections_gives_the_former_loops_masks():
    """Network-like outputs for a 50 x 80 image molded into 128 x 128 (scaled by 1.6 to
    80 x 128, padded above and below): rows of every class, padding rows, tiny boxes and boxes
    reaching past the window."""
    rng = np.random.default_rng(5)
    count, classes = 30, 3
    window = np.array([24, 0, 104, 128])
    y1 = rng.uniform(0.15, 0.8, count)
    x1 = rng.uniform(-0.05, 0.95, count)
    detections = np.zeros((count + 4, 6), np.float32)
    detections[:count, 0] = y1
    detections[:count, 1] = x1
    detections[:count, 2] = y1 + rng.choice([0.004, 0.01, 0.05, 0.3], count)
    detections[:count, 3] = x1 + rng.choice([0.004, 0.01, 0.05, 0.3], count)
    detections[:count, 4] = rng.integers(1, classes, count)
    detections[:count, 5] = rng.random(count)
    mrcnn_mask = rng.random((count + 4, 28, 28, classes)).astype(np.float32)
    model = object.__new__(MaskRCNN)  # unmold_detections needs no built model
    result = model.unmold_detections(detections, mrcnn_mask, (50, 80, 3), (128, 128), window)
    boxes, expected = reference_unmold_detections(detections, mrcnn_mask, (50, 80, 3),
                                                  (128, 128), window)
    np.testing.assert_array_equal(result["rois"], boxes)
    assert result["masks"].shape == (50, 80, len(boxes)) and len(boxes) > count // 2
    np.testing.assert_array_equal(result["masks"], expected)


# ----------------------------------------------------------------- pasting at full size
def blob_masks(rng, shape, count):
    """Pasted-mask-like stacks: random blobs (28 x 28 noise pasted into random boxes)."""
    boxes = random_boxes(rng, count, *shape)
    return unmold_mask(rng.random((count, 28, 28)).astype(np.float32), boxes, shape)


# (original shape, crop, prepared shape): a mammogram-like 10x enlargement, a crop at the
# origin, a slight enlargement, columns shrinking while rows grow (lone pixels vanish: their
# centre pixel comes back), a crop of the whole image.
PASTE_CASES = [
    ((700, 560), (0, 120, 666, 560), (64, 43)),
    ((300, 260), (0, 0, 290, 200), (64, 44)),
    ((90, 80), (3, 5, 70, 71), (64, 60)),
    ((120, 60), (0, 0, 96, 20), (64, 40)),
    ((150, 110), (0, 0, 150, 110), (48, 35)),
]


@pytest.mark.parametrize("case", PASTE_CASES)
def test_full_size_paste_is_the_former_mask_to_original(case):
    original, crop, prepared = case
    transform = Transform(original, crop, prepared)
    rng = np.random.default_rng(list(prepared))
    masks = np.concatenate([
        blob_masks(rng, prepared, 12),
        rng.random(prepared + (3,)) > 0.7,  # noise: mixed cells everywhere
        np.zeros(prepared + (2,), bool),  # empty
        np.ones(prepared + (1,), bool),  # full
    ], axis=-1)
    for row, col in [(0, 0), (prepared[0] - 1, prepared[1] - 1), (5, 9)]:  # lone pixels
        lone = np.zeros(prepared, bool)
        lone[row, col] = True
        masks = np.concatenate([masks, lone[..., None]], axis=-1)
    pasted = transform.mask_to_original(masks)
    expected = reference_mask_to_original(masks, transform)
    assert pasted.shape == expected.shape == original + (masks.shape[-1],)
    np.testing.assert_array_equal(pasted, expected)


def test_full_size_paste_keeps_a_vanishing_mask_at_its_centre():
    transform = Transform((120, 60), (0, 0, 96, 20), (64, 40))
    masks = np.zeros((64, 40, 2), bool)
    masks[5, 9, 0] = True
    masks[30:32, 20, 1] = True
    pasted = transform.mask_to_original(masks)
    assert pasted.sum(axis=(0, 1)).tolist() == [1, 1]
    np.testing.assert_array_equal(pasted, reference_mask_to_original(masks, transform))


def test_full_size_paste_in_small_groups(monkeypatch):
    monkeypatch.setattr(preprocess, "_PASTE_PIXELS_PER_GROUP", 7)
    transform = Transform((700, 560), (0, 120, 666, 560), (64, 43))
    masks = blob_masks(np.random.default_rng(4), (64, 43), 8)
    np.testing.assert_array_equal(transform.mask_to_original(masks),
                                  reference_mask_to_original(masks, transform))


@pytest.mark.parametrize("case", [
    ((40, 30), (0, 0, 40, 30), (40, 30)),  # no resize
    ((40, 30), (5, 5, 35, 25), (48, 32)),  # the crop is smaller: anti-aliased shrinking
])
def test_other_resizes_stay_those_of_resize_masks(case):
    original, crop, prepared = case
    transform = Transform(original, crop, prepared)
    masks = blob_masks(np.random.default_rng(3), prepared, 6)
    np.testing.assert_array_equal(transform.mask_to_original(masks),
                                  reference_mask_to_original(masks, transform))


def test_full_size_paste_of_no_masks():
    transform = Transform((700, 560), (0, 120, 666, 560), (64, 43))
    pasted = transform.mask_to_original(np.zeros((64, 43, 0), bool))
    assert pasted.shape == (700, 560, 0) and pasted.dtype == bool


def mixed_masks(rng, prepared):
    masks = np.concatenate([
        blob_masks(rng, prepared, 8),
        rng.random(prepared + (2,)) > 0.7,
        np.zeros(prepared + (1,), bool),
        np.ones(prepared + (1,), bool),
        np.zeros(prepared + (4,), bool),
    ], axis=-1)
    for k, (row, col) in enumerate([(0, 0), (prepared[0] - 1, prepared[1] - 1), (5, 9)]):
        masks[row, col, -4 + k] = True  # lone pixels, which some pastes erase
    masks[[0, -1], [0, -1], -1] = True  # two far corners: the centre lies between them
    return masks


@pytest.mark.parametrize("case", PASTE_CASES)
def test_mask_windows_hold_every_pasted_pixel(case):
    original, crop, prepared = case
    transform = Transform(original, crop, prepared)
    masks = mixed_masks(np.random.default_rng(sum(prepared)), prepared)
    windows = transform.mask_windows(masks)
    full = transform.mask_to_original(masks)
    if windows is None:  # the crop is shorter than the prepared image
        assert crop[2] - crop[0] < prepared[0] or (crop[2] - crop[0], crop[3] - crop[1]) == prepared
        return
    assert windows.shape == (masks.shape[-1], 4)
    for i in range(masks.shape[-1]):
        y1, x1, y2, x2 = windows[i]
        outside = full[..., i].copy()
        outside[y1:y2, x1:x2] = False
        assert not outside.any(), f"mask {i}: pixels outside its window {windows[i]}"
        if not masks[..., i].any():
            assert not np.any(windows[i])
    # and not the whole image: a blob's window lies within two prepared pixels of its box
    blobs = [i for i in range(8) if masks[..., i].any()]
    sy, sx = transform.scale
    box = transform.to_original(mrcnn.data.extract_bboxes(masks[..., blobs]).astype(float))
    margin = np.array([-2 / sy, -2 / sx, 2 / sy, 2 / sx])
    assert np.all(windows[blobs, :2] >= np.floor(box[:, :2] + margin[:2]))
    assert np.all(windows[blobs, 2:] <= np.ceil(box[:, 2:] + margin[2:]))


def test_mask_windows_none_where_the_paste_shrinks():
    transform = Transform((40, 30), (0, 0, 40, 30), (64, 48))
    assert transform.mask_windows(np.ones((64, 48, 1), bool)) is None


def test_detect_outputs_are_the_same_with_and_without_the_windows(tmp_path):
    from PIL import Image

    transform = Transform((1400, 1100), (0, 120, 1333, 1100), (96, 71))
    masks = mixed_masks(np.random.default_rng(4), (96, 71))
    count = masks.shape[-1]
    prepared = {"rois": mrcnn.data.extract_bboxes(masks).astype(np.float64),
                "class_ids": np.ones(count, np.int32), "scores": np.linspace(1, 0.5, count),
                "class_probs": np.full((count, 3), 1 / 3), "masks": masks}
    result = detect_io.detections_to_original(prepared, transform)
    assert detect_io.MASK_WINDOWS in result
    bare = {k: v for k, v in result.items() if k != detect_io.MASK_WINDOWS}
    assert (detect_io.detection_record("x.dcm", (1400, 1100), result)
            == detect_io.detection_record("x.dcm", (1400, 1100), bare))
    image = np.random.default_rng(0).integers(0, 4000, (1400, 1100)).astype(np.uint16)
    for name, res in (("with.png", result), ("without.png", bare)):
        detect_io.write_overlay_png(tmp_path / name, image, res, title="x", max_side=600)
    with Image.open(tmp_path / "with.png") as a, Image.open(tmp_path / "without.png") as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_extract_bboxes_inside_windows_is_the_whole_search():
    rng = np.random.default_rng(2)
    masks = blob_masks(rng, (80, 60), 7)
    masks[..., 3] = False
    boxes = mrcnn.data.extract_bboxes(masks)
    windows = boxes.astype(np.int64) + np.array([-3, -2, 4, 5])
    windows = np.clip(windows, 0, [80, 60, 80, 60])
    np.testing.assert_array_equal(mrcnn.data.extract_bboxes(masks, windows), boxes)


# ---------------------------------------------------------------------------- the JSON
def test_json_masks_and_areas_are_those_of_the_whole_mask():
    rng = np.random.default_rng(9)
    transform = Transform((400, 300), (10, 40, 390, 300), (64, 44))
    masks = transform.mask_to_original(np.concatenate([
        blob_masks(rng, (64, 44), 6), np.zeros((64, 44, 1), bool)], axis=-1))
    masks[0, 0, 1] = masks[-1, -1, 2] = True  # the first and the last pixel
    masks[:, :, 3] = True
    # Runs that meet across columns: the last row of one column, the first of the next.
    masks[-3:, 20, 4] = masks[:2, 21, 4] = masks[-1, 22, 4] = masks[0, 23, 4] = True
    masks[:, -1, 5] = True  # the last column, down to the last pixel
    count = masks.shape[-1]
    result = {"rois": np.zeros((count, 4), np.int32), "class_ids": np.ones(count, np.int32),
              "scores": np.ones(count, np.float32), "masks": masks}
    record = detect_io.detection_record("x.dcm", (400, 300), result)
    for i, entry in enumerate(record["detections"]):
        assert entry["mask"] == reference_rle(masks[..., i])
        assert entry["area_px"] == int(masks[..., i].sum())


@pytest.mark.parametrize("seed", range(6))
def test_json_rle_of_random_masks_touching_every_edge(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(1, 12, size=2))
    masks = rng.random(shape + (5,)) < [0.05, 0.3, 0.7, 0.95, 1.0]
    masks[[0, -1], :, 1] = masks[:, [0, -1], 2] = True
    count = masks.shape[-1]
    result = {"rois": np.zeros((count, 4), np.int32), "class_ids": np.ones(count, np.int32),
              "scores": np.ones(count, np.float32), "masks": masks}
    record = detect_io.detection_record("x.dcm", shape, result)
    for i, entry in enumerate(record["detections"]):
        assert entry["mask"] == reference_rle(masks[..., i])
        assert entry["area_px"] == int(masks[..., i].sum())


# ------------------------------------------------------------------------ the benchmark
def test_benchmark_arguments():
    args = bench.parse_args([])
    assert args.preset == "fpn_cpu" and args.repeats == 3
    assert args.shapes == [(4084, 3328)]
    assert bench.shape_list("4084x3328,3328x2560") == [(4084, 3328), (3328, 2560)]
    with pytest.raises(SystemExit):
        bench.parse_args(["--shapes", "4084by3328"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--repeats", "0"])


def test_benchmark_report_gives_the_host_share():
    phases = {phase: {"median_s": 0.1, "min_s": 0.1, "max_s": 0.1} for phase in bench.PHASES}
    phases["network"] = {"median_s": 0.3, "min_s": 0.3, "max_s": 0.3}
    text = bench.report({"dicom": "a.dcm", "dicom_shape": [4084, 3328], "crop": [0, 0, 1, 1],
                         "prepared_shape": [384, 300], "molded_shape": [384, 320],
                         "detections": 10, "full_size_masks_mib": 129.6,
                         "others_busy_cores": 0.0, "phases": phases})
    assert "| network | 0.300 | 30.0 % |" in text
    assert "host (everything but the network): 70.0 % of the total" in text
