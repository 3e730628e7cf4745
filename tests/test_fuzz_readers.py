"""Fuzzing the INbreast readers with hypothesis: random and mutated inputs, only our error escapes.

Every reader gets random bytes and mutations of a valid file: truncation, flipped bytes, dropped,
duplicated and reordered elements, wrong types, huge numbers, NaN/inf strings, negative counts,
non-ASCII and empty values. The documented outcome is a result that keeps the reader's
invariants, or an InbreastFormatError that names the file. Another exception type, or a run past
the (generous) deadline, fails. Each @example is a bug this fuzzing found, kept as a regression.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import plistlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from ftmtl.inbreast.dicom_io import read_dicom, read_dicom_shape
from ftmtl.inbreast.filenames import safe_join
from ftmtl.inbreast.masks import masses_from_rois
from ftmtl.inbreast.metadata import CSV_COLUMNS, read_inbreast_csv
from ftmtl.inbreast.records import BIRADS_VALUES, InbreastFormatError
from ftmtl.inbreast.rois import (
    MAX_ABS_COORDINATE,
    MAX_POINT_CHARS,
    parse_point,
    read_plist,
    read_rois,
)

FUZZ = settings(
    max_examples=200,
    deadline=timedelta(seconds=5),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example],
)

HOSTILE_TOKENS = [
    "", " ", "NaN", "nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "-1", "-7", "0",
    "9" * 5000, "1" * 400, "1e300", "4.2", "0x1F", "1_000", "\u00b2", "\u0661\u0662", "\u00bd",
    "\u00e9", "\u6f22\u5b57", "\u202e", "\x00", "\x7f", "\t", "(nan, 1)", "(1e999, 2)",
    "(1, 2, 3, 4)", "(,)", "()", "true", "<", "&", "]]>", "removed", "4A", ";", '"',
]
hostile_text = st.one_of(st.sampled_from(HOSTILE_TOKENS), st.text(max_size=12))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@contextlib.contextmanager
def warning_messages() -> Iterator[list[str]]:
    """WARNING messages of the ftmtl.inbreast loggers (caplog is per test, not per example)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("ftmtl.inbreast")
    handler, old_level = Collect(level=logging.WARNING), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def byte_mutations() -> st.SearchStrategy:
    return st.lists(st.one_of(
        st.tuples(st.just("truncate"), st.integers(0, 1 << 20)),
        st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 255)),
    ), max_size=3)


def mutate_bytes(data: bytes, mutations: list[tuple]) -> bytes:
    """("truncate", n) keeps n bytes, ("flip", i, b) sets byte i to b (positions wrap around)."""
    data = bytearray(data)
    for op, where, *rest in mutations:
        if op == "truncate":
            del data[where % (len(data) + 1):]
        elif data:
            data[where % len(data)] = rest[0]
    return bytes(data)


# --- point strings -----------------------------------------------------------------------------


def reference_point(text: str) -> tuple[float, ...]:
    """An independent reading of an accepted point: parentheses off, split on commas, float()."""
    return tuple(float(part) for part in text.strip()[1:-1].split(","))


def check_point(text) -> tuple[float, ...] | None:
    try:
        values = parse_point(text, "fuzz.xml: ROI 3")
    except InbreastFormatError as err:
        assert "fuzz.xml: ROI 3" in str(err)
        return None
    assert text.isascii()  # OsiriX writes ASCII; other digits are not numbers here
    assert isinstance(values, tuple) and len(values) >= 2
    assert all(isinstance(v, float) and math.isfinite(v) for v in values)
    assert values == reference_point(text)
    return values


@FUZZ
@given(st.text(max_size=300))
@example("(" + "1" * 20000)  # found: the number pattern backtracked cubically (a hang)
@example("(1, " + "2" * 20000 + ")")
@example("(\u0661\u0662, 3)")  # found: non-ASCII digits were read as numbers
def test_point_parser_on_random_text(text):
    check_point(text)


@st.composite
def mutated_point(draw) -> str:
    values = draw(st.lists(st.floats(-5000, 5000), min_size=2, max_size=3))
    parts = [f"{v:f}" for v in values]
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["token", "insert", "delete", "duplicate"]))
        index = draw(st.integers(0, len(parts) - 1)) if parts else 0
        if op == "token" and parts:
            parts[index] = draw(hostile_text)
        elif op == "insert":
            parts.insert(index, draw(hostile_text))
        elif op == "delete" and parts:
            del parts[index]
        elif op == "duplicate" and parts:
            parts.insert(index, parts[index])
    text = "(" + ", ".join(parts) + ")"
    cut = draw(st.integers(0, len(text)))
    return text[:cut] if draw(st.booleans()) else text


