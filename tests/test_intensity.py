"""ftmtl.inbreast.intensity: the intensity windows against hand-worked values and the DICOM
standard's formulas, their independence of the detector's gain, and the files that carry a
window, a VOI LUT, MONOCHROME1 or nothing."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_files import write_dicom
from pydicom.dataset import Dataset

from ftmtl.inbreast.dicom_io import read_dicom
from ftmtl.inbreast.intensity import (
    PERCENTILES,
    apply_window,
    check_window,
    dicom_voi,
    file_voi,
    full_range,
    percentile_bounds,
    percentile_window,
    sample_step,
)
from ftmtl.inbreast.preprocess import prepare_image


def mammogram_like(shape=(120, 90), seed=0) -> np.ndarray:
    """Background at 40, a breast of 1,000-2,400 with texture, a brighter blob."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    breast = (rows - shape[0] / 2) ** 2 / (0.45 * shape[0]) ** 2 + cols**2 / (
        0.8 * shape[1]) ** 2 <= 1
    image = np.where(breast, 1000 + 1400 * rng.uniform(size=shape), 40.0)
    image[50:60, 20:30] += 500
    return np.rint(image).astype(np.uint16)


def test_percentile_window_maps_the_percentiles_to_0_and_1_and_clips():
    image = np.arange(1000, dtype=np.float32).reshape(40, 25)
    low, high = np.percentile(image, PERCENTILES)  # numpy's linear rule, the whole image
    out = percentile_window(image)
    expected = np.clip((image - low) / (high - low), 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    # hand-worked: 0.5th percentile of 0..999 is 4.995, 99.9th is 998.001
    assert percentile_bounds(image) == pytest.approx((4.995, 998.001))


@pytest.mark.parametrize("gain, offset", [(0.5, 0.0), (2.0, 0.0), (1.0, 300.0), (3.0, 150.0)])
def test_percentile_window_ignores_the_detector_gain_and_offset(gain, offset):
    image = mammogram_like().astype(np.float64)
    np.testing.assert_allclose(percentile_window(gain * image + offset),
                               percentile_window(image), atol=1e-5)


def test_full_range_divides_by_the_largest_stored_value():
    np.testing.assert_allclose(full_range(np.array([0, 8191, 16383, 20000]), 14),
                               [0, 8191 / 16383, 1, 1])
    assert full_range(np.array([4095]), 12)[0] == 1.0


def test_a_uniform_image_becomes_zeros_not_nan():
    out = percentile_window(np.full((10, 10), 500.0))
    assert np.array_equal(out, np.zeros((10, 10), np.float32))


def test_large_images_are_sampled_for_the_percentiles():
    assert sample_step((512, 300)) == 1 and sample_step((3328, 2560)) == 7
    image = mammogram_like((1100, 800)).astype(np.float32)
    exact = np.percentile(image, PERCENTILES)
    # every 3rd pixel: the bounds differ from the full image's by far less than the range
    assert np.allclose(percentile_bounds(image), exact, atol=0.02 * (exact[1] - exact[0]))


def test_unknown_window_names_the_choices():
    with pytest.raises(ValueError, match="INTENSITY_WINDOW.*'percentile', 'dicom'"):
        check_window("minmax")
    with pytest.raises(ValueError, match="prepare_image: window"):
        prepare_image(mammogram_like(), None, 14, window="auto")


# ------------------------------------------------------------------------ the file's window
def header(**elements) -> Dataset:
    ds = Dataset()
    ds.BitsStored, ds.PixelRepresentation = 14, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def dicom_linear(x, center, width, top):
    """PS3.3 C.11.2.1.2.1, LINEAR, written out: output range [0, top]."""
    y = ((x - (center - 0.5)) / (width - 1) + 0.5) * top
    return np.clip(np.where(x <= center - 0.5 - (width - 1) / 2, 0, y), 0, top)


def test_a_window_is_the_standards_linear_function_scaled_to_0_1():
    values = np.array([0, 1000, 1500, 1999, 2000, 2500, 3000, 16383])
    voi = dicom_voi(header(WindowCenter=2000, WindowWidth=1000), "MONOCHROME2", 14)
    expected = dicom_linear(values.astype(float), 2000, 1000, 2**14 - 1) / (2**14 - 1)
    np.testing.assert_allclose(voi(values), expected, atol=1e-6)
    assert voi(values)[0] == 0.0 and voi(values)[-1] == 1.0


def test_the_first_of_several_windows_is_used():
    voi = dicom_voi(header(WindowCenter=[2000, 500], WindowWidth=[1000, 100]),
                    "MONOCHROME2", 14)
    assert voi(np.array([2000]))[0] == pytest.approx(
        dicom_linear(2000.0, 2000, 1000, 16383) / 16383, abs=1e-6)


def test_a_voi_lut_is_looked_up_and_scaled_by_its_own_entries():
    item = Dataset()
    item.LUTDescriptor = [4, 1000, 16]
    item.LUTData = [100, 400, 900, 1600]  # entries for inputs 1000..1003
    voi = dicom_voi(header(VOILUTSequence=[item]), "MONOCHROME2", 14)
    out = voi(np.array([0, 1000, 1001, 1002, 1003, 5000]))
    # below the first input: the first entry; above the last: the last entry
    entries = np.array([100, 100, 400, 900, 1600, 1600], dtype=float)
    np.testing.assert_allclose(out, (entries - 100) / 1500, atol=1e-6)


def test_a_file_without_a_window_has_none():
    assert dicom_voi(header(), "MONOCHROME2", 14) is None
    assert dicom_voi(None, "MONOCHROME2", 14) is None
    assert dicom_voi(header(WindowCenter=100), "MONOCHROME2", 14) is None  # no width


def test_files_with_a_window_a_lut_monochrome1_and_none(tmp_path):
    pixels = mammogram_like()
    plain = read_dicom(write_dicom(tmp_path / "plain.dcm", pixels))
    windowed = read_dicom(write_dicom(tmp_path / "window.dcm", pixels, WindowCenter=1700,
                                      WindowWidth=1400))
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [3000, 0, 16])
    item.add_new("LUTData", "US", [int(v) for v in np.sqrt(np.arange(3000)) * 100])
    lut = read_dicom(write_dicom(tmp_path / "lut.dcm", pixels, VOILUTSequence=[item]))
    # MONOCHROME1: the file stores the inverse, and its window refers to the stored values
    # (the mirror of centre c is top - c + 1: the standard's linear function uses c - 0.5)
    inverse = (2**14 - 1) - pixels
    mono1 = read_dicom(write_dicom(tmp_path / "mono1.dcm", inverse, photometric="MONOCHROME1",
                                   WindowCenter=(2**14 - 1) - 1700 + 1, WindowWidth=1400))
    assert file_voi(plain) is None
    gray = pixels.astype(np.float64)
    by_window = apply_window(windowed.pixels, "dicom", 14, file_voi(windowed))
    np.testing.assert_allclose(by_window, dicom_linear(gray, 1700, 1400, 16383) / 16383,
                               atol=1e-6)
    by_lut = apply_window(lut.pixels, "dicom", 14, file_voi(lut))
    table = np.asarray(item.LUTData, dtype=float)
    np.testing.assert_allclose(by_lut, (table[np.minimum(pixels, 2999)] - table.min())
                               / (table.max() - table.min()), atol=1e-6)
    # read_dicom gives "high = dense" values; the MONOCHROME1 window, inverted after it as a
    # viewer shows it, brings back the MONOCHROME2 file's picture
    np.testing.assert_array_equal(mono1.pixels, pixels)
    by_mono1 = apply_window(mono1.pixels, "dicom", 14, file_voi(mono1))
    np.testing.assert_allclose(by_mono1, by_window, atol=1e-6)
    # no window in the file: the percentile window
    np.testing.assert_array_equal(apply_window(plain.pixels, "dicom", 14, file_voi(plain)),
                                  percentile_window(plain.pixels))


