"""Small DICOM files for the tests: a 16-bit monochrome mammogram-like image with the elements
the readers need, plus any extra elements a test sets."""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def write_dicom(path, pixels, photometric="MONOCHROME2", bits_stored=14, syntax=None,
                **elements):
    """Write ``pixels`` [rows, cols] as uint16 (``syntax`` None) or, for a compressed transfer
    syntax, as a placeholder fragment; returns ``path``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if syntax is None:
        ds.PixelData = pixels.astype("<u2").tobytes()
    else:
        ds.PixelData = encapsulate([b"\x00" * 32])
    ds.save_as(path, enforce_file_format=True)
    return path
