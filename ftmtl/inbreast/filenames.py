"""INbreast DICOM file names, the index of a DICOM folder, and path joins that stay inside a root.

Names look like ``<FileName>_<16 hex>_MG_<L|R>_<CC|ML>_ANON.dcm``; the 16-hex part is the only
patient identity the data set keeps (the CSV's Patient ID reads "removed").
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path, PurePath

from ftmtl.inbreast.records import DicomName, InbreastFormatError

logger = logging.getLogger(__name__)

_DICOM_NAME = re.compile(
    r"(?P<file>[^_/\\]+)_(?P<hash>[0-9A-Fa-f]{16})_MG_(?P<side>[LR])_(?P<view>CC|MLO|ML|FB)"
    r"_ANON\.dcm"
)
_VIEW_IN_CSV = {"CC": "CC", "ML": "MLO", "MLO": "MLO", "FB": "FB"}


def parse_dicom_name(name: str) -> DicomName:
    """Split an INbreast DICOM file name into its parts (``view`` in the CSV's words)."""
    match = _DICOM_NAME.fullmatch(PurePath(name).name)
    if match is None:
        raise InbreastFormatError(
            f"{name}: not an INbreast DICOM name <FileName>_<16 hex>_MG_<L|R>_<CC|ML>_ANON.dcm"
        )
    return DicomName(
        file_name=match["file"],
        patient_hash=match["hash"].lower(),
        laterality=match["side"],
        view=_VIEW_IN_CSV[match["view"]],
    )


def index_dicoms(folder: str | os.PathLike) -> dict[str, Path]:
    """Map each FileName to its DICOM path; other files are skipped with a warning."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InbreastFormatError(f"{folder}: DICOM folder not found")
    index: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        try:
            parsed = parse_dicom_name(path.name)
        except InbreastFormatError:
            logger.warning("%s: not an INbreast DICOM name; skipped", path)
            continue
        if parsed.file_name in index:
            raise InbreastFormatError(
                f"{folder}: FileName {parsed.file_name} has two DICOMs: "
                f"{index[parsed.file_name].name} and {path.name}"
            )
        index[parsed.file_name] = path
    return index


def safe_join(root: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """Join ``relative`` under ``root``, refusing absolute paths, ``..`` and links leading out.

    Any refusal (also a NUL byte or a symbolic-link loop) is an InbreastFormatError.
    """
    root_path = Path(root)
    part = PurePath(relative)
    if part.is_absolute() or part.drive or part.root:
        raise InbreastFormatError(f"{relative}: absolute path refused under {root_path}")
    if ".." in part.parts:
        raise InbreastFormatError(f"{relative}: '..' refused under {root_path}")
    joined = root_path / part
    try:
        resolved_root = root_path.resolve()
        resolved = joined.resolve()
    except (OSError, RuntimeError, ValueError) as err:  # NUL byte, symbolic-link loop
        raise InbreastFormatError(
            f"{relative!r}: cannot resolve under {root_path} ({err})"
        ) from err
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise InbreastFormatError(
            f"{relative}: resolves to {resolved}, outside {resolved_root} (symbolic link?)"
        )
    return joined