@FUZZ
@given(mutated_point())
def test_point_parser_on_mutated_points(text):
    check_point(text)


@FUZZ
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=2, max_size=3),
       st.sampled_from(["{:f}", "{!r}", "{:e}"]))
def test_point_parser_reads_back_what_printf_writes(values, form):
    text = "(" + ", ".join(form.format(v) for v in values) + ")"
    if len(text) > MAX_POINT_CHARS:
        with pytest.raises(InbreastFormatError, match="characters"):
            parse_point(text)
    else:
        assert parse_point(text) == tuple(float(form.format(v)) for v in values)


@FUZZ
@given(st.one_of(st.none(), st.integers(), st.floats(), st.binary(), st.lists(st.text()),
                 st.tuples(st.floats(), st.floats())))
def test_point_parser_refuses_anything_but_a_string(value):
    with pytest.raises(InbreastFormatError, match="not a string"):
        parse_point(value)


# --- INbreast.csv ------------------------------------------------------------------------------

VALID_ROWS = [
    ["removed", "removed", "R", "CC", "201001", "22678622", "4", "1"],
    ["removed", "removed", "L", "MLO", "201001", "22678646", "2", "4c"],
    ["removed", "removed", "L", "FB", "200905", "20586908", "    ", "2"],
    ["removed", "57", "R", "MLO", "200905", "20586934", "1", "6"],
    ["removed", "removed", "R", "CC", "200905", "20586960", "3", "3"],
]
row_index = st.integers(0, len(VALID_ROWS))  # 0 is the header
column_index = st.integers(0, len(CSV_COLUMNS) - 1)
csv_table_mutations = st.lists(st.one_of(
    st.tuples(st.just("cell"), row_index, column_index, hostile_text),
    st.tuples(st.just("drop_row"), row_index),
    st.tuples(st.just("duplicate_row"), row_index),
    st.tuples(st.just("swap_rows"), row_index, row_index),
    st.tuples(st.just("drop_column"), column_index),
    st.tuples(st.just("swap_columns"), column_index, column_index),
    st.tuples(st.just("extra_column"), hostile_text),
), max_size=4)


def mutate_table(mutations: list[tuple]) -> list[list[str]]:
    table = [list(CSV_COLUMNS)] + [list(row) for row in VALID_ROWS]
    for op, *args in mutations:
        if not table:
            break
        if op == "cell":
            row = table[args[0] % len(table)]
            if row:
                row[args[1] % len(row)] = args[2]
        elif op == "drop_row":
            del table[args[0] % len(table)]
        elif op == "duplicate_row":
            index = args[0] % len(table)
            table.insert(index, list(table[index]))
        elif op == "swap_rows":
            i, j = args[0] % len(table), args[1] % len(table)
            table[i], table[j] = table[j], table[i]
        elif op == "drop_column":
            table = [row[:args[0]] + row[args[0] + 1:] for row in table]
        elif op == "swap_columns":
            for row in table:
                i, j = args[0] % max(len(row), 1), args[1] % max(len(row), 1)
                if row:
                    row[i], row[j] = row[j], row[i]
        elif op == "extra_column":
            table = [row + [args[0]] for row in table]
    return table


def write_csv(path: Path, table: list[list[str]], encoding: str, newline: str,
              byte_ops: list[tuple]) -> Path:
    text = "".join(";".join(row) + newline for row in table)
    path.write_bytes(mutate_bytes(text.encode(encoding, errors="replace"), byte_ops))
    return path


def check_csv(path: Path, table: list[list[str]] | None) -> None:
    """``table``: the cells written, when no byte-level mutation changed them afterwards."""
    try:
        records = read_inbreast_csv(path)
    except InbreastFormatError as err:
        assert path.name in str(err)
        return
    names = [record.file_name for record in records]
    assert len(set(names)) == len(names)
    for record in records:
        if table is not None:
            assert record.file_name in {cell.strip() for row in table for cell in row}
        assert record.file_name and not any(ord(c) < 32 or c in "/\\\x7f"
                                            for c in record.file_name)
        assert record.birads in BIRADS_VALUES and record.label in ("normal", "benign", "malignant")
        assert record.laterality in ("L", "R") and record.view in ("CC", "MLO", "FB")
        assert record.acr in (None, 1, 2, 3, 4)
        assert record.patient_age is None or (type(record.patient_age) is int
                                              and 0 <= record.patient_age <= 999)
        assert isinstance(record.row, int) and record.row >= 2


