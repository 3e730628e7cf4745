"""INbreast DICOM names, the DICOM folder index, and joins that cannot leave the root."""

from __future__ import annotations

import logging
import os

import pytest

from ftmtl.inbreast.filenames import index_dicoms, parse_dicom_name, safe_join
from ftmtl.inbreast.records import DicomName, InbreastFormatError

NAME = "22678622_61b13c59bcba149e_MG_R_CC_ANON.dcm"


def test_parse_a_real_style_name():
    assert parse_dicom_name(NAME) == DicomName("22678622", "61b13c59bcba149e", "R", "CC")
    ml = parse_dicom_name("20586908_6c613a14b80a8591_MG_L_ML_ANON.dcm")
    assert (ml.laterality, ml.view) == ("L", "MLO")


@pytest.mark.parametrize("name", [
    "22678622_61b13c59bcba149e_MG_R_CC_ANON.dicom",
    "22678622_61b13c59bcba149_MG_R_CC_ANON.dcm",      # 15 hex digits
    "22678622_61b13c59bcba149g_MG_R_CC_ANON.dcm",     # not hex
    "22678622_61b13c59bcba149e_MG_X_CC_ANON.dcm",     # laterality
    "22678622_61b13c59bcba149e_MG_R_AX_ANON.dcm",     # view
    "22678622_61b13c59bcba149e_CT_R_CC_ANON.dcm",
    "22678622_61b13c59bcba149e_MG_R_CC.dcm",
    ".DS_Store",
])
def test_other_names_are_refused(name):
    with pytest.raises(InbreastFormatError, match="not an INbreast DICOM name"):
        parse_dicom_name(name)


def test_index_skips_other_files_with_a_warning(tmp_path, caplog):
    (tmp_path / NAME).write_bytes(b"")
    (tmp_path / "20586908_6c613a14b80a8591_MG_L_ML_ANON.dcm").write_bytes(b"")
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    with caplog.at_level(logging.WARNING):
        index = index_dicoms(tmp_path)
    assert index == {"22678622": tmp_path / NAME,
                     "20586908": tmp_path / "20586908_6c613a14b80a8591_MG_L_ML_ANON.dcm"}
    assert "readme.txt" in caplog.text and "skipped" in caplog.text


def test_index_refuses_two_dicoms_for_one_file_name(tmp_path):
    (tmp_path / NAME).write_bytes(b"")
    (tmp_path / NAME.replace("_CC_", "_ML_")).write_bytes(b"")
    with pytest.raises(InbreastFormatError, match="22678622 has two DICOMs"):
        index_dicoms(tmp_path)


def test_index_of_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(InbreastFormatError, match="not found"):
        index_dicoms(tmp_path / "AllDICOMs")


def test_safe_join_inside_the_root(tmp_path):
    assert safe_join(tmp_path, "AllXML/1.xml") == tmp_path / "AllXML" / "1.xml"
    assert safe_join(tmp_path, "not/yet/there.xml") == tmp_path / "not" / "yet" / "there.xml"


@pytest.mark.parametrize("relative", ["../x", "AllXML/../../x", "/etc/passwd", "a/.."])
def test_safe_join_refuses_escapes(tmp_path, relative):
    with pytest.raises(InbreastFormatError, match="refused"):
        safe_join(tmp_path / "root", relative)


def test_safe_join_refuses_a_link_leading_out(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "AllXML")
    with pytest.raises(InbreastFormatError, match="outside"):
        safe_join(root, "AllXML/1.xml")
    os.symlink(root / "real", root / "inner")  # a link that stays inside is fine
    assert safe_join(root, "inner/1.xml") == root / "inner" / "1.xml"
