"""Reader for INbreast.csv: one row per image, ``;``-separated, CRLF line ends."""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ftmtl.inbreast.records import BIRADS_VALUES, CaseRecord, InbreastFormatError

CSV_COLUMNS = (
    "Patient ID",
    "Patient age",
    "Laterality",
    "View",
    "Acquisition date",
    "File Name",
    "ACR",
    "Bi-Rads",
)
VIEWS = ("CC", "MLO", "FB")
LATERALITIES = ("L", "R")
ACR_VALUES = (1, 2, 3, 4)
_REMOVED = ("", "removed")
MAX_CSV_BYTES = 16 * 1024 * 1024
_MAX_INT_DIGITS = 3
# File names are joined into paths: no separators, no control characters (NUL breaks open()).
_BAD_FILE_NAME_CHARACTER = re.compile(r"[\x00-\x1f\x7f/\\]")


def read_inbreast_csv(
    path: str | os.PathLike, max_bytes: int = MAX_CSV_BYTES
) -> list[CaseRecord]:
    """Read INbreast.csv into one CaseRecord per image, refusing anything ambiguous.

    Accepts CRLF or LF line ends and a leading UTF-8 BOM; blank lines are skipped. Every
    problem (unreadable, not UTF-8, over ``max_bytes``, bad header or field) raises
    InbreastFormatError naming the file (and the row and field); no other exception escapes.
    """
    path = Path(path)
    rows = _read_rows(path, max_bytes)
    if not rows:
        raise InbreastFormatError(f"{path}: empty file, expected a header row")
    column_of = _check_header(path, rows[0])
    records: list[CaseRecord] = []
    seen: dict[str, int] = {}
    for line_number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        record = _parse_row(path, line_number, row, column_of)
        if record.file_name in seen:
            raise InbreastFormatError(
                f"{path}: row {line_number}: File Name {record.file_name!r} repeats row "
                f"{seen[record.file_name]}"
            )
        seen[record.file_name] = line_number
        records.append(record)
    return records


def _read_rows(path: Path, max_bytes: int) -> list[list[str]]:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InbreastFormatError(f"{path}: {size} bytes, above the limit of {max_bytes}")
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return list(csv.reader(handle, delimiter=";"))
    except UnicodeDecodeError as err:
        raise InbreastFormatError(f"{path}: not UTF-8 text ({err})") from err
    except OSError as err:
        raise InbreastFormatError(f"{path}: cannot read ({err})") from err
    except csv.Error as err:
        raise InbreastFormatError(f"{path}: not readable as ';'-separated text ({err})") from err


def _check_header(path: Path, header: list[str]) -> dict[str, int]:
    names = [cell.strip() for cell in header]
    counts = Counter(names)
    missing = [name for name in CSV_COLUMNS if name not in counts]
    unexpected = [name for name in counts if name not in CSV_COLUMNS]
    duplicated = sorted(name for name, count in counts.items() if count > 1)
    if missing or unexpected or duplicated:
        # A spreadsheet saved with commas puts the whole header in one ';'-less cell.
        commas = len(names) == 1 and all(name in names[0].split(",") for name in CSV_COLUMNS)
        hint = ("; the file is comma-separated: INbreast.csv separates fields with ';' (save "
                "it again with ';' as the delimiter)" if commas else "")
        raise InbreastFormatError(
            f"{path}: header {_shorten(';'.join(names))} differs from {';'.join(CSV_COLUMNS)!r} "
            f"(missing: {missing}, unexpected: {_shorten(unexpected)}, "
            f"repeated: {_shorten(duplicated)}){hint}"
        )
    return {name: names.index(name) for name in CSV_COLUMNS}


def _parse_row(path: Path, line: int, row: list[str], column_of: dict[str, int]) -> CaseRecord:
    extra = row[len(CSV_COLUMNS):]
    if len(row) < len(CSV_COLUMNS) or any(cell.strip() for cell in extra):
        raise InbreastFormatError(
            f"{path}: row {line}: {len(row)} fields, expected {len(CSV_COLUMNS)}"
        )

    def cell(name: str) -> str:
        return row[column_of[name]].strip()

    def fail(name: str, expected: str) -> InbreastFormatError:
        return InbreastFormatError(
            f"{path}: row {line}: field {name!r} is {_shorten(row[column_of[name]])}, "
            f"expected {expected}"
        )

    birads = cell("Bi-Rads").lower()
    if birads not in BIRADS_VALUES:
        raise fail("Bi-Rads", f"one of {', '.join(BIRADS_VALUES)}")
    laterality = cell("Laterality").upper()
    if laterality not in LATERALITIES:
        raise fail("Laterality", "L or R")
    view = cell("View").upper()
    if view not in VIEWS:
        raise fail("View", f"one of {', '.join(VIEWS)}")
    file_name = cell("File Name")
    if not file_name or _BAD_FILE_NAME_CHARACTER.search(file_name):
        raise fail("File Name", "a file name without path separators or control characters")
    return CaseRecord(
        patient_id=None if cell("Patient ID").lower() in _REMOVED else cell("Patient ID"),
        patient_age=_optional_int(
            cell("Patient age"), lambda: fail("Patient age", "an integer of 1 to 3 digits")
        ),
        laterality=laterality,
        view=view,
        acquisition_date=cell("Acquisition date"),
        file_name=file_name,
        acr=_parse_acr(cell("ACR"), lambda: fail("ACR", "1, 2, 3, 4 or blank")),
        birads=birads,
        row=line,
    )


def _shorten(value: object, limit: int = 60) -> str:
    """repr() cut to ``limit`` characters, so a hostile cell cannot flood a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


def _optional_int(text: str, error: Callable[[], InbreastFormatError]) -> int | None:
    if text.lower() in _REMOVED:
        return None
    # str.isdigit alone accepts characters such as "²" that int() refuses.
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_INT_DIGITS:
        raise error()
    return int(text)


def _parse_acr(text: str, error: Callable[[], InbreastFormatError]) -> int | None:
    value = _optional_int(text, error)
    if value is not None and value not in ACR_VALUES:
        raise error()
    return value
