"""DICOM reader: stored values, MONOCHROME1 inversion, spacing, and named errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from dicom_files import write_dicom
from pydicom.uid import (
    HTJ2KLossless,
)

from ftmtl.inbreast.dicom_io import DEFAULT_PIXEL_SPACING_MM, read_dicom, read_dicom_shape
from ftmtl.inbreast.records import InbreastFormatError


@pytest.fixture
def pixels():
    rng = np.random.default_rng(0)
    return rng.integers(0, 2**14, size=(48, 64)).astype(np.uint16)


def test_monochrome2_keeps_the_stored_values(tmp_path, pixels, caplog):
    with caplog.at_level(logging.DEBUG, logger="ftmtl.inbreast.dicom_io"):
        image = read_dicom(write_dicom(tmp_path / "a.dcm", pixels))
    assert image.pixels.dtype == np.uint16 and image.shape == (48, 64)
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.bits_stored == 14 and image.photometric == "MONOCHROME2"
    assert image.pixel_spacing == (DEFAULT_PIXEL_SPACING_MM, DEFAULT_PIXEL_SPACING_MM)
    assert image.pixel_spacing_source is None  # the default, not the file's
    assert any("no pixel spacing" in r.getMessage() for r in caplog.records)


def test_monochrome1_is_inverted_so_dense_is_bright(tmp_path, pixels):
    image = read_dicom(write_dicom(tmp_path / "b.dcm", pixels, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(image.pixels.astype(int), (2**14 - 1) - pixels.astype(int))


@pytest.mark.parametrize("keyword", ["PixelSpacing", "ImagerPixelSpacing"])
def test_pixel_spacing_is_read(tmp_path, pixels, keyword):
    path = write_dicom(tmp_path / "c.dcm", pixels, **{keyword: [0.1, 0.2]})
    image = read_dicom(path)
    assert image.pixel_spacing == (0.1, 0.2) and image.pixel_spacing_source == keyword


def test_pixel_spacing_prefers_pixel_spacing_to_imager_pixel_spacing(tmp_path, pixels):
    path = write_dicom(tmp_path / "both.dcm", pixels, PixelSpacing=[0.05, 0.05],
                       ImagerPixelSpacing=[0.1, 0.2])
    image = read_dicom(path)
    assert image.pixel_spacing == (0.05, 0.05) and image.pixel_spacing_source == "PixelSpacing"


def test_the_header_keeps_the_uids_without_the_pixel_data(tmp_path, pixels):
    path = write_dicom(tmp_path / "uids.dcm", pixels, StudyInstanceUID="1.2.3",
                       SeriesInstanceUID="1.2.3.4")
    header = read_dicom(path).header
    assert (header.StudyInstanceUID, header.SeriesInstanceUID) == ("1.2.3", "1.2.3.4")
    assert header.SOPInstanceUID == header.file_meta.MediaStorageSOPInstanceUID
    assert (header.Rows, header.Columns) == (48, 64)
    assert "PixelData" not in header


def test_bits_above_bits_stored_are_not_pixel_data(tmp_path):
    pixels = np.array([[0, 100], [2**14 - 1, 2**15 + 7]], dtype=np.uint16)
    image = read_dicom(write_dicom(tmp_path / "d.dcm", pixels, photometric="MONOCHROME1"))
    top = 2**14 - 1
    np.testing.assert_array_equal(image.pixels, [[top, top - 100], [0, top - 7]])


def test_header_shape_without_pixels(tmp_path, pixels):
    assert read_dicom_shape(write_dicom(tmp_path / "e.dcm", pixels)) == (48, 64)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.05])
def test_truncated_file_is_a_format_error_naming_the_file(tmp_path, pixels, keep):
    data = write_dicom(tmp_path / "full.dcm", pixels).read_bytes()
    path = tmp_path / "truncated.dcm"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InbreastFormatError, match="truncated.dcm"):
        read_dicom(path)


def test_non_dicom_file_is_a_format_error_naming_the_file(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("this is not a DICOM file\n" * 20)
    with pytest.raises(InbreastFormatError, match="notes.dcm: not a DICOM file"):
        read_dicom(path)
    with pytest.raises(InbreastFormatError, match="notes.dcm"):
        read_dicom_shape(path)


def test_missing_pixel_data_is_named(tmp_path, pixels):
    path = write_dicom(tmp_path / "f.dcm", pixels)
    from pydicom import dcmread

    ds = dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InbreastFormatError, match="f.dcm: no PixelData"):
        read_dicom(path)


def test_compressed_syntax_without_decoder_is_named(tmp_path, pixels):
    path = write_dicom(tmp_path / "g.dcm", pixels, syntax=HTJ2KLossless)
    # HTJ2K: pydicom decodes it only with pylibjpeg-openjpeg, which we do not install
    with pytest.raises(InbreastFormatError,
                       match="g.dcm: compressed transfer syntax High-Throughput JPEG 2000"):
        read_dicom(path)


def test_colour_image_is_refused(tmp_path, pixels):
    path = write_dicom(tmp_path / "h.dcm", pixels, photometric="PALETTE COLOR")
    with pytest.raises(InbreastFormatError, match="h.dcm: PhotometricInterpretation"):
        read_dicom(path)
