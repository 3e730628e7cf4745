"""OsiriX plist ROI reader: structure, every known fault warned about, hostile XML refused."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ftmtl.inbreast.masks import masses_from_rois
from ftmtl.inbreast.records import InbreastFormatError
from ftmtl.inbreast.rois import parse_point, read_plist, read_rois

PLIST_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" '
    '"http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
)


def roi_xml(name, points, index=0, declared=None, extra=""):
    """One ROI dict with the 13 keys of the real files, in their alphabetical order."""
    declared = len(points) if declared is None else declared
    name_part = "" if name is None else f"<key>Name</key><string>{name}</string>"
    px = "".join(f"<string>({x:f}, {y:f})</string>" for x, y in points)
    mm = "".join(f"<string>({0.07 * x:f}, {0.07 * y:f}, 0.000000)</string>" for x, y in points)
    return (
        "<dict><key>Area</key><real>1.5</real>"
        "<key>Center</key><string>(1.000000, 2.000000, 0.000000)</string>"
        "<key>Dev</key><real>0.5</real>"
        f"<key>IndexInImage</key><integer>{index}</integer>"
        "<key>Max</key><real>3000</real><key>Mean</key><real>2000</real>"
        f"<key>Min</key><real>1000</real>{name_part}"
        f"<key>NumberOfPoints</key><integer>{declared}</integer>"
        f"<key>Point_mm</key><array>{mm}</array>"
        f"<key>Point_px</key><array>{px}</array>"
        f"<key>Total</key><real>9</real><key>Type</key><integer>15</integer>{extra}</dict>"
    )


def plist_xml(rois, declared_rois=None):
    declared_rois = len(rois) if declared_rois is None else declared_rois
    return (
        PLIST_HEAD + '<plist version="1.0"><dict><key>Images</key><array><dict>'
        "<key>ImageIndex</key><integer>0</integer>"
        f"<key>NumberOfROIs</key><integer>{declared_rois}</integer>"
        f"<key>ROIs</key><array>{''.join(rois)}</array></dict></array></dict></plist>\n"
    )


def write(tmp_path, text, name="22678622.xml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


SQUARE = [(10.5, 20.25), (30.0, 20.25), (30.0, 40.0), (10.5, 40.0)]


def test_reads_a_well_formed_file(tmp_path, caplog):
    path = write(tmp_path, plist_xml([
        roi_xml("Mass", SQUARE, index=0),
        roi_xml("Calcification", [(5.0, 6.0)], index=1),
    ]))
    with caplog.at_level(logging.WARNING):
        rois = read_rois(path)
    assert not caplog.records
    assert [r.name for r in rois] == ["Mass", "Calcification"]
    mass = rois[0]
    np.testing.assert_array_equal(mass.points_px, np.array(SQUARE))
    assert mass.points_px.dtype == np.float64 and mass.points_px.shape == (4, 2)
    assert mass.points_mm.shape == (4, 3)
    assert mass.center == (1.0, 2.0, 0.0)
    assert (mass.type, mass.index, mass.declared_points) == (15, 0, 4)
    assert mass.stats == {"Area": 1.5, "Dev": 0.5, "Max": 3000.0, "Mean": 2000.0,
                          "Min": 1000.0, "Total": 9.0}
    assert rois[1].points_px.shape == (1, 2)


def test_generic_plist_values(tmp_path):
    text = PLIST_HEAD + (
        "<plist><dict><key>a</key><array><true/><false/><integer>-3</integer>"
        "<real>2.5e1</real><string> x </string><string/></array><key>b</key><dict/></dict>"
        "</plist>"
    )
    assert read_plist(write(tmp_path, text)) == {"a": [True, False, -3, 25.0, " x ", ""],
                                                 "b": {}}


def test_parse_point_is_strict():
    assert parse_point("(207.938004, 1937.719971)") == (207.938004, 1937.719971)
    assert parse_point(" (1, -2.5, 3e2) ") == (1.0, -2.5, 300.0)
    for garbage in ["207.9, 1937.7", "(1.0)", "(1.0; 2.0)", "(a, b)", "(nan, 1)", "()",
                    "(1, 2", "(1,, 2)"]:
        with pytest.raises(InbreastFormatError, match="ROI 7"):
            parse_point(garbage, "file.xml: ROI 7")


def warnings_text(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_point_count_mismatch_warns_and_uses_the_points(tmp_path, caplog):
    path = write(tmp_path, plist_xml([roi_xml("Mass", SQUARE, index=3, declared=9)]))
    with caplog.at_level(logging.WARNING):
        (roi,) = read_rois(path)
    assert roi.num_points == 4
    (message,) = warnings_text(caplog)
    assert str(path) in message and "ROI 3" in message and "NumberOfPoints is 9" in message


def test_roi_count_mismatch_warns(tmp_path, caplog):
    path = write(tmp_path, plist_xml([roi_xml("Mass", SQUARE)], declared_rois=2))
    with caplog.at_level(logging.WARNING):
        assert len(read_rois(path)) == 1
    (message,) = warnings_text(caplog)
    assert str(path) in message and "NumberOfROIs is 2" in message


def test_missing_and_unknown_names_warn(tmp_path, caplog):
    path = write(tmp_path, plist_xml([
        roi_xml(None, SQUARE, index=0), roi_xml("Blob", SQUARE, index=1),
        roi_xml("Mass", SQUARE, index=2, extra="<key>Colour</key><string>red</string>"),
    ]))
    with caplog.at_level(logging.WARNING):
        rois = read_rois(path)
    assert [r.name for r in rois] == [None, "Blob", "Mass"]
    messages = warnings_text(caplog)
    assert len(messages) == 2
    assert "ROI 0 has no Name" in messages[0] and str(path) in messages[0]
    assert "ROI 1 ('Blob')" in messages[1] and "unknown Name" in messages[1]


def test_garbage_point_skips_that_roi_with_a_warning(tmp_path, caplog):
    text = plist_xml([roi_xml("Mass", SQUARE, index=0), roi_xml("Mass", SQUARE, index=1)])
    text = text.replace("(30.000000, 40.000000)", "(30.0, forty)", 1)
    path = write(tmp_path, text)
    with caplog.at_level(logging.WARNING):
        rois = read_rois(path)
    assert [r.index for r in rois] == [1]
    (message,) = warnings_text(caplog)
    assert str(path) in message and "ROI 0 ('Mass')" in message and "forty" in message


def test_degenerate_and_outside_masses_all_warn_and_nothing_is_silently_dropped(
    tmp_path, caplog
):
    shape = (64, 48)  # rows, columns
    path = write(tmp_path, plist_xml([
        roi_xml("Mass", [(5.0, 5.0)], index=0),
        roi_xml("Mass", [(5.0, 5.0), (9.0, 9.0)], index=1),
        roi_xml("Mass", [(100.0, 5.0), (120.0, 5.0), (120.0, 20.0)], index=2),
        roi_xml("Mass", [(40.0, 10.0), (60.0, 10.0), (60.0, 30.0), (40.0, 30.0)], index=3),
        roi_xml("Mass", [(5.0, 5.0), (15.0, 5.0), (15.0, 15.0)], index=4),
        roi_xml("Calcification", [(70.0, 70.0)], index=5),
    ]))
    rois = read_rois(path)
    with caplog.at_level(logging.WARNING):
        masks = masses_from_rois(rois, shape, str(path))
    messages = warnings_text(caplog)
    assert len(masks) == 2  # ROI 3 clipped, ROI 4 whole
    assert masks[0][10:31, 40:48].all() and not masks[0][:, :40].any()
    assert all(str(path) in m for m in messages)
    for index, words in [(0, "1 point"), (1, "2 point"), (2, "outside"), (3, "clipped")]:
        assert any(f"ROI {index}" in m and words in m for m in messages), (index, messages)
    assert len(messages) == 4  # the calcification and the whole mass give no warning


@pytest.mark.parametrize("body", ["<html/>", "<plist><dict><key>Other</key><array/></dict>"
                                  "</plist>", "<plist><dict><key>Images</key>", "not xml"])
def test_wrong_structure_is_a_format_error_naming_the_file(tmp_path, body):
    path = write(tmp_path, body)
    with pytest.raises(InbreastFormatError, match="22678622.xml"):
        read_rois(path)


def test_external_entity_is_refused_and_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    for target in [secret.as_uri(), "file:///etc/passwd"]:
        text = (
            '<?xml version="1.0"?>\n'
            f'<!DOCTYPE plist [<!ENTITY xxe SYSTEM "{target}">]>\n'
            "<plist><dict><key>Images</key><array><dict><key>ROIs</key><array><dict>"
            "<key>Name</key><string>&xxe;</string>"
            "<key>Point_px</key><array/></dict></array></dict></array></dict></plist>"
        )
        path = write(tmp_path, text)
        with pytest.raises(InbreastFormatError, match="declares entities") as err:
            read_rois(path)
        assert str(path) in str(err.value)
        assert "TOP-SECRET-MARKER" not in str(err.value) and "root:" not in str(err.value)


def billion_laughs(levels=10):
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)
    ]
    return (
        '<?xml version="1.0"?>\n'
        f"<!DOCTYPE plist [{''.join(entities)}]>\n"
        f"<plist><dict><key>Images</key><array><string>&lol{levels - 1};</string>"
        "</array></dict></plist>"
    )


def test_billion_laughs_is_refused(tmp_path):
    path = write(tmp_path, billion_laughs())
    with pytest.raises(InbreastFormatError, match="declares entities"):
        read_rois(path)


def test_entities_are_refused_even_past_the_byte_check(tmp_path):
    """A UTF-16 document hides '<!ENTITY' from a byte search; the parsed DTD still refuses it."""
    text = (
        '<?xml version="1.0" encoding="UTF-16"?>\n'
        '<!DOCTYPE plist [<!ENTITY word "EXPANDED-TEXT">]>\n'
        "<plist><dict><key>Images</key><array><string>&word;</string></array></dict></plist>"
    )
    path = tmp_path / "utf16.xml"
    path.write_bytes(text.encode("utf-16"))
    assert b"<!ENTITY" not in path.read_bytes()
    with pytest.raises(InbreastFormatError, match="declares entities") as err:
        read_rois(path)
    assert "EXPANDED-TEXT" not in str(err.value)
    path.write_bytes(billion_laughs().replace('"1.0"?>', '"1.0" encoding="UTF-16"?>', 1)
                     .encode("utf-16"))
    with pytest.raises(InbreastFormatError, match="utf16.xml"):
        read_rois(path)


def test_file_size_bound_is_checked_before_parsing(tmp_path):
    path = write(tmp_path, plist_xml([roi_xml("Mass", SQUARE)]))
    with pytest.raises(InbreastFormatError, match="above the limit of 100"):
        read_rois(path, max_bytes=100)
    assert len(read_rois(path, max_bytes=path.stat().st_size)) == 1