def test_prepare_image_windows_after_resizing(tmp_path):
    pixels = mammogram_like((240, 180))
    full, _, _ = prepare_image(pixels, None, 14, 120, window="full_range")
    by_percentile, _, transform = prepare_image(pixels, None, 14, 120)
    assert full.max() < 0.2  # 14-bit division leaves real-range tissue dark
    assert by_percentile.max() == 1.0 and by_percentile.min() == 0.0
    # the window is read on the resized image: its percentiles map to 0 and 1 exactly
    resized = full * np.float32(2**14 - 1)
    np.testing.assert_allclose(by_percentile, percentile_window(resized), atol=1e-4)
    assert max(by_percentile.shape) == 120 and transform.output_shape == by_percentile.shape


# ------------------------------------------------------------------------ config and CLI
def test_the_config_chooses_the_window_and_refuses_others():
    from ftmtl.model import intensity_window
    from ftmtl.presets import make_config
    from mrcnn.config import Config, ConfigError

    assert make_config("fpn_cpu", "ftmtl").INTENSITY_WINDOW == "percentile"
    assert intensity_window(make_config("fpn_cpu", "ftmtl", INTENSITY_WINDOW="dicom")) == "dicom"
    class TwoClasses(Config):
        NUM_CLASSES = 2

    assert intensity_window(TwoClasses()) == "percentile"  # mrcnn's Config has no such option
    with pytest.raises(ConfigError, match="INTENSITY_WINDOW: must be one of 'percentile'"):
        make_config("fpn_cpu", "ftmtl", INTENSITY_WINDOW="minmax")


def test_synth_renders_another_gain_and_refuses_one_that_overflows(tmp_path, capsys):
    from ftmtl.cli import main
    from ftmtl.inbreast.synthetic import read_manifest

    assert main(["-q", "synth", "--out", str(tmp_path / "g2"), "--patients", "1",
                 "--size", "128x96", "--intensity-scale", "2"]) == 0
    assert read_manifest(tmp_path / "g2").intensity_scale == 2.0
    assert main(["-q", "synth", "--out", str(tmp_path / "g9"), "--patients", "1",
                 "--size", "128x96", "--intensity-scale", "9"]) != 0
    assert "intensity_scale must be in (0, 5.0]" in capsys.readouterr().err
