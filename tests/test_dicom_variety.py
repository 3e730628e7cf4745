"""DICOM variety for read_dicom: what it reads (with the right values) and what it refuses clearly.

Each test writes a tiny DICOM with pydicom and checks read_dicom against the array written.
Decisions (docs/robustness.md): MONOCHROME1/2; BitsAllocated 8 or 16 with any BitsStored up to
it; unsigned only (signed is refused); one frame (multi-frame is refused, not cut to its first
frame); grayscale only; compressed syntaxes only with a decoder, else an error that names the
packages that would decode it; no BitsStored -> BitsAllocated and no SamplesPerPixel -> 1, each
with a warning; trailing bytes ignored; a missing preamble tolerated when the File Meta
Information is there, a bare data set refused.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from ftmtl.inbreast.dicom_io import DEFAULT_PIXEL_SPACING_MM, read_dicom, read_dicom_shape
from ftmtl.inbreast.records import InbreastFormatError

SHAPE = (6, 10)


def dataset(pixels: np.ndarray, *, photometric="MONOCHROME2", bits_allocated=16, bits_stored=14,
            signed=False, samples=1, frames=None, syntax: UID = ExplicitVRLittleEndian,
            pixel_bytes: bytes | None = None, drop=(), **elements) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.Modality = "MG"
    ds.Rows, ds.Columns = SHAPE
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames is not None:
        ds.NumberOfFrames = frames
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if pixel_bytes is None:
        order = ">" if syntax == ExplicitVRBigEndian else "<"
        kind = "i" if signed else "u"
        pixel_bytes = pixels.astype(f"{order}{kind}{bits_allocated // 8}").tobytes()
    ds.PixelData = pixel_bytes
    ds["PixelData"].VR = "OB" if syntax.is_compressed or bits_allocated == 8 else "OW"
    for keyword in drop:
        delattr(ds, keyword)
    return ds


def write(tmp_path, name, ds: Dataset):
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


def stored_values(bits_stored: int, seed: int = 0) -> np.ndarray:
    """Values spanning the whole BitsStored range, both ends included."""
    values = np.random.default_rng(seed).integers(0, 2**bits_stored, size=SHAPE)
    values.flat[:2] = [0, 2**bits_stored - 1]
    return values


# --- what is read, with the right values -------------------------------------------------------


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("bits_allocated, bits_stored", [(8, 8), (16, 8), (16, 12), (16, 14),
                                                         (16, 16)])
def test_grayscale_depths_give_uint16_with_the_values_written(
    tmp_path, photometric, bits_allocated, bits_stored
):
    values = stored_values(bits_stored)
    ds = dataset(values, photometric=photometric, bits_allocated=bits_allocated,
                 bits_stored=bits_stored)
    image = read_dicom(write(tmp_path, "depth.dcm", ds))
    expected = values if photometric == "MONOCHROME2" else (2**bits_stored - 1) - values
    assert image.pixels.dtype == np.uint16 and image.shape == SHAPE
    np.testing.assert_array_equal(image.pixels, expected)
    assert (image.bits_stored, image.photometric) == (bits_stored, photometric)


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian,
                                    DeflatedExplicitVRLittleEndian])
def test_other_uncompressed_transfer_syntaxes(tmp_path, syntax):
    values = stored_values(14)
    image = read_dicom(write(tmp_path, "syntax.dcm", dataset(values, syntax=syntax)))
    np.testing.assert_array_equal(image.pixels, values)


def test_missing_bits_stored_uses_bits_allocated_with_a_warning(tmp_path, caplog):
    values = stored_values(14)
    path = write(tmp_path, "nobits.dcm", dataset(values, photometric="MONOCHROME1",
                                                 drop=["BitsStored"]))
    with caplog.at_level(logging.WARNING, logger="ftmtl.inbreast.dicom_io"):
        image = read_dicom(path)
    assert image.bits_stored == 16
    np.testing.assert_array_equal(image.pixels, (2**16 - 1) - values)
    assert any("nobits.dcm: no BitsStored; using BitsAllocated (16)" in r.getMessage()
               for r in caplog.records)


def test_missing_samples_per_pixel_is_one_with_a_warning(tmp_path, caplog):
    values = stored_values(14)
    path = write(tmp_path, "nospp.dcm", dataset(values, drop=["SamplesPerPixel"]))
    with caplog.at_level(logging.WARNING, logger="ftmtl.inbreast.dicom_io"):
        np.testing.assert_array_equal(read_dicom(path).pixels, values)
    assert any("nospp.dcm: no SamplesPerPixel; using 1" in r.getMessage() for r in caplog.records)


def test_single_frame_declared_as_such_is_read(tmp_path):
    values = stored_values(12)
    path = write(tmp_path, "oneframe.dcm", dataset(values, bits_stored=12, frames=1))
    np.testing.assert_array_equal(read_dicom(path).pixels, values)


@pytest.mark.parametrize("junk", [b"\x00" * 7, b"JUNKJUNKJUNK", bytes(range(256))])
def test_trailing_bytes_after_the_pixel_data_are_ignored(tmp_path, junk):
    values = stored_values(14)
    path = write(tmp_path, "trailing.dcm", dataset(values))
    path.write_bytes(path.read_bytes() + junk)
    np.testing.assert_array_equal(read_dicom(path).pixels, values)
    assert read_dicom_shape(path) == SHAPE


def test_padding_inside_the_pixel_data_is_ignored(tmp_path):
    values = stored_values(14)
    padded = values.astype("<u2").tobytes() + b"\x00\x01" * 5
    path = write(tmp_path, "padded.dcm", dataset(values, pixel_bytes=padded))
    with pytest.warns(UserWarning, match="excess padding"):
        np.testing.assert_array_equal(read_dicom(path).pixels, values)


@pytest.mark.parametrize("strip, label", [(128, "DICM kept"), (132, "DICM gone too")])
def test_file_without_preamble_is_read_from_its_meta_information(tmp_path, caplog, strip, label):
    values = stored_values(14)
    path = write(tmp_path, "nopreamble.dcm", dataset(values, photometric="MONOCHROME1"))
    path.write_bytes(path.read_bytes()[strip:])
    with caplog.at_level(logging.WARNING, logger="ftmtl.inbreast.dicom_io"):
        image = read_dicom(path)
    np.testing.assert_array_equal(image.pixels, (2**14 - 1) - values)
    assert read_dicom_shape(path) == SHAPE
    assert any("nopreamble.dcm: no 128-byte preamble" in r.getMessage() for r in caplog.records)


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS:UserWarning")  # pydicom, on 'inf'
@pytest.mark.parametrize("spacing", [[0.1], ["inf", 0.1], [0.0, 0.1], [0.1, 0.1, 0.1]])
def test_bad_pixel_spacing_warns_and_uses_the_default(tmp_path, caplog, spacing):
    """Found: one value raised TypeError (len of a number) and 'inf' was taken as a spacing."""
    path = write(tmp_path, "spacing.dcm", dataset(stored_values(14), PixelSpacing=spacing))
    with caplog.at_level(logging.WARNING, logger="ftmtl.inbreast.dicom_io"):
        image = read_dicom(path)
    assert image.pixel_spacing == (DEFAULT_PIXEL_SPACING_MM, DEFAULT_PIXEL_SPACING_MM)
    assert any("spacing.dcm: PixelSpacing is" in r.getMessage() for r in caplog.records)


# --- what is refused, and how clearly -----------------------------------------------------------


def refused(path, *words):
    with pytest.raises(InbreastFormatError) as error:
        read_dicom(path)
    message = str(error.value)
    assert str(path) in message, message
    for word in words:
        assert word in message, message
    return message


def test_signed_pixels_are_refused(tmp_path):
    values = stored_values(12) - 2000
    path = write(tmp_path, "signed.dcm", dataset(values, bits_stored=12, signed=True))
    refused(path, "PixelRepresentation 1 (signed pixels) not supported")


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless,
                                    RLELossless])
def test_compressed_syntax_names_the_missing_decoder_or_the_bad_data(tmp_path, syntax):
    junk = encapsulate([b"\xff\xd8" + bytes(range(64))])
    path = write(tmp_path, "compressed.dcm", dataset(stored_values(14), syntax=syntax,
                                                     pixel_bytes=junk))
    decoder = get_decoder(syntax)
    if decoder.is_available:  # a plugin is installed: the junk stream is what fails
        refused(path, "pixel data unreadable")
    else:
        message = refused(path, f"compressed transfer syntax {syntax.name}", "no decoder")
        for requirement in decoder.missing_dependencies:
            assert requirement in message


def test_jpeg_lossless_without_a_decoder_says_which_packages_decode_it(tmp_path, monkeypatch):
    """The case INbreast-like archives meet most; the message must name the packages."""
    junk = encapsulate([b"\xff\xd8" + bytes(range(64))])
    path = write(tmp_path, "jpegll.dcm", dataset(stored_values(14), syntax=JPEGLosslessSV1,
                                                 pixel_bytes=junk))
    decoder = get_decoder(JPEGLosslessSV1)
    monkeypatch.setattr(type(decoder), "is_available", property(lambda self: False))
    message = refused(path, "JPEG Lossless", "no decoder installed")
    assert "pylibjpeg" in message and "gdcm" in message


@pytest.mark.parametrize("missing, words", [
    ("PhotometricInterpretation", ["no PhotometricInterpretation", "invert"]),
    ("Rows", ["no Rows"]),
    ("Columns", ["no Columns"]),
    ("BitsAllocated", ["no BitsAllocated"]),
    ("PixelRepresentation", ["no PixelRepresentation"]),
])
def test_missing_required_elements_are_named(tmp_path, missing, words):
    path = write(tmp_path, "missing.dcm", dataset(stored_values(14), drop=[missing]))
    refused(path, *words)


def test_rgb_is_refused(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(*SHAPE, 3))
    path = write(tmp_path, "rgb.dcm", dataset(rgb, photometric="RGB", bits_allocated=8,
                                              bits_stored=8, samples=3))
    refused(path, "PhotometricInterpretation 'RGB'", "colour")


def test_three_samples_labelled_grayscale_is_refused(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(*SHAPE, 3))
    path = write(tmp_path, "rgbm2.dcm", dataset(rgb, bits_allocated=8, bits_stored=8, samples=3))
    refused(path, "SamplesPerPixel 3")


def test_multi_frame_is_refused_not_cut_to_a_frame(tmp_path):
    frames = np.stack([stored_values(12, seed) for seed in range(3)])
    path = write(tmp_path, "multi.dcm", dataset(frames, bits_stored=12, frames=3))
    refused(path, "NumberOfFrames 3", "multi-frame")


@pytest.mark.parametrize("change, words", [
    ({"bits_allocated": 32, "bits_stored": 32}, ["BitsAllocated 32"]),
    ({"bits_stored": 17}, ["BitsStored 17"]),
    ({"Rows": 0}, ["0x10", "empty"]),
])
def test_impossible_layouts_are_refused(tmp_path, change, words):
    path = write(tmp_path, "layout.dcm", dataset(stored_values(8), **change))
    refused(path, *words)


def test_bare_data_set_without_meta_information_is_refused(tmp_path):
    ds = dataset(stored_values(14), syntax=ImplicitVRLittleEndian)
    del ds.file_meta
    path = tmp_path / "bare.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert path.read_bytes()[:2] == b"\x08\x00"
    refused(path, "bare data set", "transfer syntax is unknown")
    with pytest.raises(InbreastFormatError, match="bare.dcm"):
        read_dicom_shape(path)


def test_short_pixel_data_is_refused(tmp_path):
    values = stored_values(14)
    path = write(tmp_path, "short.dcm", dataset(values,
                                                pixel_bytes=values.astype("<u2").tobytes()[:-4]))
    refused(path, "pixel data unreadable")
