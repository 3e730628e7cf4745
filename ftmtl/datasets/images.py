"""Pixels of the image files other datasets ship: DICOM, or PNG / TIFF / JPEG of 8 or 16 bits.

Everything comes back as stored values, uint16 [H, W], with the number of bits they use, so
that ``ftmtl.inbreast.preprocess.prepare_image`` treats every format as it treats INbreast's
DICOMs. DICOMs go through ``ftmtl.inbreast.dicom_io.read_dicom`` (MONOCHROME1 inverted, bits
from BitsStored). Raster files carry no BitsStored: 8-bit files use 8 bits, 16-bit files 16,
unless the caller says how many bits the values use (a 14-bit mammogram saved as a 16-bit PNG
keeps values up to 16383: ``bits_stored=14`` then scales it as the DICOM would be).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ftmtl.inbreast.dicom_io import read_dicom
from ftmtl.inbreast.intensity import VoiFunction, file_voi

logger = logging.getLogger(__name__)

RASTER_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
_RASTER_BITS = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}


class ImageFileError(ValueError):
    """An image or mask file cannot be used (the message names the file and what is wrong)."""


def is_raster(path: str | os.PathLike) -> bool:
    """Whether the file is read as PNG/TIFF/JPEG (by its suffix); anything else as DICOM."""
    return Path(path).suffix.lower() in RASTER_SUFFIXES


def read_pixels(path: str | os.PathLike, bits_stored: int | None = None
                ) -> tuple[np.ndarray, int, VoiFunction | None]:
    """(stored values uint16 [H, W], bits they use, the file's own intensity window or None)
    of a DICOM or raster image file (raster files carry no window).

    ``bits_stored`` applies to raster files only (DICOMs say it themselves). Colour raster
    files are averaged to gray (with a warning when the channels differ); an alpha channel is
    dropped. Files of other sample types (float, 32-bit, 1-bit) raise ImageFileError.
    """
    path = Path(path)
    if not is_raster(path):
        dicom = read_dicom(path)
        return dicom.pixels, dicom.bits_stored, file_voi(dicom)
    image = _gray(_read_raster(path), path)
    bits = _RASTER_BITS.get(image.dtype)
    if bits is None:
        raise ImageFileError(f"{path}: samples of type {image.dtype}; expected 8- or 16-bit "
                             "unsigned integers")
    if bits_stored is not None:
        if not 1 <= bits_stored <= bits:
            raise ImageFileError(f"{path}: bits_stored {bits_stored} does not fit the file's "
                                 f"{bits}-bit samples")
        top = int(image.max(initial=0))
        if top >= 2**bits_stored:
            logger.warning("%s: values up to %d, above the %d bits_stored allows; they are "
                           "clipped", path, top, bits_stored)
        bits = bits_stored
    return image.astype(np.uint16), bits, None


def read_mask_file(path: str | os.PathLike) -> np.ndarray:
    """A mask image (DICOM or raster, any bit depth) as bool [H, W]: nonzero is inside."""
    path = Path(path)
    if not is_raster(path):
        return read_dicom(path).pixels > 0
    return _gray(_read_raster(path), path) > 0


def _read_raster(path: Path) -> np.ndarray:
    import skimage.io

    try:
        return np.asarray(skimage.io.imread(path))
    except FileNotFoundError as err:
        raise ImageFileError(f"{path}: no such file") from err
    except Exception as err:  # the imaging plugins raise many types for a broken file
        raise ImageFileError(f"{path}: not a readable image ({type(err).__name__}: "
                             f"{str(err)[:200]})") from err


def _gray(image: np.ndarray, path: Path) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[-1] in (2, 3, 4):
        colours = image[..., :3] if image.shape[-1] >= 3 else image[..., :1]
        if colours.shape[-1] > 1 and not np.all(colours == colours[..., :1]):
            logger.warning("%s: a colour image; its channels are averaged to gray", path)
        return np.round(colours.mean(axis=-1)).astype(image.dtype)
    raise ImageFileError(f"{path}: shape {image.shape}; expected one gray image [H, W] "
                         "(or [H, W, 3|4])")