@FUZZ
@given(st.binary(max_size=2000))
def test_csv_reader_on_random_bytes(workdir, data):
    path = workdir / "random.csv"
    path.write_bytes(data)
    check_csv(path, None)


@FUZZ
@given(csv_table_mutations,
       st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]),
       st.sampled_from(["\r\n", "\n", "\r"]),
       byte_mutations())
@example([], "utf-8", "\r\n", [])
@example([("cell", 1, 1, "\u00b2")], "utf-8", "\r\n", [])  # found: int("²") raised ValueError
@example([("cell", 1, 1, "9" * 5000)], "utf-8", "\r\n", [])  # found: int() digit-limit ValueError
@example([("cell", 1, 5, "a" * 200_000)], "utf-8", "\r\n", [])  # found: csv.Error escaped
@example([("cell", 1, 5, "a\x00b")], "utf-8", "\r\n", [])  # found: NUL accepted in File Name
@example([("cell", 0, 0, ";" * 100_000)], "utf-8", "\r\n", [])  # found: quadratic header check
def test_csv_reader_on_mutated_files(workdir, mutations, encoding, newline, byte_ops):
    table = mutate_table(mutations)
    path = write_csv(workdir / "INbreast.csv", table, encoding, newline, byte_ops)
    check_csv(path, None if byte_ops else table)
    if not mutations and not byte_ops and encoding.startswith("utf-8"):
        assert [r.file_name for r in read_inbreast_csv(path)] == [r[5] for r in VALID_ROWS]


# --- XML plist and ROIs ------------------------------------------------------------------------

xml_characters = st.characters(blacklist_categories=("Cs", "Cc", "Cn"),
                               whitelist_characters="\t\n")
plist_keys = st.text(xml_characters, max_size=8).map(str.strip)
plist_values = st.recursive(
    st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1),
              st.floats(allow_nan=False, allow_infinity=False), st.text(xml_characters)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(plist_keys, children, max_size=4)),
    max_leaves=20,
)


