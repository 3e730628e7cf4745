"""INbreast.csv reader: exact header, CRLF/LF, BOM, blank ACR, FB view, bad values named."""

from __future__ import annotations

import pytest

from ftmtl.inbreast.metadata import CSV_COLUMNS, read_inbreast_csv
from ftmtl.inbreast.records import InbreastFormatError, birads_label

HEADER = "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"
ROWS = [
    "removed;removed;R;CC;201001;22678622;4;1",
    "removed;removed;L;MLO;201001;22678646;2;4c",
    "removed;removed;L;FB;200905;20586908;    ;2",
    "removed;57;R;MLO;200905;20586934;1;6",
]


def write_csv(tmp_path, rows=ROWS, header=HEADER, newline="\r\n", prefix=""):
    path = tmp_path / "INbreast.csv"
    path.write_bytes((prefix + newline.join([header, *rows]) + newline).encode("utf-8"))
    return path


def test_reads_crlf_rows_with_their_quirks(tmp_path):
    records = read_inbreast_csv(write_csv(tmp_path))
    assert [r.file_name for r in records] == ["22678622", "22678646", "20586908", "20586934"]
    first, second, fb, aged = records
    assert first.patient_id is None and first.patient_age is None
    assert (first.laterality, first.view, first.acr, first.birads) == ("R", "CC", 4, "1")
    assert first.acquisition_date == "201001"
    assert second.birads == "4c" and second.label == "malignant"
    assert fb.view == "FB" and fb.acr is None and fb.label == "benign"
    assert aged.patient_age == 57
    assert [r.row for r in records] == [2, 3, 4, 5]


def test_lf_and_bom_and_trailing_blank_lines_are_accepted(tmp_path):
    path = write_csv(tmp_path, newline="\n", prefix="\ufeff")
    path.write_bytes(path.read_bytes() + b"\n\n")
    records = read_inbreast_csv(path)
    assert len(records) == 4 and records[0].patient_id is None


def test_header_must_match_and_error_names_the_column(tmp_path):
    bad = HEADER.replace("Bi-Rads", "BIRADS")
    with pytest.raises(InbreastFormatError) as err:
        read_inbreast_csv(write_csv(tmp_path, header=bad))
    message = str(err.value)
    assert "INbreast.csv" in message and "'Bi-Rads'" in message and "'BIRADS'" in message


def test_comma_separated_file_is_refused_with_a_hint(tmp_path):
    rows = [row.replace(";", ",") for row in ROWS]
    with pytest.raises(InbreastFormatError, match="missing.*the file is comma-separated: "
                                                  "INbreast.csv separates fields with ';'"):
        read_inbreast_csv(write_csv(tmp_path, header=HEADER.replace(";", ","), rows=rows))
    # A header that is merely wrong gets no such hint.
    with pytest.raises(InbreastFormatError) as err:
        read_inbreast_csv(write_csv(tmp_path, header=HEADER.replace("Bi-Rads", "BIRADS")))
    assert "comma-separated" not in str(err.value)


@pytest.mark.parametrize("value", ["7", "0", "4d", "", "benign"])
def test_bad_birads_names_file_row_and_field(tmp_path, value):
    rows = [*ROWS[:2], f"removed;removed;L;CC;201001;99999999;1;{value}"]
    with pytest.raises(InbreastFormatError) as err:
        read_inbreast_csv(write_csv(tmp_path, rows=rows))
    message = str(err.value)
    assert "INbreast.csv" in message and "row 4" in message and "Bi-Rads" in message


@pytest.mark.parametrize(
    "row, field",
    [
        ("removed;removed;X;CC;201001;1;1;1", "Laterality"),
        ("removed;removed;L;AX;201001;1;1;1", "View"),
        ("removed;removed;L;CC;201001;1;9;1", "ACR"),
        ("removed;abc;L;CC;201001;1;1;1", "Patient age"),
        ("removed;removed;L;CC;201001;;1;1", "File Name"),
    ],
)
def test_other_bad_fields_are_named(tmp_path, row, field):
    with pytest.raises(InbreastFormatError, match=f"row 2: field '{field}'"):
        read_inbreast_csv(write_csv(tmp_path, rows=[row]))


def test_short_row_and_duplicate_file_name_are_errors(tmp_path):
    with pytest.raises(InbreastFormatError, match="row 3: 5 fields"):
        read_inbreast_csv(write_csv(tmp_path, rows=[ROWS[0], "a;b;c;d;e"]))
    with pytest.raises(InbreastFormatError, match="row 3: File Name '22678622' repeats row 2"):
        read_inbreast_csv(write_csv(tmp_path, rows=[ROWS[0], ROWS[0]]))


def test_birads_labels():
    expected = {"1": "normal", "2": "benign", "3": "benign", "4a": "malignant",
                "4b": "malignant", "4c": "malignant", "5": "malignant", "6": "malignant"}
    assert {value: birads_label(value) for value in expected} == expected
    with pytest.raises(ValueError):
        birads_label("0")


def test_columns_constant_is_the_inbreast_header():
    assert ";".join(CSV_COLUMNS) == HEADER