def assert_same_plist(actual, expected) -> None:
    """Equality that also tells True from 1 and 1.0 from 1."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys()
        for key in expected:
            assert_same_plist(actual[key], expected[key])
    elif isinstance(expected, list):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_same_plist(a, e)
    else:
        assert actual == expected


@FUZZ
@given(plist_values)
def test_plist_reader_agrees_with_the_standard_library(workdir, value):
    """plistlib writes the document; our reader must return exactly what it was given."""
    path = workdir / "plistlib.xml"
    path.write_bytes(plistlib.dumps(value))
    assert_same_plist(read_plist(path), value)


def roi_entry(name, points, index) -> dict:
    points = np.asarray(points, dtype=float)
    center = points.mean(axis=0)
    return {
        "Area": 12.5, "Center": f"({center[0]:f}, {center[1]:f}, 0.000000)", "Dev": 3.0,
        "IndexInImage": index, "Max": 3100.0, "Mean": 2000.0, "Min": 900.0, "Name": name,
        "NumberOfPoints": len(points),
        "Point_mm": [f"({0.07 * x:f}, {0.07 * y:f}, 0.000000)" for x, y in points],
        "Point_px": [f"({x:f}, {y:f})" for x, y in points],
        "Total": 40000.0, "Type": 15 if len(points) > 1 else 19,
    }


VALID_PLIST = plistlib.dumps({"Images": [{
    "ImageIndex": 0, "NumberOfROIs": 3, "ROIs": [
        roi_entry("Mass", [(10, 12), (40, 12), (40, 30), (10, 30)], 0),
        roi_entry("Calcification", [(50, 50)], 1),
        roi_entry("Spiculated Region", [(5, 40), (20, 60), (2, 60)], 2),
    ],
}]})
PLIST_TAGS = ["dict", "array", "string", "integer", "real", "true", "false", "key", "date",
              "data", "plist", "junk", "{http://www.w3.org/2001/XInclude}include"]
ROI_KEYS = ["Area", "Center", "Dev", "IndexInImage", "Max", "Mean", "Min", "Name",
            "NumberOfPoints", "Point_mm", "Point_px", "Total", "Type", "ImageIndex",
            "NumberOfROIs", "ROIs", "Images"]
element_index = st.integers(0, 400)
tree_mutations = st.lists(st.one_of(
    st.tuples(st.just("set"), st.sampled_from(ROI_KEYS), st.integers(0, 2),
              st.sampled_from(PLIST_TAGS), hostile_text),
    st.tuples(st.just("item"), st.sampled_from(["Point_px", "Point_mm"]), st.integers(0, 2),
              st.integers(0, 3), hostile_text),
    st.tuples(st.just("drop"), element_index),
    st.tuples(st.just("duplicate"), element_index),
    st.tuples(st.just("swap"), element_index),
    st.tuples(st.just("retag"), element_index, st.sampled_from(PLIST_TAGS)),
    st.tuples(st.just("text"), element_index, hostile_text),
    st.tuples(st.just("child"), element_index, st.sampled_from(PLIST_TAGS)),
    st.tuples(st.just("nest"), element_index, st.integers(1, 300)),
), max_size=4)


def value_of_key(root: etree._Element, key: str, occurrence: int) -> etree._Element | None:
    found = [k.getnext() for k in root.iter("key") if k.text == key and k.getnext() is not None]
    return found[occurrence % len(found)] if found else None


def apply_tree_mutation(root: etree._Element, op: str, args: tuple) -> None:
    if op == "set":
        key, occurrence, tag, text = args
        old = value_of_key(root, key, occurrence)
        if old is not None:
            new = etree.Element(tag)
            new.text = text
            old.getparent().replace(old, new)
        return
    if op == "item":
        key, occurrence, item, text = args
        array = value_of_key(root, key, occurrence)
        if array is not None and len(array):
            array[item % len(array)].text = text
        return
    elements = list(root.iter())
    node = elements[args[0] % len(elements)]
    parent = node.getparent()
    if op == "retag":
        node.tag = args[1]
    elif op == "text":
        node.text = args[1]
    elif op == "child":
        etree.SubElement(node, args[1])
    elif parent is None:
        return  # the root is not dropped, duplicated, swapped or nested
    elif op == "drop":
        parent.remove(node)
    elif op == "duplicate":
        node.addnext(copy.deepcopy(node))
    elif op == "swap" and node.getnext() is not None:
        node.getnext().addnext(node)
    elif op == "nest":
        wrapper = inner = etree.Element("array")
        for _ in range(args[1] - 1):
            inner = etree.SubElement(inner, "array")
        parent.replace(node, wrapper)
        inner.append(node)


def mutated_plist(mutations: list[tuple], byte_ops: list[tuple]) -> bytes:
    root = etree.fromstring(VALID_PLIST, etree.XMLParser(resolve_entities=False))
    for op, *args in mutations:
        with contextlib.suppress(ValueError):  # text that XML cannot hold (NUL): op skipped
            apply_tree_mutation(root, op, tuple(args))
    return mutate_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"), byte_ops)


def check_rois(path: Path):
    with warning_messages() as messages:
        try:
            rois = read_rois(path)
        except InbreastFormatError as err:
            assert path.name in str(err)
            return None
        masks = masses_from_rois(rois, (64, 64), str(path))
    assert all(str(path) in message for message in messages), messages
    for roi in rois:
        assert roi.points_px.dtype == np.float64 and roi.points_px.ndim == 2
        assert roi.points_px.shape[1] == 2 and np.isfinite(roi.points_px).all()
        assert np.abs(roi.points_px).max(initial=0) <= MAX_ABS_COORDINATE
        assert type(roi.index) is int and type(roi.image_index) is int
        assert roi.type is None or type(roi.type) is int
        assert roi.declared_points is None or type(roi.declared_points) is int
        assert roi.name is None or isinstance(roi.name, str)
        assert roi.points_mm is None or np.isfinite(roi.points_mm).all()
        assert roi.center is None or all(math.isfinite(v) for v in roi.center)
        assert all(type(v) is float and math.isfinite(v) for v in roi.stats.values())
    assert all(m.dtype == bool and m.shape == (64, 64) for m in masks)
    return rois


@FUZZ
@given(st.binary(max_size=3000))
def test_roi_reader_on_random_bytes(workdir, data):
    path = workdir / "random.xml"
    path.write_bytes(data)
    check_rois(path)


@FUZZ
@given(tree_mutations, byte_mutations())
@example([], [])
@example([("set", "Area", 0, "integer", "9" * 400)], [])  # found: OverflowError in float()
@example([("set", "Mean", 0, "real", "nan")], [])  # found: NaN statistics kept
@example([("set", "Center", 0, "string", "(" + "1" * 20000)], [])  # found: regex hang
@example([("set", "IndexInImage", 0, "string", "abc")], [])  # found: index of the wrong type
@example([("set", "Type", 0, "true", "")], [])  # found: a bool taken for the ROI type
@example([("item", "Point_px", 0, 0, "(1e300, 5)")], [])  # found: absurd coordinate kept
@example([("set", "Center", 0, "integer", "7")], [])  # found: a bad Center dropped a mass
@example([("nest", 3, 250)], [])  # deep nesting, just under libxml2's limit
def test_roi_reader_on_mutated_files(workdir, mutations, byte_ops):
    path = workdir / "22678622.xml"
    path.write_bytes(mutated_plist(mutations, byte_ops))
    rois = check_rois(path)
    if not mutations and not byte_ops:
        assert [r.name for r in rois] == ["Mass", "Calcification", "Spiculated Region"]
    auxiliary = {"Area", "Center", "IndexInImage", "NumberOfPoints", "Point_mm", "Type"}
    if rois is not None and len(mutations) == 1 and mutations[0][:2] in {
        ("set", key) for key in auxiliary
    } and not byte_ops:
        assert len(rois) == 3  # a bad auxiliary field never costs the ROI


# --- DICOM (byte level) ------------------------------------------------------------------------


FIXED_UID = "1.2.826.0.1.3680043.8.498.4242"


@pytest.fixture(scope="module")
def valid_dicom(workdir) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = FIXED_UID  # fixed, so byte positions are too
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, FIXED_UID
    ds.Modality, ds.Rows, ds.Columns, ds.SamplesPerPixel = "MG", 6, 8, 1
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 14, 13, 0
    ds.PixelSpacing = [0.07, 0.07]
    ds.PixelData = np.arange(48, dtype="<u2").tobytes()
    path = workdir / "valid.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about each corrupt value
@settings(FUZZ, max_examples=150)
@given(st.lists(st.tuples(st.just("flip"), st.integers(0, 1 << 12), st.integers(0, 255)),
                min_size=1, max_size=4),
       st.one_of(st.just([]), st.lists(st.tuples(st.just("truncate"), st.integers(0, 1 << 12)),
                                        max_size=1)))
@example([("flip", 453, 0x47)], [])  # found: a corrupt PixelSpacing VR raised NotImplementedError
@example([("flip", 245, 0x5C)], [])  # found: a 2-valued Transfer Syntax UID raised AttributeError
def test_dicom_reader_on_flipped_bytes(workdir, valid_dicom, flips, cut):
    path = workdir / "flipped.dcm"
    path.write_bytes(mutate_bytes(valid_dicom, flips + cut))
    with warning_messages():
        try:
            image = read_dicom(path)
        except InbreastFormatError as err:
            assert path.name in str(err)
            return
    assert image.pixels.dtype == np.uint16 and image.pixels.ndim == 2
    assert int(image.pixels.max()) <= 2**image.bits_stored - 1
    assert all(math.isfinite(v) and v > 0 for v in image.pixel_spacing)
    assert read_dicom_shape(path) == image.shape


# --- path joins --------------------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=40))
@example("a\x00b")  # found: a NUL byte raised ValueError from Path.resolve
@example("../outside")
def test_safe_join_stays_inside_the_root_or_refuses(workdir, relative):
    root = workdir / "root"
    root.mkdir(exist_ok=True)
    try:
        joined = safe_join(root, relative)
    except InbreastFormatError:
        return
    resolved = joined.resolve()
    assert resolved == root.resolve() or root.resolve() in resolved.parents


def test_safe_join_refuses_a_symbolic_link_loop(tmp_path):
    """Found: the loop raised RuntimeError from Path.resolve."""
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(InbreastFormatError, match="cannot resolve"):
        safe_join(tmp_path, "a")
